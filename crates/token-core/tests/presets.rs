//! Each preset's request, checked against its provider document in `../shared/seeds/`.

use std::collections::BTreeMap;

use base64::Engine as _;
use http::Method;
use token_core::{
    BodyEncoding, ClientAuth, ClientConfig, ClientSecret, ConfigError, Credentials, Grant,
    Provider, RefreshToken, presets,
};

fn creds() -> Credentials {
    Credentials::new("YOUR_CLIENT_ID", ClientSecret::new("YOUR_CLIENT_SECRET"))
}

fn json_body(req: &http::Request<Vec<u8>>) -> BTreeMap<String, String> {
    assert_eq!(req.headers()["content-type"], "application/json");
    serde_json::from_slice(req.body()).expect("JSON object of strings")
}

fn form_body(req: &http::Request<Vec<u8>>) -> Vec<(String, String)> {
    assert_eq!(
        req.headers()["content-type"],
        "application/x-www-form-urlencoded"
    );
    form_urlencoded::parse(req.body()).into_owned().collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// 000_…md / 004_…txt: POST JSON `grant_type`, `client_id`, `client_secret`, `audience`.
#[test]
fn bookable_all_three_endpoints() {
    for (builder, url, provider) in [
        (
            presets::bookable(creds()),
            "https://auth.bookabletech.com/oauth/token",
            Provider::Bookable,
        ),
        (
            presets::bookable_sandbox(creds()),
            "https://auth-sandbox.bookabletech.com/oauth/token",
            Provider::BookableSandbox,
        ),
        (
            presets::bookable_auth0(creds()),
            "https://bookabletech.uk.auth0.com/oauth/token",
            Provider::BookableAuth0,
        ),
    ] {
        let config = builder.build().unwrap();
        assert_eq!(config.provider(), provider);
        let req = config.token_request(Grant::ClientCredentials);
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri().to_string(), url);
        assert_eq!(req.headers()["accept"], "application/json");
        assert!(req.headers().get("authorization").is_none());
        assert_eq!(
            json_body(&req),
            map(&[
                ("grant_type", "client_credentials"),
                ("client_id", "YOUR_CLIENT_ID"),
                ("client_secret", "YOUR_CLIENT_SECRET"),
                ("audience", "api.bookabletech.com"),
            ])
        );
    }
}

/// 001_…txt, first leg: client credentials (App API with secret) → refresh token.
#[test]
fn bookingtime_app_first_leg() {
    let config = presets::bookingtime_app(creds()).build().unwrap();
    let req = config.token_request(Grant::ClientCredentials);
    assert_eq!(req.method(), Method::POST);
    assert_eq!(
        req.uri().to_string(),
        "https://auth.bookingtime.com/oauth/token"
    );
    assert_eq!(
        json_body(&req),
        map(&[
            ("grant_type", "client_credentials"),
            ("client_id", "YOUR_CLIENT_ID"),
            ("client_secret", "YOUR_CLIENT_SECRET"),
        ])
    );
}

/// 001_…txt, Module API: "the client secret must be omitted or empty".
#[test]
fn bookingtime_module_omits_the_secret() {
    let config = presets::bookingtime_module("23-module-id").build().unwrap();
    assert_eq!(config.provider(), Provider::BookingtimeModule);
    let req = config.token_request(Grant::ClientCredentials);
    assert_eq!(
        json_body(&req),
        map(&[
            ("grant_type", "client_credentials"),
            ("client_id", "23-module-id"),
        ])
    );
    // An empty secret is treated the same as none.
    let config = presets::bookingtime_app(Credentials::new("x", ClientSecret::new("")))
        .build()
        .unwrap();
    let body = json_body(&config.token_request(Grant::ClientCredentials));
    assert!(!body.contains_key("client_secret"));
}

/// 001_…txt, second leg: refresh token + organization id → organization access token.
#[test]
fn bookingtime_second_leg() {
    let config = presets::bookingtime_app(creds()).build().unwrap();
    let rt = RefreshToken::new("eyJ0eX.refresh");
    let req = config.token_request(Grant::RefreshToken {
        refresh_token: &rt,
        organization: Some("f6123456789101112131415aBCdeFgH"),
    });
    assert_eq!(req.method(), Method::POST);
    assert_eq!(
        json_body(&req),
        map(&[
            ("grant_type", "refresh_token"),
            ("client_id", "YOUR_CLIENT_ID"),
            ("client_secret", "YOUR_CLIENT_SECRET"),
            ("refresh_token", "eyJ0eX.refresh"),
            ("organization_id", "f6123456789101112131415aBCdeFgH"),
        ])
    );
    // The doc's other examples use form bodies; that reading is one setting away.
    let config = presets::bookingtime_module("70-id")
        .body_encoding(BodyEncoding::Form)
        .build()
        .unwrap();
    let req = config.token_request(Grant::RefreshToken {
        refresh_token: &rt,
        organization: Some("org"),
    });
    assert_eq!(
        form_body(&req),
        vec![
            ("grant_type".into(), "refresh_token".into()),
            ("client_id".into(), "70-id".into()),
            ("refresh_token".into(), "eyJ0eX.refresh".into()),
            ("organization_id".into(), "org".into()),
        ]
    );
}

/// 002_…txt: JSON body with Content-Type and Accept application/json.
#[test]
fn octorate() {
    let config = presets::octorate(creds()).build().unwrap();
    let req = config.token_request(Grant::ClientCredentials);
    assert_eq!(
        req.uri().to_string(),
        "https://api.octorate.com/octotable-pms/api/v2/oauth2/token"
    );
    assert_eq!(req.headers()["accept"], "application/json");
    assert_eq!(
        json_body(&req),
        map(&[
            ("grant_type", "client_credentials"),
            ("client_id", "YOUR_CLIENT_ID"),
            ("client_secret", "YOUR_CLIENT_SECRET"),
        ])
    );
}

/// 003_…txt: form body with a required space-separated `scope`, at
/// `{site}/bookyflow/api/oauth/token`.
#[test]
fn bookyflow() {
    let config = presets::bookyflow("https://yourdomain.com/", creds(), ["read write"])
        .build()
        .unwrap();
    let req = config.token_request(Grant::ClientCredentials);
    assert_eq!(
        req.uri().to_string(),
        "https://yourdomain.com/bookyflow/api/oauth/token"
    );
    assert_eq!(
        form_body(&req),
        vec![
            ("grant_type".into(), "client_credentials".into()),
            ("client_id".into(), "YOUR_CLIENT_ID".into()),
            ("client_secret".into(), "YOUR_CLIENT_SECRET".into()),
            ("scope".into(), "read write".into()),
        ]
    );
    let err = presets::bookyflow("https://yourdomain.com", creds(), Vec::<String>::new())
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::Missing(_)), "{err}");
    // "Always HTTPS".
    let err = presets::bookyflow("http://yourdomain.com", creds(), ["read"])
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::InsecureUrl { .. }), "{err}");
}

/// CMF requests carry `X-BOOKYFLOW-channel-name`; every API request carries the bearer token.
#[test]
fn api_request_decoration() {
    let config = presets::bookyflow("https://yourdomain.com", creds(), ["read"])
        .bookyflow_channel("my-channel")
        .build()
        .unwrap();
    let mut req = http::Request::get("https://yourdomain.com/bookyflow/api/properties")
        .body(())
        .unwrap();
    config
        .authorize(&mut req, &token_core::AccessToken::new("tok123"))
        .unwrap();
    assert_eq!(req.headers()["authorization"], "Bearer tok123");
    assert!(req.headers()["authorization"].is_sensitive());
    assert_eq!(req.headers()["x-bookyflow-channel-name"], "my-channel");
    let err = config
        .authorize(&mut req, &token_core::AccessToken::new("bad\ntoken"))
        .unwrap_err();
    assert!(!err.to_string().contains("bad"));
}

/// RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64.
#[test]
fn generic_basic_auth_encodes_before_base64() {
    let config = presets::generic(
        "https://idp.example/token",
        Credentials::new("id:with space", ClientSecret::new("p@ss:wörd+")),
    )
    .scopes(["b a", "c"])
    .audience("aud")
    .param("resource", "https://api.example")
    .header("X-Tenant", "t1")
    .build()
    .unwrap();
    assert_eq!(config.client_auth(), ClientAuth::BasicAuth);
    let req = config.token_request(Grant::ClientCredentials);
    let auth = req.headers()["authorization"].to_str().unwrap();
    assert!(req.headers()["authorization"].is_sensitive());
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.strip_prefix("Basic ").unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        "id%3Awith+space:p%40ss%3Aw%C3%B6rd%2B"
    );
    assert_eq!(req.headers()["x-tenant"], "t1");
    assert_eq!(
        form_body(&req),
        vec![
            ("grant_type".into(), "client_credentials".into()),
            ("audience".into(), "aud".into()),
            ("scope".into(), "a b c".into()),
            ("resource".into(), "https://api.example".into()),
        ]
    );
    // client_secret_post and JSON are one setting each.
    let config = presets::generic("https://idp.example/token", creds())
        .client_auth(ClientAuth::RequestBody)
        .body_encoding(BodyEncoding::Json)
        .build()
        .unwrap();
    let req = config.token_request(Grant::ClientCredentials);
    assert!(req.headers().get("authorization").is_none());
    assert_eq!(json_body(&req)["client_secret"], "YOUR_CLIENT_SECRET");
}

#[test]
fn every_endpoint_can_be_overridden_and_http_needs_loopback_or_opt_in() {
    let local = "http://127.0.0.1:9/oauth/token";
    for builder in [
        presets::bookable(creds()),
        presets::bookable_sandbox(creds()),
        presets::bookable_auth0(creds()),
        presets::bookingtime_app(creds()),
        presets::bookingtime_module("m"),
        presets::octorate(creds()),
        presets::bookyflow("https://x.example", creds(), ["read"]),
        presets::generic("https://x.example/t", creds()),
    ] {
        let config = builder.clone().token_url(local).build().unwrap();
        assert_eq!(config.token_url().to_string(), local);
        let remote = builder.clone().token_url("http://proxy.internal/token");
        assert!(matches!(
            remote.clone().build(),
            Err(ConfigError::InsecureUrl { .. })
        ));
        assert!(remote.allow_insecure_http(true).build().is_ok());
    }
}

#[test]
fn the_secret_is_not_in_debug_output() {
    let config: ClientConfig = presets::bookable(creds()).build().unwrap();
    let req = config.token_request(Grant::ClientCredentials);
    assert!(!format!("{config:?}").contains("YOUR_CLIENT_SECRET"));
    // http's own Debug for headers hides sensitive values; our body never goes to Debug.
    let generic = presets::generic("https://x.example/t", creds())
        .build()
        .unwrap();
    let basic = generic.token_request(Grant::ClientCredentials);
    assert!(!format!("{:?}", basic.headers()).contains("WU9VUl9DTElFTlRfSUQ"));
    drop(req);
}

#[test]
fn has_organizations_matches_each_preset_flow() {
    for builder in [
        presets::bookable(creds()),
        presets::bookable_sandbox(creds()),
        presets::bookable_auth0(creds()),
        presets::bookingtime_app(creds()),
        presets::bookingtime_module("m"),
        presets::octorate(creds()),
        presets::bookyflow("https://x.example", creds(), ["read"]),
        presets::generic("https://x.example/t", creds()),
    ] {
        let config = builder.build().unwrap();
        assert_eq!(
            config.provider().has_organizations(),
            matches!(config.flow(), token_core::Flow::OrganizationExchange { .. }),
            "{:?}",
            config.provider()
        );
    }
}
