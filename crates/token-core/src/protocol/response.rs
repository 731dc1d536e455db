//! Parsing token endpoint responses: tolerant where real servers differ, strict where it
//! matters.
//!
//! Tolerated: `expires_in` as an integer, a numeric string (`"3600"`) or a float; the token type
//! under `token_type` or Octorate's `type`, in any case, and absent (read as Bearer); `scope` as a
//! space-separated string or an array; unknown fields (kept). Refused, with a typed error: a
//! non-Bearer token type, a non-positive or non-numeric `expires_in`, an empty token or one with
//! characters an HTTP header cannot carry, a success body that is not a JSON object, and any body
//! over the size cap.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::RETRY_AFTER;
use http::{HeaderMap, Response, StatusCode};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::protocol::config::{ClientConfig, Scopes};
use crate::protocol::error::{
    Error, ErrorCode, HttpError, Malformed, OAuthError, RetryAfter, sanitize,
};
use crate::protocol::jwt::jwt_times;
use crate::protocol::quota::Quota;
use crate::protocol::secret::{AccessToken, RefreshToken};

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
    /// The JWT access token's `exp` claim (unverified; see [`jwt`](crate::protocol::jwt)).
    JwtExp,
    /// The client's documented default for its provider.
    Default,
    /// Loaded from a shared store: the store's TTL for it.
    Store,
}

/// A successful token response.
///
/// `Debug` prints which fields are present, never the tokens.
#[derive(Clone)]
pub struct TokenResponse {
    access_token: Option<AccessToken>,
    token_type: TokenType,
    expires_in: Option<Duration>,
    refresh_token: Option<RefreshToken>,
    scope: Option<Scopes>,
    /// The unknown fields, if any (boxed, as the quota: a `TokenResponse` is moved around).
    extra: Option<Box<Extra>>,
    quota: Option<Box<Quota>>,
}

/// The unknown fields of a response: built by the exhaustive parser, or built on the first
/// [`TokenResponse::extra`] from `source` when the fast path parsed the body (it validates them
/// as `Value` would, but builds nothing).
#[derive(Clone)]
struct Extra {
    map: OnceLock<serde_json::Map<String, Value>>,
    source: Option<ExtraSource>,
}

/// A body whose unknown fields were validated but not built: a private copy of it (one
/// allocation) and the dialect option that decides whether `type` is one of them.
#[derive(Clone)]
struct ExtraSource {
    body: Box<[u8]>,
    type_alias: bool,
}

impl ExtraSource {
    /// The unknown fields, read by the exhaustive parser (the one that builds them).
    fn build(&self) -> serde_json::Map<String, Value> {
        let mut parsed = RawResponse {
            type_alias_enabled: self.type_alias,
            ..RawResponse::default()
        };
        let ok = parsed.parse(&self.body);
        debug_assert!(
            ok,
            "the fast path accepted a body the exhaustive parser refuses"
        );
        parsed.extra
    }
}

impl PartialEq for TokenResponse {
    fn eq(&self, other: &Self) -> bool {
        self.access_token == other.access_token
            && self.token_type == other.token_type
            && self.expires_in == other.expires_in
            && self.refresh_token == other.refresh_token
            && self.scope == other.scope
            && self.quota == other.quota
            && self.extra() == other.extra()
    }
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &self.access_token)
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token)
            .field("scope", &self.scope)
            .field("extra_fields", &self.extra().keys().collect::<Vec<_>>())
            .field("quota", &self.quota)
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

    /// Auth0's quota and rate-limit headers of the response, if any.
    pub fn quota(&self) -> Option<&Quota> {
        self.quota.as_deref()
    }

    /// Fields this crate does not interpret, verbatim (they may hold secrets, e.g. an
    /// `id_token`: treat them with care).
    ///
    /// They are checked when the response is parsed (a body with an invalid one is refused),
    /// but the map is built on the first call: most callers never read it.
    pub fn extra(&self) -> &serde_json::Map<String, Value> {
        static NONE: OnceLock<serde_json::Map<String, Value>> = OnceLock::new();
        match &self.extra {
            None => NONE.get_or_init(serde_json::Map::new),
            Some(extra) => extra.map.get_or_init(|| {
                extra
                    .source
                    .as_ref()
                    .map(ExtraSource::build)
                    .unwrap_or_default()
            }),
        }
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

/// Parses a token endpoint response for `config`'s client (its body cap, its dialect and its
/// secret redaction).
pub fn parse_token_response(
    config: &ClientConfig,
    response: &Response<Vec<u8>>,
) -> Result<TokenResponse, Error> {
    parse_token_response_redacting(config, response, &[])
}

/// [`parse_token_response`], also redacting `sent` from every error message: the secrets the
/// request carried besides the client secret (a refresh token, an authorization code), which a
/// server may echo in an error description.
pub fn parse_token_response_redacting(
    config: &ClientConfig,
    response: &Response<Vec<u8>>,
    sent: &[&str],
) -> Result<TokenResponse, Error> {
    let options = ParseOptions {
        max_body: config.max_body_bytes(),
        type_alias: config.accepts_type_alias(),
    };
    parse_with(
        response.status(),
        response.headers(),
        response.body(),
        options,
        // Only error paths redact: a successful parse never builds the list.
        &|| {
            let mut redact = config.redactions();
            redact.extend_from_slice(sent);
            redact
        },
        true,
    )
}

/// How a client's dialect reads a response.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ParseOptions {
    /// Bodies longer than this are refused.
    pub max_body: usize,
    /// Octorate names the token type `type`: read it there too.
    pub type_alias: bool,
}

/// The parser behind [`parse_token_response`], on raw parts (for the fuzz targets and tests).
#[cfg(any(test, feature = "__fuzzing"))]
pub(crate) fn parse_parts(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    options: ParseOptions,
    redact: &[&str],
) -> Result<TokenResponse, Error> {
    parse_with(status, headers, body, options, &|| redact.to_vec(), true)
}

/// A UTF-8 byte-order mark, which some servers put before their JSON.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The parser, with the strings to redact from errors produced on demand.
///
/// No error built here ever quotes a success body (it carries the tokens), and every token the
/// parser saw in the body is redacted from every message, next to `redact`'s strings.
fn parse_with<'r>(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    options: ParseOptions,
    redact: &dyn Fn() -> Vec<&'r str>,
    fast: bool,
) -> Result<TokenResponse, Error> {
    if body.len() > options.max_body {
        return Err(Error::BodyTooLarge {
            status,
            limit: options.max_body,
        });
    }
    let body = body.strip_prefix(BOM).unwrap_or(body);
    if fast
        && status.is_success()
        && let Some(result) = parse_fast(status, headers, body, options)
    {
        return result;
    }
    let retry_after = || {
        headers
            .get(RETRY_AFTER)
            .and_then(|v| RetryAfter::parse(v.as_bytes()))
    };
    let mut parsed = RawResponse {
        type_alias_enabled: options.type_alias,
        ..RawResponse::default()
    };
    let raw = parsed.parse(body).then_some(parsed);

    if !status.is_success() {
        return Err(match raw {
            Some(raw) if raw.error.is_some() => {
                raw.into_oauth_error(status, retry_after(), quota(headers), redact())
            }
            _ => Error::Http(HttpError {
                status,
                excerpt: excerpt(body, &redact()),
                retry_after: retry_after(),
                quota: quota(headers).map(Box::new),
            }),
        });
    }
    let malformed = |reason| Error::Malformed { status, reason };
    // A success body is never excerpted: a body that is almost JSON (truncated, a trailing
    // comma) still carries the token.
    let Some(raw) = raw else {
        return Err(malformed(Malformed::NotJson));
    };
    if raw.error.is_some() {
        return Err(raw.into_oauth_error(status, retry_after(), quota(headers), redact()));
    }
    let mut response = raw.into_token_response().map_err(malformed)?;
    response.quota = quota(headers).map(Box::new);
    Ok(response)
}

/// The fast path for a success status: `None` when the body needs the exhaustive parser (it
/// is not JSON, it carries an `error`, or anything in it is unusual), else exactly what that
/// parser would return, without the quota.
///
/// It reads the same document with the same `serde_json` deserializer and applies the same
/// checks, but reads the two tokens and the keys as raw bytes (`serde_json` then finds the end
/// of the string with `memchr` and validates nothing), checking them itself: a token must be
/// visible ASCII (so it is valid UTF-8 without control characters, which the exhaustive parser
/// would have refused in the JSON), an unknown key valid UTF-8 without control characters.
/// Anything else (a token that is not a string, or not visible ASCII; an unusual key) hands the
/// body over to the exhaustive parser, which decides. Unknown fields and error texts are
/// validated as `Value` would read them (same numbers, strings, nesting) without being built;
/// the unknown fields are built from a copy of the body on the first
/// [`TokenResponse::extra`].
fn parse_fast(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    options: ParseOptions,
) -> Option<Result<TokenResponse, Error>> {
    let mut raw = FastResponse {
        type_alias_enabled: options.type_alias,
        ..FastResponse::default()
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    if de.deserialize_map(FastVisitor(&mut raw)).is_err() || de.end().is_err() {
        return None;
    }
    let extra = raw.has_extra.then(|| {
        Box::new(Extra {
            map: OnceLock::new(),
            source: Some(ExtraSource {
                body: Box::from(body),
                type_alias: options.type_alias,
            }),
        })
    });
    let token = |t: Option<Cow<'_, str>>| t.map(Arc::from);
    let quota = quota(headers).map(Box::new);
    Some(
        token_response(
            token(raw.access_token),
            token(raw.refresh_token),
            &raw.token_type,
            &raw.type_alias,
            raw.expires_in.duration(),
            &raw.scope,
            extra,
            quota,
        )
        .map_err(|reason| Error::Malformed { status, reason }),
    )
}

/// What [`parse_fast`] reads: the tokens already checked (non-empty, visible ASCII).
#[derive(Default)]
struct FastResponse<'de> {
    type_alias_enabled: bool,
    access_token: Option<Cow<'de, str>>,
    refresh_token: Option<Cow<'de, str>>,
    token_type: Field<'de>,
    type_alias: Field<'de>,
    expires_in: FastExpires<'de>,
    scope: Field<'de>,
    has_extra: bool,
}

struct FastVisitor<'a, 'de>(&'a mut FastResponse<'de>);

impl<'de> Visitor<'de> for FastVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        visit_map_fast(self.0, map)
    }
}

/// The quota headers, looked for in one pass over the headers (most responses have none).
fn quota(headers: &HeaderMap) -> Option<Quota> {
    if headers.is_empty() {
        return None;
    }
    let any = headers.keys().any(|name| {
        let name = name.as_str().as_bytes();
        match name.first() {
            Some(b'a') => name.starts_with(b"auth0-"),
            Some(b'x') => name.starts_with(b"x-ratelimit-"),
            _ => false,
        }
    });
    if any {
        Quota::from_headers(headers)
    } else {
        None
    }
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
/// Keys and the string fields read here stay borrowed from the body where they have no escapes,
/// so a token is copied once, into its `Arc<str>`.
#[derive(Default)]
struct RawResponse<'de> {
    /// Whether `type` names the token type (Octorate); otherwise it is an ordinary field.
    type_alias_enabled: bool,
    access_token: Field<'de>,
    token_type: Field<'de>,
    type_alias: Field<'de>,
    expires_in: Option<Value>,
    refresh_token: Field<'de>,
    scope: Field<'de>,
    error: Option<String>,
    error_description: Option<Value>,
    error_uri: Option<Value>,
    extra: serde_json::Map<String, Value>,
}

/// A known field's value. Absent and `null` are the same to the parser: both are `Null`.
#[derive(Default)]
enum Field<'de> {
    #[default]
    Null,
    /// A string, borrowed from the body unless it had escapes.
    Str(Cow<'de, str>),

    /// Any other JSON value.
    Other(Value),
}

impl<'de> RawResponse<'de> {
    /// Reads `body` into `self` (in place: the struct is large); false when the body is not a
    /// JSON object, leaving `self` partly filled.
    fn parse(&mut self, body: &'de [u8]) -> bool {
        let mut de = serde_json::Deserializer::from_slice(body);
        de.deserialize_map(RawVisitor(self)).is_ok() && de.end().is_ok()
    }

    /// The token strings this body carried, to redact from any message about it.
    fn seen_tokens(&self) -> impl Iterator<Item = &str> {
        [&self.access_token, &self.refresh_token]
            .into_iter()
            .filter_map(|field| match field {
                Field::Str(s) if !s.is_empty() => Some(s.as_ref()),
                _ => None,
            })
            .chain(
                ["id_token", "refresh_token", "access_token"]
                    .into_iter()
                    .filter_map(|name| {
                        self.extra
                            .get(name)
                            .and_then(Value::as_str)
                            .filter(|s| !s.is_empty())
                    }),
            )
    }

    /// The RFC 6749 error this body carries, its text sanitized and stripped of `redact` and of
    /// every token the body itself carried.
    fn into_oauth_error(
        self,
        status: StatusCode,
        retry_after: Option<RetryAfter>,
        quota: Option<Quota>,
        redact: Vec<&str>,
    ) -> Error {
        let seen: Vec<String> = self.seen_tokens().map(str::to_owned).collect();
        let redact: Vec<&str> = redact
            .into_iter()
            .chain(seen.iter().map(String::as_str))
            .collect();
        let text = |v: Option<Value>, max| match v {
            Some(Value::String(s)) => Some(sanitize(&s, max, &redact)).filter(|s| !s.is_empty()),
            _ => None,
        };
        Error::OAuth(OAuthError {
            status,
            code: ErrorCode::parse(&sanitize(self.error.as_deref().unwrap_or(""), 64, &redact)),
            description: text(self.error_description, 200),
            uri: text(self.error_uri, 200),
            retry_after,
            quota: quota.map(Box::new),
        })
    }

    fn into_token_response(self) -> Result<TokenResponse, Malformed> {
        let access_token = token_field(self.access_token, "access_token")?;
        let refresh_token = token_field(self.refresh_token, "refresh_token")?;
        let extra = (!self.extra.is_empty()).then(|| {
            Box::new(Extra {
                map: OnceLock::from(self.extra),
                source: None,
            })
        });
        token_response(
            access_token,
            refresh_token,
            &self.token_type,
            &self.type_alias,
            non_null(self.expires_in)
                .map(|v| expires_in(&v))
                .transpose(),
            &self.scope,
            extra,
            None,
        )
    }
}

/// The checks after the tokens', in the same order for both parsers. (The two parsers read
/// into different structs; the fields come one by one.)
#[allow(clippy::too_many_arguments)]
fn token_response(
    access_token: Option<Arc<str>>,
    refresh_token: Option<Arc<str>>,
    token_type: &Field<'_>,
    type_alias: &Field<'_>,
    expires_in: Result<Option<Duration>, Malformed>,
    scope: &Field<'_>,
    extra: Option<Box<Extra>>,
    quota: Option<Box<Quota>>,
) -> Result<TokenResponse, Malformed> {
    {
        let access_token = access_token.map(AccessToken::new);
        let refresh_token = refresh_token.map(RefreshToken::new);
        if access_token.is_none() && refresh_token.is_none() {
            return Err(Malformed::MissingField("access_token"));
        }
        let token_type = match token_type {
            Field::Null => type_alias,
            named => named,
        };
        let token_type = match token_type {
            Field::Null => TokenType::Bearer,
            Field::Str(t) if t.eq_ignore_ascii_case("bearer") => TokenType::Bearer,
            Field::Str(t) => {
                let seen: Vec<&str> = [
                    access_token.as_ref().map(AccessToken::secret),
                    refresh_token.as_ref().map(RefreshToken::secret),
                ]
                .into_iter()
                .flatten()
                .collect();
                return Err(Malformed::UnsupportedTokenType(sanitize(t, 32, &seen)));
            }
            Field::Other(_) => {
                return Err(Malformed::InvalidField {
                    field: "token_type",
                    reason: "is not a string",
                });
            }
        };
        let expires_in = expires_in?;
        let scope = match scope {
            Field::Null => None,
            Field::Str(s) => Some(Scopes::parse(s)),
            Field::Other(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| v.as_str().ok_or(()))
                    .collect::<Result<Scopes, ()>>()
                    .map_err(|()| Malformed::InvalidField {
                        field: "scope",
                        reason: "is not a string or a list of strings",
                    })?,
            ),
            Field::Other(_) => {
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
            extra,
            quota,
        })
    }
}

fn non_null(v: Option<Value>) -> Option<Value> {
    v.filter(|v| !v.is_null())
}

/// A token string: present, non-empty, and sendable in an `Authorization` header.
fn token_field(v: Field<'_>, field: &'static str) -> Result<Option<Arc<str>>, Malformed> {
    match v {
        Field::Null => Ok(None),
        Field::Str(s) if s.is_empty() => Err(Malformed::InvalidField {
            field,
            reason: "is empty",
        }),
        Field::Str(s) if is_visible_ascii(s.as_bytes()) => Ok(Some(Arc::from(s))),
        Field::Str(_) => Err(Malformed::InvalidField {
            field,
            reason: "has characters an HTTP header cannot carry",
        }),
        Field::Other(_) => Err(Malformed::InvalidField {
            field,
            reason: "is not a string",
        }),
    }
}

/// True when every byte is visible ASCII (`!` to `~`), the characters a token can carry in a
/// header. Branch-free, so the compiler vectorizes it: tokens are often kilobytes of JWT, and a
/// byte-at-a-time loop with an early exit cost more than parsing them.
fn is_visible_ascii(s: &[u8]) -> bool {
    // The smallest and largest byte: two vector min/max per 16 bytes.
    let (lo, hi) = s
        .iter()
        .fold((u8::MAX, 0u8), |(lo, hi), &b| (lo.min(b), hi.max(b)));
    s.is_empty() || (lo >= b'!' && hi <= b'~')
}

/// `expires_in`: a positive number of seconds as a JSON integer, float or numeric string.
/// Absurdly large values saturate (the manager caps lifetimes).
fn expires_in(v: &Value) -> Result<Duration, Malformed> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(u) => expires_secs(u),
            None => expires_f64(n.as_f64().ok_or(invalid_expiry("is not a number"))?),
        },
        Value::String(s) => expires_text(s),
        _ => Err(invalid_expiry("is not a number")),
    }
}

fn invalid_expiry(reason: &'static str) -> Malformed {
    Malformed::InvalidField {
        field: "expires_in",
        reason,
    }
}

/// `expires_in` as a JSON integer.
fn expires_secs(u: u64) -> Result<Duration, Malformed> {
    if u == 0 {
        Err(invalid_expiry("is not positive"))
    } else {
        Ok(Duration::from_secs(u))
    }
}

/// `expires_in` as a numeric string.
fn expires_text(s: &str) -> Result<Duration, Malformed> {
    let s = s.trim();
    if let Ok(u) = s.parse::<u64>() {
        return expires_secs(u);
    }
    // Rust's float parser also accepts "inf" and "NaN": rejected below as non-finite.
    expires_f64(
        s.parse::<f64>()
            .map_err(|_| invalid_expiry("is not a number"))?,
    )
}

/// `expires_in` as a float (or a negative integer).
fn expires_f64(secs: f64) -> Result<Duration, Malformed> {
    if !secs.is_finite() {
        return Err(invalid_expiry("is not a finite number"));
    }
    if secs <= 0.0 {
        return Err(invalid_expiry("is not positive"));
    }
    Ok(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// `expires_in` as [`parse_fast`] reads it: a number or a string, read as `Value` would read
/// it but not built (anything else sends the body to the exhaustive parser).
#[derive(Default)]
enum FastExpires<'de> {
    /// Absent or `null`.
    #[default]
    None,
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'de, str>),
}

impl FastExpires<'_> {
    fn duration(&self) -> Result<Option<Duration>, Malformed> {
        match self {
            FastExpires::None => Ok(None),
            FastExpires::U64(u) => expires_secs(*u).map(Some),
            // What `Value::as_f64` gives for these.
            FastExpires::I64(i) => expires_f64(*i as f64).map(Some),
            FastExpires::F64(f) => expires_f64(*f).map(Some),
            FastExpires::Str(s) => expires_text(s).map(Some),
        }
    }
}

impl<'de> Deserialize<'de> for FastExpires<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ExpiresVisitor;

        impl<'de> Visitor<'de> for ExpiresVisitor {
            type Value = FastExpires<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }

            fn visit_unit<E: de::Error>(self) -> Result<FastExpires<'de>, E> {
                Ok(FastExpires::None)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FastExpires<'de>, E> {
                Ok(FastExpires::U64(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FastExpires<'de>, E> {
                Ok(FastExpires::I64(v))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<FastExpires<'de>, E> {
                Ok(FastExpires::F64(v))
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<FastExpires<'de>, E> {
                Ok(FastExpires::Str(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<FastExpires<'de>, E> {
                Ok(FastExpires::Str(Cow::Owned(v.to_owned())))
            }
        }

        deserializer.deserialize_any(ExpiresVisitor)
    }
}

struct RawVisitor<'a, 'de>(&'a mut RawResponse<'de>);

impl<'de> Visitor<'de> for RawVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let raw = self.0;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "access_token" => raw.access_token = map.next_value()?,
                "token_type" => raw.token_type = map.next_value()?,
                "type" if raw.type_alias_enabled => raw.type_alias = map.next_value()?,
                "expires_in" => raw.expires_in = Some(map.next_value()?),
                "refresh_token" => raw.refresh_token = map.next_value()?,
                "scope" => raw.scope = map.next_value()?,
                "error_description" => raw.error_description = Some(map.next_value()?),
                "error_uri" => raw.error_uri = Some(map.next_value()?),
                "error" => {
                    // Only a string `error` makes this an RFC 6749 error response.
                    match map.next_value::<Value>()? {
                        Value::String(s) => raw.error = Some(s),
                        other => {
                            raw.extra.insert("error".to_owned(), other);
                        }
                    }
                }
                _ => {
                    let value = map.next_value::<Value>()?;
                    raw.extra.insert(key.into_owned(), value);
                }
            }
        }
        Ok(())
    }
}

/// [`parse_fast`]'s reading of the object. An error means "ask the exhaustive parser".
fn visit_map_fast<'de, A: MapAccess<'de>>(
    raw: &mut FastResponse<'de>,
    mut map: A,
) -> Result<(), A::Error> {
    while let Some(RawKey(key)) = map.next_key::<RawKey<'de>>()? {
        match &*key {
            b"access_token" => raw.access_token = map.next_value::<TokenBytes<'de>>()?.0,
            b"token_type" => raw.token_type = map.next_value()?,
            b"type" if raw.type_alias_enabled => raw.type_alias = map.next_value()?,
            b"expires_in" => raw.expires_in = map.next_value()?,
            b"refresh_token" => raw.refresh_token = map.next_value::<TokenBytes<'de>>()?.0,
            b"scope" => raw.scope = map.next_value()?,
            b"error" => return Err(de::Error::custom("an error response")),
            b"error_description" | b"error_uri" => {
                map.next_value::<Validated>()?;
            }
            other => {
                if !is_clean_text(other) {
                    return Err(de::Error::custom("an unusual key"));
                }
                map.next_value::<Validated>()?;
                raw.has_extra = true;
            }
        }
    }
    Ok(())
}

/// Valid UTF-8 without control characters: what `serde_json` accepts as a string's contents
/// (conservatively: an escaped control character is refused here too).
fn is_clean_text(bytes: &[u8]) -> bool {
    !bytes.iter().any(|&b| b < 0x20) && std::str::from_utf8(bytes).is_ok()
}

/// An object key as raw bytes (borrowed unless it had escapes), unvalidated.
struct RawKey<'de>(Cow<'de, [u8]>);

impl<'de> Deserialize<'de> for RawKey<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawKeyVisitor;

        impl<'de> Visitor<'de> for RawKeyVisitor {
            type Value = RawKey<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<RawKey<'de>, E> {
                Ok(RawKey(Cow::Borrowed(v)))
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RawKey<'de>, E> {
                Ok(RawKey(Cow::Owned(v.to_vec())))
            }
        }

        deserializer.deserialize_bytes(RawKeyVisitor)
    }
}

/// A token read as raw bytes: `null`, or a string that is empty or visible ASCII (anything
/// else is an error, for the exhaustive parser to judge).
struct TokenBytes<'de>(Option<Cow<'de, str>>);

impl<'de> Deserialize<'de> for TokenBytes<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TokenVisitor;

        impl<'de> Visitor<'de> for TokenVisitor {
            type Value = TokenBytes<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a token")
            }

            fn visit_none<E: de::Error>(self) -> Result<TokenBytes<'de>, E> {
                Ok(TokenBytes(None))
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<TokenBytes<'de>, D::Error> {
                d.deserialize_bytes(self)
            }

            fn visit_borrowed_bytes<E: de::Error>(
                self,
                v: &'de [u8],
            ) -> Result<TokenBytes<'de>, E> {
                token_text(v).map(|t| TokenBytes(Some(Cow::Borrowed(t))))
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<TokenBytes<'de>, E> {
                token_text(v).map(|t| TokenBytes(Some(Cow::Owned(t.to_owned()))))
            }
        }

        deserializer.deserialize_option(TokenVisitor)
    }
}

/// A non-empty, visible-ASCII token as text; the empty string is kept as an ordinary string
/// (refused later as empty).
fn token_text<E: de::Error>(v: &[u8]) -> Result<&str, E> {
    if !v.is_empty() && is_visible_ascii(v) {
        std::str::from_utf8(v).map_err(|_| E::custom("not visible ASCII"))
    } else {
        Err(E::custom("not a usual token"))
    }
}

/// Any JSON value, read (and refused) exactly as `serde_json::Value` would read it, but not
/// built: strings are validated and borrowed, numbers parsed, arrays and objects walked.
struct Validated;

impl<'de> Deserialize<'de> for Validated {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValidatedVisitor)
    }
}

struct ValidatedVisitor;

impl<'de> Visitor<'de> for ValidatedVisitor {
    type Value = Validated;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Validated, E> {
        Ok(Validated)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Validated, E> {
        Ok(Validated)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Validated, E> {
        Ok(Validated)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Validated, E> {
        Ok(Validated)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Validated, E> {
        Ok(Validated)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Validated, E> {
        Ok(Validated)
    }

    fn visit_none<E: de::Error>(self) -> Result<Validated, E> {
        Ok(Validated)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Validated, D::Error> {
        Validated::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Validated, A::Error> {
        while seq.next_element::<Validated>()?.is_some() {}
        Ok(Validated)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Validated, A::Error> {
        // Keys as `Value` reads them: validated strings.
        while map.next_key::<ValidatedKey>()?.is_some() {
            map.next_value::<Validated>()?;
        }
        Ok(Validated)
    }
}

/// An object key inside an unknown field, validated as a string, not kept.
struct ValidatedKey;

impl<'de> Deserialize<'de> for ValidatedKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(ValidatedVisitor)
            .map(|_| ValidatedKey)
    }
}

/// An object key, borrowed from the body unless it had escapes (serde's own `Cow<str>` always
/// copies).
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor)
    }
}

/// Reads any JSON value into a [`Field`]: strings as (borrowed) strings, `null` as `Null`,
/// everything else exactly as `serde_json::Value` reads it.
struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Field<'de>, E> {
        Ok(Field::Other(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Field<'de>, E> {
        Ok(Field::Other(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Field<'de>, E> {
        Ok(Field::Other(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Field<'de>, E> {
        Ok(Field::Other(Value::from(v)))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Field<'de>, E> {
        Ok(Field::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Field<'de>, E> {
        Ok(Field::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Field<'de>, D::Error> {
        Field::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field<'de>, A::Error> {
        Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Field::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field<'de>, A::Error> {
        Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Field::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: ParseOptions = options(64 * 1024);

    const fn options(max_body: usize) -> ParseOptions {
        ParseOptions {
            max_body,
            type_alias: true,
        }
    }

    fn parse(status: u16, body: &str) -> Result<TokenResponse, Error> {
        parse_parts(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
            OPTIONS,
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

    /// The fast path returns exactly what the exhaustive parser returns (the same token
    /// response, extras included, or the same error), on every input.
    fn same_as_exhaustive(status: u16, body: &[u8]) {
        let status = StatusCode::from_u16(status).unwrap();
        let headers = HeaderMap::new();
        for options in [
            OPTIONS,
            ParseOptions {
                max_body: 64 * 1024,
                type_alias: false,
            },
        ] {
            let run = |fast| {
                parse_with(
                    status,
                    &headers,
                    body,
                    options,
                    &|| vec!["s3cr3t-value"],
                    fast,
                )
            };
            let (fast, slow) = (run(true), run(false));
            assert_eq!(fast, slow, "{:?}", String::from_utf8_lossy(body));
            if let (Ok(fast), Ok(slow)) = (&fast, &slow) {
                assert_eq!(fast.extra(), slow.extra());
                assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
                assert_eq!(fast.clone(), *slow);
            }
        }
    }

    #[test]
    fn fast_path_matches_exhaustive_parser_on_edge_cases() {
        let tokens: &[&[u8]] = &[
            b"\"tok\"",
            b"\"\"",
            b"null",
            b"1",
            b"[\"a\"]",
            b"{}",
            b"\"a b\"",
            b"\"a\\/b\"",
            b"\"a\\u0041\"",
            b"\"a\\u0000\"",
            b"\"a\\n\"",
            b"\"a\x01b\"",
            b"\"a\tb\"",
            b"\"caf\xc3\xa9\"",
            b"\"bad\xff\"",
            b"\"\\ud800\"",
            b"\"\\ud83d\\ude00\"",
            b"\"\\q\"",
            b"\"unterminated",
            b"\"s3cr3t-value\"",
            b"\"x\x7f\"",
            b"nul",
        ];
        let keys: &[&[u8]] = &[
            b"\"x\"",
            b"\"id_token\"",
            b"\"type\"",
            b"\"acc\\u0065ss_token\"",
            b"\"k\x01\"",
            b"\"k\\u0001\"",
            b"\"k\xff\"",
            b"\"\\ud800\"",
            b"\"caf\xc3\xa9\"",
            b"\"error\"",
            b"\"error_description\"",
            b"\"error_uri\"",
        ];
        let values: &[&[u8]] = &[
            b"1",
            b"1e400",
            b"-0",
            b"1.5",
            b"true",
            b"null",
            b"\"v\"",
            b"\"v\x01\"",
            b"\"v\xff\"",
            b"\"\\ud800\"",
            b"[1,{\"a\":[null,\"b\"]}]",
            b"{\"k\xff\":1}",
            b"{\"k\":1e400}",
            b"[1,]",
            b"\"Bearer\"",
            b"\"mac\"",
        ];
        for status in [200, 201, 400] {
            for t in tokens {
                for (field, other) in [("access_token", "refresh_token"), ("refresh_token", "x")] {
                    let mut body = format!("{{\"{field}\":").into_bytes();
                    body.extend_from_slice(t);
                    body.extend_from_slice(
                        format!(",\"{other}\":\"r\",\"expires_in\":5}}").as_bytes(),
                    );
                    same_as_exhaustive(status, &body);
                    same_as_exhaustive(status, &body[..body.len() - 1]);
                }
            }
            for k in keys {
                for v in values {
                    for first in [true, false] {
                        let mut body = Vec::new();
                        body.extend_from_slice(b"{");
                        let pair = [*k, b":", *v].concat();
                        if first {
                            body.extend_from_slice(&pair);
                            body.extend_from_slice(b",\"access_token\":\"t\"}");
                        } else {
                            body.extend_from_slice(b"\"access_token\":\"t\",");
                            body.extend_from_slice(&pair);
                            body.extend_from_slice(b"}");
                        }
                        same_as_exhaustive(status, &body);
                        body.extend_from_slice(b" x");
                        same_as_exhaustive(status, &body);
                    }
                }
            }
            for v in values {
                for field in ["token_type", "type", "expires_in", "scope", "access_token"] {
                    let body = [
                        b"{\"access_token\":\"t\",\"",
                        field.as_bytes(),
                        b"\":",
                        *v,
                        b"}",
                    ]
                    .concat();
                    same_as_exhaustive(status, &body);
                }
            }
        }
        // Duplicates, last wins either way.
        same_as_exhaustive(
            200,
            br#"{"access_token":"a","x":1,"access_token":"b","x":2}"#,
        );
        same_as_exhaustive(200, br#"{"access_token":"a","access_token":null}"#);
        same_as_exhaustive(200, b"[]");
        same_as_exhaustive(200, b"");
        same_as_exhaustive(200, b"{}");
    }

    #[test]
    fn fast_path_matches_exhaustive_parser_on_corpus_and_samples() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut n = 0;
        for dir in [
            "fuzz/corpus/token_response",
            "fuzz/corpus/error_response",
            "crates/benchmarks/data",
        ] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for entry in entries {
                let body = std::fs::read(entry.unwrap().path()).unwrap();
                for status in [200, 400] {
                    same_as_exhaustive(status, &body);
                    // The corpus files may carry a prefix for the fuzz target's own decoding:
                    // also try every suffix that starts an object.
                    for (i, _) in body.iter().enumerate().filter(|(_, b)| **b == b'{').take(4) {
                        same_as_exhaustive(status, &body[i..]);
                    }
                }
                n += 1;
            }
        }
        assert!(n > 0);
    }

    use proptest::prelude::Strategy as _;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        /// Random objects over the known fields and a few unknown ones, with random values
        /// (strings with escapes, controls and non-ASCII; numbers; nested values), sometimes
        /// truncated.
        #[test]
        fn fast_path_matches_exhaustive_parser(
            fields in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "access_token", "refresh_token", "token_type", "type", "expires_in",
                        "scope", "error", "error_description", "id_token", "x", "acc\\u0065ss_token",
                    ]),
                    proptest::prop_oneof![
                        "\"[ -~]{0,12}\"",
                        "\"[a-z\\\\\"/u0-9\x01\t\u{e9}\u{7f}]{0,10}\"",
                        "-?[0-9]{1,4}(\\.[0-9]{1,2})?(e[0-9]{1,3})?",
                        proptest::sample::select(vec!["null", "true", "[]", "[\"a\",1]", "{\"k\":{}}", "\"Bearer\""]).prop_map(str::to_owned),
                    ],
                ),
                0..6,
            ),
            cut in 0usize..4,
            status in proptest::sample::select(vec![200u16, 400]),
        ) {
            let mut body = String::from("{");
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&format!("\"{k}\":{v}"));
            }
            body.push('}');
            let bytes = body.as_bytes();
            same_as_exhaustive(status, &bytes[..bytes.len().saturating_sub(cut)]);
        }
    }

    #[test]
    fn size_cap() {
        let body = format!(r#"{{"access_token":"{}"}}"#, "a".repeat(100));
        let err = parse_parts(
            StatusCode::OK,
            &HeaderMap::new(),
            body.as_bytes(),
            options(50),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            err,
            Error::BodyTooLarge {
                status: StatusCode::OK,
                limit: 50
            }
        );
    }
}
