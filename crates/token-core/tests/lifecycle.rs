//! The token lifecycle through the public API, with a sans-IO fake server and virtual time.
//! One test (or a few) per numbered item of the lifecycle issue; hours of token lifetimes run in
//! milliseconds and nothing sleeps.

use std::time::Duration;

use token_core::{
    AccessToken, ApiMisuse, ClientSecret, Credentials, Error, ErrorCode, Event, Lookup,
    ManagerConfig, Output, TokenKey, TokenManager, TransportErrorKind, TransportFailure, presets,
};
use token_testkit::sansio::{FakeServer, Harness, Reply, json, text};

fn h() -> Harness {
    Harness::new(ManagerConfig::default())
}

// ---- 1. keyed by everything that makes a token different ----

#[test]
fn keys_separate_what_differs_and_share_what_is_equal() {
    let mut h = h();
    let build = |scope: &str, audience: &str| {
        presets::generic(
            "https://idp.example/token",
            Credentials::new("id", ClientSecret::new("s")),
        )
        .scopes([scope])
        .audience(audience)
        .build()
        .unwrap()
    };
    let a = h.mgr.register(build("read", "api"));
    let a_again = h.mgr.register(build("read", "api"));
    let b = h.mgr.register(build("write", "api"));
    let c = h.mgr.register(build("read", "other"));
    assert_eq!(a, a_again, "equal configurations share one client");
    assert_ne!(a, b);
    assert_ne!(a, c);
    let mut server = FakeServer::new(3600);
    let ta = h.get_token(&TokenKey::new(a), &mut server);
    let ta2 = h.get_token(&TokenKey::new(a_again), &mut server);
    let tb = h.get_token(&TokenKey::new(b), &mut server);
    let tc = h.get_token(&TokenKey::new(c), &mut server);
    assert_eq!(ta, ta2);
    assert_ne!(ta, tb);
    assert_ne!(ta, tc);
    assert_eq!(server.requests, 3);
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let mut h = h();
    let generic = h.generic_client("g");
    let bt = h.bookingtime_client();
    assert_eq!(
        h.mgr
            .request(h.now, &TokenKey::with_organization(generic, "o"))
            .unwrap_err(),
        ApiMisuse::OrganizationNotSupported
    );
    assert_eq!(
        h.mgr.request(h.now, &TokenKey::new(bt)).unwrap_err(),
        ApiMisuse::OrganizationRequired
    );
    // A key and a request id from another manager.
    let mut other = TokenManager::new(ManagerConfig::default());
    let foreign = other.register(
        presets::generic(
            "https://x.example/t",
            Credentials::new("z", ClientSecret::new("s")),
        )
        .build()
        .unwrap(),
    );
    assert_eq!(
        h.mgr.request(h.now, &TokenKey::new(foreign)).unwrap_err(),
        ApiMisuse::UnknownClient
    );
    let _ = other.request(h.now, &TokenKey::new(foreign)).unwrap();
    let Output::Send(send) = other.poll_output(h.now) else {
        panic!("expected a send")
    };
    let err = h
        .mgr
        .handle_response(h.now, h.wall(), send.id, json(200, "{}"))
        .unwrap_err();
    assert!(matches!(err, ApiMisuse::UnknownRequest(_)));
    let err = h
        .mgr
        .handle_send_failed(
            h.now,
            send.id,
            TransportFailure::new(TransportErrorKind::Io, "x"),
        )
        .unwrap_err();
    assert!(matches!(err, ApiMisuse::UnknownRequest(_)));
}

// ---- 2. expiry policy ----

#[test]
fn expiry_counts_from_when_the_request_was_sent() {
    let mut h = h();
    let key = TokenKey::new(h.generic_client("c"));
    assert!(matches!(h.request(&key), Lookup::Pending));
    let sends = h.take_pending();
    // The response takes 10 s to arrive; the token's clock started when it was sent.
    h.advance_secs(10);
    h.respond(
        sends[0].id,
        json(200, r#"{"access_token":"t","expires_in":100}"#),
    );
    let Lookup::Ready(token) = h.request(&key) else {
        panic!()
    };
    assert_eq!(token.expires_at(), h.at(100.0));
    assert_eq!(token.sent_at(), h.at(0.0));
    assert_eq!(token.expires_at_wall(), h.wall0 + Duration::from_secs(100));
}

#[test]
fn default_window_is_60s_and_configurable() {
    let mut h = h();
    let mut server = FakeServer::new(3600);
    let key = TokenKey::new(h.generic_client("c"));
    let Lookup::Ready(t) = h.get(&key, &mut server) else {
        panic!()
    };
    assert_eq!(t.refresh_at(), h.at(3540.0));

    // The older Bookable page's 300 s, per manager...
    let mut cfg = ManagerConfig::default();
    cfg.refresh_window = Duration::from_secs(300);
    let mut h = Harness::new(cfg);
    let key = TokenKey::new(h.generic_client("c"));
    let Lookup::Ready(t) = h.get(&key, &mut server) else {
        panic!()
    };
    assert_eq!(t.refresh_at(), h.at(3300.0));

    // ...or per client.
    let mut h = Harness::new(ManagerConfig::default());
    let config = presets::bookable_auth0(Credentials::new("i", ClientSecret::new("s")))
        .refresh_window(Duration::from_secs(300))
        .build()
        .unwrap();
    let key = TokenKey::new(h.mgr.register(config));
    let Lookup::Ready(t) = h.get(&key, &mut server) else {
        panic!()
    };
    assert_eq!(t.refresh_at(), h.at(3300.0));
}

#[test]
fn short_lived_tokens_clamp_the_window_to_half_their_life() {
    let mut cfg = ManagerConfig::default();
    cfg.refresh_window = Duration::from_secs(300);
    let mut h = Harness::new(cfg);
    let key = TokenKey::new(h.generic_client("c"));
    for (lifetime, refresh_at) in [(300u64, 150.0), (3600, 3300.0), (60, 30.0), (1, 0.5)] {
        let mut server = FakeServer::new(lifetime);
        let at = h.now;
        h.mgr
            .invalidate(
                h.now,
                &key,
                &AccessToken::new(format!("at-{}", server.issued)),
            )
            .dropped();
        let Lookup::Ready(t) = h.get(&key, &mut server) else {
            panic!()
        };
        assert_eq!(
            t.refresh_at() - at,
            Duration::from_secs_f64(refresh_at),
            "{lifetime}"
        );
        h.advance_secs(lifetime + 1);
    }
    // bookingtime's 300 s tokens with the default 60 s window refresh at 240 s.
    let mut h = Harness::new(ManagerConfig::default());
    let mut server = FakeServer::new(300);
    let key = TokenKey::new(h.generic_client("c"));
    let Lookup::Ready(t) = h.get(&key, &mut server) else {
        panic!()
    };
    assert_eq!(t.refresh_at(), h.at(240.0));
}

#[test]
fn jitter_is_deterministic_per_seed_and_bounded() {
    let refresh_points = |seed: u64| {
        let mut cfg = ManagerConfig::default();
        cfg.refresh_jitter = Duration::from_secs(120);
        cfg.seed = seed;
        let mut h = Harness::new(cfg);
        let mut server = FakeServer::new(3600);
        (0..8)
            .map(|i| {
                let key = TokenKey::new(h.generic_client(&format!("c{i}")));
                let Lookup::Ready(t) = h.get(&key, &mut server) else {
                    panic!()
                };
                t.refresh_at() - h.start
            })
            .collect::<Vec<_>>()
    };
    let a = refresh_points(1);
    assert_eq!(a, refresh_points(1), "same seed, same schedule");
    assert_ne!(a, refresh_points(2), "another seed spreads differently");
    for d in &a {
        assert!(
            *d <= Duration::from_secs(3540) && *d >= Duration::from_secs(3420),
            "{d:?}"
        );
    }
    assert!(a.iter().any(|d| *d != a[0]), "jitter varies between keys");
}

#[test]
fn absurd_lifetimes_are_capped_and_zero_is_refused() {
    let mut h = h();
    let key = TokenKey::new(h.generic_client("c"));
    assert!(matches!(h.request(&key), Lookup::Pending));
    let id = h.take_pending()[0].id;
    h.respond(id, json(200, r#"{"access_token":"t","expires_in":1e300}"#));
    let Lookup::Ready(t) = h.request(&key) else {
        panic!()
    };
    assert_eq!(t.lifetime(), ManagerConfig::default().max_lifetime);
    assert_eq!(
        t.expires_at(),
        h.now + ManagerConfig::default().max_lifetime
    );

    let key = TokenKey::new(h.generic_client("d"));
    assert!(matches!(h.request(&key), Lookup::Pending));
    let id = h.take_pending()[0].id;
    h.respond(id, json(200, r#"{"access_token":"t","expires_in":0}"#));
    let Lookup::Failed { error, .. } = h.request(&key) else {
        panic!()
    };
    assert!(matches!(error, Error::Malformed { .. }), "{error}");
}

#[test]
fn a_token_that_expired_in_transit_is_not_cached() {
    let mut h = h();
    let key = TokenKey::new(h.generic_client("c"));
    let _ = h.request(&key);
    let id = h.take_pending()[0].id;
    h.advance_secs(5);
    h.respond(id, json(200, r#"{"access_token":"t","expires_in":2}"#));
    assert!(matches!(h.request(&key), Lookup::Failed { .. }));
}

// ---- 3. stale-while-refresh ----

#[test]
fn a_valid_token_keeps_flowing_while_refreshes_fail_then_the_error_shows() {
    let mut h = h();
    let mut server = FakeServer::new(3600);
    let key = TokenKey::new(h.generic_client("c"));
    let first = h.get_token(&key, &mut server);
    // Inside the window, the endpoint is down.
    h.advance_secs(3550);
    for _ in 0..20 {
        server.then(Reply::Html503);
    }
    let before = server.requests;
    for _ in 0..5 {
        assert_eq!(
            text(&h.get(&key, &mut server)).as_deref(),
            Some(first.as_str())
        );
    }
    assert_eq!(
        server.requests,
        before + 1,
        "one refresh attempt, then backoff"
    );
    // Keep asking every second until expiry: still the old token, no caller waits.
    while h.now < h.at(3599.0) {
        h.advance_secs(1);
        assert_eq!(
            text(&h.get(&key, &mut server)).as_deref(),
            Some(first.as_str())
        );
    }
    // At expiry: the last error, never the expired token.
    h.advance_secs(1);
    match h.request(&key) {
        Lookup::Failed { error, retry_at } => {
            assert!(error.is_retryable(), "{error}");
            assert!(retry_at > h.now);
        }
        Lookup::Pending => {
            // A retry happened to be due: it fails too.
            h.serve(&mut server);
            assert!(matches!(h.request(&key), Lookup::Failed { .. }));
        }
        Lookup::Ready(t) => panic!("served an expired token {t:?}"),
    }
    assert!(h.mgr.token(h.now, &key).is_none());
}

#[test]
fn during_a_refresh_callers_get_the_old_token_without_waiting() {
    let mut h = h();
    let mut server = FakeServer::new(3600);
    let key = TokenKey::new(h.generic_client("c"));
    let first = h.get_token(&key, &mut server);
    h.advance_secs(3541);
    for _ in 0..10 {
        assert_eq!(text(&h.request(&key)).as_deref(), Some(first.as_str()));
    }
    assert_eq!(h.pending.len(), 1, "exactly one refresh in flight");
    h.serve(&mut server);
    let second = text(&h.request(&key)).unwrap();
    assert_ne!(first, second);
    assert!(h.events.iter().any(|e| matches!(e, Event::Token { .. })));
}

// ---- 4. single flight ----

#[test]
fn one_request_in_flight_per_key_however_many_ask() {
    let mut h = h();
    let key = TokenKey::new(h.generic_client("c"));
    for _ in 0..1000 {
        assert!(matches!(h.request(&key), Lookup::Pending));
    }
    assert_eq!(h.pending.len(), 1);
    assert_eq!(h.mgr.in_flight(), 1);
    let mut server = FakeServer::new(3600);
    h.serve(&mut server);
    assert!(matches!(h.request(&key), Lookup::Ready(_)));
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, Event::Token { key: k, .. } if *k == key))
    );
}

#[test]
fn a_late_response_to_a_superseded_request_is_ignored() {
    let mut h = h();
    let key = TokenKey::new(h.generic_client("c"));
    let _ = h.request(&key);
    let old = h.take_pending().remove(0);
    // The transport never answers: after the request timeout the manager gives up on it.
    h.advance_secs(61);
    h.mgr.handle_timeout(h.now);
    h.drain();
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::Failed { error: Error::Transport(t), .. } if t.kind() == TransportErrorKind::Timeout
    )));
    assert_eq!(h.mgr.in_flight(), 0);
    // The late answer changes nothing and is not an error.
    h.respond(
        old.id,
        json(200, r#"{"access_token":"late","expires_in":3600}"#),
    );
    assert!(h.mgr.token(h.now, &key).is_none());
    // Answering twice is ignored too.
    h.respond(
        old.id,
        json(200, r#"{"access_token":"late","expires_in":3600}"#),
    );
    assert!(h.mgr.token(h.now, &key).is_none());
}

// ---- 5. backoff ----

#[test]
fn retryable_failures_back_off_exponentially_with_a_cap() {
    let mut h = h();
    let key = TokenKey::new(h.generic_client("c"));
    let mut server = FakeServer::new(3600);
    let mut delays = Vec::new();
    for _ in 0..12 {
        server.then(Reply::TransportFailure);
        let Lookup::Failed { error, retry_at } = h.get(&key, &mut server) else {
            panic!()
        };
        assert!(error.is_retryable());
        delays.push(retry_at - h.now);
        // Asking again before retry_at sends nothing.
        let before = server.requests;
        let _ = h.get(&key, &mut server);
        assert_eq!(server.requests, before);
        h.now = retry_at;
    }
    // Equal jitter: the n-th delay lies in [b/2, b] for b = min(1 s * 2^(n-1), 300 s).
    for (n, d) in delays.iter().enumerate() {
        let b = Duration::from_secs((1u64 << n).min(300));
        assert!(*d >= b / 2 && *d <= b, "failure {}: {d:?} vs {b:?}", n + 1);
    }
    // Success resets the backoff.
    let _ = h.get_token(&key, &mut server);
    h.mgr
        .invalidate(
            h.now,
            &key,
            &AccessToken::new(format!("at-{}", server.issued)),
        )
        .dropped();
    server.then(Reply::Html503);
    let Lookup::Failed { retry_at, .. } = h.get(&key, &mut server) else {
        panic!()
    };
    assert!(retry_at - h.now <= Duration::from_secs(1));
}

#[test]
fn retry_after_is_honoured_up_to_a_cap() {
    let mut h = h();
    let key = TokenKey::new(h.generic_client("c"));
    let mut server = FakeServer::new(3600);
    server.then(Reply::RetryAfter(42));
    let Lookup::Failed { retry_at, error } = h.get(&key, &mut server) else {
        panic!()
    };
    assert_eq!(retry_at - h.now, Duration::from_secs(42));
    assert!(error.retry_after().is_some());
    h.now = retry_at;
    server.then(Reply::RetryAfter(1_000_000));
    let Lookup::Failed { retry_at, .. } = h.get(&key, &mut server) else {
        panic!()
    };
    assert_eq!(retry_at - h.now, ManagerConfig::default().max_retry_after);
}

#[test]
fn rejected_credentials_reach_callers_and_the_endpoint_is_not_hammered() {
    let mut h = h();
    let key = TokenKey::new(h.generic_client("c"));
    let mut server = FakeServer::new(3600);
    for _ in 0..10_000 {
        server.then(Reply::OAuthError(401, "invalid_client"));
    }
    // A caller asks every 100 ms for an hour.
    let mut errors = 0;
    while h.now < h.at(3600.0) {
        if let Lookup::Failed { error, .. } = h.get(&key, &mut server) {
            assert!(error.is_credentials_rejected());
            assert_eq!(error.oauth_code(), Some(&ErrorCode::InvalidClient));
            errors += 1;
        }
        h.advance(Duration::from_millis(100));
    }
    assert_eq!(errors, 36_000, "every caller got the error");
    // 30 s doubling to a 5 min cap (with jitter down to half): about 15 requests an hour, and
    // never more than one per 15 s.
    assert!(server.requests <= 30, "{} requests", server.requests);
}

// ---- 6. token-aware invalidation ----

#[test]
fn many_401s_for_one_token_cause_one_renewal() {
    let mut h = h();
    let mut server = FakeServer::new(3600);
    let key = TokenKey::new(h.generic_client("c"));
    let first = AccessToken::new(h.get_token(&key, &mut server));
    assert!(h.mgr.invalidate(h.now, &key, &first).dropped());
    for _ in 0..99 {
        assert!(!h.mgr.invalidate(h.now, &key, &first).dropped());
    }
    let second = h.get_token(&key, &mut server);
    assert_ne!(second, first.secret());
    // 401s for the old token arriving after the renewal change nothing.
    assert!(!h.mgr.invalidate(h.now, &key, &first).dropped());
    assert_eq!(text(&h.get(&key, &mut server)).unwrap(), second);
    assert_eq!(server.requests, 2);
}

// ---- 7. bookingtime chain ----

#[test]
fn bookingtime_organizations_share_one_refresh_token() {
    let mut h = h();
    let mut server = FakeServer::new(300);
    let client = h.bookingtime_client();
    let orgs: Vec<TokenKey> = ["a", "b", "c"]
        .iter()
        .map(|o| TokenKey::with_organization(client, *o))
        .collect();
    for key in &orgs {
        assert!(matches!(h.request(key), Lookup::Pending));
    }
    assert_eq!(h.pending.len(), 1, "one client-credentials request for all");
    h.serve(&mut server);
    assert_eq!(
        server.requests, 4,
        "1 refresh token + 3 organization tokens"
    );
    let tokens: Vec<String> = orgs.iter().map(|k| text(&h.request(k)).unwrap()).collect();
    assert_eq!(
        tokens
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        3
    );
    // 5-minute access tokens come and go all day; the refresh token is fetched once.
    let end = h.at(8.0 * 3600.0);
    while h.now < end {
        h.advance_secs(30);
        for key in &orgs {
            assert!(matches!(h.get(key, &mut server), Lookup::Ready(_)));
        }
    }
    let cc_requests = server.valid_refresh.len();
    assert_eq!(cc_requests, 1);
    // Each org refreshes every 240 s: 8 h / 240 s = 120 refreshes each, give or take one.
    let per_org = (server.requests - 1) as f64 / 3.0;
    assert!((119.0..=122.0).contains(&per_org), "{per_org}");
}

#[test]
fn a_rejected_refresh_token_restarts_the_chain_once_for_every_organization() {
    let mut h = h();
    let mut server = FakeServer::new(300);
    let client = h.bookingtime_client();
    let a = TokenKey::with_organization(client, "a");
    let b = TokenKey::with_organization(client, "b");
    let _ = h.get_token(&a, &mut server);
    let _ = h.get_token(&b, &mut server);
    assert_eq!(server.valid_refresh.len(), 1);
    // The server revokes the refresh token.
    server.valid_refresh.clear();
    h.advance_secs(301);
    let _ = h.request(&a);
    let _ = h.request(&b);
    h.serve(&mut server);
    // Both organizations got invalid_grant for the same refresh token: one new chain.
    assert_eq!(
        server.valid_refresh.len(),
        1,
        "exactly one new refresh token"
    );
    assert!(matches!(h.request(&a), Lookup::Ready(_)));
    assert!(matches!(h.request(&b), Lookup::Ready(_)));
    let new_rt = server.valid_refresh[0].clone();
    assert!(
        !h.events.iter().any(|e| matches!(e, Event::Failed { .. })),
        "no caller saw it"
    );

    // A server that rejects even the fresh refresh token: one restart, then the error.
    server.valid_refresh.clear();
    h.advance_secs(301);
    assert!(matches!(h.request(&a), Lookup::Pending));
    h.serve_once(&mut server); // invalid_grant → the chain restarts
    assert_eq!(h.pending.len(), 1, "one new client-credentials request");
    h.serve_once(&mut server); // a new refresh token...
    server.valid_refresh.clear(); // ...that the server rejects at once
    h.serve_once(&mut server);
    assert!(h.pending.is_empty(), "no second restart");
    let Lookup::Failed { error, .. } = h.request(&a) else {
        panic!()
    };
    assert!(error.is_grant_rejected(), "{error}");
    assert_ne!(server.valid_refresh.first(), Some(&new_rt));
}

#[test]
fn an_expired_refresh_token_restarts_the_chain() {
    let mut h = h();
    let mut server = FakeServer::new(300);
    server.refresh_lifetime = 1000;
    let client = h.bookingtime_client();
    let a = TokenKey::with_organization(client, "a");
    let _ = h.get_token(&a, &mut server);
    h.advance_secs(1001);
    let _ = h.get_token(&a, &mut server);
    assert_eq!(server.valid_refresh.len(), 2);
}

#[test]
fn a_failing_chain_reports_to_every_waiting_organization() {
    let mut h = h();
    let mut server = FakeServer::new(300);
    let client = h.bookingtime_client();
    let a = TokenKey::with_organization(client, "a");
    let b = TokenKey::with_organization(client, "b");
    let _ = h.request(&a);
    let _ = h.request(&b);
    server.then(Reply::OAuthError(401, "invalid_client"));
    h.serve(&mut server);
    for key in [&a, &b] {
        assert!(h.events.iter().any(
            |e| matches!(e, Event::Failed { key: k, error, .. } if k == key && error.is_credentials_rejected())
        ));
        assert!(matches!(h.request(key), Lookup::Failed { .. }));
    }
    assert_eq!(server.requests, 1);
}

// ---- 8. clock steps and memory ----

#[test]
fn a_clock_stepping_back_cannot_resurrect_an_expired_token() {
    let mut h = h();
    let mut server = FakeServer::new(100);
    let key = TokenKey::new(h.generic_client("c"));
    let _ = h.get_token(&key, &mut server);
    let early = h.now;
    h.advance_secs(101);
    assert!(matches!(h.request(&key), Lookup::Pending));
    // The clock steps back to before expiry.
    h.now = early;
    assert!(h.mgr.token(h.now, &key).is_none());
    assert!(matches!(h.request(&key), Lookup::Pending));
    h.mgr.handle_timeout(h.now);
    h.drain();
}

#[test]
fn a_clock_jumping_forward_expires_tokens_without_panicking() {
    let mut h = h();
    let mut server = FakeServer::new(3600);
    let key = TokenKey::new(h.generic_client("c"));
    let first = h.get_token(&key, &mut server);
    h.advance(Duration::from_secs(10 * 365 * 24 * 3600));
    h.mgr.handle_timeout(h.now);
    h.drain();
    assert!(h.mgr.token(h.now, &key).is_none());
    let second = h.get_token(&key, &mut server);
    assert_ne!(first, second);
}

#[test]
fn after_a_timeout_the_next_wakeup_is_later() {
    let mut h = h();
    let mut server = FakeServer::new(120);
    let keys: Vec<TokenKey> = (0..5)
        .map(|i| TokenKey::new(h.generic_client(&format!("c{i}"))))
        .collect();
    for k in &keys {
        let _ = h.get_token(k, &mut server);
    }
    let mut wakeups = 0;
    let end = h.at(3600.0);
    while h.now < end {
        h.drain();
        let next = h.next_timeout.unwrap();
        assert!(next > h.now);
        h.now = next;
        h.mgr.handle_timeout(h.now);
        h.serve(&mut server);
        wakeups += 1;
        // Keep using the tokens so they keep being refreshed.
        for k in &keys {
            let _ = h.get(k, &mut server);
        }
    }
    assert!(
        wakeups < 1000,
        "{wakeups} wake-ups for an hour is a busy loop"
    );
}

#[test]
fn unused_keys_are_forgotten_once_expired() {
    let mut h = h();
    let mut server = FakeServer::new(60);
    for i in 0..100 {
        let key = TokenKey::new(h.generic_client(&format!("c{i}")));
        let _ = h.get_token(&key, &mut server);
    }
    assert_eq!(h.mgr.entry_count(), 100);
    h.run_until(h.at(2.0 * 3600.0), &mut server);
    assert_eq!(h.mgr.entry_count(), 0);
    assert_eq!(h.mgr.in_flight(), 0);
}

#[test]
fn proactive_refresh_only_for_tokens_in_use() {
    let mut h = h();
    let mut server = FakeServer::new(600);
    let used = TokenKey::new(h.generic_client("used"));
    let idle = TokenKey::new(h.generic_client("idle"));
    let _ = h.get_token(&used, &mut server);
    let _ = h.get_token(&idle, &mut server);
    let before = server.requests;
    // `used` is asked for once a minute; timeouts drive refreshes in between.
    for _ in 0..30 {
        let until = h.now + Duration::from_secs(60);
        h.run_until(until, &mut server);
        assert!(matches!(h.request(&used), Lookup::Ready(_)));
    }
    // 30 minutes / (600 s - 60 s window) ≈ 3-4 refreshes of `used`; none of `idle`.
    let refreshes = server.requests - before;
    assert!((3..=4).contains(&refreshes), "{refreshes}");
}

// ---- 9. the older Bookable page's inverted freshness check ----

/// 004_…txt's Java example returns the cached token only when
/// `now.isAfter(expirationTime.minusSeconds(300))`, i.e. only once it is inside the buffer (or
/// expired) and fetches a new one while the token is fresh. Ours must do the opposite: serve a
/// fresh token without a request, and never serve an expired one.
#[test]
fn regression_inverted_freshness_check() {
    let mut cfg = ManagerConfig::default();
    cfg.refresh_window = Duration::from_secs(300);
    let mut h = Harness::new(cfg);
    let mut server = FakeServer::new(3600);
    let key = TokenKey::new(h.generic_client("c"));
    let first = h.get_token(&key, &mut server);
    // Fresh (outside the buffer): the Java code would fetch here. We must not.
    for secs in [1, 60, 1800, 3299] {
        h.now = h.at(secs as f64);
        assert_eq!(text(&h.request(&key)).as_deref(), Some(first.as_str()));
        assert!(h.pending.is_empty(), "fetched while fresh at {secs}s");
    }
    assert_eq!(server.requests, 1);
    // Expired: the Java code would serve it. We must not, even if the refresh fails.
    h.now = h.at(3600.0);
    server.then(Reply::Html503);
    let lookup = h.get(&key, &mut server);
    assert!(!matches!(&lookup, Lookup::Ready(t) if t.access_token().secret() == first));
}

// ---- what a driver may serve without asking ----

#[test]
fn servable_matches_what_request_would_answer() {
    let mut h = h();
    let mut server = FakeServer::new(3600);
    let key = TokenKey::new(h.generic_client("c"));
    assert!(h.mgr.servable(h.now, &key).is_none());
    let first = h.get_token(&key, &mut server);
    // Fresh: servable until the refresh point.
    let (t, until) = h.mgr.servable(h.now, &key).unwrap();
    assert_eq!(t.access_token().secret(), first);
    assert_eq!(until, h.at(3540.0));
    // Inside the window with nothing in flight: ask the manager.
    h.advance_secs(3541);
    assert!(h.mgr.servable(h.now, &key).is_none());
    // A refresh in flight: servable until its request timeout (capped by expiry).
    assert!(matches!(h.request(&key), Lookup::Ready(_)));
    let (_, until) = h.mgr.servable(h.now, &key).unwrap();
    assert_eq!(until, h.at(3600.0));
    // The refresh fails: servable until the backoff ends.
    server.then(Reply::Html503);
    h.serve(&mut server);
    let Some(Event::Failed { retry_at, .. }) = h.events.last().cloned() else {
        panic!()
    };
    let (_, until) = h.mgr.servable(h.now, &key).unwrap();
    assert_eq!(until, retry_at.min(h.at(3600.0)));
    // Never past expiry.
    h.now = h.at(3600.0);
    assert!(h.mgr.servable(h.now, &key).is_none());
}

/// Issue "What operators see and pay", must-have 2: a 429 with a used-up quota waits at least
/// until the quota resets (capped like `Retry-After`), while a valid token is still served.
#[test]
fn a_429_for_quota_waits_for_the_reset() {
    let mut h = h();
    let mut server = FakeServer::new(3600);
    let key = TokenKey::new(h.generic_client("c"));
    let first = h.get_token(&key, &mut server);
    h.advance_secs(3545);
    assert_eq!(
        text(&h.request(&key)).as_deref(),
        Some(first.as_str()),
        "still served"
    );
    let sends = h.take_pending();
    assert_eq!(sends.len(), 1);
    let mut limited = json(429, r#"{"error":"too_many_requests"}"#);
    limited.headers_mut().insert(
        "auth0-client-quota-limit",
        "b=per_hour;q=10;r=0;t=300".parse().unwrap(),
    );
    h.respond(sends[0].id, limited);
    let retry_at = h
        .events
        .iter()
        .find_map(|e| match e {
            Event::Failed {
                retry_at, error, ..
            } => {
                assert!(error.quota().is_some());
                Some(*retry_at)
            }
            _ => None,
        })
        .unwrap();
    assert!(
        retry_at >= h.now + Duration::from_secs(300),
        "waits for the reset"
    );
    assert_eq!(text(&h.request(&key)).as_deref(), Some(first.as_str()));
    assert!(h.pending.is_empty());
}
