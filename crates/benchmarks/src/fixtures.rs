//! The response samples (from the providers' documents in the project's seeds, plus two
//! synthetic ones) and the request configurations the benches share.

use token_core::{ClientConfig, ClientSecret, Credentials, presets};

/// A token endpoint response body.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Short name used in bench ids.
    pub name: &'static str,
    /// Where it comes from.
    pub source: &'static str,
    /// The body, byte for byte.
    pub body: &'static [u8],
}

/// Every sample, in report order.
pub const SAMPLES: &[Sample] = &[
    Sample {
        name: "bookable",
        source: "Bookable doc, response reference (JWT elided with ...)",
        body: include_bytes!("../data/bookable.json"),
    },
    Sample {
        name: "bookable_auth0",
        source: "Bookable Auth0 doc, expected response (full 941-byte JWT)",
        body: include_bytes!("../data/bookable_auth0.json"),
    },
    Sample {
        name: "bookingtime_refresh",
        source: "bookingtime doc, leg 1 (refresh_token only, expires_in 2592000)",
        body: include_bytes!("../data/bookingtime_refresh.json"),
    },
    Sample {
        name: "bookingtime_access",
        source: "bookingtime doc, leg 2 (organization access token, expires_in 300)",
        body: include_bytes!("../data/bookingtime_access.json"),
    },
    Sample {
        name: "bookingtime_template",
        source: "bookingtime doc, template (\"expires_in\": \"<time in s>\")",
        body: include_bytes!("../data/bookingtime_template.json"),
    },
    Sample {
        name: "octorate",
        source: "Octorate doc (`type` instead of `token_type`)",
        body: include_bytes!("../data/octorate.json"),
    },
    Sample {
        name: "bookyflow",
        source: "BookyFlow doc",
        body: include_bytes!("../data/bookyflow.json"),
    },
    Sample {
        name: "large_jwt",
        source: "synthetic: Auth0-style 5.9 KB JWT (120 permissions, 4096-bit signature)",
        body: include_bytes!("../data/large_jwt.json"),
    },
    Sample {
        name: "oidc",
        source: "synthetic: Keycloak-style OIDC response (access, refresh and id_token JWTs, extras)",
        body: include_bytes!("../data/oidc.json"),
    },
];

/// A 200 `application/json` response with `body`.
pub fn ok_response(body: &[u8]) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec())
        .expect("a valid response")
}

/// Documentation-style credentials.
pub fn credentials() -> Credentials {
    Credentials::new("my-client-id", ClientSecret::new("my-client-secret"))
}

/// The configuration the parse bench parses with (the parser only uses its body cap and
/// secret redaction, the same for every preset).
pub fn parse_config() -> ClientConfig {
    presets::bookable(credentials())
        .build()
        .expect("a valid preset")
}

/// The presets the request bench builds client-credentials requests for.
pub fn request_configs() -> Vec<(&'static str, ClientConfig)> {
    let build = |b: token_core::ClientConfigBuilder| b.build().expect("a valid preset");
    vec![
        ("bookable", build(presets::bookable(credentials()))),
        (
            "bookingtime_app",
            build(presets::bookingtime_app(credentials())),
        ),
        ("octorate", build(presets::octorate(credentials()))),
        (
            "bookyflow",
            build(presets::bookyflow(
                "https://bookings.example.com",
                credentials(),
                ["read", "write", "delete"],
            )),
        ),
        (
            "generic",
            build(presets::generic(
                "https://auth.example.com/oauth/token",
                credentials(),
            )),
        ),
    ]
}
