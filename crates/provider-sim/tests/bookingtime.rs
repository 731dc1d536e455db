//! bookingtime: refresh token first, then organization-specific access tokens.

mod common;

use common::*;
use provider_sim::{
    CLIENT_ID, CLIENT_SECRET, MODULE_CLIENT_ID, ORGANIZATIONS, Provider, Simulator,
};
use serde_json::{Value, json};

const BT: Provider = Provider::Bookingtime;

fn leg1_json(sim: &Simulator, body: &Value) -> Resp {
    post_json(sim, &sim.token_url(BT), body)
}

fn app_refresh_token(sim: &Simulator) -> String {
    let resp = leg1_json(
        sim,
        &json!({"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()["refresh_token"].as_str().unwrap().to_owned()
}

fn leg2(sim: &Simulator, client_id: &str, refresh: &str, org: &str) -> Resp {
    post_form(
        sim,
        &sim.token_url(BT),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh),
            ("organization_id", org),
        ],
    )
}

#[test]
fn two_legs_then_the_organization_route() {
    let sim = Simulator::start().unwrap();
    let resp = leg1_json(
        &sim,
        &json!({"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 2_592_000);
    assert!(
        body.get("access_token").is_none(),
        "leg 1 gives no access token: {body}"
    );
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&refresh)["sub"], CLIENT_ID);

    let resp = leg2(&sim, CLIENT_ID, &refresh, "org-beta");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&access)["org"], "org-beta");

    let resp = get_with_token(&sim, &sim.org_api_url("org-beta"), &access);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["messageList"], json!([]));
    assert_eq!(body["content"]["class"], "ORGANIZATION");
    assert_eq!(body["content"]["id"], "org-beta");
    assert!(body["content"]["name"].is_string());

    // The refresh token can be exchanged again, for other organizations too.
    let again = leg2(&sim, CLIENT_ID, &refresh, "org-alpha");
    assert_eq!(again.status, 200);
    let alpha = token_of(&again);
    assert_eq!(get_with_token(&sim, &sim.api_url(BT), &alpha).status, 200);

    assert_eq!(sim.token_requests(BT), 3);
    assert_eq!(sim.api_calls(BT), 2);
}

#[test]
fn api_url_is_the_first_organization() {
    let sim = Simulator::start().unwrap();
    assert_eq!(sim.api_url(BT), sim.org_api_url(ORGANIZATIONS[0]));
    assert_eq!(
        sim.org_api_url("org-gamma"),
        format!(
            "{}/bookingtime/app/v3/de/organization/org-gamma/show",
            sim.base_url()
        )
    );
}

#[test]
fn access_token_only_opens_its_own_organization() {
    let sim = Simulator::start().unwrap();
    let refresh = app_refresh_token(&sim);
    let alpha = token_of(&leg2(&sim, CLIENT_ID, &refresh, "org-alpha"));
    let resp = get_with_token(&sim, &sim.org_api_url("org-beta"), &alpha);
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error(), "unauthorized");
    let resp = get_with_token(&sim, &sim.org_api_url("org-unknown"), &alpha);
    assert_eq!(resp.status, 401);
    // The refresh token itself is not an access token.
    let resp = get_with_token(&sim, &sim.org_api_url("org-alpha"), &refresh);
    assert_eq!(resp.status, 401);
    assert_eq!(sim.api_rejections(BT), 3);
    assert_eq!(sim.api_calls(BT), 0);
}

#[test]
fn form_bodies_are_accepted_even_under_a_json_content_type() {
    // The docs send `-d grant_type=...` with `Content-Type: application/json`.
    let sim = Simulator::start().unwrap();
    let body = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ]);
    let resp = request(
        &sim,
        "POST",
        &sim.token_url(BT),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let refresh = resp.json()["refresh_token"].as_str().unwrap().to_owned();

    let body = form(&[
        ("grant_type", "refresh_token"),
        ("client_id", CLIENT_ID),
        ("refresh_token", &refresh),
        ("organization_id", "org-gamma"),
    ]);
    let resp = request(
        &sim,
        "POST",
        &sim.token_url(BT),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());

    // And a proper form content type.
    let resp = post_form(
        &sim,
        &sim.token_url(BT),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());

    // JSON for leg 2 as well.
    let resp = leg1_json(
        &sim,
        &json!({"grant_type": "refresh_token", "client_id": CLIENT_ID, "refresh_token": refresh, "organization_id": "org-alpha"}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
}

#[test]
fn module_client_has_no_secret() {
    let sim = Simulator::start().unwrap();
    // Secret absent.
    let resp = leg1_json(
        &sim,
        &json!({"grant_type": "client_credentials", "client_id": MODULE_CLIENT_ID}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let refresh = resp.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&refresh)["sub"], MODULE_CLIENT_ID);
    // Secret empty.
    let resp = post_form(
        &sim,
        &sim.token_url(BT),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", MODULE_CLIENT_ID),
            ("client_secret", ""),
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    // A non-empty secret is wrong for the module client.
    let resp = leg1_json(
        &sim,
        &json!({"grant_type": "client_credentials", "client_id": MODULE_CLIENT_ID, "client_secret": CLIENT_SECRET}),
    );
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error(), "invalid_client");

    // The module's refresh token works for the module client only.
    let access = leg2(&sim, MODULE_CLIENT_ID, &refresh, "org-alpha");
    assert_eq!(access.status, 200, "{}", access.text());
    assert_eq!(
        get_with_token(&sim, &sim.org_api_url("org-alpha"), &token_of(&access)).status,
        200
    );
    let resp = leg2(&sim, CLIENT_ID, &refresh, "org-alpha");
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_grant");
}

#[test]
fn app_client_needs_its_secret() {
    let sim = Simulator::start().unwrap();
    for body in [
        json!({"grant_type": "client_credentials", "client_id": CLIENT_ID}),
        json!({"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": ""}),
        json!({"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": "nope"}),
        json!({"grant_type": "client_credentials", "client_id": "stranger", "client_secret": CLIENT_SECRET}),
    ] {
        let resp = leg1_json(&sim, &body);
        assert_eq!(resp.status, 401, "{body}");
        assert_eq!(resp.error(), "invalid_client");
    }
    let resp = leg1_json(&sim, &json!({"grant_type": "client_credentials"}));
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");
    let resp = leg1_json(&sim, &json!({"client_id": CLIENT_ID}));
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");
    let resp = leg1_json(
        &sim,
        &json!({"grant_type": "password", "client_id": CLIENT_ID}),
    );
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "unsupported_grant_type");
}

#[test]
fn organization_is_checked() {
    let sim = Simulator::start().unwrap();
    let refresh = app_refresh_token(&sim);
    let resp = leg2(&sim, CLIENT_ID, &refresh, "org-delta");
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");
    assert_eq!(resp.json()["error_description"], "unknown organization");

    let resp = post_form(
        &sim,
        &sim.token_url(BT),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("refresh_token", &refresh),
        ],
    );
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_request");
    assert!(
        resp.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("organization_id")
    );
}

#[test]
fn bad_refresh_tokens_are_invalid_grant() {
    let sim = Simulator::start().unwrap();
    let resp = leg2(&sim, CLIENT_ID, "eyJ.unknown.token", "org-alpha");
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_grant");

    // Expired: a zero lifetime is served as given and already expired.
    sim.set_refresh_token_lifetime(0);
    let resp = leg1_json(
        &sim,
        &json!({"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
    );
    assert_eq!(resp.json()["expires_in"], 0);
    let expired = resp.json()["refresh_token"].as_str().unwrap().to_owned();
    let resp = leg2(&sim, CLIENT_ID, &expired, "org-alpha");
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_grant");

    sim.set_refresh_token_lifetime(3600);
    let resp = leg1_json(
        &sim,
        &json!({"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
    );
    assert_eq!(resp.json()["expires_in"], 3600);

    // The refresh token of one client is no good for another.
    let refresh = app_refresh_token(&sim);
    let resp = leg2(&sim, MODULE_CLIENT_ID, &refresh, "org-alpha");
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_grant");

    // A wrong secret in leg 2 is a client authentication failure.
    let resp = post_form(
        &sim,
        &sim.token_url(BT),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", "wrong"),
            ("refresh_token", &refresh),
            ("organization_id", "org-alpha"),
        ],
    );
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error(), "invalid_client");
}

#[test]
fn revoking_refresh_tokens() {
    let sim = Simulator::start().unwrap();
    let old = app_refresh_token(&sim);
    let access = token_of(&leg2(&sim, CLIENT_ID, &old, "org-alpha"));
    sim.revoke_refresh_tokens();
    let resp = leg2(&sim, CLIENT_ID, &old, "org-alpha");
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_grant");
    // Access tokens already issued are unaffected.
    assert_eq!(
        get_with_token(&sim, &sim.org_api_url("org-alpha"), &access).status,
        200
    );
    // New refresh tokens work.
    let new = app_refresh_token(&sim);
    assert_eq!(leg2(&sim, CLIENT_ID, &new, "org-alpha").status, 200);
}

#[test]
fn revoking_and_expiring_access_tokens() {
    let sim = Simulator::start().unwrap();
    let refresh = app_refresh_token(&sim);
    let access = token_of(&leg2(&sim, CLIENT_ID, &refresh, "org-alpha"));
    sim.revoke_tokens(BT);
    assert_eq!(
        get_with_token(&sim, &sim.org_api_url("org-alpha"), &access).status,
        401
    );
    // The refresh token still works and yields a fresh access token.
    let fresh = token_of(&leg2(&sim, CLIENT_ID, &refresh, "org-alpha"));
    assert_eq!(
        get_with_token(&sim, &sim.org_api_url("org-alpha"), &fresh).status,
        200
    );

    sim.set_token_lifetime(BT, -1);
    let resp = leg2(&sim, CLIENT_ID, &refresh, "org-alpha");
    assert_eq!(resp.json()["expires_in"], -1);
    assert_eq!(
        get_with_token(&sim, &sim.org_api_url("org-alpha"), &token_of(&resp)).status,
        401
    );
    assert_eq!(sim.api_calls(BT), 1);
    assert_eq!(sim.api_rejections(BT), 2);
}
