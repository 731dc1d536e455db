//! The fleet-wide token store on Redis: however many processes share a configuration, one
//! token request per key per lifetime.
//!
//! [`RedisStore`] (blocking, for `transport-ureq`) and [`AsyncRedisStore`] (tokio, for
//! `transport-reqwest`; feature `async`, on by default) run the store operations the token
//! lifecycle emits (`token_core::lifecycle::store`) against one Redis primary, `redis://` or
//! `rediss://` (rustls with Mozilla's roots; never native-tls).
//!
//! # The protocol
//! Per credential, under one cluster hash tag `{kid}` (`kid` = hex HMAC-SHA256 of the
//! configuration's fingerprint: token URL, client id, audience, scopes, subject, organization;
//! no secret in it, see [`token_store::derive_kid`]):
//!
//! | key | value | TTL |
//! |---|---|---|
//! | `tok:{kid}:v` | hash: `gen`, `blob` (the sealed record) | the token's remaining life minus a safety margin (10 % of its lifetime, 2 s to a quarter of it), set by the publisher |
//! | `tok:{kid}:lease` | `owner:gen` (`SET NX PX`) | the lease TTL the manager asks for (its request timeout plus 5 s) |
//! | `tok:{kid}:gen` | generation counter (`INCR`) | none |
//! | `tok:{kid}:ch` | channel: the generation, published on every write | — |
//!
//! Every operation is one Lua script, atomic on the primary:
//! - **acquire**: a value with more than `refresh_ahead` left → use it; else no lease → `INCR`
//!   the generation and take the lease → this process fetches (with the old value, if any, as
//!   stale); else another process is fetching → the value, if any, and the lease's PTTL: the
//!   manager serves a still-valid token and looks again (jittered, 50 → 400 ms), bounded by the
//!   lease.
//! - **publish**: write the value only if its generation is newer than the stored one (a late
//!   writer never overwrites a newer token), set its TTL, delete the lease only if it is still
//!   ours (compare-and-delete), publish the generation.
//! - **release** (a failed fetch): compare-and-delete our lease.
//! - **invalidate** (the API refused the token): delete the value only if it is still the
//!   refused generation, so a burst of 401s across the fleet removes it once and never a newer
//!   token.
//!
//! A lease holder that dies costs at most one extra fetch: its lease expires and the next
//! acquire takes `gen + 1`. Expiry never compares two hosts' clocks: a process that loads a value
//! counts its Redis PTTL on its own monotonic clock. A lease is an efficiency lock, not a
//! correctness lock: a duplicate fetch costs quota, never a wrong token, so one primary is
//! enough (no Redlock).
//!
//! # Encryption at rest
//! Records are sealed with XChaCha20-Poly1305 ([`token_store::Sealer`]), keyed per `kid` by
//! HKDF-SHA256 from an explicit key ([`RedisStoreBuilder::key`]) or, by default, from the
//! client's secret (a client without one needs an explicit key). A value that does not decrypt
//! (a wrong key, another format, garbage) is a miss: never an error to the caller, never a panic.
//! No token or secret is ever in clear in Redis, in logs or in errors; the URL's password never
//! appears in an error. Give the store a Redis ACL limited to its keys and channels
//! (`~tok:* &tok:*`, commands `+evalsha +eval +script|load +incr +get +set +del +hget`) and use
//! `rediss://`.
//!
//! # Trouble
//! Every operation has a connect and response timeout ([`RedisStoreBuilder::timeout`], default
//! 500 ms); a failure of any kind is reported to the manager, which then falls back to its
//! in-process single flight and leaves the store alone for a while (a circuit breaker); a valid
//! token in memory keeps being served throughout. The connection is re-established on the next
//! operation after an error.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use redis::{Script, Value};
use token_core::{
    StoreFailure, StoreKey, StoreOp, StoreRecord, StoreReply, StoreRequest, StoredValue,
};
use token_driver::BlockingStore;
use token_store::{EncryptionKey, Sealer, derive_kid};

#[cfg(feature = "async")]
mod nonblocking;
#[cfg(feature = "async")]
pub use nonblocking::AsyncRedisStore;

/// Why a store could not be set up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// The URL is not a `redis://` or `rediss://` URL the client can use.
    #[error("invalid Redis URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL without user info (password) and query.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// Configures a [`RedisStore`] or [`AsyncRedisStore`].
#[derive(Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    url: String,
    timeout: Duration,
    key: Option<EncryptionKey>,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("url", &token_core::display_url(&self.url))
            .field("timeout", &self.timeout)
            .field("key", &self.key)
            .finish()
    }
}

impl RedisStoreBuilder {
    /// Connect and response timeout of every operation (default 500 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Encrypts every record with this key (HKDF per key name) instead of keys derived from
    /// each client's secret. Needed for clients without a secret (public clients of the
    /// Authorization Code flow, bookingtime's Module API).
    pub fn key(mut self, key: EncryptionKey) -> Self {
        self.key = Some(key);
        self
    }

    fn client(&self) -> Result<redis::Client, RedisStoreError> {
        let url = self.url.trim();
        let invalid = |reason: String| RedisStoreError::InvalidUrl {
            url: token_core::display_url(url),
            reason: token_core::redact_urls(&reason),
        };
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(invalid("must start with redis:// or rediss://".into()));
        }
        redis::Client::open(url).map_err(|e| invalid(e.to_string()))
    }

    /// A blocking store (for `transport-ureq`). Connects lazily, on the first operation.
    pub fn build(self) -> Result<RedisStore, RedisStoreError> {
        Ok(RedisStore {
            client: self.client()?,
            shared: Shared::new(&self),
            connection: Mutex::new(None),
        })
    }

    /// An async store (for `transport-reqwest`). Connects lazily, on the first operation, on
    /// the runtime that runs it.
    #[cfg(feature = "async")]
    pub fn build_async(self) -> Result<AsyncRedisStore, RedisStoreError> {
        Ok(AsyncRedisStore::new(self.client()?, Shared::new(&self)))
    }
}

/// What both stores share: the scripts, the owner id, the key rules.
pub(crate) struct Shared {
    pub(crate) timeout: Duration,
    pub(crate) owner: String,
    key: Option<EncryptionKey>,
    pub(crate) scripts: Scripts,
}

impl Shared {
    fn new(builder: &RedisStoreBuilder) -> Self {
        let mut owner = [0u8; 12];
        // An owner id only tells this store's leases from others'; if the OS has no randomness
        // the process id and a counter still tell them apart on one host.
        if getrandom::fill(&mut owner).is_err() {
            owner[..4].copy_from_slice(&std::process::id().to_be_bytes());
        }
        Self {
            timeout: builder.timeout,
            owner: owner.iter().map(|b| format!("{b:02x}")).collect(),
            key: builder.key.clone(),
            scripts: Scripts::new(),
        }
    }

    /// The key names and sealer of a credential, or why it cannot be stored.
    pub(crate) fn target(&self, key: &StoreKey) -> Result<Target, StoreFailure> {
        let kid = derive_kid(key.fingerprint().as_bytes());
        let encryption = match (&self.key, key.client_secret()) {
            (Some(explicit), _) => explicit.clone(),
            (None, Some(secret)) => EncryptionKey::from_client_secret(secret.expose_secret()),
            (None, None) => {
                return Err(StoreFailure::new(
                    "no encryption key: the client has no secret; give the store one with key()",
                ));
            }
        };
        Ok(Target {
            sealer: Sealer::new(&encryption, &kid),
            value: format!("tok:{{{kid}}}:v"),
            lease: format!("tok:{{{kid}}}:lease"),
            generation: format!("tok:{{{kid}}}:gen"),
            channel: format!("tok:{{{kid}}}:ch"),
        })
    }
}

/// One credential's key names and sealer.
pub(crate) struct Target {
    pub(crate) sealer: Sealer,
    pub(crate) value: String,
    pub(crate) lease: String,
    pub(crate) generation: String,
    pub(crate) channel: String,
}

/// The Lua scripts of the protocol.
pub(crate) struct Scripts {
    pub(crate) acquire: Script,
    pub(crate) publish: Script,
    pub(crate) release: Script,
    pub(crate) invalidate: Script,
}

/// KEYS: value, lease, gen. ARGV: refresh_ahead_ms, lease_ttl_ms, owner, ignore_value.
/// Returns {"value", gen, blob, pttl} | {"busy", lease_pttl[, gen, blob, pttl]} |
/// {"leased", gen[, gen, blob, pttl]}.
const ACQUIRE: &str = r#"
local pttl = redis.call('PTTL', KEYS[1])
local gen, blob = false, false
if pttl > 0 and ARGV[4] ~= '1' then
  local v = redis.call('HMGET', KEYS[1], 'gen', 'blob')
  gen, blob = v[1], v[2]
end
if gen and blob and pttl > tonumber(ARGV[1]) then
  return {'value', gen, blob, pttl}
end
local lease = redis.call('PTTL', KEYS[2])
if lease > 0 then
  if gen and blob then return {'busy', lease, gen, blob, pttl} end
  return {'busy', lease}
end
local next = redis.call('INCR', KEYS[3])
redis.call('SET', KEYS[2], ARGV[3] .. ':' .. next, 'PX', ARGV[2])
if gen and blob then return {'leased', next, gen, blob, pttl} end
return {'leased', next}
"#;

/// KEYS: value, lease, gen, channel. ARGV: gen, blob, ttl_ms, owner. Returns 1 if written.
const PUBLISH: &str = r#"
local gen = tonumber(ARGV[1])
local stored = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
local written = 0
if gen > stored then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'gen', ARGV[1], 'blob', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  written = 1
end
if tonumber(redis.call('GET', KEYS[3]) or '0') < gen then
  redis.call('SET', KEYS[3], ARGV[1])
end
if redis.call('GET', KEYS[2]) == ARGV[4] .. ':' .. ARGV[1] then
  redis.call('DEL', KEYS[2])
end
if written == 1 then redis.call('PUBLISH', KEYS[4], ARGV[1]) end
return written
"#;

/// KEYS: lease. ARGV: owner:gen. Returns 1 if released.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// KEYS: value. ARGV: gen. Returns 1 if deleted.
const INVALIDATE: &str = r#"
if redis.call('HGET', KEYS[1], 'gen') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

impl Scripts {
    fn new() -> Self {
        Self {
            acquire: Script::new(ACQUIRE),
            publish: Script::new(PUBLISH),
            release: Script::new(RELEASE),
            invalidate: Script::new(INVALIDATE),
        }
    }
}

/// What an acquire script answered, before decryption.
pub(crate) enum Acquired {
    Value(Raw),
    Busy { lease_ttl: Duration, value: Option<Raw> },
    Leased { generation: u64, stale: Option<Raw> },
}

/// A value as the script returned it: generation, sealed blob, PTTL.
pub(crate) struct Raw {
    generation: u64,
    blob: Vec<u8>,
    ttl: Duration,
}

impl Raw {
    /// The value, if it decrypts.
    pub(crate) fn open(self, sealer: &Sealer) -> Option<StoredValue> {
        let plaintext = sealer.open(self.generation, &self.blob)?;
        Some(StoredValue::new(
            StoreRecord::from_bytes(plaintext),
            self.generation,
            self.ttl,
        ))
    }
}

/// Reads an acquire script's reply.
pub(crate) fn parse_acquired(reply: &Value) -> Result<Acquired, StoreFailure> {
    let bad = || StoreFailure::new("unexpected reply from the acquire script");
    let Value::Array(items) = reply else {
        return Err(bad());
    };
    let text = |i: usize| items.get(i).and_then(bytes);
    let number = |i: usize| items.get(i).and_then(integer);
    let raw = |i: usize| -> Option<Raw> {
        Some(Raw {
            generation: text(i)
                .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
                .or_else(|| number(i).and_then(|n| u64::try_from(n).ok()))?,
            blob: text(i + 1)?.to_vec(),
            ttl: Duration::from_millis(u64::try_from(number(i + 2)?).ok()?),
        })
    };
    match text(0) {
        Some(b"value") => raw(1).map(Acquired::Value).ok_or_else(bad),
        Some(b"busy") => Ok(Acquired::Busy {
            lease_ttl: Duration::from_millis(
                number(1)
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(bad)?,
            ),
            value: raw(2),
        }),
        Some(b"leased") => Ok(Acquired::Leased {
            generation: number(1)
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(bad)?,
            stale: raw(2),
        }),
        _ => Err(bad()),
    }
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => bytes(other).and_then(|b| std::str::from_utf8(b).ok()?.parse().ok()),
    }
}

/// A Redis error as a store failure: its kind and message, URLs stripped of passwords.
pub(crate) fn failure(error: &redis::RedisError) -> StoreFailure {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connection_refusal() || error.is_connection_dropped() || error.is_io_error()
    {
        "connection"
    } else {
        "redis"
    };
    StoreFailure::new(format!(
        "{kind}: {}",
        token_core::redact_urls(&error.to_string())
    ))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The blocking store (for `transport-ureq`): one connection, re-established after an error.
/// `Send + Sync`.
pub struct RedisStore {
    client: redis::Client,
    shared: Shared,
    connection: Mutex<Option<redis::Connection>>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("timeout", &self.shared.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A builder for the store at `url` (`redis://[user:password@]host:port[/db]` or
    /// `rediss://…`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            timeout: Duration::from_millis(500),
            key: None,
        }
    }

    /// The store at `url` with default settings.
    pub fn open(url: impl Into<String>) -> Result<Self, RedisStoreError> {
        Self::builder(url).build()
    }

    fn connection(&self) -> MutexGuard<'_, Option<redis::Connection>> {
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on a live connection (connecting if need be); an error drops the connection so
    /// the next operation reconnects.
    fn with_connection<R>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<R>,
    ) -> Result<R, StoreFailure> {
        let mut guard = self.connection();
        if guard.is_none() {
            let connection = self
                .client
                .get_connection_with_timeout(self.shared.timeout)
                .map_err(|e| failure(&e))?;
            connection
                .set_read_timeout(Some(self.shared.timeout))
                .and_then(|()| connection.set_write_timeout(Some(self.shared.timeout)))
                .map_err(|e| failure(&e))?;
            *guard = Some(connection);
        }
        let connection = guard.as_mut().expect("invariant: connected just above");
        let result = f(connection);
        if result.is_err() {
            *guard = None;
        }
        result.map_err(|e| failure(&e))
    }

    /// Runs one store operation.
    pub fn run(&self, request: &StoreRequest) -> StoreReply {
        match self.try_run(request) {
            Ok(reply) => reply,
            Err(failure) => {
                tracing::warn!(%failure, "redis token store failed");
                StoreReply::Failed(failure)
            }
        }
    }

    fn try_run(&self, request: &StoreRequest) -> Result<StoreReply, StoreFailure> {
        let target = self.shared.target(&request.key)?;
        let s = &self.shared.scripts;
        match &request.op {
            StoreOp::Acquire {
                refresh_ahead,
                lease_ttl,
            } => {
                let run = |ignore_value: bool| {
                    self.with_connection(|c| {
                        s.acquire
                            .key(&target.value)
                            .key(&target.lease)
                            .key(&target.generation)
                            .arg(ms(*refresh_ahead))
                            .arg(ms(*lease_ttl))
                            .arg(&self.shared.owner)
                            .arg(if ignore_value { "1" } else { "0" })
                            .invoke::<Value>(c)
                    })
                    .and_then(|v| parse_acquired(&v))
                };
                Ok(match run(false)? {
                    Acquired::Value(raw) => match raw.open(&target.sealer) {
                        Some(value) => StoreReply::Value(value),
                        // It does not decrypt: a miss, so take the lease as if it were absent.
                        None => reply_of(run(true)?, &target.sealer),
                    },
                    other => reply_of(other, &target.sealer),
                })
            }
            StoreOp::Publish {
                generation,
                record,
                ttl,
            } => {
                let generation = match generation {
                    Some(g) => *g,
                    None => self.with_connection(|c| {
                        redis::cmd("INCR").arg(&target.generation).query::<u64>(c)
                    })?,
                };
                let blob = target.sealer.seal(generation, record.expose_bytes());
                self.with_connection(|c| {
                    s.publish
                        .key(&target.value)
                        .key(&target.lease)
                        .key(&target.generation)
                        .key(&target.channel)
                        .arg(generation)
                        .arg(blob)
                        .arg(ms(*ttl))
                        .arg(&self.shared.owner)
                        .invoke::<i64>(c)
                })?;
                Ok(StoreReply::Done)
            }
            StoreOp::Release { generation } => {
                let lease = format!("{}:{generation}", self.shared.owner);
                self.with_connection(|c| {
                    s.release.key(&target.lease).arg(lease).invoke::<i64>(c)
                })?;
                Ok(StoreReply::Done)
            }
            StoreOp::Invalidate { generation } => {
                self.with_connection(|c| {
                    s.invalidate
                        .key(&target.value)
                        .arg(*generation)
                        .invoke::<i64>(c)
                })?;
                Ok(StoreReply::Done)
            }
            _ => Err(StoreFailure::new("operation not supported")),
        }
    }
}

/// The store reply for an acquire's answer (values that do not decrypt are left out).
pub(crate) fn reply_of(acquired: Acquired, sealer: &Sealer) -> StoreReply {
    match acquired {
        Acquired::Value(raw) => match raw.open(sealer) {
            Some(value) => StoreReply::Value(value),
            None => StoreReply::Failed(StoreFailure::new("a value that does not decrypt")),
        },
        Acquired::Busy { lease_ttl, value } => StoreReply::Busy {
            value: value.and_then(|raw| raw.open(sealer)),
            lease_ttl,
        },
        Acquired::Leased { generation, stale } => StoreReply::Leased {
            generation,
            stale: stale.and_then(|raw| raw.open(sealer)),
        },
    }
}

impl BlockingStore for RedisStore {
    fn execute(&self, request: &StoreRequest) -> StoreReply {
        self.run(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_never_echo_a_password() {
        let err = RedisStore::open("http://user:PASSWORD@host:6379/?x=KEY").unwrap_err();
        assert!(!err.to_string().contains("PASSWORD") && !err.to_string().contains("KEY"));
        let err = RedisStore::open("redis://user:PASSWORD@:notaport").unwrap_err();
        assert!(!err.to_string().contains("PASSWORD"), "{err}");
        assert!(RedisStore::open("redis://127.0.0.1:6379/0").is_ok());
        assert!(RedisStore::open("rediss://cache.example:6380").is_ok());
        let debug = format!(
            "{:?}",
            RedisStore::builder("redis://u:PASSWORD@h:1").key(EncryptionKey::explicit([1; 32]))
        );
        assert!(!debug.contains("PASSWORD"), "{debug}");
    }

    #[test]
    fn script_replies_are_read_strictly() {
        let s = |t: &str| Value::BulkString(t.as_bytes().to_vec());
        let reply = Value::Array(vec![s("leased"), Value::Int(3)]);
        assert!(matches!(
            parse_acquired(&reply),
            Ok(Acquired::Leased { generation: 3, stale: None })
        ));
        let reply = Value::Array(vec![s("busy"), Value::Int(900), s("2"), s("blob"), Value::Int(5000)]);
        assert!(matches!(
            parse_acquired(&reply),
            Ok(Acquired::Busy { value: Some(_), .. })
        ));
        for bad in [
            Value::Nil,
            Value::Array(vec![]),
            Value::Array(vec![s("value")]),
            Value::Array(vec![s("what"), Value::Int(1)]),
            Value::Array(vec![s("leased"), Value::Int(-1)]),
        ] {
            assert!(parse_acquired(&bad).is_err(), "{bad:?}");
        }
    }
}
