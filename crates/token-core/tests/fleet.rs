//! The shared store as a second IO channel: several managers (the processes of a fleet) on one
//! fake store and one fake token endpoint, in virtual time. Exactly one of them fetches; the
//! others load what it published; store trouble falls back to each manager's own single flight.

use std::time::Duration;

use token_core::{AccessToken, Lookup, ManagerConfig, StoreOp, StoreSettings, TokenKey};
use token_testkit::sansio::{FakeServer, FakeStore, Harness, text};

fn config() -> ManagerConfig {
    let mut config = ManagerConfig::default();
    config.store = Some(StoreSettings::default());
    config
}

/// Two managers with the same client registered (the same configuration in two processes).
fn pair() -> (Harness, Harness, TokenKey, TokenKey) {
    let mut a = Harness::new(config());
    let mut b = Harness::new(config());
    b.start = a.start;
    b.now = a.now;
    let ka = TokenKey::new(a.generic_client("fleet"));
    let kb = TokenKey::new(b.generic_client("fleet"));
    (a, b, ka, kb)
}

fn advance(hs: &mut [&mut Harness], d: Duration) {
    for h in hs.iter_mut() {
        h.advance(d);
        h.mgr.handle_timeout(h.now);
        h.drain();
    }
}

#[test]
fn two_managers_one_fetch() {
    let (mut a, mut b, ka, kb) = pair();
    let (mut server, mut store) = (FakeServer::new(3600), FakeStore::default());
    // Both ask at once: A takes the lease and sends; B sees the lease and waits.
    assert!(matches!(a.request(&ka), Lookup::Pending));
    a.serve_store(&mut store, 1);
    assert_eq!(a.pending.len(), 1, "A holds the lease and fetches");
    assert!(matches!(b.request(&kb), Lookup::Pending));
    b.serve_store(&mut store, 2);
    assert!(
        b.pending.is_empty(),
        "B follows A's lease instead of fetching"
    );
    // A's token arrives and is published.
    a.serve(&mut server);
    a.serve_store(&mut store, 1);
    let token_a = text(&a.request(&ka)).unwrap();
    // B looks again within 50-400 ms and loads it.
    for _ in 0..10 {
        advance(&mut [&mut b], Duration::from_millis(100));
        b.serve_store(&mut store, 2);
    }
    assert_eq!(text(&b.request(&kb)).as_deref(), Some(token_a.as_str()));
    assert_eq!(server.requests, 1, "one token request for the fleet");
    assert!(b.pending.is_empty());
}

/// A loaded copy expires by the store's TTL (short of the token's real expiry by the
/// publisher's margin) but comes due when the fetcher's own copy does: otherwise every loader
/// would refresh that margin early, and a fleet would refresh more often than one process.
#[test]
fn a_loaded_copy_comes_due_with_the_fetchers_and_expires_first() {
    for lifetime in [6, 300, 3600] {
        let (mut a, mut b, ka, kb) = pair();
        let (mut server, mut store) = (FakeServer::new(lifetime), FakeStore::default());
        let _ = a.request(&ka);
        a.serve_all(&mut server, &mut store, 1);
        let _ = b.request(&kb);
        b.serve_all(&mut server, &mut store, 2);
        let (Lookup::Ready(ta), Lookup::Ready(tb)) = (a.request(&ka), b.request(&kb)) else {
            panic!("both have the token");
        };
        assert_eq!(ta.access_token().secret(), tb.access_token().secret());
        assert_eq!(ta.refresh_at(), tb.refresh_at(), "{lifetime} s tokens");
        assert!(tb.expires_at() < ta.expires_at(), "{lifetime} s tokens");
        assert!(tb.refresh_at() < tb.expires_at());
    }
}

#[test]
fn the_fleet_refreshes_once_per_lifetime() {
    let (mut a, mut b, ka, kb) = pair();
    let (mut server, mut store) = (FakeServer::new(600), FakeStore::default());
    let _ = a.request(&ka);
    a.serve_all(&mut server, &mut store, 1);
    let _ = b.request(&kb);
    b.serve_all(&mut server, &mut store, 2);
    assert_eq!(server.requests, 1);
    // Both use the token every 10 s for an hour; timers refresh it in the background.
    for _ in 0..360 {
        for (h, key, owner) in [(&mut a, &ka, 1), (&mut b, &kb, 2)] {
            h.advance(Duration::from_secs(10));
            h.mgr.handle_timeout(h.now);
            h.drain();
            h.mgr.touch(h.now, key);
            h.drain();
            h.serve_all(&mut server, &mut store, owner);
            assert!(h.mgr.token(h.now, key).is_some(), "never without a token");
        }
    }
    // 3600 s of 600 s tokens, each refreshed before expiry: 6 or 7 fetches for both processes.
    assert!(
        (6..=8).contains(&server.requests),
        "{} token requests for a fleet of two",
        server.requests
    );
}

#[test]
fn a_dead_lease_holder_costs_one_extra_fetch() {
    let (mut a, mut b, ka, kb) = pair();
    let (mut server, mut store) = (FakeServer::new(3600), FakeStore::default());
    let _ = a.request(&ka);
    a.serve_store(&mut store, 1);
    let lost = a.take_pending();
    assert_eq!(lost.len(), 1, "A sent its request, then died");
    assert!(matches!(b.request(&kb), Lookup::Pending));
    b.serve_store(&mut store, 2);
    // B waits for the lease to run out (request timeout + 5 s), then fetches itself.
    let mut waited = Duration::ZERO;
    while b.pending.is_empty() {
        advance(&mut [&mut b], Duration::from_millis(400));
        b.serve_store(&mut store, 2);
        waited += Duration::from_millis(400);
        assert!(waited < Duration::from_secs(120), "B waited forever");
    }
    assert!(
        waited >= Duration::from_secs(60),
        "B fetched while the lease held"
    );
    b.serve_all(&mut server, &mut store, 2);
    assert!(text(&b.request(&kb)).is_some());
    assert_eq!(server.requests + lost.len(), 2, "one extra fetch");
}

#[test]
fn a_failing_store_falls_back_and_is_left_alone_for_a_while() {
    let (mut a, _b, ka, _kb) = pair();
    let (mut server, mut store) = (FakeServer::new(3600), FakeStore::default());
    store.down = true;
    assert!(matches!(a.request(&ka), Lookup::Pending));
    a.serve_all(&mut server, &mut store, 1);
    assert!(
        text(&a.request(&ka)).is_some(),
        "the in-process flight fetched"
    );
    assert_eq!(server.requests, 1);
    let ops = store.ops;
    // Within the breaker's second, other keys skip the store entirely.
    let other = TokenKey::new(a.generic_client("other"));
    let _ = a.request(&other);
    a.serve_all(&mut server, &mut store, 1);
    assert_eq!(
        store.ops, ops,
        "the open breaker keeps the store out of the way"
    );
    assert!(text(&a.request(&other)).is_some());
    // The store comes back; after the breaker's delay it is used again.
    store.down = false;
    a.advance(Duration::from_secs(5));
    let third = TokenKey::new(a.generic_client("third"));
    let _ = a.request(&third);
    a.serve_all(&mut server, &mut store, 1);
    assert!(store.ops > ops, "the store is asked again");
    assert_eq!(store.values(a.now), 1, "and the new token is published");
}

#[test]
fn a_hung_store_times_out_and_callers_still_get_a_token() {
    let (mut a, _b, ka, _kb) = pair();
    let (mut server, mut store) = (FakeServer::new(3600), FakeStore::default());
    store.silent = true;
    assert!(matches!(a.request(&ka), Lookup::Pending));
    assert_eq!(a.serve_store(&mut store, 1), 1, "no reply");
    assert!(a.pending.is_empty());
    // The store timeout (1 s) fires: fetch without the store.
    let timeout = a.next_timeout.unwrap();
    assert!(timeout - a.now <= Duration::from_secs(1));
    a.now = timeout;
    a.mgr.handle_timeout(a.now);
    a.drain();
    assert_eq!(a.pending.len(), 1);
    a.serve(&mut server);
    assert!(text(&a.request(&ka)).is_some());
    // A reply arriving late changes nothing.
    let late = std::mem::take(&mut a.store_ops);
    store.silent = false;
    for op in late {
        if let Some(reply) = store.execute(a.now, 1, &op) {
            a.mgr.handle_store(a.now, a.wall(), op.id, reply).unwrap();
        }
    }
    a.drain();
    assert!(a.pending.is_empty());
}

#[test]
fn a_value_that_does_not_decode_is_a_miss() {
    let (mut a, mut b, ka, kb) = pair();
    let (mut server, mut store) = (FakeServer::new(3600), FakeStore::default());
    let _ = a.request(&ka);
    a.serve_all(&mut server, &mut store, 1);
    store.corrupt = true;
    assert!(matches!(b.request(&kb), Lookup::Pending));
    b.serve_all(&mut server, &mut store, 2);
    let token = text(&b.request(&kb)).expect("B fetched its own");
    assert_ne!(Some(token), text(&a.request(&ka)));
    assert_eq!(server.requests, 2);
}

#[test]
fn a_rejection_invalidates_only_the_rejected_generation() {
    let (mut a, mut b, ka, kb) = pair();
    let (mut server, mut store) = (FakeServer::new(3600), FakeStore::default());
    let _ = a.request(&ka);
    a.serve_all(&mut server, &mut store, 1);
    let _ = b.request(&kb);
    b.serve_all(&mut server, &mut store, 2);
    let first = text(&a.request(&ka)).unwrap();
    assert_eq!(text(&b.request(&kb)).as_deref(), Some(first.as_str()));
    // A's API call is refused: the shared value is deleted, A fetches (and publishes) anew.
    assert!(
        a.mgr
            .invalidate(a.now, &ka, &AccessToken::new(first.clone()))
            .dropped()
    );
    a.drain();
    assert!(
        a.store_ops
            .iter()
            .any(|op| matches!(op.op, StoreOp::Invalidate { .. }))
    );
    a.serve_store(&mut store, 1);
    let _ = a.request(&ka);
    a.serve_all(&mut server, &mut store, 1);
    let second = text(&a.request(&ka)).unwrap();
    assert_ne!(first, second);
    // B's 401 for the old token arrives later: the newer shared token survives it.
    assert!(
        b.mgr
            .invalidate(b.now, &kb, &AccessToken::new(first))
            .dropped()
    );
    b.serve_store(&mut store, 2);
    let _ = b.request(&kb);
    b.serve_all(&mut server, &mut store, 2);
    assert_eq!(text(&b.request(&kb)).as_deref(), Some(second.as_str()));
    assert_eq!(server.requests, 2);
}

/// Two processes sharing one hour-long token through the store (A fetched it, B loaded it).
struct Shared {
    b: Harness,
    kb: TokenKey,
    server: FakeServer,
    store: FakeStore,
    first: String,
}

fn shared_token() -> Shared {
    let (mut a, mut b, ka, kb) = pair();
    let (mut server, mut store) = (FakeServer::new(3600), FakeStore::default());
    let _ = a.request(&ka);
    a.serve_all(&mut server, &mut store, 1);
    let _ = b.request(&kb);
    b.serve_all(&mut server, &mut store, 2);
    let first = text(&b.request(&kb)).unwrap();
    assert_eq!(server.requests, 1);
    Shared {
        b,
        kb,
        server,
        store,
        first,
    }
}

/// Store operations run concurrently (a driver's pool, several connections): a load sent
/// right after a 401 may reach the store before the invalidation does and bring the rejected
/// token back. The manager must not serve it again.
#[test]
fn a_load_that_overtakes_the_invalidation_does_not_bring_the_rejected_token_back() {
    let Shared {
        mut b,
        kb,
        mut server,
        mut store,
        first,
    } = shared_token();
    assert_eq!(server.requests, 1);
    // B's API call is refused; B asks again at once. Both the invalidation and the load are
    // on their way; the load arrives first.
    assert!(
        b.mgr
            .invalidate(b.now, &kb, &AccessToken::new(first.clone()))
            .dropped()
    );
    assert!(matches!(b.request(&kb), Lookup::Pending));
    let ops = std::mem::take(&mut b.store_ops);
    assert!(matches!(ops[0].op, StoreOp::Invalidate { .. }));
    assert!(matches!(ops[1].op, StoreOp::Acquire { .. }));
    for op in ops.iter().rev() {
        let reply = store.execute(b.now, 2, op).unwrap();
        b.mgr.handle_store(b.now, b.wall(), op.id, reply).unwrap();
        b.drain();
    }
    assert_ne!(
        text(&b.request(&kb)).as_deref(),
        Some(first.as_str()),
        "the rejected token is not served again"
    );
    // B looks again, finds the store emptied by its invalidation and fetches: one renewal.
    for _ in 0..20 {
        advance(&mut [&mut b], Duration::from_millis(100));
        b.serve_all(&mut server, &mut store, 2);
    }
    let second = text(&b.request(&kb)).unwrap();
    assert_ne!(first, second);
    assert_eq!(server.requests, 2);
}

#[test]
fn an_invalidation_that_never_lands_costs_one_fetch_not_a_poll_loop() {
    let Shared {
        mut b,
        kb,
        mut server,
        mut store,
        first,
    } = shared_token();
    assert!(
        b.mgr
            .invalidate(b.now, &kb, &AccessToken::new(first.clone()))
            .dropped()
    );
    let _ = b.request(&kb);
    // The store says it invalidated, but the value stays (a lost write): every load returns
    // the rejected token.
    let ops = std::mem::take(&mut b.store_ops);
    for op in &ops {
        let reply = match op.op {
            StoreOp::Invalidate { .. } => token_core::StoreReply::Done,
            _ => store.execute(b.now, 2, op).unwrap(),
        };
        b.mgr.handle_store(b.now, b.wall(), op.id, reply).unwrap();
        b.drain();
    }
    for _ in 0..50 {
        advance(&mut [&mut b], Duration::from_millis(100));
        b.serve_all(&mut server, &mut store, 2);
    }
    let second = text(&b.request(&kb)).unwrap();
    assert_ne!(first, second, "B gave up on the store and fetched");
    assert_eq!(server.requests, 2);
    assert!(store.ops < 20, "the store was polled {} times", store.ops);
}

#[test]
fn an_emptied_store_is_refilled_with_one_fetch() {
    let (mut a, mut b, ka, kb) = pair();
    let (mut server, mut store) = (FakeServer::new(600), FakeStore::default());
    let _ = a.request(&ka);
    a.serve_all(&mut server, &mut store, 1);
    let _ = b.request(&kb);
    b.serve_all(&mut server, &mut store, 2);
    assert_eq!(server.requests, 1);
    // Redis restarts empty; then both reach the refresh point together.
    store.flush();
    // (B loaded its copy with the store's TTL, 5 % short, and plans its refresh as A does: at 540 s.)
    for (h, key) in [(&mut a, &ka), (&mut b, &kb)] {
        h.mgr.touch(h.now, key);
        h.advance(Duration::from_secs(540));
        h.mgr.handle_timeout(h.now);
        h.drain();
    }
    a.serve_store(&mut store, 1);
    b.serve_store(&mut store, 2);
    assert_eq!(a.pending.len() + b.pending.len(), 1, "one lease, one fetch");
    a.serve_all(&mut server, &mut store, 1);
    b.serve_all(&mut server, &mut store, 2);
    // The other one follows the lease and loads what the fetcher published.
    for _ in 0..31 {
        advance(&mut [&mut a, &mut b], Duration::from_secs(1));
        a.serve_all(&mut server, &mut store, 1);
        b.serve_all(&mut server, &mut store, 2);
    }
    assert_eq!(server.requests, 2);
    let (ta, tb) = (text(&a.request(&ka)), text(&b.request(&kb)));

    assert!(ta.is_some());
    assert_eq!(ta, tb, "both serve the refreshed token");
}

#[test]
fn bookingtime_shares_its_refresh_token_and_organization_tokens() {
    let mut a = Harness::new(config());
    let mut b = Harness::new(config());
    b.start = a.start;
    b.now = a.now;
    let ca = a.bookingtime_client();
    let cb = b.bookingtime_client();
    let (mut server, mut store) = (FakeServer::new(300), FakeStore::default());
    let org = |c, o: &str| TokenKey::with_organization(c, o);
    let _ = a.request(&org(ca, "alpha"));
    a.serve_all(&mut server, &mut store, 1);
    assert_eq!(
        server.requests, 2,
        "refresh token, then alpha's access token"
    );
    // B: alpha comes from the store; beta needs only an access-token request (the refresh
    // token comes from the store too).
    let _ = b.request(&org(cb, "alpha"));
    b.serve_all(&mut server, &mut store, 2);
    assert!(text(&b.request(&org(cb, "alpha"))).is_some());
    assert_eq!(server.requests, 2);
    let _ = b.request(&org(cb, "beta"));
    b.serve_all(&mut server, &mut store, 2);
    assert!(text(&b.request(&org(cb, "beta"))).is_some());
    assert_eq!(
        server.requests, 3,
        "one client-credentials request for the fleet"
    );
}
