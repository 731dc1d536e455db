//! Lifecycle v2's renewal rules: bounded renewal after rejections, and refresh-token grants that
//! survive transient failures and one organization's `invalid_grant`.

use std::time::Duration;

use token_core::{AccessToken, Error, Lookup, ManagerConfig, TokenKey};
use token_testkit::sansio::{FakeServer, Harness, text};

fn h() -> Harness {
    Harness::new(ManagerConfig::default())
}

/// What a transport's `call()` does against an API that refuses every token: attach the token,
/// get a 401, invalidate it, and retry once with a new token only if the old one was dropped.
/// Returns how many API requests it made.
fn call_rejected_api(h: &mut Harness, key: &TokenKey, server: &mut FakeServer) -> usize {
    let token = h.get_token(key, server);
    if !h
        .mgr
        .invalidate(h.now, key, &AccessToken::new(token))
        .dropped()
    {
        return 1; // the caller gets the API's 401
    }
    let _ = h.get_token(key, server);
    2
}

/// Issue "Lifecycle v2", finding 3: 50 `call()`s to an API that rejects every token made 50 token
/// requests.
#[test]
fn fifty_calls_to_an_api_that_rejects_every_token_cost_a_handful_of_token_requests() {
    let mut h = h();
    let mut server = FakeServer::new(3600);
    let key = TokenKey::new(h.generic_client("c"));
    for _ in 0..50 {
        call_rejected_api(&mut h, &key, &mut server);
        h.advance(Duration::from_millis(100));
    }
    assert!(server.requests <= 3, "{} token requests", server.requests);
    // Spread over ten minutes, renewals back off: 30 s, 60 s, 120 s, 240 s (with jitter).
    let mut server = FakeServer::new(3600);
    let key = TokenKey::new(h.generic_client("spread"));
    for _ in 0..60 {
        call_rejected_api(&mut h, &key, &mut server);
        let until = h.now + Duration::from_secs(10);
        h.run_until(until, &mut server);
    }
    assert!(
        (3..=7).contains(&server.requests),
        "{} token requests in ten minutes",
        server.requests
    );
}

#[test]
fn an_accepted_token_resets_the_renewal_backoff() {
    let mut h = h();
    let mut server = FakeServer::new(3600);
    let key = TokenKey::new(h.generic_client("c"));
    let first = h.get_token(&key, &mut server);
    assert!(
        h.mgr
            .invalidate(h.now, &key, &AccessToken::new(first))
            .dropped()
    );
    let second = h.get_token(&key, &mut server);
    // Refused again: kept (and renewed later)...
    assert!(
        !h.mgr
            .invalidate(h.now, &key, &AccessToken::new(second.clone()))
            .dropped()
    );
    assert!(h.mgr.on_probation(&key));
    assert_eq!(text(&h.request(&key)).as_deref(), Some(second.as_str()));
    // ...until the API accepts it: then a later rejection drops at once again.
    h.mgr
        .confirm(h.now, &key, &AccessToken::new(second.clone()));
    assert!(!h.mgr.on_probation(&key));
    assert!(
        h.mgr
            .invalidate(h.now, &key, &AccessToken::new(second))
            .dropped()
    );
    assert!(matches!(h.request(&key), Lookup::Pending));
}

#[test]
fn a_rejected_token_is_renewed_in_the_background_after_the_backoff() {
    let mut h = h();
    let mut server = FakeServer::new(3600);
    let key = TokenKey::new(h.generic_client("c"));
    let first = h.get_token(&key, &mut server);
    assert!(
        h.mgr
            .invalidate(h.now, &key, &AccessToken::new(first))
            .dropped()
    );
    let second = h.get_token(&key, &mut server);
    assert!(
        !h.mgr
            .invalidate(h.now, &key, &AccessToken::new(second.clone()))
            .dropped()
    );
    let renew = h.mgr.refresh_due_at(&key).unwrap();
    let delay = renew - h.now;
    assert!(
        delay >= Duration::from_secs(15) && delay <= Duration::from_secs(30),
        "{delay:?}"
    );
    let before = server.requests;
    h.run_until(renew + Duration::from_millis(1), &mut server);
    assert_eq!(server.requests, before + 1, "renewed by the timer");
    assert_ne!(text(&h.request(&key)), Some(second));
}

/// Issue "Lifecycle v2", finding 7: one organization's `invalid_grant` discarded the shared
/// refresh token again and again (19 refresh-token requests an hour instead of 1).
#[test]
fn one_organizations_invalid_grant_does_not_discard_the_refresh_token_again_and_again() {
    let mut h = h();
    let mut server = FakeServer::new(300);
    server.reject_orgs.push("bad-org".into());
    let client = h.bookingtime_client();
    let good = TokenKey::with_organization(client, "good-org");
    let bad = TokenKey::with_organization(client, "bad-org");
    let mut bad_errors = 0;
    for _ in 0..60 {
        assert!(
            text(&h.get(&good, &mut server)).is_some(),
            "the good org keeps working"
        );
        match h.get(&bad, &mut server) {
            Lookup::Failed { error, .. } => {
                assert!(error.is_grant_rejected(), "{error}");
                bad_errors += 1;
            }
            other => panic!("bad org: {other:?}"),
        }
        let until = h.now + Duration::from_secs(60);
        h.run_until(until, &mut server);
    }
    assert!(bad_errors > 0);
    // The first leg once, plus the bad organization's one challenge of it.
    assert!(
        server.refresh_token_requests <= 2,
        "{} refresh-token requests in an hour",
        server.refresh_token_requests
    );
}

#[test]
fn a_refresh_token_rejected_for_everyone_is_renewed_once() {
    let mut h = h();
    let mut server = FakeServer::new(300);
    let client = h.bookingtime_client();
    let orgs: Vec<TokenKey> = ["a", "b", "c"]
        .iter()
        .map(|o| TokenKey::with_organization(client, *o))
        .collect();
    for key in &orgs {
        assert!(text(&h.get(key, &mut server)).is_some());
    }
    assert_eq!(server.refresh_token_requests, 1);
    // The server revokes the refresh token; every organization is refused with it.
    server.valid_refresh.clear();
    for key in &orgs {
        let token = text(&h.request(key)).unwrap();
        assert!(
            h.mgr
                .invalidate(h.now, key, &AccessToken::new(token))
                .dropped()
        );
    }
    for key in &orgs {
        assert!(text(&h.get(key, &mut server)).is_some(), "recovered");
    }
    assert_eq!(
        server.refresh_token_requests, 2,
        "one new refresh token for all"
    );
}

#[test]
fn a_transient_failure_never_discards_the_refresh_token() {
    let mut h = h();
    let mut server = FakeServer::new(300);
    server.refresh_lifetime = 1200;
    let client = h.bookingtime_client();
    let key = TokenKey::with_organization(client, "org");
    assert!(text(&h.get(&key, &mut server)).is_some());
    // The refresh token's own renewal (60 s before it expires) fails three times; the
    // organization keeps getting access tokens with the old refresh token meanwhile.
    server.fail_refresh_token_requests = 3;
    for _ in 0..26 {
        let until = h.now + Duration::from_secs(50);
        h.run_until(until, &mut server);
        assert!(text(&h.get(&key, &mut server)).is_some());
    }
    assert_eq!(
        server.refresh_token_requests,
        1 + 3 + 1,
        "renewed after the failures"
    );
    assert_eq!(server.fail_refresh_token_requests, 0);
}

#[test]
fn a_users_grant_without_authorization_is_a_typed_error_and_sends_nothing() {
    let mut h = h();
    let client = h.generic_client("app");
    let key = TokenKey::for_user(client, "user-1");
    for _ in 0..3 {
        match h.request(&key) {
            Lookup::Failed { error, .. } => assert_eq!(error, Error::AuthorizationRequired),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(h.sent, 0);
}
