//! The Authorization Code flow with PKCE: the authorization endpoints (client and
//! redirect-URI checks, state, iss, PKCE parameters, denial), the `authorization_code`
//! grant (S256 verification, single use, binding to client and redirect URI, expiry), and
//! users' refresh tokens (Generic, with optional rotation; bookingtime's two legs).

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use provider_sim::{
    CLIENT_ID, CLIENT_SECRET, DEFAULT_REFRESH_TOKEN_LIFETIME, ORGANIZATIONS, PUBLIC_CLIENT_ID,
    Provider, Simulator, TEST_USER, s256_challenge,
};
use serde_json::json;

const GENERIC: Provider = Provider::Generic;
const BOOKINGTIME: Provider = Provider::Bookingtime;

/// Exchanges `code` at Generic's token endpoint with the given client parameters.
fn exchange(
    sim: &Simulator,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
    client: &[(&str, &str)],
) -> Resp {
    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ];
    pairs.extend_from_slice(client);
    post_form(sim, &sim.token_url(GENERIC), &pairs)
}

fn public_exchange(sim: &Simulator, code: &str) -> Resp {
    exchange(
        sim,
        code,
        LOOPBACK_CALLBACK,
        RFC7636_VERIFIER,
        &[("client_id", PUBLIC_CLIENT_ID)],
    )
}

fn generic_refresh(sim: &Simulator, refresh: &str, extra: &[(&str, &str)]) -> Resp {
    let mut pairs = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_id", PUBLIC_CLIENT_ID),
    ];
    pairs.extend_from_slice(extra);
    post_form(sim, &sim.token_url(GENERIC), &pairs)
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

#[test]
fn the_s256_helper_matches_rfc7636_appendix_b() {
    assert_eq!(s256_challenge(RFC7636_VERIFIER), RFC7636_CHALLENGE);
}

#[test]
fn only_generic_and_bookingtime_have_an_authorization_endpoint() {
    let sim = Simulator::start().unwrap();
    for p in Provider::ALL {
        let url = sim.authorize_url(p);
        match p {
            Provider::Generic => assert_eq!(
                url.as_deref(),
                Some(format!("{}/generic/authorize", sim.base_url()).as_str())
            ),
            Provider::Bookingtime => assert_eq!(
                url.as_deref(),
                Some(format!("{}/bookingtime/oauth/authorize", sim.base_url()).as_str())
            ),
            _ => assert_eq!(url, None, "{p}"),
        }
        assert_eq!(sim.issuer(p), format!("{}/{}", sim.base_url(), p.name()));
    }
    assert_eq!(get(&sim, "/bookable/oauth/authorize").status, 404);
}

#[test]
fn generic_public_client_full_flow() {
    let sim = Simulator::start().unwrap();
    let resp = authorize_ok(
        &sim,
        GENERIC,
        PUBLIC_CLIENT_ID,
        LOOPBACK_CALLBACK,
        &[("state", "xyz"), ("scope", "read write read")],
    );
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    let (base, pairs) = redirect_of(&resp);
    assert_eq!(base, LOOPBACK_CALLBACK);
    let names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["code", "state", "iss"]);
    assert_eq!(param(&pairs, "state"), Some("xyz"));
    assert_eq!(param(&pairs, "iss"), Some(sim.issuer(GENERIC).as_str()));
    let code = param(&pairs, "code").unwrap().to_owned();
    assert!(code.len() >= 32, "{code}");
    assert_eq!(sim.authorization_requests(GENERIC), 1);
    assert_eq!(sim.authorizations(GENERIC), 1);
    assert_eq!(sim.code_exchanges(GENERIC), 0);
    // The authorization endpoint is not the token endpoint.
    assert_eq!(sim.token_requests(GENERIC), 0);

    let resp = public_exchange(&sim, &code);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    let body = resp.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "read write");
    let access = body["access_token"].as_str().unwrap();
    let refresh = body["refresh_token"].as_str().unwrap();
    assert_ne!(access, refresh);
    let claims = claims(access);
    assert_eq!(claims["sub"], TEST_USER);
    assert_eq!(claims["client_id"], PUBLIC_CLIENT_ID);
    assert_eq!(sim.code_exchanges(GENERIC), 1);
    assert_eq!(sim.token_requests(GENERIC), 1);

    let api = get_with_token(&sim, &sim.api_url(GENERIC), access);
    assert_eq!(api.status, 200, "{}", api.text());
    assert_eq!(api.json()["user"], TEST_USER);
    assert_eq!(api.json()["client_id"], PUBLIC_CLIENT_ID);
    assert_eq!(api.json()["scope"], "read write");
    // A client-credentials token has no user.
    let own = api_token(&sim, GENERIC);
    let api = get_with_token(&sim, &sim.api_url(GENERIC), &own);
    assert!(api.json().get("user").is_none(), "{}", api.text());

    sim.reset_counters();
    assert_eq!(sim.authorization_requests(GENERIC), 0);
    assert_eq!(sim.authorizations(GENERIC), 0);
    assert_eq!(sim.code_exchanges(GENERIC), 0);
}

#[test]
fn generic_confidential_client_authenticates() {
    let sim = Simulator::start().unwrap();
    // HTTP Basic.
    let code = code_for(&sim, GENERIC, CLIENT_ID, LOOPBACK_CALLBACK);
    let url = sim.token_url(GENERIC);
    let pairs = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", LOOPBACK_CALLBACK),
        ("code_verifier", RFC7636_VERIFIER),
    ];
    let wrong = basic(CLIENT_ID, "not-the-secret");
    let resp = post_form_with(&sim, &url, &pairs, &[("Authorization", &wrong)]);
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error(), "invalid_client");
    assert!(resp.header("www-authenticate").is_some());
    // Client authentication failed before the code was looked at: it is still good.
    let right = basic(CLIENT_ID, CLIENT_SECRET);
    let resp = post_form_with(&sim, &url, &pairs, &[("Authorization", &right)]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(claims(&token_of(&resp))["client_id"], CLIENT_ID);

    // Body credentials; the confidential client without its secret is refused.
    let code = code_for(&sim, GENERIC, CLIENT_ID, LOOPBACK_CALLBACK);
    let resp = exchange(
        &sim,
        &code,
        LOOPBACK_CALLBACK,
        RFC7636_VERIFIER,
        &[("client_id", CLIENT_ID)],
    );
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error(), "invalid_client");
    let resp = exchange(
        &sim,
        &code,
        LOOPBACK_CALLBACK,
        RFC7636_VERIFIER,
        &[("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());

    // A public client has no secret to send, and no client at all is refused.
    let code = code_for(&sim, GENERIC, PUBLIC_CLIENT_ID, LOOPBACK_CALLBACK);
    let resp = exchange(
        &sim,
        &code,
        LOOPBACK_CALLBACK,
        RFC7636_VERIFIER,
        &[
            ("client_id", PUBLIC_CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ],
    );
    assert_eq!(resp.error(), "invalid_client");
    let resp = exchange(&sim, &code, LOOPBACK_CALLBACK, RFC7636_VERIFIER, &[]);
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error(), "invalid_client");
    // Public clients get no client-credentials token.
    let resp = post_form(
        &sim,
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", PUBLIC_CLIENT_ID),
        ],
    );
    assert_eq!(resp.error(), "invalid_client");
    assert_eq!(sim.code_exchanges(GENERIC), 2);
}

#[test]
fn state_is_echoed_verbatim_and_encoded() {
    let sim = Simulator::start().unwrap();
    let state = "a b&c=d+e/f?g#h%20i;j\u{fc}~'\"<>";
    let resp = authorize_ok(
        &sim,
        GENERIC,
        PUBLIC_CLIENT_ID,
        LOOPBACK_CALLBACK,
        &[("state", state)],
    );
    let location = resp.header("location").unwrap().to_owned();
    // Properly encoded: nothing of the state breaks the query apart.
    let query = location.split_once('?').unwrap().1;
    assert!(!query.contains('#'), "{location}");
    assert!(!query.contains(' '), "{location}");
    assert_eq!(query.matches('&').count(), 2, "{location}");
    let (_, pairs) = redirect_of(&resp);
    assert_eq!(param(&pairs, "state"), Some(state));
    // Errors echo it too.
    let resp = authorize(
        &sim,
        GENERIC,
        &[
            ("response_type", "code"),
            ("client_id", PUBLIC_CLIENT_ID),
            ("redirect_uri", LOOPBACK_CALLBACK),
            ("state", state),
        ],
    );
    let (_, pairs) = redirect_of(&resp);
    assert_eq!(param(&pairs, "error"), Some("invalid_request"));
    assert_eq!(param(&pairs, "state"), Some(state));
    // No state asked for, none given.
    let resp = authorize_ok(&sim, GENERIC, PUBLIC_CLIENT_ID, LOOPBACK_CALLBACK, &[]);
    let (_, pairs) = redirect_of(&resp);
    assert_eq!(param(&pairs, "state"), None);
    assert!(param(&pairs, "iss").is_some());
}

#[test]
fn redirect_uris_are_matched_exactly_except_the_loopback_port() {
    let sim = Simulator::start().unwrap();
    for ok in [
        "http://127.0.0.1/callback",
        "http://127.0.0.1:1/callback",
        "http://127.0.0.1:53124/callback",
        "http://127.0.0.1:65535/callback",
    ] {
        let resp = authorize_ok(&sim, GENERIC, PUBLIC_CLIENT_ID, ok, &[]);
        assert_eq!(redirect_of(&resp).0, ok);
    }
    for bad in [
        "http://127.0.0.1:53124/other",
        "http://127.0.0.1:53124/callback/",
        "http://127.0.0.1:53124/callback/x",
        "http://127.0.0.1:53124/CALLBACK",
        "http://127.0.0.1:53124/callback?extra=1",
        "http://127.0.0.1:53124/callback#frag",
        "http://127.0.0.1:99999/callback",
        "http://localhost:53124/callback",
        "https://127.0.0.1:53124/callback",
        "http://[::1]:53124/callback",
        "http://127.0.0.1.evil.example:53124/callback",
        "http://127.0.0.1@evil.example/callback",
        "http://evil.example/callback",
        "/callback",
    ] {
        let resp = authorize_ok(&sim, GENERIC, PUBLIC_CLIENT_ID, bad, &[("state", "s")]);
        assert_error_page(&resp);
    }

    // A registration replaces the default; on a non-loopback host the port counts too.
    sim.set_redirect_uris(GENERIC, CLIENT_ID, ["https://app.example:8443/cb"]);
    let resp = authorize_ok(&sim, GENERIC, CLIENT_ID, "https://app.example:8443/cb", &[]);
    assert_eq!(redirect_of(&resp).0, "https://app.example:8443/cb");
    for bad in [
        "https://app.example:9443/cb",
        "https://app.example/cb",
        "https://app.example:8443/cb2",
        "https://app.example:8443/other",
        "http://app.example:8443/cb",
        LOOPBACK_CALLBACK,
    ] {
        assert_error_page(&authorize_ok(&sim, GENERIC, CLIENT_ID, bad, &[]));
    }
    // Other clients and providers keep theirs.
    let resp = authorize_ok(&sim, GENERIC, PUBLIC_CLIENT_ID, LOOPBACK_CALLBACK, &[]);
    assert_eq!(resp.status, 302);
    let resp = authorize_ok(&sim, BOOKINGTIME, CLIENT_ID, LOOPBACK_CALLBACK, &[]);
    assert_eq!(resp.status, 302);

    // A registered query is kept; the response parameters are appended to it.
    sim.set_redirect_uris(
        GENERIC,
        PUBLIC_CLIENT_ID,
        ["http://127.0.0.1/cb?tenant=7", "http://[::1]/cb"],
    );
    let resp = authorize_ok(
        &sim,
        GENERIC,
        PUBLIC_CLIENT_ID,
        "http://127.0.0.1:4000/cb?tenant=7",
        &[],
    );
    let location = resp.header("location").unwrap();
    assert!(
        location.starts_with("http://127.0.0.1:4000/cb?tenant=7&code="),
        "{location}"
    );
    let resp = authorize_ok(&sim, GENERIC, PUBLIC_CLIENT_ID, "http://[::1]:9/cb", &[]);
    assert_eq!(resp.status, 302);
    assert_error_page(&authorize_ok(
        &sim,
        GENERIC,
        PUBLIC_CLIENT_ID,
        "http://127.0.0.1:4000/cb",
        &[],
    ));
    // No registration at all: nothing is accepted.
    sim.set_redirect_uris(GENERIC, PUBLIC_CLIENT_ID, Vec::<String>::new());
    assert_error_page(&authorize_ok(
        &sim,
        GENERIC,
        PUBLIC_CLIENT_ID,
        LOOPBACK_CALLBACK,
        &[],
    ));
}

#[test]
fn client_and_redirect_problems_are_shown_never_redirected() {
    let sim = Simulator::start().unwrap();
    let challenge = [
        ("response_type", "code"),
        ("code_challenge", RFC7636_CHALLENGE),
        ("code_challenge_method", "S256"),
        ("state", "s"),
    ];
    let with = |extra: &[(&str, &str)]| {
        let mut pairs = challenge.to_vec();
        pairs.extend_from_slice(extra);
        authorize(&sim, GENERIC, &pairs)
    };
    assert_error_page(&with(&[("redirect_uri", LOOPBACK_CALLBACK)]));
    assert_error_page(&with(&[
        ("client_id", "someone-else"),
        ("redirect_uri", LOOPBACK_CALLBACK),
    ]));
    assert_error_page(&with(&[("client_id", "")]));
    assert_error_page(&with(&[("client_id", PUBLIC_CLIENT_ID)]));
    assert_error_page(&with(&[
        ("client_id", PUBLIC_CLIENT_ID),
        ("redirect_uri", ""),
    ]));
    // Repeated parameters (RFC 6749 §3.1) and undecodable queries.
    let url = sim.authorize_url(GENERIC).unwrap();
    let resp = get(
        &sim,
        &format!(
            "{url}?client_id={PUBLIC_CLIENT_ID}&client_id={CLIENT_ID}&redirect_uri=http://127.0.0.1/callback"
        ),
    );
    assert_error_page(&resp);
    assert_error_page(&get(&sim, &format!("{url}?%ff%fe=%zz&&&=")));
    assert_error_page(&get(&sim, &url));
    // Only GET.
    let resp = request(&sim, "POST", &url, &[], b"").unwrap();
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET"));
    assert_eq!(sim.authorization_requests(GENERIC), 9);
    assert_eq!(sim.authorizations(GENERIC), 0);
}

#[test]
fn other_request_errors_are_redirected_with_state_and_iss() {
    let sim = Simulator::start().unwrap();
    let base = [
        ("client_id", PUBLIC_CLIENT_ID),
        ("redirect_uri", LOOPBACK_CALLBACK),
        ("state", "st"),
    ];
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("code_challenge", RFC7636_CHALLENGE),
                ("code_challenge_method", "S256"),
            ],
            "invalid_request",
        ),
        (
            &[
                ("response_type", "token"),
                ("code_challenge", RFC7636_CHALLENGE),
                ("code_challenge_method", "S256"),
            ],
            "unsupported_response_type",
        ),
        (
            &[("response_type", "code"), ("code_challenge_method", "S256")],
            "invalid_request",
        ),
        (
            &[
                ("response_type", "code"),
                ("code_challenge", RFC7636_CHALLENGE),
            ],
            "invalid_request",
        ),
        (
            &[
                ("response_type", "code"),
                ("code_challenge", RFC7636_VERIFIER),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
        ),
        (
            &[
                ("response_type", "code"),
                ("code_challenge", RFC7636_CHALLENGE),
                ("code_challenge_method", "s256"),
            ],
            "invalid_request",
        ),
        (
            &[
                ("response_type", "code"),
                ("code_challenge", "too-short"),
                ("code_challenge_method", "S256"),
            ],
            "invalid_request",
        ),
        (
            &[
                ("response_type", "code"),
                (
                    "code_challenge",
                    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM",
                ),
                ("code_challenge_method", "S256"),
            ],
            "invalid_request",
        ),
    ];
    for p in [GENERIC, BOOKINGTIME] {
        for (extra, expected) in cases {
            let mut pairs = base.to_vec();
            pairs.extend_from_slice(extra);
            let resp = authorize(&sim, p, &pairs);
            let (target, params) = redirect_of(&resp);
            assert_eq!(target, LOOPBACK_CALLBACK);
            assert_eq!(param(&params, "error"), Some(*expected), "{p} {extra:?}");
            assert!(param(&params, "error_description").is_some());
            assert_eq!(param(&params, "state"), Some("st"));
            assert_eq!(param(&params, "iss"), Some(sim.issuer(p).as_str()));
            assert_eq!(param(&params, "code"), None);
        }
        assert_eq!(sim.authorizations(p), 0);
    }
}

#[test]
fn a_denying_user_is_redirected_with_access_denied() {
    let sim = Simulator::start().unwrap();
    sim.set_user_denies(GENERIC, true);
    let resp = authorize_ok(
        &sim,
        GENERIC,
        PUBLIC_CLIENT_ID,
        LOOPBACK_CALLBACK,
        &[("state", "deny-me")],
    );
    let (target, params) = redirect_of(&resp);
    assert_eq!(target, LOOPBACK_CALLBACK);
    assert_eq!(param(&params, "error"), Some("access_denied"));
    assert_eq!(param(&params, "state"), Some("deny-me"));
    assert_eq!(param(&params, "iss"), Some(sim.issuer(GENERIC).as_str()));
    assert_eq!(param(&params, "code"), None);
    assert_eq!(sim.authorizations(GENERIC), 0);
    // Only that provider's user denies.
    let resp = authorize_ok(&sim, BOOKINGTIME, PUBLIC_CLIENT_ID, LOOPBACK_CALLBACK, &[]);
    assert!(param(&redirect_of(&resp).1, "code").is_some());
    // The redirect URI is still checked first.
    assert_error_page(&authorize_ok(
        &sim,
        GENERIC,
        PUBLIC_CLIENT_ID,
        "http://evil.example/cb",
        &[],
    ));
    sim.set_user_denies(GENERIC, false);
    let code = code_for(&sim, GENERIC, PUBLIC_CLIENT_ID, LOOPBACK_CALLBACK);
    assert_eq!(public_exchange(&sim, &code).status, 200);
}

#[test]
fn the_code_verifier_must_hash_to_the_challenge() {
    let sim = Simulator::start().unwrap();
    // A well-formed verifier that is not the one.
    let code = code_for(&sim, GENERIC, PUBLIC_CLIENT_ID, LOOPBACK_CALLBACK);
    let other = "a".repeat(43);
    let resp = exchange(
        &sim,
        &code,
        LOOPBACK_CALLBACK,
        &other,
        &[("client_id", PUBLIC_CLIENT_ID)],
    );
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_grant");
    // The code is spent by the failed attempt.
    assert_eq!(public_exchange(&sim, &code).error(), "invalid_grant");

    // Missing or malformed verifiers are malformed requests and spend nothing.
    let code = code_for(&sim, GENERIC, PUBLIC_CLIENT_ID, LOOPBACK_CALLBACK);
    let url = sim.token_url(GENERIC);
    let resp = post_form(
        &sim,
        &url,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", LOOPBACK_CALLBACK),
            ("client_id", PUBLIC_CLIENT_ID),
        ],
    );
    assert_eq!(resp.error(), "invalid_request");
    for malformed in [
        "short",
        &"a".repeat(129),
        "dBjftJeZ4CVP+mB92K27uhbUJU1p1r/wW1gFWFOEjXk",
    ] {
        let resp = exchange(
            &sim,
            &code,
            LOOPBACK_CALLBACK,
            malformed,
            &[("client_id", PUBLIC_CLIENT_ID)],
        );
        assert_eq!(resp.status, 400);
        assert_eq!(resp.error(), "invalid_request", "{malformed}");
    }
    assert_eq!(public_exchange(&sim, &code).status, 200);

    // A challenge that differs from the verifier's S256 (here: the RFC value with its tail
    // changed) is refused at the token endpoint.
    let resp = authorize(
        &sim,
        GENERIC,
        &[
            ("response_type", "code"),
            ("client_id", PUBLIC_CLIENT_ID),
            ("redirect_uri", LOOPBACK_CALLBACK),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCQaoWYSwBEQzCtGpWtZZUsU",
            ),
            ("code_challenge_method", "S256"),
        ],
    );
    let code = param(&redirect_of(&resp).1, "code").unwrap().to_owned();
    assert_eq!(public_exchange(&sim, &code).error(), "invalid_grant");

    // A verifier of the longest allowed length, with every allowed character class.
    let verifier = format!("{}-._~0Z", "x".repeat(122));
    assert_eq!(verifier.len(), 128);
    let challenge = s256_challenge(&verifier);
    let resp = authorize(
        &sim,
        GENERIC,
        &[
            ("response_type", "code"),
            ("client_id", PUBLIC_CLIENT_ID),
            ("redirect_uri", LOOPBACK_CALLBACK),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let code = param(&redirect_of(&resp).1, "code").unwrap().to_owned();
    let resp = exchange(
        &sim,
        &code,
        LOOPBACK_CALLBACK,
        &verifier,
        &[("client_id", PUBLIC_CLIENT_ID)],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(sim.code_exchanges(GENERIC), 2);
}

#[test]
fn codes_are_single_use_and_a_reuse_revokes_what_they_issued() {
    let sim = Simulator::start().unwrap();
    let code = code_for(&sim, GENERIC, PUBLIC_CLIENT_ID, LOOPBACK_CALLBACK);
    let resp = public_exchange(&sim, &code);
    assert_eq!(resp.status, 200);
    let access = resp.json()["access_token"].as_str().unwrap().to_owned();
    let refresh = resp.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        get_with_token(&sim, &sim.api_url(GENERIC), &access).status,
        200
    );
    let resp = public_exchange(&sim, &code);
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_grant");
    // RFC 6749 §4.1.2: the tokens issued from the code are revoked.
    assert_eq!(
        get_with_token(&sim, &sim.api_url(GENERIC), &access).status,
        401
    );
    assert_eq!(
        generic_refresh(&sim, &refresh, &[]).error(),
        "invalid_grant"
    );
    assert_eq!(sim.code_exchanges(GENERIC), 1);
    // Other grants are untouched.
    let code = code_for(&sim, GENERIC, PUBLIC_CLIENT_ID, LOOPBACK_CALLBACK);
    let resp = public_exchange(&sim, &code);
    let access = resp.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        get_with_token(&sim, &sim.api_url(GENERIC), &access).status,
        200
    );
}

#[test]
fn codes_are_bound_to_provider_client_and_redirect_uri() {
    let sim = Simulator::start().unwrap();
    // The redirect URI must be the very one of the authorization request, port included.
    let code = code_for(&sim, GENERIC, PUBLIC_CLIENT_ID, LOOPBACK_CALLBACK);
    let resp = exchange(
        &sim,
        &code,
        "http://127.0.0.1:53125/callback",
        RFC7636_VERIFIER,
        &[("client_id", PUBLIC_CLIENT_ID)],
    );
    assert_eq!(resp.error(), "invalid_grant");
    // Missing: a malformed request.
    let code = code_for(&sim, GENERIC, PUBLIC_CLIENT_ID, LOOPBACK_CALLBACK);
    let resp = post_form(
        &sim,
        &sim.token_url(GENERIC),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", RFC7636_VERIFIER),
            ("client_id", PUBLIC_CLIENT_ID),
        ],
    );
    assert_eq!(resp.error(), "invalid_request");
    // Another client.
    let resp = exchange(
        &sim,
        &code,
        LOOPBACK_CALLBACK,
        RFC7636_VERIFIER,
        &[("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)],
    );
    assert_eq!(resp.error(), "invalid_grant");
    // Another provider does not know it (and does not spend it).
    let code = code_for(&sim, GENERIC, PUBLIC_CLIENT_ID, LOOPBACK_CALLBACK);
    let resp = post_json(
        &sim,
        &sim.token_url(BOOKINGTIME),
        &json!({
            "grant_type": "authorization_code",
            "client_id": PUBLIC_CLIENT_ID,
            "code": code,
            "redirect_uri": LOOPBACK_CALLBACK,
            "code_verifier": RFC7636_VERIFIER,
        }),
    );
    assert_eq!(resp.error(), "invalid_grant");
    assert_eq!(public_exchange(&sim, &code).status, 200);
    // Codes never issued.
    assert_eq!(public_exchange(&sim, "not-a-code").error(), "invalid_grant");
    let resp = post_form(
        &sim,
        &sim.token_url(GENERIC),
        &[
            ("grant_type", "authorization_code"),
            ("redirect_uri", LOOPBACK_CALLBACK),
            ("code_verifier", RFC7636_VERIFIER),
            ("client_id", PUBLIC_CLIENT_ID),
        ],
    );
    assert_eq!(resp.error(), "invalid_request");
}

#[test]
fn expired_codes_are_invalid_grant() {
    let sim = Simulator::start().unwrap();
    sim.set_authorization_code_lifetime(GENERIC, 0);
    let code = code_for(&sim, GENERIC, PUBLIC_CLIENT_ID, LOOPBACK_CALLBACK);
    let resp = public_exchange(&sim, &code);
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_grant");
    assert!(resp.text().contains("expired"), "{}", resp.text());
    sim.set_authorization_code_lifetime(GENERIC, 60);
    let code = code_for(&sim, GENERIC, PUBLIC_CLIENT_ID, LOOPBACK_CALLBACK);
    assert_eq!(public_exchange(&sim, &code).status, 200);
}

/// A user's refresh token (and the first access token) at Generic, for `scope`.
fn user_tokens(sim: &Simulator, scope: &str) -> (String, String) {
    let resp = authorize_ok(
        sim,
        GENERIC,
        PUBLIC_CLIENT_ID,
        LOOPBACK_CALLBACK,
        &[("scope", scope)],
    );
    let code = param(&redirect_of(&resp).1, "code").unwrap().to_owned();
    let body = public_exchange(sim, &code).json();
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn generic_user_refresh_tokens() {
    let sim = Simulator::start().unwrap();
    let (first, refresh) = user_tokens(&sim, "read write");
    let resp = generic_refresh(&sim, &refresh, &[]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    let second = body["access_token"].as_str().unwrap();
    assert_ne!(second, first);
    assert_eq!(body["scope"], "read write");
    assert_eq!(body["expires_in"], 3600);
    // No rotation by default: no new refresh token, the old one keeps working.
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_eq!(claims(second)["sub"], TEST_USER);
    let api = get_with_token(&sim, &sim.api_url(GENERIC), second);
    assert_eq!(api.json()["user"], TEST_USER);
    // A narrower scope, never a wider one.
    let resp = generic_refresh(&sim, &refresh, &[("scope", "read")]);
    assert_eq!(resp.json()["scope"], "read");
    let resp = generic_refresh(&sim, &refresh, &[("scope", "read admin")]);
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_scope");
    // Bound to its client.
    let resp = post_form(
        &sim,
        &sim.token_url(GENERIC),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ],
    );
    assert_eq!(resp.error(), "invalid_grant");
    // Unknown, missing, or bookingtime's.
    assert_eq!(generic_refresh(&sim, "nope", &[]).error(), "invalid_grant");
    let resp = post_form(
        &sim,
        &sim.token_url(GENERIC),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", PUBLIC_CLIENT_ID),
        ],
    );
    assert_eq!(resp.error(), "invalid_request");
    let app_refresh = token_of(&good_token_request(&sim, BOOKINGTIME).unwrap());
    let resp = post_form(
        &sim,
        &sim.token_url(GENERIC),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &app_refresh),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ],
    );
    assert_eq!(resp.error(), "invalid_grant");
    assert_eq!(generic_refresh(&sim, &refresh, &[]).status, 200);
}

#[test]
fn user_refresh_tokens_can_be_revoked() {
    let sim = Simulator::start().unwrap();
    let (_, a) = user_tokens(&sim, "read");
    let (_, b) = user_tokens(&sim, "read");
    assert!(sim.revoke_refresh_token(&a));
    assert!(!sim.revoke_refresh_token("never-issued"));
    assert_eq!(generic_refresh(&sim, &a, &[]).error(), "invalid_grant");
    assert_eq!(generic_refresh(&sim, &b, &[]).status, 200);
    sim.revoke_user_refresh_tokens(GENERIC);
    let resp = generic_refresh(&sim, &b, &[]);
    assert_eq!(resp.error(), "invalid_grant");
    assert!(resp.text().contains("revoked"), "{}", resp.text());
    // Tokens issued afterwards are good.
    let (_, c) = user_tokens(&sim, "read");
    assert_eq!(generic_refresh(&sim, &c, &[]).status, 200);
    // Expired ones are refused too.
    sim.set_refresh_token_lifetime(0);
    let (_, d) = user_tokens(&sim, "read");
    let resp = generic_refresh(&sim, &d, &[]);
    assert_eq!(resp.error(), "invalid_grant");
    assert!(resp.text().contains("expired"), "{}", resp.text());
}

#[test]
fn generic_refresh_token_rotation() {
    let sim = Simulator::start().unwrap();
    sim.set_refresh_token_rotation(GENERIC, true);
    let (_, r1) = user_tokens(&sim, "read");
    let resp = generic_refresh(&sim, &r1, &[]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let r2 = resp.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r2, r1);
    assert_eq!(claims(&r2)["sub"], TEST_USER);
    let resp = generic_refresh(&sim, &r2, &[]);
    let r3 = resp.json()["refresh_token"].as_str().unwrap().to_owned();
    // The replaced token is refused, and presenting it revokes the chain (reuse detection).
    let resp = generic_refresh(&sim, &r1, &[]);
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_grant");
    assert_eq!(generic_refresh(&sim, &r3, &[]).error(), "invalid_grant");
    // Another chain is unaffected; turning rotation off stops issuing new ones.
    let (_, s1) = user_tokens(&sim, "read");
    sim.set_refresh_token_rotation(GENERIC, false);
    let resp = generic_refresh(&sim, &s1, &[]);
    assert!(resp.json().get("refresh_token").is_none());
    assert_eq!(generic_refresh(&sim, &s1, &[]).status, 200);
}

#[test]
fn concurrent_refreshes_with_one_rotating_token_have_one_winner() {
    let sim = Simulator::start().unwrap();
    sim.set_refresh_token_rotation(GENERIC, true);
    let (_, r1) = user_tokens(&sim, "read");
    // Both requests are in flight at once before either is processed.
    sim.hold_token_requests(GENERIC, 2);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| generic_refresh(&sim, &r1, &[]).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut sorted = statuses.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [200, 400], "{statuses:?}");
    assert_eq!(sim.max_concurrent_token_requests(GENERIC), 2);
}

#[test]
fn bookingtime_user_flow_yields_a_refresh_token_then_organization_tokens() {
    let sim = Simulator::start().unwrap();
    let resp = authorize_ok(
        &sim,
        BOOKINGTIME,
        PUBLIC_CLIENT_ID,
        LOOPBACK_CALLBACK,
        &[("state", "bt")],
    );
    let (_, params) = redirect_of(&resp);
    assert_eq!(
        param(&params, "iss"),
        Some(sim.issuer(BOOKINGTIME).as_str())
    );
    assert_eq!(param(&params, "state"), Some("bt"));
    let code = param(&params, "code").unwrap().to_owned();
    let url = sim.token_url(BOOKINGTIME);
    let resp = post_json(
        &sim,
        &url,
        &json!({
            "grant_type": "authorization_code",
            "client_id": PUBLIC_CLIENT_ID,
            "code": code,
            "redirect_uri": LOOPBACK_CALLBACK,
            "code_verifier": RFC7636_VERIFIER,
        }),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    // Like the client-credentials leg: only a 30-day refresh token.
    assert!(body.get("access_token").is_none(), "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], DEFAULT_REFRESH_TOKEN_LIFETIME);
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&refresh)["sub"], TEST_USER);
    assert_eq!(sim.code_exchanges(BOOKINGTIME), 1);

    // Leg 2, exactly as for the app's refresh token (the docs' form body).
    let resp = post_form(
        &sim,
        &url,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", PUBLIC_CLIENT_ID),
            ("refresh_token", &refresh),
            ("organization_id", ORGANIZATIONS[1]),
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["expires_in"], 300);
    assert!(body.get("refresh_token").is_none());
    let access = body["access_token"].as_str().unwrap();
    let claims = claims(access);
    assert_eq!(claims["sub"], TEST_USER);
    assert_eq!(claims["org"], ORGANIZATIONS[1]);
    let api = get_with_token(&sim, &sim.org_api_url(ORGANIZATIONS[1]), access);
    assert_eq!(api.status, 200, "{}", api.text());
    assert_eq!(sim.api_calls(BOOKINGTIME), 1);
    // The code is spent.
    let resp = post_json(
        &sim,
        &url,
        &json!({
            "grant_type": "authorization_code",
            "client_id": PUBLIC_CLIENT_ID,
            "code": code,
            "redirect_uri": LOOPBACK_CALLBACK,
            "code_verifier": RFC7636_VERIFIER,
        }),
    );
    assert_eq!(resp.error(), "invalid_grant");
}

#[test]
fn bookingtime_confidential_client_and_errors() {
    let sim = Simulator::start().unwrap();
    let url = sim.token_url(BOOKINGTIME);
    let code = code_for(&sim, BOOKINGTIME, CLIENT_ID, LOOPBACK_CALLBACK);
    let pairs = |secret: &'static str, verifier: &'static str| {
        vec![
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("client_secret", secret),
            ("code", code.as_str()),
            ("redirect_uri", LOOPBACK_CALLBACK),
            ("code_verifier", verifier),
        ]
    };
    let resp = post_form(&sim, &url, &pairs("wrong", RFC7636_VERIFIER));
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error(), "invalid_client");
    let resp = post_form(&sim, &url, &pairs("", RFC7636_VERIFIER));
    assert_eq!(resp.error(), "invalid_client");
    let resp = post_form(&sim, &url, &pairs(CLIENT_SECRET, "short"));
    assert_eq!(resp.error(), "invalid_request");
    let resp = post_form(&sim, &url, &pairs(CLIENT_SECRET, RFC7636_VERIFIER));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let user_refresh = resp.json()["refresh_token"].as_str().unwrap().to_owned();

    // Revoking users' refresh tokens leaves the app's alone; revoking bookingtime's
    // refresh tokens takes both.
    let app_refresh = token_of(&good_token_request(&sim, BOOKINGTIME).unwrap());
    let leg2 = |refresh: &str| {
        post_form(
            &sim,
            &url,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("refresh_token", refresh),
                ("organization_id", ORGANIZATIONS[0]),
            ],
        )
    };
    assert_eq!(leg2(&user_refresh).status, 200);
    sim.revoke_user_refresh_tokens(BOOKINGTIME);
    assert_eq!(leg2(&user_refresh).error(), "invalid_grant");
    assert_eq!(leg2(&app_refresh).status, 200);
    let code = code_for(&sim, BOOKINGTIME, CLIENT_ID, LOOPBACK_CALLBACK);
    let resp = post_form(
        &sim,
        &url,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("code", code.as_str()),
            ("redirect_uri", LOOPBACK_CALLBACK),
            ("code_verifier", RFC7636_VERIFIER),
        ],
    );
    let user_refresh = resp.json()["refresh_token"].as_str().unwrap().to_owned();
    sim.revoke_refresh_tokens();
    assert_eq!(leg2(&user_refresh).error(), "invalid_grant");
    assert_eq!(leg2(&app_refresh).error(), "invalid_grant");
    // A Generic user's refresh token means nothing to bookingtime.
    let (_, generic_refresh) = user_tokens(&sim, "read");
    let resp = post_form(
        &sim,
        &url,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", PUBLIC_CLIENT_ID),
            ("refresh_token", &generic_refresh),
            ("organization_id", ORGANIZATIONS[0]),
        ],
    );
    assert_eq!(resp.error(), "invalid_grant");
}

#[test]
fn bookingtime_refresh_token_rotation() {
    let sim = Simulator::start().unwrap();
    sim.set_refresh_token_rotation(BOOKINGTIME, true);
    let url = sim.token_url(BOOKINGTIME);
    let r1 = token_of(&good_token_request(&sim, BOOKINGTIME).unwrap());
    let leg2 = |refresh: &str| {
        post_form(
            &sim,
            &url,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", CLIENT_ID),
                ("refresh_token", refresh),
                ("organization_id", ORGANIZATIONS[0]),
            ],
        )
    };
    let resp = leg2(&r1);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    assert!(body["access_token"].is_string());
    let r2 = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    assert_eq!(leg2(&r1).error(), "invalid_grant");
    // Reuse detected: the chain is revoked.
    assert_eq!(leg2(&r2).error(), "invalid_grant");
    // A request that fails its checks does not use the token up.
    let r = token_of(&good_token_request(&sim, BOOKINGTIME).unwrap());
    let resp = post_form(
        &sim,
        &url,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("refresh_token", &r),
            ("organization_id", "org-unknown"),
        ],
    );
    assert_eq!(resp.error(), "invalid_request");
    assert_eq!(leg2(&r).status, 200);
}

#[test]
fn bad_input_never_breaks_the_endpoints() {
    let sim = Simulator::start().unwrap();
    let url = sim.authorize_url(GENERIC).unwrap();
    let long = "x".repeat(20_000);
    for query in [
        "%".to_owned(),
        "state=%E2%82".to_owned(),
        format!("client_id={PUBLIC_CLIENT_ID}&redirect_uri={long}"),
        format!(
            "client_id={PUBLIC_CLIENT_ID}&redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fcallback&state={long}"
        ),
        format!("client_id={PUBLIC_CLIENT_ID}&redirect_uri=http://127.0.0.1:1/callback%00"),
    ] {
        let resp = get(&sim, &format!("{url}?{query}"));
        assert!(
            resp.status == 302 || resp.status == 400,
            "{query}: {}",
            resp.status
        );
        if resp.status == 400 {
            resp.error();
        }
    }
    let token = sim.token_url(GENERIC);
    for body in [
        &b"grant_type=authorization_code&code=%ff&redirect_uri=%00&code_verifier=%"[..],
        b"grant_type=refresh_token&refresh_token=&client_id=",
        b"\xff\xfe\x00",
    ] {
        let resp = request(
            &sim,
            "POST",
            &token,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body,
        )
        .unwrap();
        assert!((400..500).contains(&resp.status), "{}", resp.status);
        resp.error();
    }
    // Still serving.
    let code = code_for(&sim, GENERIC, PUBLIC_CLIENT_ID, LOOPBACK_CALLBACK);
    assert_eq!(public_exchange(&sim, &code).status, 200);
}
