//! Sans-IO OAuth 2.0 tokens for booking-platform APIs.
//!
//! `token-core` knows how each provider wants its token requested (Bookable, bookingtime,
//! Octorate octotable, BookyFlow, any RFC 6749 endpoint), how to read whatever their endpoints
//! answer, and when a cached token must be refreshed. It does no IO: it emits
//! `http::Request<Vec<u8>>` values and consumes `http::Response<Vec<u8>>` values, and it never
//! reads a clock: time is an argument. The transports (`transport-ureq`, `transport-reqwest`)
//! own the sockets and the clock; everything they decide comes from here, so it is tested here,
//! deterministically.
//!
//! # Two layers
//! - **Protocol** ([`protocol`]): [`presets`] and [`ClientConfig`] build requests
//!   ([`ClientConfig::token_request`]); [`parse_token_response`] turns any response into a
//!   [`TokenResponse`] or a typed [`Error`]. Pure functions; never imports the lifecycle.
//! - **Lifecycle** ([`lifecycle`]): [`TokenManager`] caches tokens per [`TokenKey`], refreshes
//!   them early, keeps at most one request in flight per key, backs off after failures and after
//!   repeated rejections, invalidates precisely, runs refresh-token grants (bookingtime's chain,
//!   users' grants), and can share tokens across processes through a store. Every deadline lives
//!   in one timer table. See the [`manager`] module for the time contract and the rules, and
//!   [`lifecycle::store`] for the store channel.
//!
//! # The drive loop
//! A driver feeds the manager commands and inputs, then drains [`TokenManager::poll_output`]
//! until [`Output::Timeout`]: send each [`Output::Send`] (and run each [`Output::Store`] when a
//! store is configured), republish what [`TokenManager::servable`] says on each
//! [`Event::Changed`], wake callers on [`Event::Token`] and [`Event::Failed`], and call
//! [`TokenManager::handle_timeout`] at the timeout, with or without callers: that is what
//! refreshes tokens in use in the background. A driver that serves cache hits from a published
//! snapshot reports the first hit on each token with [`TokenManager::touch`]. Here the
//! "network" is a closure:
//!
//! ```
//! use std::time::{Duration, Instant as MonotonicClock, SystemTime};
//! use token_core::{
//!     presets, ClientSecret, Credentials, Lookup, ManagerConfig, Output, TokenKey, TokenManager,
//! };
//!
//! // A fake token endpoint: always hands out a one-hour token.
//! let endpoint = |request: &http::Request<Vec<u8>>| {
//!     assert_eq!(request.method(), http::Method::POST);
//!     http::Response::builder()
//!         .status(200)
//!         .body(br#"{"access_token":"eyJ.fake.token","expires_in":3600,"token_type":"Bearer"}"#.to_vec())
//!         .unwrap()
//! };
//!
//! let config = presets::bookable_sandbox(Credentials::new("id", ClientSecret::new("secret")))
//!     .build()?;
//! let mut manager = TokenManager::new(ManagerConfig::default());
//! let key = TokenKey::new(manager.register(config));
//!
//! // The driver owns the clocks and hands the core readings of them. Here: the system's
//! // monotonic clock, and a fixed wall-clock time (it only matters for JWT `exp` claims).
//! let start = MonotonicClock::now();
//! let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
//! let mut now = start;
//! let token = loop {
//!     match manager.request(now, &key)? {
//!         Lookup::Ready(token) => break token,
//!         Lookup::Failed { error, .. } => panic!("{error}"),
//!         Lookup::Pending => {}
//!     }
//!     // Drain the output: send requests, hand back responses.
//!     loop {
//!         match manager.poll_output(now) {
//!             Output::Send(send) => {
//!                 let response = endpoint(&send.request);
//!                 manager.handle_response(now, wall, send.id, response)?;
//!             }
//!             Output::Event(_) => {} // wake waiters here
//!             Output::Store(_) => unreachable!("no shared store is configured"),
//!             Output::Timeout(at) => {
//!                 assert!(at > now);
//!                 break;
//!             }
//!         }
//!     }
//! };
//! assert_eq!(token.access_token().secret(), "eyJ.fake.token");
//! // Refresh starts 60 s before expiry; until then the token is served with no request.
//! assert_eq!(token.refresh_at() - start, Duration::from_secs(3540));
//! now += Duration::from_secs(3000);
//! assert!(matches!(manager.request(now, &key)?, Lookup::Ready(_)));
//! loop {
//!     match manager.poll_output(now) {
//!         Output::Send(_) => panic!("a fresh token needs no request"),
//!         Output::Timeout(_) => break,
//!         _ => {}
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Using the protocol layer alone
//! ```
//! use token_core::{parse_token_response, presets, ClientSecret, Credentials, Grant};
//!
//! let config = presets::octorate(Credentials::new("my-id", ClientSecret::new("my-secret")))
//!     .build()?;
//! let request = config.token_request(Grant::ClientCredentials);
//! assert_eq!(request.headers()["content-type"], "application/json");
//! assert_eq!(request.headers()["accept"], "application/json");
//!
//! // Octorate says `type`, not `token_type`.
//! let response = http::Response::builder()
//!     .status(200)
//!     .body(br#"{"access_token":"abc","expires_in":1440,"type":"Bearer"}"#.to_vec())?;
//! let token = parse_token_response(&config, &response)?;
//! assert_eq!(token.access_token().unwrap().secret(), "abc");
//! assert_eq!(token.expires_in(), Some(std::time::Duration::from_secs(1440)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Secrets
//! [`ClientSecret`], [`AccessToken`] and [`RefreshToken`] print `[redacted]` from `Debug` and
//! have no `Display`. Errors never quote a success body; the server text they carry is sanitized,
//! with the client secret, every token the response carried and every secret the request sent
//! (a refresh token) redacted. URLs in messages lose their user info and query
//! ([`display_url`]). Authorization headers built here are marked sensitive.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod lifecycle;
pub mod protocol;

pub use lifecycle::manager;
pub use lifecycle::misuse::ApiMisuse;
pub use lifecycle::token::Token;
pub use protocol::{jwt, presets};

pub use lifecycle::manager::{
    AuthorizationStart, ClientId, Event, GrantKey, Invalidation, Lookup, ManagerConfig, Output,
    RequestId, StartAuthorizationError, StoreOpId, Subject, Target, TokenKey, TokenManager,
    TokenRequest,
};
pub use lifecycle::store::{
    StoreFailure, StoreKey, StoreOp, StoreRecord, StoreReply, StoreRequest, StoreSettings,
    StoredValue,
};
pub use protocol::authorization::{
    AuthorizationCode, AuthorizationError, AuthorizationState, PkceVerifier,
};
pub use protocol::config::{
    BodyEncoding, ClientAuth, ClientConfig, ClientConfigBuilder, Credentials,
    DEFAULT_MAX_BODY_BYTES, Flow, Provider, Scopes, display_url, redact_urls,
};
pub use protocol::error::{
    ConfigError, Error, ErrorCode, HttpError, Malformed, OAuthError, RetryAfter,
    TransportErrorKind, TransportFailure,
};
pub use protocol::quota::{Bucket, Quota, QuotaBuckets, RateLimit};
pub use protocol::request::Grant;
pub use protocol::response::{
    LifetimeSource, TokenResponse, TokenType, parse_token_response, parse_token_response_redacting,
};
pub use protocol::secret::{AccessToken, ClientSecret, RefreshToken};

/// Entry points for the fuzz targets and their corpus replay. Not part of the public API.
#[cfg(feature = "__fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    const OPTIONS: crate::protocol::response::ParseOptions =
        crate::protocol::response::ParseOptions {
            max_body: 64 * 1024,
            type_alias: true,
        };

    /// Parses a token response from raw parts; must never panic.
    pub fn parse_token_response(status: u16, retry_after: Option<&[u8]>, body: &[u8]) {
        let status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
        let mut headers = http::HeaderMap::new();
        if let Some(value) = retry_after.and_then(|v| http::HeaderValue::from_bytes(v).ok()) {
            headers.insert(http::header::RETRY_AFTER, value);
        }
        match crate::protocol::response::parse_parts(status, &headers, body, OPTIONS, &["s"]) {
            Ok(response) => {
                let _ = response.lifetime(std::time::UNIX_EPOCH, std::time::Duration::from_secs(1));
                let _ = format!("{response:?}");
            }
            Err(error) => exercise_error(&error),
        }
    }

    /// Parses a body as an error response (non-2xx status); must never panic.
    pub fn parse_error_response(body: &[u8]) {
        let result = crate::protocol::response::parse_parts(
            http::StatusCode::BAD_REQUEST,
            &http::HeaderMap::new(),
            body,
            OPTIONS,
            &["s"],
        );
        if let Err(error) = result {
            exercise_error(&error);
        }
    }

    /// Extracts JWT time claims; must never panic.
    pub fn jwt_times(data: &[u8]) {
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = crate::protocol::jwt::jwt_times(text);
            let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
            let _ = crate::protocol::response::jwt_lifetime(text, now);
        }
    }

    /// Parses Auth0 quota and rate-limit header values; must never panic. The input is split
    /// at its first newline: the quota header value, then the rate-limit values.
    pub fn quota_header_input(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let (quota, rate) = text.split_once('\n').unwrap_or((&text, ""));
        let buckets = crate::QuotaBuckets::parse(quota);
        let _ = format!("{buckets:?}");
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("auth0-client-quota-limit", quota),
            ("auth0-organization-quota-limit", quota),
            ("x-ratelimit-limit", rate),
            ("x-ratelimit-remaining", rate),
            ("x-ratelimit-reset", rate),
        ] {
            if let Ok(value) = http::HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
        if let Some(quota) = crate::Quota::from_headers(&headers) {
            let _ = quota.exhausted_for();
            let _ = quota.buckets().filter(|(_, b)| b.low()).count();
        }
    }

    /// Reads an authorization redirect and checks its issuer; must never panic. The input is
    /// the redirect URL (the expected redirect URI is fixed).
    pub fn authorization_redirect_input(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        if let Ok(redirect) =
            crate::protocol::authorization::parse_redirect(&text, "http://127.0.0.1:8080/cb")
        {
            let _ = crate::protocol::authorization::check_issuer(
                redirect.issuer.as_deref(),
                "https://idp.example",
            );
            let _ = format!("{redirect:?}");
        }
        let _ = crate::protocol::authorization::check_redirect_uri(&text);
    }

    /// What a caller does with a parse error: print it and classify it.
    fn exercise_error(error: &crate::Error) {
        let _ = format!("{error} {error:?}");
        let _ = (
            error.is_retryable(),
            error.is_credentials_rejected(),
            error.is_grant_rejected(),
            error.status(),
            error.oauth_code(),
        );
        if let Some(retry_after) = error.retry_after() {
            let _ = retry_after.delay_from(std::time::UNIX_EPOCH);
        }
    }

    /// The `token_response` fuzz target's input format: bytes 0-1 are the status (big-endian,
    /// mapped into `100..=999` as `100 + v % 900`); byte 2 is a length `n`: 0 means no
    /// `Retry-After` header, otherwise the next `n` bytes (fewer if the input ends) are its
    /// value; the rest is the body. Inputs shorter than 3 bytes are ignored.
    pub fn token_response_input(data: &[u8]) {
        let [hi, lo, n, rest @ ..] = data else {
            return;
        };
        let status = 100 + u16::from_be_bytes([*hi, *lo]) % 900;
        let (retry_after, body) = match usize::from(*n) {
            0 => (None, rest),
            n => {
                let (value, body) = rest.split_at(n.min(rest.len()));
                (Some(value), body)
            }
        };
        parse_token_response(status, retry_after, body);
    }

    /// The `error_response` fuzz target's input format: the whole input is the body.
    pub fn error_response_input(data: &[u8]) {
        parse_error_response(data);
    }

    /// The `jwt_exp` fuzz target's input format: the whole input is the token.
    pub fn jwt_exp_input(data: &[u8]) {
        jwt_times(data);
    }
}
