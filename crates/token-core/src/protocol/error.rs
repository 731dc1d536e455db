//! Typed errors.
//!
//! Two families, kept apart as rustls does:
//! - [`Error`]: something went wrong getting a token (the endpoint said no, answered garbage, or
//!   could not be reached). Every error says whether retrying can help
//!   ([`Error::is_retryable`]) and whether the credentials were rejected
//!   ([`Error::is_credentials_rejected`]).
//! - [`ConfigError`]: the configuration cannot work (bad URL, `http://` to a remote host, a missing
//!   environment variable). Found before anything is sent.
//!
//! Misuse of the lifecycle API (an unknown request id, a key for an unregistered client) is the
//! lifecycle's own error, [`ApiMisuse`](crate::ApiMisuse).
//!
//! No error ever contains a client secret or a token: server-provided text is sanitized
//! (control characters dropped, length capped, the client secret redacted).

use std::fmt;
use std::time::{Duration, SystemTime};

use http::StatusCode;

use crate::protocol::quota::Quota;

/// An RFC 6749 §5.2 error code.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `invalid_request`: the request is missing a parameter or is otherwise malformed.
    InvalidRequest,
    /// `invalid_client`: client authentication failed.
    InvalidClient,
    /// `invalid_grant`: the grant (for example a refresh token) is invalid, expired or revoked.
    InvalidGrant,
    /// `unauthorized_client`: the client may not use this grant type.
    UnauthorizedClient,
    /// `unsupported_grant_type`: the server does not support the grant type.
    UnsupportedGrantType,
    /// `invalid_scope`: the requested scope is invalid, unknown or exceeds what was granted.
    InvalidScope,
    /// `server_error` (RFC 6749 §4.1.2.1, commonly returned by token endpoints too).
    ServerError,
    /// `temporarily_unavailable` (RFC 6749 §4.1.2.1, commonly returned by token endpoints too).
    TemporarilyUnavailable,
    /// Any other code, verbatim (sanitized), e.g. BookyFlow's `unauthorized`.
    Other(String),
}

impl ErrorCode {
    /// Parses a wire code.
    pub fn parse(code: &str) -> Self {
        match code {
            "invalid_request" => Self::InvalidRequest,
            "invalid_client" => Self::InvalidClient,
            "invalid_grant" => Self::InvalidGrant,
            "unauthorized_client" => Self::UnauthorizedClient,
            "unsupported_grant_type" => Self::UnsupportedGrantType,
            "invalid_scope" => Self::InvalidScope,
            "server_error" => Self::ServerError,
            "temporarily_unavailable" => Self::TemporarilyUnavailable,
            other => Self::Other(sanitize(other, 64, &[])),
        }
    }

    /// The wire form of the code.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `Retry-After` header value (RFC 9110 §10.2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: <seconds>`.
    Delay(Duration),
    /// `Retry-After: <HTTP-date>`.
    At(SystemTime),
}

impl RetryAfter {
    /// Parses a header value: delay-seconds or an HTTP date. Anything else is `None`.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(value).ok()?.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            // Saturate absurd values; the manager caps how long it honours them anyway.
            let secs = text.parse::<u64>().unwrap_or(u64::MAX);
            return Some(Self::Delay(Duration::from_secs(secs)));
        }
        httpdate::parse_http_date(text).ok().map(Self::At)
    }

    /// The delay from `wall_now` (zero for a date in the past).
    pub fn delay_from(&self, wall_now: SystemTime) -> Duration {
        match *self {
            Self::Delay(d) => d,
            Self::At(t) => t.duration_since(wall_now).unwrap_or(Duration::ZERO),
        }
    }
}

/// The token endpoint answered with an RFC 6749 §5.2 error.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OAuthError {
    /// HTTP status of the response (a 200 carrying an `error` field keeps its 200).
    pub status: StatusCode,
    /// The `error` code.
    pub code: ErrorCode,
    /// `error_description`, sanitized.
    pub description: Option<String>,
    /// `error_uri`, sanitized.
    pub uri: Option<String>,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<RetryAfter>,
    /// Auth0's quota and rate-limit headers, if any (boxed: most errors have none).
    pub quota: Option<Box<Quota>>,
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}: {}", self.status.as_u16(), self.code)?;
        if let Some(d) = &self.description {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

/// The token endpoint answered with a non-success status and no OAuth error body
/// (an HTML 502 page from a load balancer, an empty 500, a redirect).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpError {
    /// HTTP status.
    pub status: StatusCode,
    /// A short, sanitized excerpt of the body (tags stripped, whitespace collapsed, capped).
    pub excerpt: String,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<RetryAfter>,
    /// Auth0's quota and rate-limit headers, if any (boxed: most errors have none).
    pub quota: Option<Box<Quota>>,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status.as_u16())?;
        if let Some(reason) = self.status.canonical_reason() {
            write!(f, " {reason}")?;
        }
        if !self.excerpt.is_empty() {
            write!(f, ": {}", self.excerpt)?;
        }
        Ok(())
    }
}

/// What kind of transport failure a driver reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// Could not connect (refused, DNS, unreachable).
    Connect,
    /// A connect, read or overall timeout fired.
    Timeout,
    /// The connection broke mid-exchange (reset, truncated response).
    Io,
    /// TLS handshake or certificate failure.
    Tls,
    /// The response body exceeded the size cap while it was being read.
    BodyTooLarge,
    /// Anything else the transport could not classify.
    Other,
}

impl TransportErrorKind {
    fn describe(self) -> &'static str {
        match self {
            Self::Connect => "could not connect",
            Self::Timeout => "timed out",
            Self::Io => "connection failed",
            Self::Tls => "TLS failure",
            Self::BodyTooLarge => "response body too large",
            Self::Other => "transport failure",
        }
    }
}

/// A failure below HTTP, reported by a transport through
/// [`TokenManager::handle_send_failed`](crate::TokenManager::handle_send_failed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportFailure {
    kind: TransportErrorKind,
    message: String,
}

impl TransportFailure {
    /// A failure of `kind`; `message` is sanitized (control characters dropped, capped at 200
    /// characters). Transports must not pass secrets in it.
    pub fn new(kind: TransportErrorKind, message: impl AsRef<str>) -> Self {
        Self {
            kind,
            message: sanitize(message.as_ref(), 200, &[]),
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }

    /// The sanitized message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.describe())?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// Why a response could not be understood.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// The body is not a JSON object. A success body is never quoted: even a broken one
    /// carries the token.
    NotJson,
    /// A field has the wrong JSON type or an unusable value.
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A required field is missing.
    MissingField(&'static str),
    /// The token type is not Bearer.
    UnsupportedTokenType(String),
    /// The token was already expired when its response was handled.
    AlreadyExpired,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson => f.write_str("body is not a JSON object"),
            Self::InvalidField { field, reason } => write!(f, "`{field}` {reason}"),
            Self::MissingField(field) => write!(f, "`{field}` is missing"),
            Self::UnsupportedTokenType(t) => {
                write!(f, "token type `{t}` is not supported (only Bearer is)")
            }
            Self::AlreadyExpired => f.write_str("the token had expired by the time it arrived"),
        }
    }
}

/// Getting a token failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint answered with an RFC 6749 error (`invalid_client`, `invalid_grant`, ...).
    #[error("token endpoint refused: {0}")]
    OAuth(OAuthError),
    /// The endpoint answered with a non-success status and no OAuth error body.
    #[error("token endpoint answered {0}")]
    Http(HttpError),
    /// The endpoint answered success but the body is not a usable token response.
    #[error("malformed token response (HTTP {}): {reason}", status.as_u16())]
    Malformed {
        /// HTTP status of the response.
        status: StatusCode,
        /// What is wrong.
        reason: Malformed,
    },
    /// The body exceeded the configured size cap.
    #[error("token response body exceeds {limit} bytes (HTTP {})", status.as_u16())]
    BodyTooLarge {
        /// HTTP status of the response.
        status: StatusCode,
        /// The cap, in bytes.
        limit: usize,
    },
    /// The request never got an HTTP response.
    #[error("token request failed: {0}")]
    Transport(TransportFailure),
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A user's grant is missing, expired or was rejected: only the user can renew it, by
    /// authorizing the application again (nothing is sent until then).
    #[error("authorization required: the user's grant is missing, expired or revoked")]
    AuthorizationRequired,
}

impl Error {
    /// Whether retrying the same request later can help: transport failures, 5xx, 408, 429,
    /// `server_error` and `temporarily_unavailable`. Rejected credentials, bad requests and
    /// malformed answers are not retryable (the manager still retries them, slowly).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::OAuth(e) => {
                matches!(
                    e.code,
                    ErrorCode::ServerError | ErrorCode::TemporarilyUnavailable
                ) || status_is_retryable(e.status)
            }
            Self::Http(e) => status_is_retryable(e.status),
            Self::Transport(t) => !matches!(t.kind, TransportErrorKind::BodyTooLarge),
            Self::Malformed { status, reason } => {
                matches!(reason, Malformed::AlreadyExpired) || status_is_retryable(*status)
            }
            Self::BodyTooLarge { .. } | Self::Config(_) | Self::AuthorizationRequired => false,
        }
    }

    /// Whether the endpoint rejected the client's credentials or permissions
    /// (`invalid_client`, `unauthorized_client`, `invalid_scope`, `unauthorized`,
    /// `access_denied`, or a bare 401/403). A rejected refresh token (`invalid_grant`) is not
    /// counted: see [`Error::is_grant_rejected`].
    pub fn is_credentials_rejected(&self) -> bool {
        match self {
            Self::OAuth(e) => match &e.code {
                ErrorCode::InvalidClient
                | ErrorCode::UnauthorizedClient
                | ErrorCode::InvalidScope => true,
                ErrorCode::Other(code) => matches!(
                    code.as_str(),
                    "unauthorized" | "access_denied" | "forbidden" | "insufficient_scope"
                ),
                _ => false,
            },
            Self::Http(e) => {
                matches!(e.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
            }
            _ => false,
        }
    }

    /// Whether the endpoint rejected the grant itself (`invalid_grant`): for bookingtime, the
    /// refresh token is no longer valid and the chain must restart from client credentials.
    pub fn is_grant_rejected(&self) -> bool {
        matches!(self, Self::OAuth(e) if e.code == ErrorCode::InvalidGrant)
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<RetryAfter> {
        match self {
            Self::OAuth(e) => e.retry_after,
            Self::Http(e) => e.retry_after,
            _ => None,
        }
    }

    /// Auth0's quota and rate-limit headers of the response, if it had any.
    pub fn quota(&self) -> Option<&Quota> {
        match self {
            Self::OAuth(e) => e.quota.as_deref(),
            Self::Http(e) => e.quota.as_deref(),
            _ => None,
        }
    }

    /// How long the server asked to wait: its `Retry-After` (dated from `wall_now`), or, when
    /// a quota bucket is used up, until it resets, whichever is longer.
    pub fn server_delay(&self, wall_now: Option<std::time::SystemTime>) -> Option<Duration> {
        let retry_after = self.retry_after().map(|r| match (r, wall_now) {
            (_, Some(wall)) => r.delay_from(wall),
            (RetryAfter::Delay(d), None) => d,
            (RetryAfter::At(_), None) => Duration::ZERO,
        });
        let quota = self.quota().and_then(Quota::exhausted_for);
        match (retry_after, quota) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// The HTTP status, when there was a response.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::OAuth(e) => Some(e.status),
            Self::Http(e) => Some(e.status),
            Self::Malformed { status, .. } | Self::BodyTooLarge { status, .. } => Some(*status),
            Self::Transport(_) | Self::Config(_) | Self::AuthorizationRequired => None,
        }
    }

    /// The RFC 6749 error code, when the server sent one.
    pub fn oauth_code(&self) -> Option<&ErrorCode> {
        match self {
            Self::OAuth(e) => Some(&e.code),
            _ => None,
        }
    }
}

fn status_is_retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// The configuration cannot work. Found before anything is sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The token URL does not parse as an absolute `http(s)://host/...` URL.
    #[error("invalid token URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL (user info, if any, removed).
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// `http://` to a host that is not loopback, without opting in.
    #[error(
        "`{url}` is not HTTPS; plain HTTP is only allowed to loopback hosts unless insecure HTTP is explicitly allowed"
    )]
    InsecureUrl {
        /// The URL.
        url: String,
    },
    /// An environment variable the configuration needs is not set.
    #[error("environment variable `{0}` is not set")]
    MissingEnv(String),
    /// An environment variable the configuration needs is set but empty.
    #[error("environment variable `{0}` is empty")]
    EmptyEnv(String),
    /// An environment variable is set but not valid Unicode.
    #[error("environment variable `{0}` is not valid Unicode")]
    InvalidEnv(String),
    /// A header name or value cannot be sent.
    #[error("invalid header `{name}`: {reason}")]
    InvalidHeader {
        /// The header name (values are never echoed: they may be secret).
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A required setting is missing (e.g. BookyFlow's scopes).
    #[error("missing setting: {0}")]
    Missing(&'static str),
    /// A setting has an unusable value.
    #[error("invalid setting `{name}`: {reason}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Makes server- or transport-provided text safe to show: drops control characters, collapses
/// whitespace, caps the length at `max_chars` and replaces every occurrence of each non-empty
/// string in `redact` with `[redacted]`.
pub(crate) fn sanitize(text: &str, max_chars: usize, redact: &[&str]) -> String {
    let mut text = std::borrow::Cow::Borrowed(text);
    for secret in redact.iter().filter(|s| !s.is_empty()) {
        if text.contains(secret) {
            text = std::borrow::Cow::Owned(text.replace(secret, "[redacted]"));
        }
    }
    let mut out = String::with_capacity(text.len().min(max_chars + 3));
    let mut count = 0;
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        if count >= max_chars {
            out.push('…');
            break;
        }
        if pending_space {
            out.push(' ');
            count += 1;
            pending_space = false;
        }
        out.push(c);
        count += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_strips_controls_caps_and_redacts() {
        assert_eq!(sanitize("  a\n\tb\u{7}  c ", 100, &[]), "a b c");
        assert_eq!(sanitize("abcdef", 3, &[]), "abc…");
        assert_eq!(
            sanitize("bad secret s3cr3t! and s3cr3t", 100, &["s3cr3t"]),
            "bad secret [redacted]! and [redacted]"
        );
        // Redaction happens before truncation, so a secret cut in half never leaks a prefix.
        assert_eq!(sanitize("xs3cr3t", 4, &["s3cr3t"]), "x[re…");
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(
            RetryAfter::parse(b" 120 "),
            Some(RetryAfter::Delay(Duration::from_secs(120)))
        );
        assert_eq!(
            RetryAfter::parse(b"99999999999999999999999"),
            Some(RetryAfter::Delay(Duration::from_secs(u64::MAX)))
        );
        let at = RetryAfter::parse(b"Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let RetryAfter::At(t) = at else {
            panic!("expected a date")
        };
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_445_412_480
        );
        assert_eq!(at.delay_from(t + Duration::from_secs(5)), Duration::ZERO);
        assert_eq!(
            at.delay_from(t - Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert_eq!(RetryAfter::parse(b"-1"), None);
        assert_eq!(RetryAfter::parse(b"soon"), None);
        assert_eq!(RetryAfter::parse(&[0xff, 0xfe]), None);
    }

    #[test]
    fn classification() {
        let oauth = |status: u16, code: &str| {
            Error::OAuth(OAuthError {
                status: StatusCode::from_u16(status).unwrap(),
                code: ErrorCode::parse(code),
                description: None,
                uri: None,
                retry_after: None,
                quota: None,
            })
        };
        assert!(oauth(401, "invalid_client").is_credentials_rejected());
        assert!(!oauth(401, "invalid_client").is_retryable());
        assert!(oauth(400, "invalid_grant").is_grant_rejected());
        assert!(!oauth(400, "invalid_grant").is_credentials_rejected());
        assert!(oauth(503, "temporarily_unavailable").is_retryable());
        assert!(oauth(200, "server_error").is_retryable());
        assert!(oauth(401, "unauthorized").is_credentials_rejected());
        let http = |status: u16| {
            Error::Http(HttpError {
                status: StatusCode::from_u16(status).unwrap(),
                excerpt: String::new(),
                retry_after: None,
                quota: None,
            })
        };
        assert!(http(502).is_retryable());
        assert!(http(429).is_retryable());
        assert!(!http(404).is_retryable());
        assert!(http(403).is_credentials_rejected());
        assert!(!http(307).is_retryable());
        assert!(
            Error::Transport(TransportFailure::new(TransportErrorKind::Timeout, "")).is_retryable()
        );
    }
}
