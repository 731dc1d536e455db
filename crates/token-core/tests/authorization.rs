//! The Authorization Code flow with PKCE through the manager, sans-IO: the authorization URL,
//! every way a redirect is refused, the code exchange, and a user's grant feeding access tokens
//! through the same timers, single flight and backoff, until only the user can renew it.

use std::time::Duration;

use token_core::{
    AuthorizationError, ClientSecret, Credentials, Error, Lookup, ManagerConfig, PkceVerifier,
    Target, TokenKey, presets,
};
use token_testkit::sansio::{FakeServer, Harness, body_field, text};

const REDIRECT: &str = "http://127.0.0.1:53682/callback";
const RANDOM: [u8; 48] = [42; 48];

fn h() -> Harness {
    Harness::new(ManagerConfig::default())
}

/// A public client (no secret) of a generic RFC 6749 server with an authorization endpoint.
fn public_client(h: &mut Harness) -> token_core::ClientId {
    let config = presets::generic(
        "https://idp.example/token",
        Credentials::without_secret("native-app"),
    )
    .authorization_endpoint("https://idp.example/authorize")
    .scopes(["openid", "offline_access"])
    .build()
    .unwrap();
    h.mgr.register(config)
}

fn query(url: &str) -> Vec<(String, String)> {
    let (_, q) = url.split_once('?').unwrap();
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn param(pairs: &[(String, String)], name: &str) -> String {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn the_authorization_url_carries_everything_and_s256() {
    let mut h = h();
    let client = public_client(&mut h);
    let start = h
        .mgr
        .start_authorization(h.now, client, "alice", REDIRECT, &RANDOM)
        .unwrap();
    assert!(start.url.starts_with("https://idp.example/authorize?"));
    let q = query(&start.url);
    assert_eq!(param(&q, "response_type"), "code");
    assert_eq!(param(&q, "client_id"), "native-app");
    assert_eq!(param(&q, "redirect_uri"), REDIRECT);
    assert_eq!(param(&q, "scope"), "offline_access openid");
    assert_eq!(param(&q, "code_challenge_method"), "S256");
    let verifier = PkceVerifier::from_random(&[42; 32]);
    assert_eq!(param(&q, "code_challenge"), verifier.challenge());
    assert!(
        !start.url.contains(verifier.secret()),
        "the verifier never leaves"
    );
    assert_eq!(param(&q, "state").len(), 22);
    assert_eq!(start.grant.subject().user(), Some("alice"));
}

#[test]
fn extra_authorization_parameters_are_added_and_cannot_override_the_flow() {
    let mut h = h();
    let builder = || {
        presets::generic(
            "https://idp.example/token",
            Credentials::without_secret("native-app"),
        )
        .authorization_endpoint("https://idp.example/authorize")
    };
    let config = builder()
        .authorization_param("prompt", "consent")
        .authorization_param("resource", "urn:example:api")
        .build()
        .unwrap();
    let plain = builder().build().unwrap();
    assert_ne!(config.fingerprint(), plain.fingerprint());
    let client = h.mgr.register(config);
    let start = h
        .mgr
        .start_authorization(h.now, client, "alice", REDIRECT, &RANDOM)
        .unwrap();
    let q = query(&start.url);
    assert_eq!(param(&q, "prompt"), "consent");
    assert_eq!(param(&q, "resource"), "urn:example:api");
    assert_eq!(param(&q, "response_type"), "code");
    for reserved in ["state", "code_challenge_method", "redirect_uri", ""] {
        let refused = builder().authorization_param(reserved, "x").build();
        assert!(
            matches!(refused, Err(token_core::ConfigError::Invalid { .. })),
            "{reserved:?}: {refused:?}"
        );
    }
}

#[test]
fn start_refuses_what_cannot_work() {
    let mut h = h();
    let no_endpoint = h.generic_client("plain");
    assert!(
        h.mgr
            .start_authorization(h.now, no_endpoint, "u", REDIRECT, &RANDOM)
            .is_err()
    );
    let client = public_client(&mut h);
    for bad in [
        "http://localhost:5000/cb",
        "http://example.com/cb",
        "https://a/cb#x",
    ] {
        assert!(
            h.mgr
                .start_authorization(h.now, client, "u", bad, &RANDOM)
                .is_err(),
            "{bad}"
        );
    }
}

/// Starts an authorization and returns the redirect the server would send back with `code`.
fn redirect_for(h: &mut Harness, client: token_core::ClientId, code: &str) -> String {
    let start = h
        .mgr
        .start_authorization(h.now, client, "alice", REDIRECT, &RANDOM)
        .unwrap();
    let state = param(&query(&start.url), "state");
    format!("{REDIRECT}?code={code}&state={state}&iss=https%3A%2F%2Fidp.example")
}

#[test]
fn a_completed_authorization_exchanges_the_code_with_the_verifier() {
    let mut h = h();
    let client = public_client(&mut h);
    let redirect = redirect_for(&mut h, client, "the-code");
    let grant = h.mgr.complete_authorization(h.now, &redirect).unwrap();
    h.drain();
    assert_eq!(h.pending.len(), 1);
    let send = &h.pending[0];
    assert!(matches!(&send.target, Target::RefreshToken(g) if *g == grant));
    let body = send.request.body();
    assert_eq!(
        body_field(body, "grant_type").as_deref(),
        Some("authorization_code")
    );
    assert_eq!(body_field(body, "code").as_deref(), Some("the-code"));
    assert_eq!(body_field(body, "redirect_uri").as_deref(), Some(REDIRECT));
    assert_eq!(body_field(body, "client_id").as_deref(), Some("native-app"));
    assert_eq!(body_field(body, "client_secret"), None, "a public client");
    assert!(send.request.headers().get("authorization").is_none());
    let verifier = body_field(body, "code_verifier").unwrap();
    assert_eq!(
        PkceVerifier::new(verifier).unwrap().challenge(),
        PkceVerifier::from_random(&[42; 32]).challenge()
    );
}

#[test]
fn every_bad_redirect_is_a_typed_error_and_sends_nothing() {
    let mut h = h();
    let client = public_client(&mut h);
    let start = h
        .mgr
        .start_authorization(h.now, client, "alice", REDIRECT, &RANDOM)
        .unwrap();
    let state = param(&query(&start.url), "state");
    type Check = fn(&AuthorizationError) -> bool;
    let cases: Vec<(String, Check)> = vec![
        (format!("{REDIRECT}?code=c&state=forged"), |e| {
            matches!(e, AuthorizationError::StateMismatch)
        }),
        (format!("{REDIRECT}?code=c"), |e| {
            matches!(e, AuthorizationError::StateMismatch)
        }),
        (
            format!("http://127.0.0.1:1/callback?code=c&state={state}"),
            |e| matches!(e, AuthorizationError::WrongRedirect { .. }),
        ),
    ];
    for (redirect, check) in cases {
        // Each case consumes a fresh authorization with the same state.
        let _ = h
            .mgr
            .start_authorization(h.now, client, "alice", REDIRECT, &RANDOM)
            .unwrap();
        let err = h.mgr.complete_authorization(h.now, &redirect).unwrap_err();
        assert!(check(&err), "{redirect}: {err:?}");
    }
    let fresh = |h: &mut Harness| {
        let start = h
            .mgr
            .start_authorization(h.now, client, "alice", REDIRECT, &RANDOM)
            .unwrap();
        param(&query(&start.url), "state")
    };
    let s = fresh(&mut h);
    let err = h
        .mgr
        .complete_authorization(
            h.now,
            &format!("{REDIRECT}?code=c&state={s}&iss=https://evil"),
        )
        .unwrap_err();
    assert!(
        matches!(err, AuthorizationError::IssuerMismatch { .. }),
        "{err:?}"
    );
    let s = fresh(&mut h);
    let err = h
        .mgr
        .complete_authorization(
            h.now,
            &format!("{REDIRECT}?error=access_denied&error_description=no+thanks&state={s}"),
        )
        .unwrap_err();
    assert!(
        matches!(&err, AuthorizationError::Refused { code, description }
            if code.as_str() == "access_denied" && description.as_deref() == Some("no thanks")),
        "{err:?}"
    );
    let s = fresh(&mut h);
    let err = h
        .mgr
        .complete_authorization(h.now, &format!("{REDIRECT}?state={s}"))
        .unwrap_err();
    assert!(matches!(err, AuthorizationError::MissingCode));
    h.drain();
    assert_eq!(h.sent, 0, "nothing was exchanged");
}

#[test]
fn a_redirect_is_accepted_once_and_for_ten_minutes() {
    let mut h = h();
    let client = public_client(&mut h);
    let redirect = redirect_for(&mut h, client, "c1");
    assert!(h.mgr.complete_authorization(h.now, &redirect).is_ok());
    assert_eq!(
        h.mgr.complete_authorization(h.now, &redirect).unwrap_err(),
        AuthorizationError::StateMismatch,
        "a replay is refused"
    );
    let late = redirect_for(&mut h, client, "c2");
    h.advance(Duration::from_secs(601));
    assert_eq!(
        h.mgr.complete_authorization(h.now, &late).unwrap_err(),
        AuthorizationError::StateMismatch,
        "an expired authorization is gone"
    );
}

#[test]
fn a_generic_users_grant_feeds_access_tokens_and_rotates() {
    let mut h = h();
    let client = public_client(&mut h);
    let mut server = FakeServer::new(600);
    server.code_returns_access = true;
    server.rotate_refresh = true;
    let redirect = redirect_for(&mut h, client, "c");
    let grant = h.mgr.complete_authorization(h.now, &redirect).unwrap();
    let key = TokenKey::for_user(grant.client(), "alice");
    assert!(matches!(h.request(&key), Lookup::Pending));
    h.serve(&mut server);
    let first = text(&h.request(&key)).expect("the exchange's own access token");
    assert_eq!(
        server.requests, 1,
        "no second request for the first access token"
    );
    // At its refresh point, the timer refreshes it with the user's refresh token; the server
    // rotates the refresh token and the next refresh uses the new one.
    for round in 0..3 {
        let until = h.now + Duration::from_secs(560);
        h.run_until(until, &mut server);
        let current = text(&h.request(&key)).unwrap();
        assert_ne!(current, first, "round {round}");
    }
    assert_eq!(server.requests, 4);
    assert_eq!(
        server.valid_refresh.len(),
        1,
        "each rotation replaced the last"
    );
}

#[test]
fn a_bookingtime_users_grant_gives_a_refresh_token_first() {
    let mut h = h();
    let config = presets::bookingtime_app(Credentials::new("bt", ClientSecret::new("s")))
        .authorization_endpoint("https://auth.bookingtime.example/oauth/authorize")
        .build()
        .unwrap();
    let client = h.mgr.register(config);
    let mut server = FakeServer::new(300);
    // bookingtime's redirect names no issuer.
    let redirect = redirect_for(&mut h, client, "c").replace("&iss=https%3A%2F%2Fidp.example", "");
    let grant = h.mgr.complete_authorization(h.now, &redirect).unwrap();
    let org = TokenKey::for_user(grant.client(), "alice").for_organization("org-1");
    assert!(matches!(h.request(&org), Lookup::Pending));
    h.serve(&mut server);
    assert!(text(&h.request(&org)).is_some());
    assert_eq!(
        server.requests, 2,
        "the code for a refresh token, then the organization's"
    );
    let other = TokenKey::for_user(grant.client(), "alice").for_organization("org-2");
    assert!(text(&h.get(&other, &mut server)).is_some());
    assert_eq!(
        server.requests, 3,
        "the user's refresh token is shared by organizations"
    );
}

#[test]
fn a_rejected_or_expired_user_grant_asks_for_the_user_and_sends_nothing_more() {
    let mut h = h();
    let client = public_client(&mut h);
    let mut server = FakeServer::new(600);
    server.code_returns_access = true;
    let redirect = redirect_for(&mut h, client, "c");
    let grant = h.mgr.complete_authorization(h.now, &redirect).unwrap();
    let key = TokenKey::for_user(grant.client(), "alice");
    let _ = h.get(&key, &mut server);
    // The user revokes the app: the refresh token is refused.
    server.valid_refresh.clear();
    h.advance(Duration::from_secs(601));
    let _ = h.request(&key);
    h.serve(&mut server);
    let sent = server.requests;
    for _ in 0..5 {
        match h.request(&key) {
            Lookup::Failed { error, .. } => assert_eq!(error, Error::AuthorizationRequired),
            other => panic!("{other:?}"),
        }
        h.serve(&mut server);
        h.advance(Duration::from_secs(3600));
    }
    assert_eq!(server.requests, sent, "no request loop");
    // A new authorization fixes it.
    let redirect = redirect_for(&mut h, client, "c2");
    h.mgr.complete_authorization(h.now, &redirect).unwrap();
    assert!(matches!(h.request(&key), Lookup::Pending));
    h.serve(&mut server);
    assert!(text(&h.request(&key)).is_some());
}

/// RFC 6749 §5.1: the refresh token is optional. A code exchange that returns an access token
/// alone (oidc-provider's default without `prompt=consent`) gives the user that token; once it
/// is spent, only the user can renew it.
#[test]
fn a_code_exchange_without_a_refresh_token_still_gives_the_access_token() {
    let mut h = h();
    let client = public_client(&mut h);
    let redirect = redirect_for(&mut h, client, "c");
    let grant = h.mgr.complete_authorization(h.now, &redirect).unwrap();
    let key = TokenKey::for_user(grant.client(), "alice");
    assert!(matches!(h.request(&key), Lookup::Pending));
    let exchange = h.take_pending();
    assert_eq!(exchange.len(), 1);
    let body = br#"{"access_token":"only-access","token_type":"Bearer","expires_in":600}"#;
    h.respond(
        exchange[0].id,
        http::Response::builder()
            .status(200)
            .body(body.to_vec())
            .unwrap(),
    );
    assert_eq!(text(&h.request(&key)).as_deref(), Some("only-access"));
    // Spent: the user must authorize again, and nothing is sent meanwhile or after.
    h.advance(Duration::from_secs(601));
    h.mgr.handle_timeout(h.now);
    h.drain();
    for _ in 0..5 {
        match h.request(&key) {
            Lookup::Failed { error, .. } => assert_eq!(error, Error::AuthorizationRequired),
            other => panic!("{other:?}"),
        }
        assert!(h.take_pending().is_empty(), "no request without the user");
        h.advance(Duration::from_secs(3600));
        h.mgr.handle_timeout(h.now);
        h.drain();
    }
}
