//! Each provider document's sample response, every parsing quirk, and property tests: valid
//! responses round-trip, arbitrary input never panics.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use proptest::prelude::*;
use token_core::{
    ClientSecret, Credentials, Error, ErrorCode, LifetimeSource, Malformed, RetryAfter, TokenType,
    parse_token_response, presets,
};

const SECRET: &str = "sup3r-s3cret-value";

fn config() -> token_core::ClientConfig {
    presets::generic(
        "https://idp.example/token",
        Credentials::new("id", ClientSecret::new(SECRET)),
    )
    .build()
    .unwrap()
}

fn response(status: u16, headers: &[(&str, &str)], body: &str) -> http::Response<Vec<u8>> {
    let mut b = http::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.as_bytes().to_vec()).unwrap()
}

fn parse(status: u16, body: &str) -> Result<token_core::TokenResponse, Error> {
    parse_token_response(&config(), &response(status, &[], body))
}

fn octorate_config() -> token_core::ClientConfig {
    presets::octorate(Credentials::new("id", ClientSecret::new(SECRET)))
        .build()
        .unwrap()
}

fn wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_747_649_700)
}

#[test]
fn bookable_sample() {
    // 000_…md "Response reference".
    let r = parse(
        200,
        r#"{
  "access_token": "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9...",
  "scope": "venue:read venue-booking:create",
  "expires_in": 3600,
  "token_type": "Bearer"
}"#,
    )
    .unwrap();
    assert_eq!(
        r.access_token().unwrap().secret(),
        "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9..."
    );
    assert_eq!(r.expires_in(), Some(Duration::from_secs(3600)));
    assert_eq!(r.token_type(), TokenType::Bearer);
    let scope = r.scope().unwrap();
    assert!(scope.contains("venue:read") && scope.contains("venue-booking:create"));
}

#[test]
fn bookable_auth0_sample_with_a_real_jwt() {
    // 004_…txt "Expected response" (the JWT's exp/iat are used only when expires_in is absent).
    let jwt = include_str!("data/bookable_auth0_jwt.txt").trim();
    let body = format!(
        r#"{{"access_token":"{jwt}","scope":"venue:read venue-booking:create","expires_in":3600,"token_type":"Bearer"}}"#
    );
    let r = parse(200, &body).unwrap();
    assert_eq!(
        r.lifetime(wall(), Duration::from_secs(1)),
        (Duration::from_secs(3600), LifetimeSource::ExpiresIn)
    );
    // Without expires_in: the JWT says exp - iat = 2592000 s, but only ~30 days minus what has
    // passed on the wall clock remain; the earlier end wins.
    let body = format!(r#"{{"access_token":"{jwt}","token_type":"Bearer"}}"#);
    let r = parse(200, &body).unwrap();
    let (lifetime, source) = r.lifetime(wall(), Duration::from_secs(1));
    assert_eq!(source, LifetimeSource::JwtExp);
    assert_eq!(lifetime, Duration::from_secs(1_750_241_616 - 1_747_649_700));
}

#[test]
fn bookingtime_samples() {
    // 001_…txt: first leg returns a refresh token and no access token.
    let r = parse(
        200,
        r#"{"refresh_token": "eyJhbGc...", "token_type": "Bearer", "expires_in": 2592000}"#,
    )
    .unwrap();
    assert!(r.access_token().is_none());
    assert_eq!(r.refresh_token().unwrap().secret(), "eyJhbGc...");
    assert_eq!(r.expires_in(), Some(Duration::from_secs(2_592_000)));
    // The template shows expires_in as a string.
    let r = parse(
        200,
        r#"{"access_token":"eyJhbGciOi.x.y","token_type":"Bearer","expires_in":"300"}"#,
    )
    .unwrap();
    assert_eq!(r.expires_in(), Some(Duration::from_secs(300)));
    // The template's literal placeholder is not a number: a typed error, not a guess.
    let err = parse(
        200,
        r#"{"access_token":"a","token_type":"Bearer","expires_in":"<time in s>"}"#,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        Error::Malformed {
            reason: Malformed::InvalidField {
                field: "expires_in",
                ..
            },
            ..
        }
    ));
}

#[test]
fn octorate_sample_uses_type() {
    // 002_…txt.
    let body = r#"{"access_token": "YOUR_ACCESS_TOKEN", "expires_in": 1440, "type": "Bearer"}"#;
    let r = parse_token_response(&octorate_config(), &response(200, &[], body)).unwrap();
    assert_eq!(r.token_type(), TokenType::Bearer);
    assert_eq!(r.expires_in(), Some(Duration::from_secs(1440)));
    assert!(
        r.extra().is_empty(),
        "`type` is understood, not an unknown field"
    );
}

#[test]
fn bookyflow_samples() {
    // 003_…txt success, 401 and 403.
    let r = parse(
        200,
        r#"{"access_token":"eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9...","token_type":"Bearer","expires_in":3600}"#,
    )
    .unwrap();
    assert_eq!(r.expires_in(), Some(Duration::from_secs(3600)));
    let err = parse(
        401,
        r#"{"error":"unauthorized","error_description":"Invalid or expired token"}"#,
    )
    .unwrap_err();
    assert!(err.is_credentials_rejected());
    assert!(!err.is_retryable());
    assert_eq!(
        err.oauth_code(),
        Some(&ErrorCode::Other("unauthorized".into()))
    );
    assert_eq!(
        err.to_string(),
        "token endpoint refused: HTTP 401: unauthorized: Invalid or expired token"
    );
    let err = parse(
        403,
        r#"{"error":"forbidden","error_description":"Insufficient scope"}"#,
    )
    .unwrap_err();
    assert!(err.is_credentials_rejected());
}

#[test]
fn rfc6749_error_codes() {
    for (code, expected) in [
        ("invalid_request", ErrorCode::InvalidRequest),
        ("invalid_client", ErrorCode::InvalidClient),
        ("invalid_grant", ErrorCode::InvalidGrant),
        ("unauthorized_client", ErrorCode::UnauthorizedClient),
        ("unsupported_grant_type", ErrorCode::UnsupportedGrantType),
        ("invalid_scope", ErrorCode::InvalidScope),
        ("server_error", ErrorCode::ServerError),
        ("temporarily_unavailable", ErrorCode::TemporarilyUnavailable),
        ("something_new", ErrorCode::Other("something_new".into())),
    ] {
        let body = format!(
            r#"{{"error":"{code}","error_description":"d","error_uri":"https://e.example/x"}}"#
        );
        let Error::OAuth(e) = parse(400, &body).unwrap_err() else {
            panic!("{code}")
        };
        assert_eq!(e.code, expected);
        assert_eq!(e.code.as_str(), code);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.description.as_deref(), Some("d"));
        assert_eq!(e.uri.as_deref(), Some("https://e.example/x"));
    }
}

#[test]
fn retry_after_is_parsed_on_errors() {
    let r = response(
        429,
        &[("retry-after", "30")],
        r#"{"error":"temporarily_unavailable"}"#,
    );
    let err = parse_token_response(&config(), &r).unwrap_err();
    assert_eq!(
        err.retry_after(),
        Some(RetryAfter::Delay(Duration::from_secs(30)))
    );
    assert!(err.is_retryable());
    let r = response(
        503,
        &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")],
        "<html>down</html>",
    );
    let err = parse_token_response(&config(), &r).unwrap_err();
    assert!(matches!(err.retry_after(), Some(RetryAfter::At(_))));
    assert!(matches!(&err, Error::Http(e) if e.excerpt == "down"));
}

#[test]
fn an_echoed_secret_never_reaches_an_error() {
    for (status, body) in [
        (
            400,
            format!(
                r#"{{"error":"invalid_client","error_description":"secret {SECRET} is wrong"}}"#
            ),
        ),
        (
            500,
            format!("<h1>Error</h1><pre>client_secret={SECRET}</pre>"),
        ),
        (
            200,
            format!(r#"{{"error":"x","error_uri":"https://e/?s={SECRET}"}}"#),
        ),
    ] {
        let err = parse(status, &body).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }
}

/// Issue "Lifecycle v2", finding 4: a 200 whose body is almost JSON became `Malformed` with the
/// first 120 characters of the body (the token) in the message.
#[test]
fn a_broken_success_body_is_never_quoted() {
    let token = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LWFjY2Vzcy10b2tlbg.sig";
    let refresh = "rt-thirty-day-refresh-token-value";
    for body in [
        format!(r#"{{"access_token":"{token}","expires_in":3600,}}"#),
        format!(r#"{{"access_token":"{token}","expires_in":36"#),
        format!(r#"{{"refresh_token":"{refresh}","expires_in":2592000"#),
        format!("\u{feff}\u{feff}{{\"access_token\":\"{token}\"}}"),
        format!(r#"not json {SECRET} {token}"#),
    ] {
        let err = parse(200, &body).unwrap_err();
        assert_eq!(
            err,
            Error::Malformed {
                status: StatusCode::OK,
                reason: Malformed::NotJson
            },
            "{body}"
        );
        let shown = format!("{err} {err:?}");
        for secret in [token, refresh, SECRET, "eyJ"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}

#[test]
fn a_leading_byte_order_mark_is_skipped() {
    let r = parse(200, "\u{feff}{\"access_token\":\"abc\",\"expires_in\":60}").unwrap();
    assert_eq!(r.access_token().unwrap().secret(), "abc");
    assert_eq!(r.expires_in(), Some(Duration::from_secs(60)));
    let err = parse(400, "\u{feff}{\"error\":\"invalid_client\"}").unwrap_err();
    assert_eq!(err.oauth_code(), Some(&ErrorCode::InvalidClient));
}

#[test]
fn tokens_in_a_response_are_redacted_from_its_errors() {
    // An error on a 200 next to a token, echoing it.
    let body = r#"{"access_token":"tok-123456","error":"server_error","error_description":"issued tok-123456 then failed"}"#;
    let err = parse(200, body).unwrap_err();
    assert!(!format!("{err} {err:?}").contains("tok-123456"), "{err}");
    // A token type that is the token itself.
    let err = parse(
        200,
        r#"{"access_token":"tok-abcdef","token_type":"tok-abcdef"}"#,
    )
    .unwrap_err();
    assert!(!format!("{err} {err:?}").contains("tok-abcdef"), "{err}");
    // What the request carried (a refresh token), echoed by the server.
    let r = response(
        400,
        &[],
        r#"{"error":"invalid_grant","error_description":"refresh token rt-9f8e7d is revoked"}"#,
    );
    let err =
        token_core::parse_token_response_redacting(&config(), &r, &["rt-9f8e7d"]).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains("rt-9f8e7d") && shown.contains("[redacted]"),
        "{shown}"
    );
}

/// Issue "Lifecycle v2", finding 8: a generic response with `"type":"service"` was refused as a
/// token type; only Octorate names the token type `type`.
#[test]
fn type_is_a_token_type_only_for_octorate() {
    let body = r#"{"access_token":"a","token_type":"Bearer","type":"service","expires_in":60}"#;
    let r = parse(200, body).unwrap();
    assert_eq!(
        r.extra().get("type").and_then(|v| v.as_str()),
        Some("service")
    );
    let r = parse(200, r#"{"access_token":"a","type":"service"}"#).unwrap();
    assert_eq!(r.token_type(), TokenType::Bearer);
    let octorate = parse_token_response(
        &octorate_config(),
        &response(200, &[], r#"{"access_token":"a","type":"service"}"#),
    );
    assert!(matches!(
        octorate,
        Err(Error::Malformed {
            reason: Malformed::UnsupportedTokenType(_),
            ..
        })
    ));
}

#[test]
fn success_without_a_token_is_malformed() {
    for body in ["{}", r#"{"token_type":"Bearer"}"#, "[]", "\"x\"", "", "{"] {
        let err = parse(200, body).unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{body}: {err:?}");
        assert!(!err.is_credentials_rejected());
    }
    let err = parse(200, r#"{"access_token":""}"#).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    let err = parse(200, r#"{"access_token":"has space"}"#).unwrap_err();
    assert!(err.to_string().contains("header"), "{err}");
    assert!(!err.to_string().contains("has space"));
    let err = parse(200, r#"{"access_token":42}"#).unwrap_err();
    assert!(err.to_string().contains("not a string"), "{err}");
}

#[test]
fn scope_may_be_an_array() {
    let r = parse(200, r#"{"access_token":"a","scope":["read","write"]}"#).unwrap();
    assert_eq!(r.scope().unwrap().to_string(), "read write");
    assert!(parse(200, r#"{"access_token":"a","scope":[1]}"#).is_err());
}

#[test]
fn size_cap_from_config() {
    let config = presets::generic(
        "https://idp.example/token",
        Credentials::new("id", ClientSecret::new("s")),
    )
    .max_body_bytes(32)
    .build()
    .unwrap();
    let r = response(
        200,
        &[],
        &format!(r#"{{"access_token":"{}"}}"#, "a".repeat(64)),
    );
    assert_eq!(
        parse_token_response(&config, &r).unwrap_err(),
        Error::BodyTooLarge {
            status: StatusCode::OK,
            limit: 32
        }
    );
}

// ---- properties ----

fn token_chars() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~+/=-]{1,200}"
}

#[derive(Debug, Clone)]
enum Expires {
    Int(u64),
    Str(u64),
    Float(f64),
}

fn expires() -> impl Strategy<Value = Option<Expires>> {
    prop_oneof![
        Just(None),
        (1u64..10_000_000).prop_map(|n| Some(Expires::Int(n))),
        (1u64..10_000_000).prop_map(|n| Some(Expires::Str(n))),
        (0.5f64..1e7).prop_map(|f| Some(Expires::Float(f))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any valid token response, serialized, parses back to the same fields.
    #[test]
    fn valid_responses_round_trip(
        access in token_chars(),
        refresh in proptest::option::of(token_chars()),
        expires in expires(),
        scopes in proptest::collection::btree_set("[a-z:_-]{1,12}", 0..5),
        type_field in prop_oneof![Just("token_type"), Just("type")],
        type_value in prop_oneof![Just("Bearer"), Just("bearer"), Just("BEARER")],
        extra in proptest::collection::btree_map("x_[a-z]{1,8}", any::<i32>(), 0..4),
    ) {
        let mut obj = serde_json::Map::new();
        obj.insert("access_token".into(), access.clone().into());
        obj.insert(type_field.into(), type_value.into());
        if let Some(r) = &refresh {
            obj.insert("refresh_token".into(), r.clone().into());
        }
        match &expires {
            Some(Expires::Int(n)) => { obj.insert("expires_in".into(), (*n).into()); }
            Some(Expires::Str(n)) => { obj.insert("expires_in".into(), n.to_string().into()); }
            Some(Expires::Float(f)) => { obj.insert("expires_in".into(), (*f).into()); }
            None => {}
        }
        if !scopes.is_empty() {
            let joined: Vec<&str> = scopes.iter().map(String::as_str).collect();
            obj.insert("scope".into(), joined.join(" ").into());
        }
        for (k, v) in &extra {
            obj.insert(k.clone(), (*v).into());
        }
        let body = serde_json::to_vec(&serde_json::Value::Object(obj)).unwrap();
        // `type` names the token type only in Octorate's dialect.
        let config = if type_field == "type" { octorate_config() } else { config() };
        let r = parse_token_response(&config, &http::Response::new(body)).unwrap();
        prop_assert_eq!(r.access_token().unwrap().secret(), access.as_str());
        prop_assert_eq!(r.refresh_token().map(|t| t.secret().to_owned()), refresh);
        match expires {
            Some(Expires::Int(n)) | Some(Expires::Str(n)) => {
                prop_assert_eq!(r.expires_in(), Some(Duration::from_secs(n)));
            }
            Some(Expires::Float(f)) => {
                // serde_json's default float parsing may be one ULP off.
                let got = r.expires_in().unwrap().as_secs_f64();
                prop_assert!((got - f).abs() < 1e-6, "{} vs {}", got, f);
            }
            None => prop_assert_eq!(r.expires_in(), None),
        }
        if scopes.is_empty() {
            prop_assert!(r.scope().is_none());
        } else {
            let got: Vec<&str> = r.scope().unwrap().iter().collect();
            let want: Vec<&str> = scopes.iter().map(String::as_str).collect();
            prop_assert_eq!(got, want);
        }
        prop_assert_eq!(r.extra().len(), extra.len());
    }

    /// Arbitrary status, headers and bytes: a result, never a panic, and never a secret in it.
    #[test]
    fn arbitrary_input_never_panics(
        status in 100u16..1000,
        retry_after in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        header_name in "[a-z-]{1,20}",
        header_value in proptest::collection::vec(32u8..127, 0..40),
        body in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut resp = http::Response::new(body);
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        if let Some(v) = retry_after.and_then(|v| http::HeaderValue::from_bytes(&v).ok()) {
            resp.headers_mut().insert("retry-after", v);
        }
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(header_name.as_bytes()),
            http::HeaderValue::from_bytes(&header_value),
        ) {
            resp.headers_mut().insert(n, v);
        }
        if let Err(err) = parse_token_response(&config(), &resp) {
            let shown = format!("{err} {err:?}");
            prop_assert!(!shown.contains(SECRET));
            let _ = (err.is_retryable(), err.is_credentials_rejected(), err.retry_after());
        }
    }

    /// JSON-shaped garbage (the likelier real-world input) never panics either.
    #[test]
    fn json_shaped_input_never_panics(
        status in prop_oneof![Just(200u16), Just(400), Just(401), Just(500)],
        fields in proptest::collection::vec(
            (
                prop_oneof![
                    Just("access_token"), Just("token_type"), Just("type"), Just("expires_in"),
                    Just("refresh_token"), Just("scope"), Just("error"), Just("error_description"),
                    Just("error_uri"), Just("other"),
                ],
                prop_oneof![
                    any::<i64>().prop_map(serde_json::Value::from),
                    any::<f64>().prop_map(serde_json::Value::from),
                    ".{0,20}".prop_map(serde_json::Value::from),
                    any::<bool>().prop_map(serde_json::Value::from),
                    Just(serde_json::Value::Null),
                    Just(serde_json::json!([1, "a"])),
                    Just(serde_json::json!({"a": {}})),
                ],
            ),
            0..8,
        ),
    ) {
        let obj: serde_json::Map<String, serde_json::Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let body = serde_json::to_vec(&obj).unwrap();
        let mut resp = http::Response::new(body);
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        if let Ok(r) = parse_token_response(&config(), &resp) {
            let (lifetime, _) = r.lifetime(wall(), Duration::from_secs(60));
            prop_assert!(r.access_token().is_some() || r.refresh_token().is_some());
            let _ = lifetime;
        }
    }
}

#[test]
fn auth0_quota_headers_reach_tokens_and_errors() {
    let quota_headers = [
        (
            "Auth0-Client-Quota-Limit",
            "b=per_hour;q=10;r=7;t=3540,b=per_day;q=50;r=47;t=43200",
        ),
        ("X-RateLimit-Limit", "30"),
        ("X-RateLimit-Remaining", "29"),
        ("X-RateLimit-Reset", "1700000000"),
    ];
    let ok = response(
        200,
        &quota_headers,
        r#"{"access_token":"a","expires_in":60}"#,
    );
    let r = parse_token_response(&config(), &ok).unwrap();
    let q = r.quota().expect("quota parsed on success");
    let hour = q.client.as_ref().unwrap().per_hour.unwrap();
    assert_eq!(
        (hour.quota, hour.remaining, hour.reset_secs),
        (Some(10), Some(7), Some(3540))
    );
    assert_eq!(q.rate_limit.unwrap().reset_at, Some(1_700_000_000));
    assert!(q.organization.is_none());
    let limited = response(
        429,
        &[
            ("Auth0-Client-Quota-Limit", "b=per_hour;q=10;r=0;t=924"),
            ("Retry-After", "60"),
        ],
        r#"{"error":"too_many_requests"}"#,
    );
    let err = parse_token_response(&config(), &limited).unwrap_err();
    assert!(
        err.quota()
            .unwrap()
            .client
            .as_ref()
            .unwrap()
            .per_hour
            .unwrap()
            .exhausted()
    );
    assert_eq!(
        err.server_delay(None),
        Some(Duration::from_secs(924)),
        "the longer wait"
    );
    let html = response(429, &[("X-RateLimit-Remaining", "0")], "<h1>slow down</h1>");
    let err = parse_token_response(&config(), &html).unwrap_err();
    assert_eq!(err.quota().unwrap().rate_limit.unwrap().remaining, Some(0));
    assert!(
        parse_token_response(&config(), &response(200, &[], r#"{"access_token":"a"}"#))
            .unwrap()
            .quota()
            .is_none()
    );
}
