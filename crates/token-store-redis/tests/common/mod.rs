//! Scenarios run against both stores, on a real redis-server (token-testkit).
//!
//! Each scenario takes a [`Backend`] that makes stores ("processes") for a URL; the blocking
//! test file passes `RedisStore`, the async one `AsyncRedisStore` driven on a tokio runtime.
//! Nothing here sleeps to let time pass except while a Redis TTL must run out, and then it
//! polls `PTTL` (see [`wait_until_expired`]).

#![allow(dead_code)] // each test file uses its own subset of the helpers

use std::sync::Barrier;
use std::time::{Duration, Instant};

use token_store_redis::{Acquire, EncryptionKey, StoreError, StoreKey, Stored};
use token_testkit::proxy::{FaultProxy, Mode};
use token_testkit::redis::{RedisServer, Reply};

/// The four operations (and ping), blocking, whatever the store underneath.
pub trait Ops: Send + Sync {
    fn acquire(
        &self,
        key: &StoreKey,
        refresh_ahead: Duration,
        lease_ttl: Duration,
    ) -> Result<Acquire, StoreError>;
    fn publish(
        &self,
        key: &StoreKey,
        generation: u64,
        plaintext: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError>;
    fn release(&self, key: &StoreKey, generation: u64) -> Result<bool, StoreError>;
    fn invalidate(&self, key: &StoreKey, generation: u64) -> Result<bool, StoreError>;
    fn ping(&self) -> Result<(), StoreError>;
    fn owner(&self) -> String;
}

/// Makes stores: each one is a separate "process" (its own owner id and connections).
pub trait Backend: Sync {
    type Store: Ops + 'static;
    fn store_with(&self, url: &str, connect: Duration, response: Duration) -> Self::Store;
    /// A store trusting `ca` (PEM) for `rediss://`, or the webpki roots if `None`.
    fn store_tls(&self, url: &str, ca: Option<&[u8]>) -> Self::Store;
    fn store(&self, url: &str) -> Self::Store {
        // Generous: these tests must not flake on a loaded 2-core machine.
        self.store_with(url, Duration::from_secs(5), Duration::from_secs(5))
    }
}

pub const SECRET: &str = "client-secret-ABC-123";
pub const TOKEN: &[u8] = b"eyJhbGciOi.very-secret-access-token.XYZ";
const LONG: Duration = Duration::from_secs(600);
const LEASE: Duration = Duration::from_secs(30);
const AHEAD: Duration = Duration::from_secs(60);

pub fn key(name: &str) -> StoreKey {
    StoreKey::new(name.as_bytes(), &EncryptionKey::from_client_secret(SECRET))
}

pub fn leased(found: &Acquire) -> Option<u64> {
    match found {
        Acquire::Leased { generation, .. } => Some(*generation),
        _ => None,
    }
}

#[track_caller]
pub fn expect_value(found: Acquire) -> Stored {
    match found {
        Acquire::Value(stored) => stored,
        other => panic!("expected a value, got {other:?}"),
    }
}

#[track_caller]
pub fn expect_leased(found: Acquire) -> (u64, Option<Stored>) {
    match found {
        Acquire::Leased { generation, stale } => (generation, stale),
        other => panic!("expected the lease, got {other:?}"),
    }
}

#[track_caller]
pub fn expect_busy(found: Acquire) -> (Option<Stored>, Duration) {
    match found {
        Acquire::Busy { value, lease_ttl } => (value, lease_ttl),
        other => panic!("expected busy, got {other:?}"),
    }
}

pub fn pttl(server: &RedisServer, key: &str) -> i64 {
    server.cmd(&["PTTL", key]).unwrap().int().unwrap()
}

pub fn get(server: &RedisServer, key: &str) -> Option<Vec<u8>> {
    match server.cmd(&["GET", key]).unwrap() {
        Reply::Bulk(b) => b,
        other => panic!("GET {key}: {other:?}"),
    }
}

/// Waits (polling `PTTL`, bounded) until Redis has expired `key`.
pub fn wait_until_expired(server: &RedisServer, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while pttl(server, key) != -2 {
        assert!(Instant::now() < deadline, "{key} never expired");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A publish, then both stores read it; the lease is gone.
pub fn lifecycle<B: Backend>(b: &B) {
    let server = RedisServer::start();
    let (one, two) = (b.store(&server.url()), b.store(&server.url()));
    assert_ne!(one.owner(), two.owner());
    let k = key("lifecycle");
    one.ping().unwrap();

    let (generation, stale) = expect_leased(one.acquire(&k, AHEAD, LEASE).unwrap());
    assert_eq!((generation, stale), (1, None));
    assert_eq!(
        get(&server, k.lease_key()),
        Some(format!("{}:1", one.owner()).into_bytes())
    );
    let (value, lease_ttl) = expect_busy(two.acquire(&k, AHEAD, LEASE).unwrap());
    assert_eq!(value, None);
    assert!(
        lease_ttl <= LEASE && lease_ttl > Duration::ZERO,
        "{lease_ttl:?}"
    );

    assert!(one.publish(&k, 1, TOKEN, LONG).unwrap());
    assert_eq!(
        get(&server, k.lease_key()),
        None,
        "the holder's publish frees the lease"
    );
    for store in [&one, &two] {
        let stored = expect_value(store.acquire(&k, AHEAD, LEASE).unwrap());
        assert_eq!(stored.plaintext, TOKEN);
        assert_eq!(stored.generation, 1);
        assert!(stored.ttl <= LONG && stored.ttl > LONG - Duration::from_secs(60));
    }
    // Publishing the same generation again writes nothing.
    assert!(!two.publish(&k, 1, b"other", LONG).unwrap());
    assert_eq!(
        expect_value(one.acquire(&k, AHEAD, LEASE).unwrap()).plaintext,
        TOKEN
    );
}

/// Many processes ask at once: exactly one gets the lease, the others see Busy.
pub fn one_lease_among_many<B: Backend>(b: &B) {
    let server = RedisServer::start();
    let k = key("race");
    let stores: Vec<_> = (0..8).map(|_| b.store(&server.url())).collect();
    for store in &stores {
        store.ping().unwrap(); // connect first, so they race on the script, not on connecting
    }
    for round in 0..5u64 {
        let barrier = Barrier::new(stores.len());
        let results: Vec<Acquire> = std::thread::scope(|scope| {
            let handles: Vec<_> = stores
                .iter()
                .map(|store| {
                    let (barrier, k) = (&barrier, &k);
                    scope.spawn(move || {
                        barrier.wait();
                        store.acquire(k, AHEAD, LEASE).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<u64> = results.iter().filter_map(leased).collect();
        assert_eq!(winners, vec![round + 1], "round {round}: {results:?}");
        let busy = results
            .iter()
            .filter(|r| matches!(r, Acquire::Busy { value: None, .. }))
            .count();
        assert_eq!(busy, stores.len() - 1, "{results:?}");
        // Free the key for the next round: the winner releases.
        let winner = results.iter().position(|r| leased(r).is_some()).unwrap();
        assert!(stores[winner].release(&k, round + 1).unwrap());
    }
}

/// Inside the refresh-ahead window: one process refreshes, the others keep serving the value.
pub fn refresh_ahead_serves_the_old_value<B: Backend>(b: &B) {
    let server = RedisServer::start();
    let (one, two) = (b.store(&server.url()), b.store(&server.url()));
    let k = key("refresh");
    expect_leased(one.acquire(&k, AHEAD, LEASE).unwrap());
    assert!(
        one.publish(&k, 1, b"first", Duration::from_secs(30))
            .unwrap()
    );

    // 30 s left, 60 s ahead: time to refresh.
    let (generation, stale) = expect_leased(two.acquire(&k, AHEAD, LEASE).unwrap());
    assert_eq!(generation, 2);
    let stale = stale.expect("the old value comes with the lease");
    assert_eq!(
        (stale.plaintext.as_slice(), stale.generation),
        (&b"first"[..], 1)
    );
    let (value, _) = expect_busy(one.acquire(&k, AHEAD, LEASE).unwrap());
    assert_eq!(
        value.expect("busy, but the value is served").plaintext,
        b"first"
    );
    // With a smaller window the same value is fresh.
    assert_eq!(
        expect_value(one.acquire(&k, Duration::from_secs(1), LEASE).unwrap()).generation,
        1
    );

    assert!(two.publish(&k, 2, b"second", LONG).unwrap());
    let stored = expect_value(one.acquire(&k, AHEAD, LEASE).unwrap());
    assert_eq!(
        (stored.plaintext.as_slice(), stored.generation),
        (&b"second"[..], 2)
    );
}

/// A holder that dies: its lease expires, the next caller gets gen + 1, and the dead holder's
/// late publish neither overwrites the newer token nor frees the new holder's lease.
pub fn dead_holder_and_late_writer<B: Backend>(b: &B) {
    let server = RedisServer::start();
    let (slow, fast, third) = (
        b.store(&server.url()),
        b.store(&server.url()),
        b.store(&server.url()),
    );
    let k = key("late");
    // The holder takes a short lease and dies. (Whether `fast` would see Busy meanwhile depends
    // on timing: the other tests check Busy with long leases.)
    assert_eq!(
        expect_leased(slow.acquire(&k, AHEAD, Duration::from_millis(300)).unwrap()).0,
        1
    );
    let left = pttl(&server, k.lease_key());
    assert!(left == -2 || (0 < left && left <= 300), "{left}");
    wait_until_expired(&server, k.lease_key());

    assert_eq!(expect_leased(fast.acquire(&k, AHEAD, LEASE).unwrap()).0, 2);
    // The dead holder wakes up and publishes generation 1 while generation 2 is being
    // fetched: nothing newer is stored, so it writes, but the lease stays the new holder's.
    assert!(slow.publish(&k, 1, b"old", LONG).unwrap());
    assert_eq!(
        get(&server, k.lease_key()),
        Some(format!("{}:2", fast.owner()).into_bytes())
    );
    // Its token is served meanwhile.
    assert_eq!(
        expect_value(third.acquire(&k, AHEAD, LEASE).unwrap()).generation,
        1
    );

    assert!(fast.publish(&k, 2, b"new", LONG).unwrap());
    // A later writer of generation 1 (or older) changes nothing.
    assert!(!slow.publish(&k, 1, b"old again", LONG).unwrap());
    let stored = expect_value(third.acquire(&k, AHEAD, LEASE).unwrap());
    assert_eq!(
        (stored.plaintext.as_slice(), stored.generation),
        (&b"new"[..], 2)
    );
}

/// Release frees only our own lease on our own generation.
pub fn release_is_compare_and_delete<B: Backend>(b: &B) {
    let server = RedisServer::start();
    let (one, two) = (b.store(&server.url()), b.store(&server.url()));
    let k = key("release");
    assert_eq!(expect_leased(one.acquire(&k, AHEAD, LEASE).unwrap()).0, 1);
    assert!(!two.release(&k, 1).unwrap(), "not two's lease");
    assert!(!one.release(&k, 2).unwrap(), "not that generation");
    assert!(get(&server, k.lease_key()).is_some());
    assert!(one.release(&k, 1).unwrap());
    assert!(!one.release(&k, 1).unwrap(), "already released");
    assert_eq!(expect_leased(two.acquire(&k, AHEAD, LEASE).unwrap()).0, 2);
}

/// Invalidate deletes the value once, and never a newer one.
pub fn invalidate_is_generation_aware<B: Backend>(b: &B) {
    let server = RedisServer::start();
    let (one, two) = (b.store(&server.url()), b.store(&server.url()));
    let k = key("invalidate");
    expect_leased(one.acquire(&k, AHEAD, LEASE).unwrap());
    assert!(one.publish(&k, 1, b"first", LONG).unwrap());
    assert!(!two.invalidate(&k, 0).unwrap());
    assert!(!two.invalidate(&k, 2).unwrap());
    assert_eq!(
        expect_value(two.acquire(&k, AHEAD, LEASE).unwrap()).generation,
        1
    );

    // A burst of 401s for generation 1: one deletion.
    let deleted = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (store, k) = (if i % 2 == 0 { &one } else { &two }, &k);
                scope.spawn(move || store.invalidate(k, 1).unwrap())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|d| *d)
            .count()
    });
    assert_eq!(deleted, 1);
    let (generation, stale) = expect_leased(two.acquire(&k, AHEAD, LEASE).unwrap());
    assert_eq!((generation, stale), (2, None));
    assert!(two.publish(&k, 2, b"second", LONG).unwrap());
    // A 401 for the old token arriving late does not remove the new one.
    assert!(!one.invalidate(&k, 1).unwrap());
    assert_eq!(
        expect_value(one.acquire(&k, AHEAD, LEASE).unwrap()).plaintext,
        b"second"
    );
}

/// A value sealed under another key is a miss: the reader takes the lease, publishes, and the
/// first writer then sees a miss in turn.
pub fn wrong_key_is_a_miss<B: Backend>(b: &B) {
    let server = RedisServer::start();
    let (one, two) = (b.store(&server.url()), b.store(&server.url()));
    let mine = key("shared fingerprint");
    let theirs = StoreKey::new(
        b"shared fingerprint",
        &EncryptionKey::from_client_secret("another secret"),
    );
    assert_eq!(mine.kid(), theirs.kid());
    expect_leased(one.acquire(&mine, AHEAD, LEASE).unwrap());
    assert!(one.publish(&mine, 1, TOKEN, LONG).unwrap());

    let (generation, stale) = expect_leased(two.acquire(&theirs, AHEAD, LEASE).unwrap());
    assert_eq!((generation, stale), (2, None));
    let (value, _) = expect_busy(two.acquire(&theirs, AHEAD, LEASE).unwrap());
    assert_eq!(value, None, "undecryptable, so not served");
    assert!(two.publish(&theirs, 2, b"theirs", LONG).unwrap());

    let explicit = StoreKey::new(b"shared fingerprint", &EncryptionKey::explicit([9; 32]));
    assert_eq!(
        expect_leased(one.acquire(&explicit, AHEAD, LEASE).unwrap()).0,
        3
    );
    assert!(one.release(&explicit, 3).unwrap());
    assert_eq!(
        expect_leased(one.acquire(&mine, AHEAD, LEASE).unwrap()).0,
        4
    );
}

/// Whatever is found in our keys (garbage blob, wrong types, a lease without expiry, a lost
/// counter), no operation panics or errors, and the key does not stay blocked.
pub fn garbage_is_a_miss<B: Backend>(b: &B) {
    let server = RedisServer::start();
    let store = b.store(&server.url());
    let k = key("garbage");
    let v = k.value_key();
    let ok = |args: &[&str]| assert!(!matches!(server.cmd(args).unwrap(), Reply::Error(_)));

    // A garbage blob under generation 5, and no counter: the lease is for 6.
    ok(&["HSET", v, "gen", "5", "blob", "not a sealed record"]);
    ok(&["PEXPIRE", v, "600000"]);
    let (generation, stale) = expect_leased(store.acquire(&k, AHEAD, LEASE).unwrap());
    assert_eq!((generation, stale), (6, None));
    assert!(store.publish(&k, 6, b"good", LONG).unwrap());
    assert_eq!(
        expect_value(store.acquire(&k, AHEAD, LEASE).unwrap()).plaintext,
        b"good"
    );

    // A value of the wrong type, a non-numeric generation, a value without expiry.
    for setup in [
        &["SET", v, "plain string"][..],
        &["HSET", v, "gen", "x", "blob", "y"][..],
        &["HSET", v, "gen", "99", "blob", ""][..],
    ] {
        ok(&["DEL", v, k.lease_key()]);
        ok(setup);
        let found = store.acquire(&k, AHEAD, LEASE).unwrap();
        let generation = expect_leased(found).0;
        assert!(
            store.publish(&k, generation, b"fixed", LONG).unwrap(),
            "{setup:?}"
        );
        assert_eq!(
            expect_value(store.acquire(&k, AHEAD, LEASE).unwrap()).plaintext,
            b"fixed"
        );
    }

    // A lease that would never expire gets an expiry; a lease key of the wrong type too.
    ok(&["DEL", v]);
    ok(&["SET", k.lease_key(), "someone:1"]);
    let (_, lease_ttl) = expect_busy(
        store
            .acquire(&k, AHEAD, Duration::from_millis(300))
            .unwrap(),
    );
    assert!(lease_ttl <= Duration::from_millis(300));
    assert_ne!(
        pttl(&server, k.lease_key()),
        -1,
        "it has an expiry (or already expired)"
    );
    wait_until_expired(&server, k.lease_key());
    let generation = expect_leased(store.acquire(&k, AHEAD, LEASE).unwrap()).0;
    ok(&["DEL", k.lease_key()]);
    ok(&["HSET", k.lease_key(), "a", "b"]);
    assert!(!store.release(&k, generation).unwrap());
    assert!(store.publish(&k, generation + 1, b"again", LONG).unwrap());
    ok(&["SET", k.generation_key(), "not a number"]);
    ok(&["DEL", v, k.lease_key()]);
    let generation = expect_leased(store.acquire(&k, AHEAD, LEASE).unwrap()).0;
    assert_eq!(generation, 1, "a corrupt counter restarts");
    ok(&["SET", v, "x"]);
    assert!(!store.invalidate(&k, 1).unwrap());
}

/// A value's TTL is Redis's: once it runs out, the next acquire takes the lease.
pub fn values_expire<B: Backend>(b: &B) {
    let server = RedisServer::start();
    let store = b.store(&server.url());
    let k = key("expiry");
    expect_leased(store.acquire(&k, AHEAD, LEASE).unwrap());
    assert!(
        store
            .publish(&k, 1, TOKEN, Duration::from_millis(300))
            .unwrap()
    );
    // The caller's TTL is the key's (or it has already run out, on a slow machine).
    let left = pttl(&server, k.value_key());
    assert!(left == -2 || (0 < left && left <= 300), "{left}");
    wait_until_expired(&server, k.value_key());
    assert_eq!(
        expect_leased(store.acquire(&k, Duration::ZERO, LEASE).unwrap()),
        (2, None)
    );
}

/// After a publish, nothing in Redis (key names, values, hash fields) contains the token or
/// the client secret.
pub fn nothing_in_clear_at_rest<B: Backend>(b: &B) {
    let server = RedisServer::start();
    let store = b.store(&server.url());
    let k = key("https://auth.example/oauth/token client-id-1");
    let generation = expect_leased(store.acquire(&k, AHEAD, LEASE).unwrap()).0;
    assert!(store.publish(&k, generation, TOKEN, LONG).unwrap());
    // And a lease in flight, so every kind of key exists.
    let k2 = key("another configuration");
    expect_leased(store.acquire(&k2, AHEAD, LEASE).unwrap());

    let keys = server.cmd(&["KEYS", "*"]).unwrap().bulks();
    assert_eq!(keys.len(), 4, "{keys:?}"); // v and gen for k (its lease is gone), lease and gen for k2
    let mut everything: Vec<Vec<u8>> = Vec::new();
    let mut blob = None;
    for name in &keys {
        let name_str = String::from_utf8(name.clone()).unwrap();
        assert!(name_str.starts_with("tok:{"), "{name_str}");
        everything.push(name.clone());
        match server.cmd(&["TYPE", &name_str]).unwrap() {
            Reply::Status(t) if t == "hash" => {
                let fields = server.cmd(&["HGETALL", &name_str]).unwrap().bulks();
                let at = fields
                    .iter()
                    .position(|f| f == b"blob")
                    .expect("a blob field");
                blob = Some(fields[at + 1].clone());
                everything.extend(fields);
            }
            Reply::Status(t) if t == "string" => {
                everything.extend(get(&server, &name_str));
            }
            other => panic!("unexpected type {other:?} for {name_str}"),
        }
    }
    let blob = blob.expect("the sealed value");
    assert_eq!(blob[0], 1, "format version");
    assert_eq!(blob.len(), 1 + 24 + TOKEN.len() + 16);
    for needle in [
        TOKEN,
        SECRET.as_bytes(),
        b"very-secret",
        b"client-id-1",
        b"auth.example",
    ] {
        for hay in &everything {
            assert!(
                !hay.windows(needle.len()).any(|w| w == needle),
                "{:?} found in Redis",
                String::from_utf8_lossy(needle)
            );
        }
    }
    // Nor in what the store prints.
    let shown = format!("{k:?} {:?}", store.acquire(&k, AHEAD, LEASE).unwrap());
    assert!(
        !shown.contains("very-secret") && !shown.contains(SECRET),
        "{shown}"
    );
}

/// Redis shuts down (no save) mid-run and comes back empty: typed connection errors while it
/// is down, and every operation works again once it is back.
pub fn shutdown_and_restart_empty<B: Backend>(b: &B) {
    let mut server = RedisServer::start();
    let store = b.store_with(
        &server.url(),
        Duration::from_secs(2),
        Duration::from_secs(2),
    );
    let k = key("restart");
    expect_leased(store.acquire(&k, AHEAD, LEASE).unwrap());
    assert!(store.publish(&k, 1, TOKEN, LONG).unwrap());
    assert_eq!(
        expect_value(store.acquire(&k, AHEAD, LEASE).unwrap()).generation,
        1
    );

    server.shutdown_nosave();
    let results = [
        store.acquire(&k, AHEAD, LEASE).map(|_| ()),
        store.publish(&k, 2, TOKEN, LONG).map(|_| ()),
        store.release(&k, 2).map(|_| ()),
        store.invalidate(&k, 1).map(|_| ()),
        store.ping(),
    ];
    for result in results {
        let err = result.expect_err("Redis is down");
        assert!(err.is_connection(), "{err:?}");
        assert!(err.to_string().contains(&server.url()), "{err}");
    }

    server.restart();
    // The store reconnects on its own; the data is gone, the counter starts again.
    assert_eq!(
        expect_leased(store.acquire(&k, AHEAD, LEASE).unwrap()),
        (1, None)
    );
    assert!(store.publish(&k, 1, b"after", LONG).unwrap());
    assert_eq!(
        expect_value(store.acquire(&k, AHEAD, LEASE).unwrap()).plaintext,
        b"after"
    );
    assert!(store.invalidate(&k, 1).unwrap());
    assert!(!store.release(&k, 1).unwrap());
}

/// `CLIENT PAUSE 500 WRITE`: scripts that write are held back; each call times out (or, if the
/// pause ends first, succeeds), and never hangs. Afterwards everything works.
pub fn client_pause_times_out_or_succeeds<B: Backend>(b: &B) {
    let server = RedisServer::start();
    let response = Duration::from_millis(150);
    let store = b.store_with(&server.url(), Duration::from_secs(2), response);
    let k = key("pause");
    retry_timeouts(|| store.ping());
    assert!(matches!(
        server.cmd(&["CLIENT", "PAUSE", "500", "WRITE"]).unwrap(),
        Reply::Status(_)
    ));
    for result in [
        store.acquire(&k, AHEAD, LEASE).map(|_| ()),
        store.publish(&k, 7, TOKEN, LONG).map(|_| ()),
        store.invalidate(&k, 7).map(|_| ()),
    ] {
        match result {
            Ok(()) => {}
            Err(e) => assert!(e.is_timeout(), "{e:?}"),
        }
    }
    // End the pause now instead of waiting for it.
    server.cmd(&["CLIENT", "UNPAUSE"]).unwrap();
    // The paused calls may have run once the pause ended: any answer is fine, an error other
    // than a timeout (150 ms is short on a loaded machine) is not.
    retry_timeouts(|| store.acquire(&k, AHEAD, LEASE));
    retry_timeouts(|| store.publish(&k, 100, TOKEN, LONG));
    let stored = expect_value(retry_timeouts(|| store.acquire(&k, AHEAD, LEASE)));
    assert_eq!(stored.generation, 100);
}

/// A partition: the proxy accepts and reads but never answers. Calls fail with a timeout
/// error (on an open connection, and when connecting anew); a reset is a connection error;
/// once the network heals, calls succeed again.
pub fn blackhole_times_out<B: Backend>(b: &B) {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let store = b.store_with(
        &proxy.redis_url(),
        Duration::from_millis(300),
        Duration::from_millis(200),
    );
    let k = key("partition");
    // Set up through a store with generous timeouts, then open the short-timeout store's
    // connection (retrying: 200 ms can pass on a loaded machine before Redis answers).
    let setup = b.store(&server.url());
    expect_leased(setup.acquire(&k, AHEAD, LEASE).unwrap());
    assert!(setup.publish(&k, 1, TOKEN, LONG).unwrap());
    retry_timeouts(|| store.ping());

    proxy.set_mode(Mode::Blackhole);
    for _ in 0..2 {
        // First on the open connection, then on a new one (the timed-out one is dropped).
        let err = store.acquire(&k, AHEAD, LEASE).expect_err("blackholed");
        assert!(err.is_timeout(), "{err:?}");
        assert!(err.to_string().contains(&proxy.redis_url()), "{err}");
    }
    let err = store.publish(&k, 2, TOKEN, LONG).expect_err("blackholed");
    assert!(err.is_timeout(), "{err:?}");

    proxy.set_mode(Mode::Reset);
    let err = store.acquire(&k, AHEAD, LEASE).expect_err("reset");
    assert!(err.is_connection() || err.is_timeout(), "{err:?}");

    proxy.set_mode(Mode::PassThrough);
    let stored = expect_value(retry_timeouts(|| store.acquire(&k, AHEAD, LEASE)));
    assert_eq!((stored.plaintext.as_slice(), stored.generation), (TOKEN, 1));
}

/// Calls `f` until it succeeds, retrying (a bounded number of times) only on timeouts: for
/// stores with timeouts short enough that a loaded machine can exceed them.
#[track_caller]
pub fn retry_timeouts<T>(f: impl Fn() -> Result<T, StoreError>) -> T {
    let mut last = None;
    for _ in 0..20 {
        match f() {
            Ok(v) => return v,
            Err(e) if e.is_timeout() => last = Some(e),
            Err(e) => panic!("{e:?}"),
        }
    }
    panic!("still timing out after 20 attempts: {last:?}")
}

/// Runs as a Redis user with exactly the ACL the crate docs recommend; a wrong password is a
/// connection error that does not print the password.
pub fn least_privilege_acl<B: Backend>(b: &B) {
    let server = RedisServer::start();
    let password = "acl-password-7f3a";
    let setuser = format!(
        "ACL SETUSER tokens on >{password} resetkeys ~tok:* resetchannels &tok:* -@all \
         +ping +hello +select +evalsha +script|load +subscribe +unsubscribe \
         +type +pttl +hmget +hget +hset +del +pexpire +get +set +incr +publish"
    );
    let args: Vec<&str> = setuser.split_whitespace().collect();
    assert_eq!(server.cmd(&args).unwrap(), Reply::Status("OK".into()));
    let url = format!("redis://tokens:{password}@127.0.0.1:{}", server.port());
    let store = b.store(&url);
    let k = key("acl");
    store.ping().unwrap();
    let generation = expect_leased(store.acquire(&k, AHEAD, LEASE).unwrap()).0;
    assert!(store.publish(&k, generation, TOKEN, LONG).unwrap());
    assert_eq!(
        expect_value(store.acquire(&k, AHEAD, LEASE).unwrap()).plaintext,
        TOKEN
    );
    assert!(store.invalidate(&k, generation).unwrap());
    let generation = expect_leased(store.acquire(&k, AHEAD, LEASE).unwrap()).0;
    assert!(store.release(&k, generation).unwrap());

    let wrong = format!(
        "redis://tokens:wrong-{password}@127.0.0.1:{}",
        server.port()
    );
    let err = b.store(&wrong).ping().expect_err("wrong password");
    assert!(err.is_connection(), "{err:?}");
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(password), "{shown}");
        assert!(!shown.contains("tokens:"), "{shown}");
    }
}

/// `rediss://` with the server's private CA: every operation works over TLS.
pub fn tls_with_a_private_ca<B: Backend>(b: &B) {
    let server = RedisServer::start_tls();
    let url = server.tls_url().unwrap();
    let store = b.store_tls(&url, server.ca_pem());
    let k = key("tls");
    store.ping().unwrap();
    let generation = expect_leased(store.acquire(&k, AHEAD, LEASE).unwrap()).0;
    assert!(store.publish(&k, generation, TOKEN, LONG).unwrap());
    assert_eq!(
        expect_value(store.acquire(&k, AHEAD, LEASE).unwrap()).plaintext,
        TOKEN
    );
    assert!(store.invalidate(&k, generation).unwrap());
    let generation = expect_leased(store.acquire(&k, AHEAD, LEASE).unwrap()).0;
    assert!(store.release(&k, generation).unwrap());

    // The certificate is checked: without the CA (webpki roots only), no connection.
    let err = b.store_tls(&url, None).ping().expect_err("unknown issuer");
    assert!(err.is_connection(), "{err:?}");
    // And a plain client on the TLS port gets nowhere either (an error, not a hang).
    let plain = url.replacen("rediss://", "redis://", 1);
    let err = b
        .store_with(&plain, Duration::from_secs(2), Duration::from_millis(500))
        .ping()
        .expect_err("plain text on a TLS port");
    assert!(err.is_connection() || err.is_timeout(), "{err:?}");
}

/// One `#[test]` per scenario, for the backend `$backend` (an expression making a [`Backend`]).
#[macro_export]
macro_rules! scenarios {
    ($backend:expr) => {
        $crate::scenarios!(@each $backend;
            lifecycle,
            one_lease_among_many,
            refresh_ahead_serves_the_old_value,
            dead_holder_and_late_writer,
            release_is_compare_and_delete,
            invalidate_is_generation_aware,
            wrong_key_is_a_miss,
            garbage_is_a_miss,
            values_expire,
            nothing_in_clear_at_rest,
            shutdown_and_restart_empty,
            client_pause_times_out_or_succeeds,
            blackhole_times_out,
            least_privilege_acl,
            tls_with_a_private_ca,
        );
    };
    (@each $backend:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                common::$name(&$backend);
            }
        )*
    };
}
