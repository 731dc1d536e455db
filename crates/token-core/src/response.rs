//! Parsing token endpoint responses: tolerant where real servers differ, strict where it
//! matters.
//!
//! Tolerated: `expires_in` as an integer, a numeric string (`"3600"`) or a float; the token type
//! under `token_type` or Octorate's `type`, in any case, and absent (read as Bearer); `scope` as a
//! space-separated string or an array; unknown fields (kept). Refused, with a typed error: a
//! non-Bearer token type, a non-positive or non-numeric `expires_in`, an empty token or one with
//! characters an HTTP header cannot carry, a success body that is not a JSON object, and any body
//! over the size cap.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::RETRY_AFTER;
use http::{HeaderMap, Response, StatusCode};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::config::{ClientConfig, Scopes};
use crate::error::{Error, ErrorCode, HttpError, Malformed, OAuthError, RetryAfter, sanitize};
use crate::jwt::jwt_times;
use crate::secret::{AccessToken, RefreshToken};

/// The token type. Only Bearer (RFC 6750) is supported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenType {
    /// `Bearer`.
    Bearer,
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bearer")
    }
}

/// Where a token's lifetime came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LifetimeSource {
    /// The response's `expires_in`.
    ExpiresIn,
    /// The JWT access token's `exp` claim (unverified; see [`jwt`](crate::jwt)).
    JwtExp,
    /// The client's documented default for its provider.
    Default,
}

/// A successful token response.
///
/// `Debug` prints which fields are present, never the tokens.
#[derive(Clone, PartialEq)]
pub struct TokenResponse {
    access_token: Option<AccessToken>,
    token_type: TokenType,
    expires_in: Option<Duration>,
    refresh_token: Option<RefreshToken>,
    scope: Option<Scopes>,
    extra: serde_json::Map<String, Value>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &self.access_token)
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token)
            .field("scope", &self.scope)
            .field("extra_fields", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TokenResponse {
    /// The access token (absent in bookingtime's first leg, which returns a refresh token).
    pub fn access_token(&self) -> Option<&AccessToken> {
        self.access_token.as_ref()
    }

    /// The token type.
    pub fn token_type(&self) -> TokenType {
        self.token_type
    }

    /// `expires_in` as sent (saturated to `Duration::MAX` if absurdly large).
    pub fn expires_in(&self) -> Option<Duration> {
        self.expires_in
    }

    /// The refresh token, if any.
    pub fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }

    /// The granted scopes, if the response lists them.
    pub fn scope(&self) -> Option<&Scopes> {
        self.scope.as_ref()
    }

    /// Fields this crate does not interpret, verbatim (they may hold secrets, e.g. an
    /// `id_token`: treat them with care).
    pub fn extra(&self) -> &serde_json::Map<String, Value> {
        &self.extra
    }

    /// The token's lifetime and where it came from: `expires_in`; else, for a JWT access token,
    /// its `exp` claim (the earlier of `exp - iat` and `exp - wall_now`, so neither a skewed
    /// clock nor a token issued long ago stretches it); else `default`. Zero when a JWT has
    /// already expired by `wall_now`.
    pub fn lifetime(&self, wall_now: SystemTime, default: Duration) -> (Duration, LifetimeSource) {
        if let Some(d) = self.expires_in {
            return (d, LifetimeSource::ExpiresIn);
        }
        let from_jwt = |t: Option<&str>| t.and_then(|t| jwt_lifetime(t, wall_now));
        if let Some(d) = from_jwt(self.access_token.as_ref().map(AccessToken::secret))
            .or_else(|| from_jwt(self.refresh_token.as_ref().map(RefreshToken::secret)))
        {
            return (d, LifetimeSource::JwtExp);
        }
        (default, LifetimeSource::Default)
    }
}

/// The remaining lifetime of a JWT by its `exp` claim: the earlier of `exp - iat` and
/// `exp - wall_now` (zero once expired). `None` when it is not a JWT with `exp`.
pub(crate) fn jwt_lifetime(token: &str, wall_now: SystemTime) -> Option<Duration> {
    let times = jwt_times(token)?;
    let exp = times.exp?;
    let now_secs = wall_now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut remaining = exp.saturating_sub(now_secs);
    if let Some(iat) = times.iat {
        remaining = remaining.min(exp.saturating_sub(iat));
    }
    Some(Duration::from_secs(remaining))
}

/// Parses a token endpoint response for `config`'s client (its body cap and secret redaction).
pub fn parse_token_response(
    config: &ClientConfig,
    response: &Response<Vec<u8>>,
) -> Result<TokenResponse, Error> {
    parse_parts(
        response.status(),
        response.headers(),
        response.body(),
        config.max_body_bytes(),
        &config.redactions(),
    )
}

/// The parser behind [`parse_token_response`], on raw parts.
pub(crate) fn parse_parts(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    max_body: usize,
    redact: &[&str],
) -> Result<TokenResponse, Error> {
    if body.len() > max_body {
        return Err(Error::BodyTooLarge {
            status,
            limit: max_body,
        });
    }
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| RetryAfter::parse(v.as_bytes()));
    let raw = RawResponse::parse(body);

    if !status.is_success() {
        return Err(match raw {
            Some(raw) if raw.error.is_some() => {
                Error::OAuth(raw.into_oauth_error(status, retry_after, redact))
            }
            _ => Error::Http(HttpError {
                status,
                excerpt: excerpt(body, redact),
                retry_after,
            }),
        });
    }
    let malformed = |reason| Error::Malformed { status, reason };
    let Some(raw) = raw else {
        return Err(malformed(Malformed::NotJson {
            excerpt: excerpt(body, redact),
        }));
    };
    if raw.error.is_some() {
        return Err(Error::OAuth(raw.into_oauth_error(
            status,
            retry_after,
            redact,
        )));
    }
    raw.into_token_response().map_err(malformed)
}

/// A short, readable, secret-free excerpt of a body: HTML tags dropped, whitespace collapsed,
/// at most 120 characters.
fn excerpt(body: &[u8], redact: &[&str]) -> String {
    let head = &body[..body.len().min(4096)];
    let text = String::from_utf8_lossy(head);
    let mut stripped = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => {
                in_tag = true;
                stripped.push(' ');
            }
            '>' if in_tag => in_tag = false,
            c if !in_tag => stripped.push(c),
            _ => {}
        }
    }
    sanitize(&stripped, 120, redact)
}

/// One pass over the JSON object: known fields are picked out as they come; the rest is kept.
#[derive(Default)]
struct RawResponse {
    access_token: Option<Value>,
    token_type: Option<Value>,
    type_alias: Option<Value>,
    expires_in: Option<Value>,
    refresh_token: Option<Value>,
    scope: Option<Value>,
    error: Option<String>,
    error_description: Option<Value>,
    error_uri: Option<Value>,
    extra: serde_json::Map<String, Value>,
}

impl RawResponse {
    /// `None` when the body is not a JSON object.
    fn parse(body: &[u8]) -> Option<Self> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let raw = de.deserialize_map(RawVisitor).ok()?;
        de.end().ok()?;
        Some(raw)
    }

    fn into_oauth_error(
        self,
        status: StatusCode,
        retry_after: Option<RetryAfter>,
        redact: &[&str],
    ) -> OAuthError {
        let text = |v: Option<Value>, max| match v {
            Some(Value::String(s)) => Some(sanitize(&s, max, redact)).filter(|s| !s.is_empty()),
            _ => None,
        };
        OAuthError {
            status,
            code: ErrorCode::parse(&sanitize(self.error.as_deref().unwrap_or(""), 64, redact)),
            description: text(self.error_description, 200),
            uri: text(self.error_uri, 200),
            retry_after,
        }
    }

    fn into_token_response(self) -> Result<TokenResponse, Malformed> {
        let access_token = token_field(self.access_token, "access_token")?.map(AccessToken::new);
        let refresh_token =
            token_field(self.refresh_token, "refresh_token")?.map(RefreshToken::new);
        if access_token.is_none() && refresh_token.is_none() {
            return Err(Malformed::MissingField("access_token"));
        }
        let token_type = match non_null(self.token_type).or(non_null(self.type_alias)) {
            None => TokenType::Bearer,
            Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => TokenType::Bearer,
            Some(Value::String(t)) => {
                return Err(Malformed::UnsupportedTokenType(sanitize(&t, 32, &[])));
            }
            Some(_) => {
                return Err(Malformed::InvalidField {
                    field: "token_type",
                    reason: "is not a string",
                });
            }
        };
        let expires_in = match non_null(self.expires_in) {
            None => None,
            Some(v) => Some(expires_in(&v)?),
        };
        let scope = match non_null(self.scope) {
            None => None,
            Some(Value::String(s)) => Some(Scopes::parse(&s)),
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| v.as_str().ok_or(()))
                    .collect::<Result<Scopes, ()>>()
                    .map_err(|()| Malformed::InvalidField {
                        field: "scope",
                        reason: "is not a string or a list of strings",
                    })?,
            ),
            Some(_) => {
                return Err(Malformed::InvalidField {
                    field: "scope",
                    reason: "is not a string or a list of strings",
                });
            }
        };
        Ok(TokenResponse {
            access_token,
            token_type,
            expires_in,
            refresh_token,
            scope,
            extra: self.extra,
        })
    }
}

fn non_null(v: Option<Value>) -> Option<Value> {
    v.filter(|v| !v.is_null())
}

/// A token string: present, non-empty, and sendable in an `Authorization` header.
fn token_field(v: Option<Value>, field: &'static str) -> Result<Option<String>, Malformed> {
    match non_null(v) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err(Malformed::InvalidField {
            field,
            reason: "is empty",
        }),
        Some(Value::String(s)) if s.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(s)),
        Some(Value::String(_)) => Err(Malformed::InvalidField {
            field,
            reason: "has characters an HTTP header cannot carry",
        }),
        Some(_) => Err(Malformed::InvalidField {
            field,
            reason: "is not a string",
        }),
    }
}

/// `expires_in`: a positive number of seconds as a JSON integer, float or numeric string.
/// Absurdly large values saturate (the manager caps lifetimes).
fn expires_in(v: &Value) -> Result<Duration, Malformed> {
    let invalid = |reason| Malformed::InvalidField {
        field: "expires_in",
        reason,
    };
    let secs: f64 = match v {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                return if u == 0 {
                    Err(invalid("is not positive"))
                } else {
                    Ok(Duration::from_secs(u))
                };
            }
            n.as_f64().ok_or(invalid("is not a number"))?
        }
        Value::String(s) => {
            let s = s.trim();
            if let Ok(u) = s.parse::<u64>() {
                return if u == 0 {
                    Err(invalid("is not positive"))
                } else {
                    Ok(Duration::from_secs(u))
                };
            }
            // Rust's float parser also accepts "inf" and "NaN": rejected below as non-finite.
            s.parse::<f64>().map_err(|_| invalid("is not a number"))?
        }
        _ => return Err(invalid("is not a number")),
    };
    if !secs.is_finite() {
        return Err(invalid("is not a finite number"));
    }
    if secs <= 0.0 {
        return Err(invalid("is not positive"));
    }
    Ok(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawResponse;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawResponse, A::Error> {
        let mut raw = RawResponse::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let slot = match key.as_ref() {
                "access_token" => &mut raw.access_token,
                "token_type" => &mut raw.token_type,
                "type" => &mut raw.type_alias,
                "expires_in" => &mut raw.expires_in,
                "refresh_token" => &mut raw.refresh_token,
                "scope" => &mut raw.scope,
                "error_description" => &mut raw.error_description,
                "error_uri" => &mut raw.error_uri,
                "error" => {
                    // Only a string `error` makes this an RFC 6749 error response.
                    match map.next_value::<Value>()? {
                        Value::String(s) => raw.error = Some(s),
                        other => {
                            raw.extra.insert("error".to_owned(), other);
                        }
                    }
                    continue;
                }
                _ => {
                    let value = map.next_value::<Value>()?;
                    raw.extra.insert(key.into_owned(), value);
                    continue;
                }
            };
            *slot = Some(map.next_value::<Value>()?);
        }
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, body: &str) -> Result<TokenResponse, Error> {
        parse_parts(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
            64 * 1024,
            &["s3cr3t-value"],
        )
    }

    #[test]
    fn expires_in_forms() {
        let secs = |body: &str| parse(200, body).map(|r| r.expires_in());
        assert_eq!(
            secs(r#"{"access_token":"t","expires_in":3600}"#),
            Ok(Some(Duration::from_secs(3600)))
        );
        assert_eq!(
            secs(r#"{"access_token":"t","expires_in":"3600"}"#),
            Ok(Some(Duration::from_secs(3600)))
        );
        assert_eq!(
            secs(r#"{"access_token":"t","expires_in":" 59.5 "}"#),
            Ok(Some(Duration::from_millis(59_500)))
        );
        // Beyond f64: serde_json refuses the document; a typed error, not a panic.
        for huge in ["1e400", "-1e400"] {
            let body = format!(r#"{{"access_token":"t","expires_in":{huge}}}"#);
            assert!(
                matches!(secs(&body), Err(Error::Malformed { .. })),
                "{huge}"
            );
        }
        assert_eq!(
            secs(r#"{"access_token":"t","expires_in":18446744073709551615}"#),
            Ok(Some(Duration::from_secs(u64::MAX)))
        );
        assert_eq!(
            secs(r#"{"access_token":"t","expires_in":1e300}"#),
            Ok(Some(Duration::MAX))
        );
        assert_eq!(secs(r#"{"access_token":"t","expires_in":null}"#), Ok(None));
        for bad in [
            "0",
            "-1",
            "-0.5",
            "\"0\"",
            "\"-3600\"",
            "\"<time in s>\"",
            "\"NaN\"",
            "\"inf\"",
            "true",
            "[]",
        ] {
            let err = secs(&format!(r#"{{"access_token":"t","expires_in":{bad}}}"#)).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Malformed {
                        reason: Malformed::InvalidField {
                            field: "expires_in",
                            ..
                        },
                        ..
                    }
                ),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn token_type_forms() {
        for ok in [
            r#"{"access_token":"t","token_type":"Bearer"}"#,
            r#"{"access_token":"t","token_type":"bearer"}"#,
            r#"{"access_token":"t","type":"BEARER"}"#,
            r#"{"access_token":"t"}"#,
            r#"{"access_token":"t","token_type":null}"#,
        ] {
            assert_eq!(
                parse(200, ok).unwrap().token_type(),
                TokenType::Bearer,
                "{ok}"
            );
        }
        let err = parse(200, r#"{"access_token":"t","token_type":"mac"}"#).unwrap_err();
        assert_eq!(
            err,
            Error::Malformed {
                status: StatusCode::OK,
                reason: Malformed::UnsupportedTokenType("mac".into())
            }
        );
        assert!(err.to_string().contains("mac"));
    }

    #[test]
    fn oauth_errors_even_on_200() {
        let err = parse(
            200,
            r#"{"error":"invalid_client","error_description":"bad s3cr3t-value"}"#,
        )
        .unwrap_err();
        let Error::OAuth(e) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(e.code, ErrorCode::InvalidClient);
        assert_eq!(e.status, StatusCode::OK);
        assert_eq!(e.description.as_deref(), Some("bad [redacted]"));
        assert!(!err.to_string().contains("s3cr3t"));
    }

    #[test]
    fn html_error_pages_get_an_excerpt() {
        let err = parse(
            502,
            "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad\nGateway</h1></body></html>",
        )
        .unwrap_err();
        let Error::Http(e) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(e.status, StatusCode::BAD_GATEWAY);
        assert_eq!(e.excerpt, "502 Bad Gateway Bad Gateway");
        assert!(err.is_retryable());
    }

    #[test]
    fn unknown_fields_are_kept_and_debug_is_secret_free() {
        let r = parse(
            200,
            r#"{"access_token":"tok-abc","refresh_token":"ref-abc","id_token":"idt","x":1}"#,
        )
        .unwrap();
        assert_eq!(r.extra().get("x"), Some(&Value::from(1)));
        let dbg = format!("{r:?}");
        assert!(!dbg.contains("tok-abc") && !dbg.contains("ref-abc") && !dbg.contains("idt"));
    }

    #[test]
    fn lifetime_sources() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let default = Duration::from_secs(77);
        let r = parse(200, r#"{"access_token":"t","expires_in":10}"#).unwrap();
        assert_eq!(
            r.lifetime(wall, default),
            (Duration::from_secs(10), LifetimeSource::ExpiresIn)
        );
        let r = parse(200, r#"{"access_token":"opaque"}"#).unwrap();
        assert_eq!(
            r.lifetime(wall, default),
            (default, LifetimeSource::Default)
        );
        let b64 = |s: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
        };
        let jwt = |claims: &str| format!("{}.{}.sig", b64("{}"), b64(claims));
        let body = |claims: &str| format!(r#"{{"access_token":"{}"}}"#, jwt(claims));
        // exp - wall_now
        let r = parse(200, &body(r#"{"exp":1000300}"#)).unwrap();
        assert_eq!(
            r.lifetime(wall, default),
            (Duration::from_secs(300), LifetimeSource::JwtExp)
        );
        // exp - iat is shorter: a clock running behind does not stretch the lifetime.
        let r = parse(200, &body(r#"{"exp":1000300,"iat":1000200}"#)).unwrap();
        assert_eq!(r.lifetime(wall, default).0, Duration::from_secs(100));
        // Already expired: zero.
        let r = parse(200, &body(r#"{"exp":999999}"#)).unwrap();
        assert_eq!(r.lifetime(wall, default).0, Duration::ZERO);
    }

    #[test]
    fn size_cap() {
        let body = format!(r#"{{"access_token":"{}"}}"#, "a".repeat(100));
        let err =
            parse_parts(StatusCode::OK, &HeaderMap::new(), body.as_bytes(), 50, &[]).unwrap_err();
        assert_eq!(
            err,
            Error::BodyTooLarge {
                status: StatusCode::OK,
                limit: 50
            }
        );
    }
}
