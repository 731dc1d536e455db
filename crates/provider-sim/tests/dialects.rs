//! Octorate, BookyFlow and the generic RFC 6749 server.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use provider_sim::{CLIENT_ID, CLIENT_SECRET, Provider, Simulator};
use serde_json::json;

fn basic(id: &str, secret: &str) -> String {
    // RFC 6749 §2.3.1: form-urlencode both parts, then join and base64.
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

// ---------------------------------------------------------------- Octorate

#[test]
fn octorate_happy_path() {
    let sim = Simulator::start().unwrap();
    assert_eq!(
        sim.token_url(Provider::Octorate),
        format!("{}/octorate/oauth2/token", sim.base_url())
    );
    let resp = post_json(&sim, &sim.token_url(Provider::Octorate), &octorate_body());
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["type"], "Bearer");
    assert!(
        body.get("token_type").is_none(),
        "Octorate says `type`: {body}"
    );
    assert_eq!(body["expires_in"], 1440);
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(claims(token)["sub"], CLIENT_ID);

    let resp = get_with_token(&sim, &sim.api_url(Provider::Octorate), token);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.json()["data"].is_array());
    assert_eq!(sim.api_calls(Provider::Octorate), 1);

    sim.revoke_tokens(Provider::Octorate);
    let resp = get_with_token(&sim, &sim.api_url(Provider::Octorate), token);
    assert_eq!(resp.status, 401);
    assert_eq!(sim.api_rejections(Provider::Octorate), 1);
}

#[test]
fn octorate_requires_json_and_accept() {
    let sim = Simulator::start().unwrap();
    let url = sim.token_url(Provider::Octorate);
    let body = octorate_body().to_string();

    let resp = request(
        &sim,
        "POST",
        &url,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");
    assert!(
        resp.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("Accept")
    );

    let resp = request(
        &sim,
        "POST",
        &url,
        &[("Content-Type", "application/json"), ("Accept", "*/*")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(resp.status, 400);

    let resp = request(
        &sim,
        "POST",
        &url,
        &[
            ("Content-Type", "application/json"),
            ("Accept", "text/html, application/json;q=0.9"),
        ],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());

    let resp = post_form_with(
        &sim,
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ],
        &[("Accept", "application/json")],
    );
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");

    for field in ["grant_type", "client_id", "client_secret"] {
        let mut body = octorate_body();
        body.as_object_mut().unwrap().remove(field);
        let resp = post_json(&sim, &url, &body);
        assert_eq!(resp.status, 400, "without {field}");
        assert_eq!(resp.error(), "invalid_request");
    }
    let mut body = octorate_body();
    body["client_secret"] = json!("wrong");
    let resp = post_json(&sim, &url, &body);
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error(), "invalid_client");
}

// ---------------------------------------------------------------- BookyFlow

#[test]
fn bookyflow_happy_path_with_channel_header() {
    let sim = Simulator::start().unwrap();
    assert_eq!(sim.bookyflow_site(), sim.base_url());
    assert_eq!(
        sim.token_url(Provider::BookyFlow),
        format!("{}/bookyflow/api/oauth/token", sim.bookyflow_site())
    );
    let resp = post_form(&sim, &sim.token_url(Provider::BookyFlow), BOOKYFLOW_FORM);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&token)["scope"], "read write");

    let resp = get_with_token(&sim, &sim.api_url(Provider::BookyFlow), &token);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.json()["properties"].is_array());
    assert!(resp.json()["channel"].is_null());

    let auth = format!("Bearer {token}");
    let resp = request(
        &sim,
        "GET",
        &sim.api_url(Provider::BookyFlow),
        &[
            ("Authorization", &auth),
            ("X-BOOKYFLOW-channel-name", "my-channel"),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["channel"], "my-channel");
    assert_eq!(sim.api_calls(Provider::BookyFlow), 2);
}

#[test]
fn bookyflow_scope_rules() {
    let sim = Simulator::start().unwrap();
    let url = sim.token_url(Provider::BookyFlow);
    let with_scope = |scope: Option<&str>| {
        let mut pairs = vec![
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ];
        if let Some(scope) = scope {
            pairs.push(("scope", scope));
        }
        post_form(&sim, &url, &pairs)
    };
    let resp = with_scope(None);
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");
    let resp = with_scope(Some(""));
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");
    let resp = with_scope(Some("read admin"));
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_scope");

    // Without `read` the token is good but insufficient for the properties route.
    let resp = with_scope(Some("write delete"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let api = get_with_token(&sim, &sim.api_url(Provider::BookyFlow), &token_of(&resp));
    assert_eq!(api.status, 403);
    assert_eq!(
        api.json(),
        json!({"error": "forbidden", "error_description": "Insufficient scope"})
    );
    assert_eq!(sim.api_rejections(Provider::BookyFlow), 1);
    assert_eq!(sim.api_calls(Provider::BookyFlow), 0);
}

#[test]
fn bookyflow_requires_a_form_body() {
    let sim = Simulator::start().unwrap();
    let url = sim.token_url(Provider::BookyFlow);
    let resp = post_json(
        &sim,
        &url,
        &json!({"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "scope": "read"}),
    );
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");
    // Repeated parameters are malformed (RFC 6749 §3.2).
    let mut pairs = BOOKYFLOW_FORM.to_vec();
    pairs.push(("scope", "read"));
    let resp = post_form(&sim, &url, &pairs);
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");
    let mut pairs = BOOKYFLOW_FORM.to_vec();
    pairs[2] = ("client_secret", "wrong");
    let resp = post_form(&sim, &url, &pairs);
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error(), "invalid_client");
}

#[test]
fn bookyflow_unauthorized_body_matches_the_docs() {
    let sim = Simulator::start().unwrap();
    let token = token_of(&post_form(
        &sim,
        &sim.token_url(Provider::BookyFlow),
        BOOKYFLOW_FORM,
    ));
    sim.revoke_tokens(Provider::BookyFlow);
    for t in [token.as_str(), "unknown"] {
        let resp = get_with_token(&sim, &sim.api_url(Provider::BookyFlow), t);
        assert_eq!(resp.status, 401);
        assert_eq!(
            resp.json(),
            json!({"error": "unauthorized", "error_description": "Invalid or expired token"})
        );
    }
    sim.set_token_lifetime(Provider::BookyFlow, 0);
    let expired = token_of(&post_form(
        &sim,
        &sim.token_url(Provider::BookyFlow),
        BOOKYFLOW_FORM,
    ));
    assert_eq!(
        get_with_token(&sim, &sim.api_url(Provider::BookyFlow), &expired).status,
        401
    );
    assert_eq!(sim.api_rejections(Provider::BookyFlow), 3);
}

// ---------------------------------------------------------------- Generic

#[test]
fn generic_with_body_credentials() {
    let sim = Simulator::start().unwrap();
    let resp = post_form(&sim, &sim.token_url(Provider::Generic), GENERIC_FORM);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body.get("scope").is_none());
    let token = body["access_token"].as_str().unwrap();
    let resp = get_with_token(&sim, &sim.api_url(Provider::Generic), token);
    assert_eq!(resp.status, 200);
    assert_eq!(sim.api_calls(Provider::Generic), 1);
    assert_eq!(
        get_with_token(&sim, &sim.api_url(Provider::Generic), "nope").status,
        401
    );
    assert_eq!(sim.api_rejections(Provider::Generic), 1);
}

#[test]
fn generic_with_basic_auth_scope_and_extras() {
    let sim = Simulator::start().unwrap();
    let auth = basic(CLIENT_ID, CLIENT_SECRET);
    let resp = post_form_with(
        &sim,
        &sim.token_url(Provider::Generic),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "read:things write:things"),
            ("audience", "https://example.invalid/api"),
            ("resource", "anything"),
        ],
        &[("Authorization", &auth)],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["scope"], "read:things write:things");
    let rec = sim.last_token_request(Provider::Generic).unwrap();
    assert_eq!(rec.header("authorization"), Some(auth.as_str()));
    assert!(!rec.body_text().contains(CLIENT_SECRET));
}

#[test]
fn generic_basic_credentials_are_form_decoded() {
    let sim = Simulator::start().unwrap();
    // `sim-client` encodes to itself; a `+` for a space or `%2D` for `-` must decode.
    let raw = format!(
        "Basic {}",
        STANDARD.encode("sim%2Dclient:sim-secret-7f3a9c")
    );
    let resp = post_form_with(
        &sim,
        &sim.token_url(Provider::Generic),
        &[("grant_type", "client_credentials")],
        &[("Authorization", &raw)],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());

    let resp = post_form_with(
        &sim,
        &sim.token_url(Provider::Generic),
        &[("grant_type", "client_credentials")],
        &[("Authorization", &basic(CLIENT_ID, "wrong secret"))],
    );
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error(), "invalid_client");
    assert!(
        resp.header("www-authenticate")
            .unwrap()
            .starts_with("Basic")
    );

    let resp = post_form_with(
        &sim,
        &sim.token_url(Provider::Generic),
        &[("grant_type", "client_credentials")],
        &[("Authorization", "Basic !!!not-base64")],
    );
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error(), "invalid_client");
}

#[test]
fn generic_basic_and_body_must_agree() {
    let sim = Simulator::start().unwrap();
    let url = sim.token_url(Provider::Generic);
    let auth = basic(CLIENT_ID, CLIENT_SECRET);
    // The same values in both places are tolerated.
    let resp = post_form_with(&sim, &url, GENERIC_FORM, &[("Authorization", &auth)]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    // Conflicting ones are not.
    let resp = post_form_with(
        &sim,
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", "other-secret"),
        ],
        &[("Authorization", &auth)],
    );
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");
    let resp = post_form_with(
        &sim,
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "other-client"),
        ],
        &[("Authorization", &auth)],
    );
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");
}

#[test]
fn generic_shape_errors() {
    let sim = Simulator::start().unwrap();
    let url = sim.token_url(Provider::Generic);
    // No client authentication at all.
    let resp = post_form(&sim, &url, &[("grant_type", "client_credentials")]);
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error(), "invalid_client");
    // Secret missing.
    let resp = post_form(
        &sim,
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
        ],
    );
    assert_eq!(resp.status, 401);
    // JSON body.
    let resp = post_json(&sim, &url, &octorate_body());
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");
    // Missing and unsupported grant types.
    let resp = post_form(
        &sim,
        &url,
        &[("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)],
    );
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");
    let resp = post_form(
        &sim,
        &url,
        &[
            ("grant_type", "password"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ],
    );
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "unsupported_grant_type");
    // authorization_code is supported (tests/authorization_code.rs): without a code it is
    // a malformed request.
    let resp = post_form(
        &sim,
        &url,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ],
    );
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");
}
