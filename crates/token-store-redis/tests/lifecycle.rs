//! The Redis store on a real `redis-server` (started per test on a free loopback port) under
//! the real lifecycle: managers in virtual time as the processes of a fleet, a fake token
//! endpoint. Races, fencing, encryption, and Redis trouble.

use std::time::{Duration, Instant};

use token_core::{AccessToken, ManagerConfig, StoreSettings, TokenKey};
use token_store::EncryptionKey;
use token_store_redis::RedisStore;
use token_testkit::proxy::{FaultProxy, Mode};
use token_testkit::redis::RedisServer;
use token_testkit::sansio::{FakeServer, Harness, text};

fn config() -> ManagerConfig {
    let mut config = ManagerConfig::default();
    config.store = Some(StoreSettings::default());
    config
}

/// A manager (one process of the fleet) with the same client as every other.
fn process() -> (Harness, TokenKey) {
    let mut h = Harness::new(config());
    let key = TokenKey::new(h.generic_client("fleet"));
    (h, key)
}

fn fetch(h: &mut Harness, key: &TokenKey, server: &mut FakeServer, store: &RedisStore) -> String {
    let _ = h.request(key);
    h.serve_all_real(server, store);
    for _ in 0..50 {
        if let Some(token) = text(&h.request(key)) {
            return token;
        }
        // Another process holds the lease: look again (virtual time).
        h.advance(Duration::from_millis(100));
        h.mgr.handle_timeout(h.now);
        h.drain();
        h.serve_all_real(server, store);
    }
    panic!("no token");
}

#[test]
fn two_processes_one_fetch_and_nothing_in_clear() {
    let redis = RedisServer::start();
    let (a_store, b_store) = (
        RedisStore::open(&redis.url()).unwrap(),
        RedisStore::open(&redis.url()).unwrap(),
    );
    let mut server = FakeServer::new(3600);
    let (mut a, ka) = process();
    let (mut b, kb) = process();
    // A takes the lease and sends; B sees the lease and waits for A.
    let _ = a.request(&ka);
    a.serve_real_store(&a_store);
    assert_eq!(a.pending.len(), 1);
    let _ = b.request(&kb);
    b.serve_real_store(&b_store);
    assert!(b.pending.is_empty(), "B follows A's lease");
    a.serve_all_real(&mut server, &a_store);
    let token = text(&a.request(&ka)).unwrap();
    assert_eq!(fetch(&mut b, &kb, &mut server, &b_store), token);
    assert_eq!(server.requests, 1);
    // Nothing readable in Redis: no token, no secret, no client id in the key names.
    let mut dump = Vec::new();
    for key in redis.cmd(&["KEYS", "*"]).unwrap().bulks() {
        let name = String::from_utf8(key.clone()).unwrap();
        dump.extend(key);
        for cmd in [["HGETALL", name.as_str()], ["GET", name.as_str()]] {
            for part in redis.cmd(&cmd).unwrap().bulks() {
                dump.extend(part);
            }
        }
    }
    let dump = String::from_utf8_lossy(&dump);
    for secret in [token.as_str(), "secret", "fleet"] {
        assert!(!dump.contains(secret), "{secret} in clear: {dump}");
    }
    assert!(dump.contains("tok:{"), "{dump}");
}

#[test]
fn a_wrong_key_or_a_garbage_value_is_a_miss() {
    let redis = RedisServer::start();
    let mut server = FakeServer::new(3600);
    let (mut a, ka) = process();
    let first = fetch(
        &mut a,
        &ka,
        &mut server,
        &RedisStore::open(&redis.url()).unwrap(),
    );
    let wrong = RedisStore::builder(&redis.url())
        .encryption_key(EncryptionKey::explicit([9; 32]))
        .build()
        .unwrap();
    let (mut b, kb) = process();
    let second = fetch(&mut b, &kb, &mut server, &wrong);
    assert_ne!(first, second, "did not decrypt: fetched anew");
    assert_eq!(server.requests, 2);
    // Garbage in every value.
    let keys = redis.cmd(&["KEYS", "tok:*:v"]).unwrap().bulks();
    assert!(!keys.is_empty());
    for key in keys {
        let key = String::from_utf8(key).unwrap();
        redis.cmd(&["HSET", &key, "blob", "garbage"]).unwrap();
    }
    let (mut c, kc) = process();
    let third = fetch(&mut c, &kc, &mut server, &wrong);
    assert_ne!(third, second);
    assert_eq!(server.requests, 3);
}

#[test]
fn a_late_writer_never_overwrites_and_a_401_removes_only_its_generation() {
    let redis = RedisServer::start();
    let store = RedisStore::open(&redis.url()).unwrap();
    let mut server = FakeServer::new(3600);
    let (mut a, ka) = process();
    let (mut b, kb) = process();
    let first = fetch(&mut a, &ka, &mut server, &store);
    assert_eq!(fetch(&mut b, &kb, &mut server, &store), first);
    // A's API refuses the token: the shared value goes, A fetches and publishes a new one.
    assert!(
        a.mgr
            .invalidate(a.now, &ka, &AccessToken::new(first.clone()))
            .dropped()
    );
    a.drain();
    let second = fetch(&mut a, &ka, &mut server, &store);
    assert_ne!(first, second);
    // B's 401 for the old token comes late: the newer token survives it.
    assert!(
        b.mgr
            .invalidate(b.now, &kb, &AccessToken::new(first))
            .dropped()
    );
    b.drain();
    assert_eq!(fetch(&mut b, &kb, &mut server, &store), second);
    assert_eq!(server.requests, 2);
}

#[test]
fn a_dead_lease_holder_costs_one_extra_fetch() {
    let redis = RedisServer::start();
    let store = RedisStore::open(&redis.url()).unwrap();
    let mut config = config();
    config.store = Some({
        let mut s = StoreSettings::default();
        s.lease_ttl = Some(Duration::from_millis(300));
        s
    });
    let mut server = FakeServer::new(3600);
    let mut a = Harness::new(config.clone());
    let ka = TokenKey::new(a.generic_client("fleet"));
    let _ = a.request(&ka);
    a.serve_real_store(&store);
    assert_eq!(a.take_pending().len(), 1, "A sent its request and died");
    // The lease lives 300 ms in Redis (its own clock): wait for it to go.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !redis
        .cmd(&["KEYS", "tok:*:lease"])
        .unwrap()
        .bulks()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the lease never expired");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut b = Harness::new(config);
    let kb = TokenKey::new(b.generic_client("fleet"));
    let token = fetch(&mut b, &kb, &mut server, &store);
    assert!(!token.is_empty());
    assert_eq!(server.requests, 1, "one extra fetch (A's was lost)");
}

#[test]
fn a_restarted_empty_redis_is_an_error_then_a_refill() {
    let mut redis = RedisServer::start();
    let store = RedisStore::open(&redis.url()).unwrap();
    let mut server = FakeServer::new(3600);
    let (mut a, ka) = process();
    let first = fetch(&mut a, &ka, &mut server, &store);
    redis.shutdown_nosave();
    // Down: a new process still gets a token (its own fetch, after the store fails).
    let (mut b, kb) = process();
    let second = fetch(&mut b, &kb, &mut server, &store);
    assert_ne!(first, second);
    assert_eq!(server.requests, 2);
    // Back, empty: the store works again (after the breaker's pause) and is refilled.
    redis.restart();
    let (mut c, kc) = process();
    c.advance(Duration::from_secs(60));
    let third = fetch(&mut c, &kc, &mut server, &store);
    let (mut d, kd) = process();
    d.advance(Duration::from_secs(60));
    assert_eq!(
        fetch(&mut d, &kd, &mut server, &store),
        third,
        "shared again"
    );
    assert_eq!(server.requests, 3);
}

#[test]
fn a_paused_or_blackholed_redis_times_out_and_tokens_still_come() {
    let redis = RedisServer::start();
    let proxy = FaultProxy::start(redis.addr()).unwrap();
    let store = RedisStore::builder(&proxy.redis_url())
        .connect_timeout(Duration::from_millis(200))
        .response_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut server = FakeServer::new(3600);
    // CLIENT PAUSE: writes stall for a moment; the operation times out or goes through.
    redis.cmd(&["CLIENT", "PAUSE", "500", "WRITE"]).unwrap();
    let (mut a, ka) = process();
    assert!(!fetch(&mut a, &ka, &mut server, &store).is_empty());
    // A partition: every operation times out; the manager falls back and the token comes.
    proxy.set_mode(Mode::Blackhole);
    let (mut b, kb) = process();
    let before = server.requests;
    assert!(!fetch(&mut b, &kb, &mut server, &store).is_empty());
    assert_eq!(server.requests, before + 1, "fetched without the store");
    // Connections reset: the same.
    proxy.set_mode(Mode::Reset);
    let (mut c, kc) = process();
    assert!(!fetch(&mut c, &kc, &mut server, &store).is_empty());
    assert_eq!(server.requests, before + 2);
    // Healed: the store is used again.
    proxy.set_mode(Mode::PassThrough);
    let (mut d, kd) = process();
    d.advance(Duration::from_secs(60));
    let token = fetch(&mut d, &kd, &mut server, &store);
    let (mut e, ke) = process();
    e.advance(Duration::from_secs(60));
    assert_eq!(fetch(&mut e, &ke, &mut server, &store), token);
}

#[test]
fn the_async_store_speaks_the_same_protocol() {
    use token_store_redis::AsyncRedisStore;
    let redis = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = AsyncRedisStore::builder(&redis.url()).build().unwrap();
    let blocking = RedisStore::open(&redis.url()).unwrap();
    let serve = |h: &mut Harness, server: &mut FakeServer| loop {
        while !h.store_ops.is_empty() {
            for op in std::mem::take(&mut h.store_ops) {
                let reply = runtime.block_on(token_driver::AsyncStore::execute(&store, &op));
                h.mgr.handle_store(h.now, h.wall(), op.id, reply).unwrap();
            }
            h.drain();
        }
        if h.pending.is_empty() {
            return;
        }
        h.serve(server);
    };
    let mut server = FakeServer::new(3600);
    let (mut a, ka) = process();
    let _ = a.request(&ka);
    serve(&mut a, &mut server);
    let token = text(&a.request(&ka)).unwrap();
    // A blocking process reads what the async one wrote.
    let (mut b, kb) = process();
    assert_eq!(fetch(&mut b, &kb, &mut server, &blocking), token);
    assert_eq!(server.requests, 1);
}

/// Issue "fleet store", point 6: bookingtime's 30-day refresh token and each organization's
/// access token are shared through a real Redis; the refresh token is in it encrypted.
#[test]
fn bookingtime_shares_its_refresh_token_and_organization_tokens_through_redis() {
    let redis = RedisServer::start();
    let (a_store, b_store) = (
        RedisStore::open(&redis.url()).unwrap(),
        RedisStore::open(&redis.url()).unwrap(),
    );
    let mut server = FakeServer::new(300);
    let mut a = Harness::new(config());
    let mut b = Harness::new(config());
    let org = |c, o: &str| TokenKey::with_organization(c, o);
    let (ca, cb) = (a.bookingtime_client(), b.bookingtime_client());
    let alpha = fetch(&mut a, &org(ca, "alpha"), &mut server, &a_store);
    assert_eq!(
        server.requests, 2,
        "the refresh token, then alpha's access token"
    );
    // Another process: alpha from Redis, beta from the refresh token in Redis.
    assert_eq!(
        fetch(&mut b, &org(cb, "alpha"), &mut server, &b_store),
        alpha
    );
    assert_eq!(server.requests, 2);
    let beta = fetch(&mut b, &org(cb, "beta"), &mut server, &b_store);
    assert_ne!(beta, alpha);
    assert_eq!(
        server.requests, 3,
        "one client-credentials request for the fleet"
    );
    // And A finds beta's token there too.
    assert_eq!(fetch(&mut a, &org(ca, "beta"), &mut server, &a_store), beta);
    assert_eq!(server.requests, 3);
    let mut dump = Vec::new();
    for key in redis.cmd(&["KEYS", "*"]).unwrap().bulks() {
        let name = String::from_utf8(key.clone()).unwrap();
        for part in redis.cmd(&["HGETALL", name.as_str()]).unwrap().bulks() {
            dump.extend(part);
        }
        for part in redis.cmd(&["GET", name.as_str()]).unwrap().bulks() {
            dump.extend(part);
        }
    }
    let dump = String::from_utf8_lossy(&dump);
    for secret in [alpha.as_str(), beta.as_str(), "rt-"] {
        assert!(!dump.contains(secret), "{secret} in clear");
    }
}
