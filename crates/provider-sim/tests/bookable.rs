//! Bookable: JSON body with audience, three mounts, one protected route.

mod common;

use common::*;
use provider_sim::{BOOKABLE_SCOPE, CLIENT_ID, Provider, Simulator};
use serde_json::json;

const MOUNTS: [Provider; 3] = [
    Provider::Bookable,
    Provider::BookableSandbox,
    Provider::BookableAuth0,
];

#[test]
fn happy_path_on_every_mount() {
    let sim = Simulator::start().unwrap();
    for p in MOUNTS {
        let resp = post_json(&sim, &sim.token_url(p), &bookable_body());
        assert_eq!(resp.status, 200, "{p}: {}", resp.text());
        assert!(
            resp.header("content-type")
                .unwrap()
                .starts_with("application/json")
        );
        assert_eq!(resp.header("cache-control"), Some("no-store"));
        let body = resp.json();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["scope"], BOOKABLE_SCOPE);
        assert_eq!(body["expires_in"], 3600);
        let token = body["access_token"].as_str().unwrap();
        let claims = claims(token);
        assert_eq!(claims["iss"], "provider-sim");
        assert_eq!(claims["sub"], CLIENT_ID);
        assert_eq!(claims["aud"], "api.bookabletech.com");
        assert_eq!(claims["scope"], BOOKABLE_SCOPE);
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            3600
        );

        let api = get_with_token(&sim, &sim.api_url(p), token);
        assert_eq!(api.status, 200, "{p}: {}", api.text());
        let venues = api.json();
        assert!(venues.as_array().unwrap().len() >= 2, "{venues}");
        assert_eq!(sim.api_calls(p), 1, "{p}: counted under the issuing mount");
        assert_eq!(sim.token_requests(p), 1);
    }
    // All three mounts share one route.
    assert_eq!(
        sim.api_url(Provider::BookableSandbox),
        sim.api_url(Provider::Bookable)
    );
    assert_eq!(sim.total_token_requests(), 3);
}

#[test]
fn token_endpoint_urls() {
    let sim = Simulator::start().unwrap();
    let base = sim.base_url();
    assert!(base.starts_with("http://127.0.0.1:"));
    assert_eq!(
        sim.token_url(Provider::Bookable),
        format!("{base}/bookable/oauth/token")
    );
    assert_eq!(
        sim.token_url(Provider::BookableSandbox),
        format!("{base}/bookable-sandbox/oauth/token")
    );
    assert_eq!(
        sim.token_url(Provider::BookableAuth0),
        format!("{base}/bookable-auth0/oauth/token")
    );
    assert_eq!(
        sim.api_url(Provider::Bookable),
        format!("{base}/bookable/venues")
    );
}

#[test]
fn tokens_are_unique() {
    let sim = Simulator::start().unwrap();
    let a = token_of(&post_json(
        &sim,
        &sim.token_url(Provider::Bookable),
        &bookable_body(),
    ));
    let b = token_of(&post_json(
        &sim,
        &sim.token_url(Provider::Bookable),
        &bookable_body(),
    ));
    assert_ne!(a, b);
    assert_ne!(claims(&a)["jti"], claims(&b)["jti"]);
}

#[test]
fn wrong_content_type_is_invalid_request() {
    let sim = Simulator::start().unwrap();
    let url = sim.token_url(Provider::Bookable);
    let resp = request(
        &sim,
        "POST",
        &url,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        bookable_body().to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");
    assert!(
        resp.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("Content-Type")
    );

    // A form body with the right fields is still the wrong shape.
    let resp = post_form(
        &sim,
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", provider_sim::CLIENT_SECRET),
            ("audience", "api.bookabletech.com"),
        ],
    );
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");

    // No content type at all.
    let resp = request(
        &sim,
        "POST",
        &url,
        &[],
        bookable_body().to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");

    // JSON content type with parameters is fine.
    let resp = request(
        &sim,
        "POST",
        &url,
        &[("Content-Type", "application/json; charset=utf-8")],
        bookable_body().to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
}

#[test]
fn body_must_be_a_json_object() {
    let sim = Simulator::start().unwrap();
    let url = sim.token_url(Provider::Bookable);
    for body in [&b"not json"[..], b"[1,2]", b"", b"{\"grant_type\":"] {
        let resp = request(
            &sim,
            "POST",
            &url,
            &[("Content-Type", "application/json")],
            body,
        )
        .unwrap();
        assert_eq!(resp.status, 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(resp.error(), "invalid_request");
    }
    let mut body = bookable_body();
    body["client_id"] = json!(42);
    let resp = post_json(&sim, &url, &body);
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");
}

#[test]
fn audience_is_required_and_checked() {
    let sim = Simulator::start().unwrap();
    let url = sim.token_url(Provider::BookableSandbox);
    let mut missing = bookable_body();
    missing.as_object_mut().unwrap().remove("audience");
    let resp = post_json(&sim, &url, &missing);
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");
    assert_eq!(
        resp.json()["error_description"],
        "audience must be api.bookabletech.com"
    );

    let mut wrong = bookable_body();
    wrong["audience"] = json!("https://api.bookabletech.com");
    let resp = post_json(&sim, &url, &wrong);
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");
}

#[test]
fn missing_fields_and_wrong_grant_type() {
    let sim = Simulator::start().unwrap();
    let url = sim.token_url(Provider::Bookable);
    for field in ["grant_type", "client_id", "client_secret"] {
        let mut body = bookable_body();
        body.as_object_mut().unwrap().remove(field);
        let resp = post_json(&sim, &url, &body);
        assert_eq!(resp.status, 400, "without {field}");
        assert_eq!(resp.error(), "invalid_request", "without {field}");
        assert!(
            resp.json()["error_description"]
                .as_str()
                .unwrap()
                .contains(field)
        );
    }
    let mut body = bookable_body();
    body["grant_type"] = json!("password");
    let resp = post_json(&sim, &url, &body);
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "unsupported_grant_type");
}

#[test]
fn basic_auth_instead_of_body_credentials_is_rejected() {
    let sim = Simulator::start().unwrap();
    let body = json!({"grant_type": "client_credentials", "audience": "api.bookabletech.com"});
    let resp = request(
        &sim,
        "POST",
        &sim.token_url(Provider::Bookable),
        &[
            ("Content-Type", "application/json"),
            (
                "Authorization",
                "Basic c2ltLWNsaWVudDpzaW0tc2VjcmV0LTdmM2E5Yw==",
            ),
        ],
        body.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");
}

#[test]
fn wrong_credentials_are_invalid_client() {
    let sim = Simulator::start().unwrap();
    let url = sim.token_url(Provider::Bookable);
    for (field, value) in [("client_id", "someone-else"), ("client_secret", "wrong")] {
        let mut body = bookable_body();
        body[field] = json!(value);
        let resp = post_json(&sim, &url, &body);
        assert_eq!(resp.status, 401, "{field}");
        assert_eq!(resp.error(), "invalid_client");
        assert!(resp.header("www-authenticate").is_some());
    }
}

#[test]
fn protected_route_rejects_missing_unknown_and_foreign_tokens() {
    let sim = Simulator::start().unwrap();
    let url = sim.api_url(Provider::Bookable);
    let resp = request(&sim, "GET", &url, &[], b"").unwrap();
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error(), "unauthorized");
    assert!(
        resp.header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );

    let resp = get_with_token(&sim, &url, "not-a-token");
    assert_eq!(resp.status, 401);

    let octo = token_of(&post_json(
        &sim,
        &sim.token_url(Provider::Octorate),
        &octorate_body(),
    ));
    let resp = get_with_token(&sim, &url, &octo);
    assert_eq!(resp.status, 401);

    let resp = request(&sim, "GET", &url, &[("Authorization", "Basic abc")], b"").unwrap();
    assert_eq!(resp.status, 401);

    assert_eq!(sim.api_rejections(Provider::Bookable), 4);
    assert_eq!(sim.api_calls(Provider::Bookable), 0);
    assert_eq!(sim.api_rejections(Provider::Octorate), 0);
}

#[test]
fn bearer_scheme_is_case_insensitive() {
    let sim = Simulator::start().unwrap();
    let token = token_of(&post_json(
        &sim,
        &sim.token_url(Provider::Bookable),
        &bookable_body(),
    ));
    let auth = format!("bearer {token}");
    let resp = request(
        &sim,
        "GET",
        &sim.api_url(Provider::Bookable),
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(resp.status, 200);
}

#[test]
fn revoked_tokens_get_401_and_new_ones_work() {
    let sim = Simulator::start().unwrap();
    let url = sim.api_url(Provider::Bookable);
    let old = token_of(&post_json(
        &sim,
        &sim.token_url(Provider::BookableSandbox),
        &bookable_body(),
    ));
    let other = token_of(&post_json(
        &sim,
        &sim.token_url(Provider::Bookable),
        &bookable_body(),
    ));
    sim.revoke_tokens(Provider::BookableSandbox);
    assert_eq!(get_with_token(&sim, &url, &old).status, 401);
    assert_eq!(
        sim.api_rejections(Provider::BookableSandbox),
        1,
        "counted under the issuer"
    );
    // Another mount's tokens are untouched.
    assert_eq!(get_with_token(&sim, &url, &other).status, 200);
    let new = token_of(&post_json(
        &sim,
        &sim.token_url(Provider::BookableSandbox),
        &bookable_body(),
    ));
    assert_eq!(get_with_token(&sim, &url, &new).status, 200);
    assert_eq!(sim.api_calls(Provider::BookableSandbox), 1);
    assert_eq!(sim.api_calls(Provider::Bookable), 1);
}

#[test]
fn lifetimes_are_served_as_set_even_when_not_positive() {
    let sim = Simulator::start().unwrap();
    let url = sim.token_url(Provider::BookableAuth0);
    sim.set_token_lifetime(Provider::BookableAuth0, 120);
    let resp = post_json(&sim, &url, &bookable_body());
    assert_eq!(resp.json()["expires_in"], 120);

    for lifetime in [0, -30] {
        sim.set_token_lifetime(Provider::BookableAuth0, lifetime);
        let resp = post_json(&sim, &url, &bookable_body());
        assert_eq!(resp.json()["expires_in"], lifetime);
        let token = token_of(&resp);
        // Already expired on the server.
        let api = get_with_token(&sim, &sim.api_url(Provider::BookableAuth0), &token);
        assert_eq!(api.status, 401, "lifetime {lifetime}");
    }
    assert_eq!(sim.api_rejections(Provider::BookableAuth0), 2);
    // Other mounts keep their default.
    let resp = post_json(&sim, &sim.token_url(Provider::Bookable), &bookable_body());
    assert_eq!(resp.json()["expires_in"], 3600);
}

#[test]
fn recorded_request_shows_the_shape() {
    let sim = Simulator::start().unwrap();
    assert!(sim.last_token_request(Provider::Bookable).is_none());
    post_json(&sim, &sim.token_url(Provider::Bookable), &bookable_body());
    let rec = sim.last_token_request(Provider::Bookable).unwrap();
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.path, "/bookable/oauth/token");
    assert_eq!(rec.header("Content-Type"), Some("application/json"));
    assert_eq!(rec.json().unwrap(), bookable_body());
    assert!(
        rec.headers
            .iter()
            .all(|(n, _)| n == &n.to_ascii_lowercase())
    );
    assert!(sim.last_token_request(Provider::BookableSandbox).is_none());
}
