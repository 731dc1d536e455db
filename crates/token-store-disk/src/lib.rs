//! An embedded token store on local disk: tokens survive restarts and are shared by the
//! processes of one host, with no server.
//!
//! It implements the shared-store protocol of `token_core::lifecycle::store` (the same as the
//! Redis store) with files:
//!
//! | file | what | written |
//! |---|---|---|
//! | `{kid}.tok` | format header, generation, wall-clock expiry, sealed record | atomically (a temporary file in the same directory, then `rename`) |
//! | `{kid}.lock` | the lease: an OS file lock held by the fetching process; holds the generation counter | under its own lock |
//!
//! `kid` is the hex HMAC of the credential's fingerprint ([`token_store::derive_kid`]): no
//! secret in a file name. The record is sealed exactly like the Redis store's (the same AEAD,
//! the same key rules: an explicit key, or one derived from the client secret); a file that
//! does not decrypt, is truncated, foreign or hostile is a miss, never an error to the caller
//! and never a panic.
//!
//! - **The lease is an OS lock** (`flock`): a process that crashes mid-fetch loses it to the
//!   kernel at once, so it costs at most one extra fetch and no waiting.
//! - **Expiry survives a reboot**: the file stores the wall-clock expiry (the token's remaining
//!   life minus the manager's safety margin); a process that loads it sees the remaining
//!   time and counts it on its own monotonic clock from then on.
//! - **Private**: the directory is created `0700` (and tightened to it if it is looser), files
//!   `0600`. Files are opened with `O_NOFOLLOW`: a symlink planted in the directory is never
//!   followed (reading it is a miss; writing replaces the link, not its target), and the
//!   directory itself must not be a symlink.
//! - **Trouble is not an outage**: a full disk or a read-only directory makes operations fail;
//!   the manager then falls back to its in-process single flight (and leaves the store alone
//!   for a while), and this store logs a warning.
//!
//! ```no_run
//! use token_store_disk::DiskStore;
//!
//! let store = DiskStore::open(DiskStore::default_dir("my-app").expect("a cache directory"))?;
//! let client = transport_ureq::TokenClient::builder().store(store).build();
//! # Ok::<(), token_store_disk::DiskStoreError>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use token_core::{
    StoreFailure, StoreKey, StoreOp, StoreRecord, StoreReply, StoreRequest, StoredValue,
};
use token_driver::{AsyncStore, BlockingStore, StoreFuture};
use token_store::{EncryptionKey, Sealer, derive_kid};

/// The file format's magic and version.
const MAGIC: &[u8; 8] = b"BTOKDSK1";
/// Header: magic, generation (u64 BE), expiry in Unix milliseconds (u64 BE).
const HEADER: usize = 8 + 8 + 8;
/// Files larger than this are not read (a token record is a few KiB at most).
const MAX_FILE: u64 = 256 * 1024;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiskStoreError {
    /// The directory cannot be created or used.
    #[error("cache directory {path}: {reason}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// How the store gets its encryption key.
#[derive(Clone, Debug)]
enum KeySource {
    /// One key for everything.
    Explicit(EncryptionKey),
    /// Derived per credential from the client's secret (clients without one are not stored).
    ClientSecret,
}

/// The embedded store on local disk. `Send + Sync`; share one per directory and process.
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    key: KeySource,
    /// Leases this process holds: the locked lock file and its generation, by kid.
    leases: Mutex<HashMap<String, (File, u64)>>,
}

impl DiskStore {
    /// Opens (creating, `0700`) the cache directory. Refuses a symlink, a non-directory, and a
    /// directory owned by another user; tightens looser permissions to `0700`. Records are
    /// encrypted with a key derived from each client's secret unless
    /// [`with_key`](Self::with_key) sets one.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, DiskStoreError> {
        let dir = dir.into();
        let fail = |reason: String| DiskStoreError::Directory {
            path: dir.clone(),
            reason,
        };
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(fail("is a symlink".into()));
            }
            Ok(meta) if !meta.is_dir() => return Err(fail("is not a directory".into())),
            Ok(meta) => {
                if current_uid().is_some_and(|uid| meta.uid() != uid) {
                    return Err(fail("belongs to another user".into()));
                }
                if meta.mode() & 0o077 != 0 {
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                        .map_err(|e| fail(format!("cannot make it private: {e}")))?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| fail(format!("cannot create it: {e}")))?;
            }
            Err(e) => return Err(fail(e.to_string())),
        }
        Ok(Self {
            dir,
            key: KeySource::ClientSecret,
            leases: Mutex::new(HashMap::new()),
        })
    }

    /// The default cache directory of `app`: `$XDG_CACHE_HOME/{app}`, else
    /// `$HOME/.cache/{app}`.
    pub fn default_dir(app: &str) -> Option<PathBuf> {
        let non_empty = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        let base = non_empty("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| non_empty("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
        Some(base.join(app))
    }

    /// Encrypts every record with `key` instead of keys derived from client secrets (needed for
    /// clients without a secret, e.g. public clients of the Authorization Code flow).
    pub fn with_key(mut self, key: EncryptionKey) -> Self {
        self.key = KeySource::Explicit(key);
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn leases(&self) -> MutexGuard<'_, HashMap<String, (File, u64)>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kid and sealer for a credential, or why it cannot be stored.
    fn seal_for(&self, key: &StoreKey) -> Result<(String, Sealer), StoreFailure> {
        let kid = derive_kid(key.fingerprint().as_bytes());
        let encryption = match &self.key {
            KeySource::Explicit(k) => k.clone(),
            KeySource::ClientSecret => match key.client_secret() {
                Some(secret) => EncryptionKey::from_client_secret(secret.expose_secret()),
                None => {
                    return Err(StoreFailure::new(
                        "no encryption key: the client has no secret; configure one with with_key",
                    ));
                }
            },
        };
        let sealer = Sealer::new(&encryption, &kid);
        Ok((kid, sealer))
    }

    fn path(&self, kid: &str, extension: &str) -> PathBuf {
        self.dir.join(format!("{kid}.{extension}"))
    }

    /// Runs one operation.
    pub fn run(&self, request: &StoreRequest) -> StoreReply {
        match self.try_run(request) {
            Ok(reply) => reply,
            Err(failure) => {
                tracing::warn!(%failure, dir = %self.dir.display(), "disk token store failed; tokens stay in memory");
                StoreReply::Failed(failure)
            }
        }
    }

    fn try_run(&self, request: &StoreRequest) -> Result<StoreReply, StoreFailure> {
        let (kid, sealer) = self.seal_for(&request.key)?;
        match &request.op {
            StoreOp::Acquire {
                refresh_ahead,
                lease_ttl,
            } => self.acquire(&kid, &sealer, *refresh_ahead, *lease_ttl),
            StoreOp::Publish {
                generation,
                record,
                ttl,
            } => self.publish(&kid, &sealer, *generation, record, *ttl),
            StoreOp::Release { generation } => {
                let mut leases = self.leases();
                if leases.get(&kid).is_some_and(|(_, g)| g == generation) {
                    leases.remove(&kid); // dropping the file releases the lock
                }
                Ok(StoreReply::Done)
            }
            StoreOp::Invalidate { generation } => self.invalidate(&kid, &sealer, *generation),
            _ => Err(StoreFailure::new("operation not supported")),
        }
    }

    fn acquire(
        &self,
        kid: &str,
        sealer: &Sealer,
        refresh_ahead: Duration,
        lease_ttl: Duration,
    ) -> Result<StoreReply, StoreFailure> {
        let value = self.read_value(kid, sealer);
        if let Some(v) = value.as_ref().filter(|v| v.ttl > refresh_ahead) {
            return Ok(StoreReply::Value(StoredValue::new(
                v.record.clone(),
                v.generation,
                v.ttl,
            )));
        }
        let mut leases = self.leases();
        if leases.contains_key(kid) {
            // Another manager of this process holds it.
            return Ok(StoreReply::Busy { value, lease_ttl });
        }
        let mut lock = self.open_lock(kid)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(StoreReply::Busy { value, lease_ttl }),
            Err(TryLockError::Error(e)) => return Err(failure("lock", &e)),
        }
        let generation =
            read_counter(&mut lock).max(value.as_ref().map_or(0, |v| v.generation)) + 1;
        write_counter(&mut lock, generation).map_err(|e| failure("write the lease", &e))?;
        leases.insert(kid.to_owned(), (lock, generation));
        Ok(StoreReply::Leased {
            generation,
            stale: value,
        })
    }

    fn publish(
        &self,
        kid: &str,
        sealer: &Sealer,
        generation: Option<u64>,
        record: &StoreRecord,
        ttl: Duration,
    ) -> Result<StoreReply, StoreFailure> {
        let held = generation.and_then(|g| {
            let mut leases = self.leases();
            match leases.get(kid) {
                Some((_, held)) if *held == g => leases.remove(kid),
                _ => None,
            }
        });
        // Without our lease (a rotated refresh token, or a lease we lost), take the lock for
        // the write and a new generation.
        let (lock, generation) = match held {
            Some(held) => held,
            None => {
                let mut lock = self.open_lock(kid)?;
                lock_briefly(&lock)?;
                let current = self.read_value(kid, sealer).map_or(0, |v| v.generation);
                let next = match generation {
                    Some(g) if g > current => g,
                    Some(_) => return Ok(StoreReply::Done), // a newer token is there
                    None => read_counter(&mut lock).max(current) + 1,
                };
                write_counter(&mut lock, next).map_err(|e| failure("write the lease", &e))?;
                (lock, next)
            }
        };
        let current = self.read_value(kid, sealer).map_or(0, |v| v.generation);
        if generation > current {
            let expires = SystemTime::now()
                .checked_add(ttl)
                .unwrap_or_else(SystemTime::now)
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let mut file = Vec::with_capacity(HEADER + record.expose_bytes().len() + 64);
            file.extend_from_slice(MAGIC);
            file.extend_from_slice(&generation.to_be_bytes());
            file.extend_from_slice(
                &u64::try_from(expires.as_millis())
                    .unwrap_or(u64::MAX)
                    .to_be_bytes(),
            );
            let sealed = sealer
                .seal(generation, record.expose_bytes())
                .map_err(|e| StoreFailure::new(format!("seal: {e}")))?;
            file.extend_from_slice(&sealed);
            self.write_atomically(&self.path(kid, "tok"), &file)?;
        }
        drop(lock); // releases the lease
        Ok(StoreReply::Done)
    }

    fn invalidate(
        &self,
        kid: &str,
        sealer: &Sealer,
        generation: u64,
    ) -> Result<StoreReply, StoreFailure> {
        let leases = self.leases();
        let held_here = leases.contains_key(kid);
        let lock = if held_here {
            None
        } else {
            let lock = self.open_lock(kid)?;
            match lock.try_lock() {
                Ok(()) => Some(lock),
                // Another process is fetching a replacement: nothing to remove.
                Err(TryLockError::WouldBlock) => return Ok(StoreReply::Done),
                Err(TryLockError::Error(e)) => return Err(failure("lock", &e)),
            }
        };
        if self
            .read_value(kid, sealer)
            .is_some_and(|v| v.generation == generation)
        {
            match std::fs::remove_file(self.path(kid, "tok")) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(failure("remove", &e)),
            }
        }
        drop(lock);
        drop(leases);
        Ok(StoreReply::Done)
    }

    /// The stored value, if there is one that reads, decrypts and has not expired.
    fn read_value(&self, kid: &str, sealer: &Sealer) -> Option<StoredValue> {
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.path(kid, "tok"))
            .ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.len() > MAX_FILE {
            return None;
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        Read::by_ref(&mut file)
            .take(MAX_FILE)
            .read_to_end(&mut bytes)
            .ok()?;
        let (header, blob) = (bytes.get(..HEADER)?, bytes.get(HEADER..)?);
        if &header[..8] != MAGIC {
            return None;
        }
        let generation = u64::from_be_bytes(header[8..16].try_into().ok()?);
        let expires_ms = u64::from_be_bytes(header[16..24].try_into().ok()?);
        let expires = UNIX_EPOCH.checked_add(Duration::from_millis(expires_ms))?;
        let ttl = expires.duration_since(SystemTime::now()).ok()?;
        let plaintext = sealer.open(generation, blob)?;
        Some(StoredValue::new(
            StoreRecord::from_bytes(plaintext),
            generation,
            ttl,
        ))
    }

    fn open_lock(&self, kid: &str) -> Result<File, StoreFailure> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.path(kid, "lock"))
            .map_err(|e| failure("open the lock", &e))
    }

    /// Writes `bytes` to `path` atomically: a new `0600` temporary file in the same directory,
    /// synced, then renamed over `path` (a symlink at `path` is replaced, not followed).
    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreFailure> {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce)
            .map_err(|e| StoreFailure::new(format!("no randomness: {e}")))?;
        let temp = self.dir.join(format!(
            ".{}.{}.tmp",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            u64::from_le_bytes(nonce)
        ));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(failure("write", &e));
        }
        Ok(())
    }
}

impl BlockingStore for DiskStore {
    fn execute(&self, request: &StoreRequest) -> StoreReply {
        self.run(request)
    }
}

impl AsyncStore for DiskStore {
    /// Runs the operation inline: a few small local file operations, not worth a thread hop.
    fn execute<'a>(&'a self, request: &'a StoreRequest) -> StoreFuture<'a> {
        Box::pin(std::future::ready(self.run(request)))
    }
}

/// Takes the lock for a moment's write, waiting a little for another process to finish.
fn lock_briefly(lock: &File) -> Result<(), StoreFailure> {
    for attempt in 0..50u32 {
        match lock.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) => {
                std::thread::sleep(Duration::from_millis(u64::from(attempt.min(10)) + 1));
            }
            Err(TryLockError::Error(e)) => return Err(failure("lock", &e)),
        }
    }
    Err(StoreFailure::new("the lock stayed held"))
}

fn read_counter(lock: &mut File) -> u64 {
    use std::io::Seek as _;
    let mut bytes = [0u8; 8];
    if lock.rewind().is_err() || lock.read_exact(&mut bytes).is_err() {
        return 0;
    }
    u64::from_be_bytes(bytes)
}

fn write_counter(lock: &mut File, generation: u64) -> io::Result<()> {
    use std::io::Seek as _;
    lock.rewind()?;
    lock.write_all(&generation.to_be_bytes())?;
    lock.sync_data()
}

fn failure(what: &str, e: &io::Error) -> StoreFailure {
    StoreFailure::new(format!("{what}: {e}"))
}

/// The process's user id: the owner of `/proc/self` (Linux; elsewhere the check is skipped).
fn current_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}
