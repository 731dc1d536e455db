//! The disk store under the real lifecycle (a manager in virtual time, a fake token endpoint):
//! sharing, encryption, hostile files, symlinks, and failures that fall back to memory.

use std::path::{Path, PathBuf};

use token_core::{ManagerConfig, StoreSettings, TokenKey};
use token_store::EncryptionKey;
use token_store_disk::DiskStore;
use token_testkit::sansio::{FakeServer, Harness, text};

fn config() -> ManagerConfig {
    let mut config = ManagerConfig::default();
    config.store = Some(StoreSettings::default());
    config
}

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "token-store-disk-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn harness() -> (Harness, TokenKey) {
    let mut h = Harness::new(config());
    let key = TokenKey::new(h.generic_client("disk"));
    (h, key)
}

fn token_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tok"))
        .collect();
    files.sort();
    files
}

/// Fetches a token through `store` with a fresh manager (a new process) and returns it.
fn fetch(store: &DiskStore, server: &mut FakeServer) -> String {
    let (mut h, key) = harness();
    let _ = h.request(&key);
    h.serve_all_real(server, store);
    text(&h.request(&key)).expect("a token")
}

#[test]
fn a_restarted_process_reuses_the_token_on_disk() {
    let dir = dir("restart");
    let store = DiskStore::open(&dir).unwrap();
    let mut server = FakeServer::new(3600);
    let first = fetch(&store, &mut server);
    // A new store object and a new manager: a process started again.
    let store = DiskStore::open(&dir).unwrap();
    for _ in 0..4 {
        assert_eq!(fetch(&store, &mut server), first);
    }
    assert_eq!(server.requests, 1, "five processes, one token request");
}

#[test]
fn files_are_private_encrypted_and_named_without_secrets() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = dir("private");
    let store = DiskStore::open(&dir).unwrap();
    let mut server = FakeServer::new(3600);
    let token = fetch(&store, &mut server);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let files = token_files(&dir);
    assert_eq!(files.len(), 1);
    assert_eq!(mode(&files[0]), 0o600);
    let bytes = std::fs::read(&files[0]).unwrap();
    assert!(
        !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
        "the token is in clear"
    );
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains("disk") && !name.contains("secret"), "{name}");
    }
    // A looser directory is tightened on open.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _ = DiskStore::open(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
}

#[test]
fn a_wrong_key_is_a_miss() {
    let dir = dir("wrong-key");
    let mut server = FakeServer::new(3600);
    let first = fetch(&DiskStore::open(&dir).unwrap(), &mut server);
    let other = DiskStore::open(&dir)
        .unwrap()
        .with_key(EncryptionKey::explicit([7; 32]));
    let second = fetch(&other, &mut server);
    assert_ne!(first, second, "the file did not decrypt: fetched anew");
    assert_eq!(server.requests, 2);
    // And the new token is readable with its key.
    assert_eq!(fetch(&other, &mut server), second);
    assert_eq!(server.requests, 2);
}

#[test]
fn corrupt_truncated_empty_and_foreign_files_are_misses() {
    let dir = dir("corrupt");
    let store = DiskStore::open(&dir).unwrap();
    let mut server = FakeServer::new(3600);
    let _ = fetch(&store, &mut server);
    let file = token_files(&dir).remove(0);
    let good = std::fs::read(&file).unwrap();
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        good[..good.len() / 2].to_vec(),
        good[..10].to_vec(),
        b"BTOKDSK1 not really".to_vec(),
        b"{\"access_token\":\"planted\"}".to_vec(),
        vec![0xff; 100_000],
        {
            let mut flipped = good.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 0x80;
            flipped
        },
    ];
    for (i, bytes) in cases.into_iter().enumerate() {
        std::fs::write(&file, &bytes).unwrap();
        let before = server.requests;
        let token = fetch(&store, &mut server);
        assert_eq!(server.requests, before + 1, "case {i}: a miss, so a fetch");
        assert_ne!(token, "planted");
    }
}

#[test]
fn a_planted_symlink_is_never_followed() {
    let dir = dir("symlink");
    let store = DiskStore::open(&dir).unwrap();
    let mut server = FakeServer::new(3600);
    let _ = fetch(&store, &mut server);
    let file = token_files(&dir).remove(0);
    let target = dir.with_extension("target");
    std::fs::write(&target, b"precious").unwrap();
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&target, &file).unwrap();
    let before = server.requests;
    let _ = fetch(&store, &mut server);
    assert_eq!(server.requests, before + 1, "the link was not read");
    assert_eq!(
        std::fs::read(&target).unwrap(),
        b"precious",
        "nor written through"
    );
    assert!(
        !std::fs::symlink_metadata(&file)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // A symlinked cache directory is refused.
    let linked = dir.with_extension("link");
    let _ = std::fs::remove_file(&linked);
    std::os::unix::fs::symlink(&dir, &linked).unwrap();
    assert!(DiskStore::open(&linked).is_err());
    let _ = std::fs::remove_file(&target);
    let _ = std::fs::remove_file(&linked);
}

#[test]
fn an_unusable_directory_is_an_error_at_open() {
    assert!(DiskStore::open("/proc/token-store-disk-cannot-exist").is_err());
    let file = dir("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    assert!(DiskStore::open(&file).is_err());
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_failing_directory_falls_back_to_memory() {
    let dir = dir("vanishing");
    let store = DiskStore::open(&dir).unwrap();
    // The directory disappears under the store (a cleaned cache, an unmounted disk).
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"now a file").unwrap();
    let mut server = FakeServer::new(3600);
    let (mut h, key) = harness();
    let _ = h.request(&key);
    h.serve_all_real(&mut server, &store);
    assert!(text(&h.request(&key)).is_some(), "the token came anyway");
    assert_eq!(server.requests, 1);
    let _ = std::fs::remove_file(&dir);
}

#[test]
fn two_managers_on_one_directory_make_one_request() {
    let dir = dir("pair");
    let (a_store, b_store) = (
        DiskStore::open(&dir).unwrap(),
        DiskStore::open(&dir).unwrap(),
    );
    let mut server = FakeServer::new(3600);
    let (mut a, ka) = harness();
    let (mut b, kb) = harness();
    b.now = a.now;
    let _ = a.request(&ka);
    a.serve_real_store(&a_store);
    assert_eq!(a.pending.len(), 1, "A took the lease");
    let _ = b.request(&kb);
    b.serve_real_store(&b_store);
    assert!(b.pending.is_empty(), "B waits for A's lease (the OS lock)");
    a.serve_all_real(&mut server, &a_store);
    for _ in 0..10 {
        b.advance(std::time::Duration::from_millis(100));
        b.mgr.handle_timeout(b.now);
        b.drain();
        b.serve_all_real(&mut server, &b_store);
    }
    assert_eq!(text(&b.request(&kb)), text(&a.request(&ka)));
    assert_eq!(server.requests, 1);
}

/// Writes that fail (as on a full disk or a read-only mount: here the token file's name is
/// taken by a directory, which fails the rename for root too) leave the token in memory.
#[test]
fn a_write_that_fails_leaves_the_token_in_memory() {
    let dir = dir("unwritable");
    let store = DiskStore::open(&dir).unwrap();
    let mut server = FakeServer::new(3600);
    fetch(&store, &mut server);
    let file = token_files(&dir).pop().expect("a token file");
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    std::fs::write(file.join("occupied"), b"x").unwrap();
    // A new process: nothing readable on disk, it fetches; saving fails; the token is served.
    let (mut h, key) = harness();
    let _ = h.request(&key);
    h.serve_all_real(&mut server, &store);
    assert!(text(&h.request(&key)).is_some(), "the token came anyway");
    assert_eq!(server.requests, 2);
    assert!(file.is_dir(), "nothing was written through it");
    let _ = std::fs::remove_dir_all(&dir);
}
