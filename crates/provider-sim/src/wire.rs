//! HTTP plumbing: request parsing, response building and the special bodies faults use.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{StatusCode, request::Parts};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use http_body::{Frame, SizeHint};
use serde_json::{Value, json};

/// Request parameters by name.
pub(crate) type Params = BTreeMap<String, String>;

/// The media type of a header such as `Content-Type`: lowercase, without parameters.
pub(crate) fn media_type(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or("").trim();
    Some(essence.to_ascii_lowercase())
}

/// Whether the `Accept` header lists `application/json` itself.
pub(crate) fn accepts_json(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|item| {
                item.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            })
        })
    })
}

/// Parses an `application/x-www-form-urlencoded` body. Repeated parameters are an error
/// (RFC 6749 §3.2: "parameters MUST NOT be included more than once").
pub(crate) fn parse_form(body: &[u8]) -> Result<Params, String> {
    let mut params = Params::new();
    for (k, v) in form_urlencoded::parse(body) {
        if params.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(format!("parameter {k} is repeated"));
        }
    }
    Ok(params)
}

/// The outcome of reading a body as a JSON object.
pub(crate) enum JsonBody {
    /// The body is not a JSON object at all.
    NotAnObject,
    /// A JSON object whose values are strings (`null` counts as absent).
    Object(Params),
    /// A JSON object with a value that is neither a string nor null.
    BadValue(String),
}

/// Reads a body as a JSON object of strings.
pub(crate) fn parse_json_object(body: &[u8]) -> JsonBody {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return JsonBody::NotAnObject;
    };
    let mut params = Params::new();
    for (k, v) in map {
        match v {
            Value::String(s) => {
                params.insert(k, s);
            }
            Value::Null => {}
            _ => return JsonBody::BadValue(format!("{k} must be a string")),
        }
    }
    JsonBody::Object(params)
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space and `%XX` a
/// byte; malformed escapes are kept as they are.
pub(crate) fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The credentials of an `Authorization: Basic` header, if there is one.
pub(crate) enum Basic {
    /// No `Authorization` header with the Basic scheme.
    Absent,
    /// A Basic header whose credentials cannot be decoded.
    Malformed,
    /// The form-decoded client id and secret (RFC 6749 §2.3.1).
    Credentials(String, String),
}

/// Reads HTTP Basic client credentials (RFC 6749 §2.3.1: the id and secret are
/// form-urlencoded before being joined with `:` and base64-encoded).
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Basic {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Basic::Absent;
    };
    let Ok(value) = value.to_str() else {
        return Basic::Absent;
    };
    let value = value.trim();
    let Some((scheme, rest)) = value.split_once(' ') else {
        return if value.eq_ignore_ascii_case("basic") {
            Basic::Malformed
        } else {
            Basic::Absent
        };
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Basic::Absent;
    }
    let Some(decoded) = decode_basic(rest.trim()) else {
        return Basic::Malformed;
    };
    match decoded.split_once(':') {
        Some((id, secret)) => Basic::Credentials(form_decode(id), form_decode(secret)),
        None => Basic::Malformed,
    }
}

/// Decodes the base64 part of a Basic header into text.
pub(crate) fn decode_basic(b64: &str) -> Option<String> {
    let bytes = STANDARD
        .decode(b64)
        .or_else(|_| STANDARD_NO_PAD.decode(b64))
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The token of an `Authorization: Bearer` header.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether `secret` occurs anywhere in a request: body (raw or form-decoded), any header
/// value (Basic credentials decoded as well) or the query (raw or decoded).
pub(crate) fn request_carries(parts: &Parts, body: &[u8], secret: &str) -> bool {
    let needle = secret.as_bytes();
    let contains = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    if contains(body) || contains(form_decode(&String::from_utf8_lossy(body)).as_bytes()) {
        return true;
    }
    if let Some(query) = parts.uri.query()
        && (contains(query.as_bytes()) || contains(form_decode(query).as_bytes()))
    {
        return true;
    }
    for value in parts.headers.values() {
        let bytes = value.as_bytes();
        if contains(bytes) || contains(form_decode(&String::from_utf8_lossy(bytes)).as_bytes()) {
            return true;
        }
        if let Ok(text) = value.to_str()
            && let Some((_, b64)) = text.trim().split_once(' ')
            && let Some(decoded) = decode_basic(b64.trim())
            && (decoded.contains(secret) || form_decode(&decoded).contains(secret))
        {
            return true;
        }
    }
    false
}

fn base_response(status: StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// A JSON response (with `Cache-Control: no-store`, as RFC 6749 §5.1 requires of token
/// responses).
pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response {
    raw_json_response(status, value.to_string().into_bytes())
}

/// A response with `Content-Type: application/json` and the given bytes, valid JSON or not.
pub(crate) fn raw_json_response(status: StatusCode, body: Vec<u8>) -> Response {
    base_response(status, "application/json", Body::from(body))
}

/// An HTML response.
pub(crate) fn html_response(status: StatusCode, html: &'static str) -> Response {
    base_response(status, "text/html; charset=utf-8", Body::from(html))
}

/// An RFC 6749 §5.2 error response.
pub(crate) fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    json_response(
        status,
        &json!({ "error": code, "error_description": description }),
    )
}

/// A token-endpoint error (RFC 6749 §5.2), small enough to pass around in `Result`s.
#[derive(Debug)]
pub(crate) struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: String,
}

impl OAuthError {
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status,
            code,
            description: description.into(),
        }
    }

    /// 400 `invalid_request`: the request has the wrong shape.
    pub(crate) fn invalid_request(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// 400 `unsupported_grant_type`.
    pub(crate) fn unsupported_grant_type(grant_type: &str) -> OAuthError {
        OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("grant_type {grant_type} is not supported"),
        )
    }

    /// 400 `invalid_grant`.
    pub(crate) fn invalid_grant(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    /// 400 `invalid_scope`.
    pub(crate) fn invalid_scope(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    /// 401 `invalid_client`, answered with a `WWW-Authenticate` challenge.
    pub(crate) fn invalid_client(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    /// The response.
    pub(crate) fn into_response(self) -> Response {
        let mut resp = oauth_error(self.status, self.code, &self.description);
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"provider-sim\""),
            );
        }
        resp
    }
}

/// 401 on a protected route.
pub(crate) fn unauthorized(description: &str) -> Response {
    let mut resp = oauth_error(StatusCode::UNAUTHORIZED, "unauthorized", description);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"provider-sim\", error=\"invalid_token\""),
    );
    resp
}

/// 403 on a protected route.
pub(crate) fn forbidden(description: &str) -> Response {
    let mut resp = oauth_error(StatusCode::FORBIDDEN, "forbidden", description);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"provider-sim\", error=\"insufficient_scope\""),
    );
    resp
}

/// 405 with an `Allow` header.
pub(crate) fn method_not_allowed(allow: &'static str) -> Response {
    let mut resp = oauth_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        &format!("method not allowed; use {allow}"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// Holds a response's body back for `delay`, keeping its status and headers, which are
/// sent at once.
pub(crate) async fn delay_body(resp: Response, delay: Duration) -> Response {
    let (parts, body) = resp.into_parts();
    // Bodies built by this crate are in memory, so this completes immediately.
    let data = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let body = DelayedBody {
        len: data.len() as u64,
        data: Some(data),
        sleep: Box::pin(tokio::time::sleep(delay)),
    };
    Response::from_parts(parts, Body::new(body))
}

/// A body that yields its data only once a timer has fired.
struct DelayedBody {
    len: u64,
    data: Option<Bytes>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for DelayedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.data.is_none() {
            return Poll::Ready(None);
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(this.data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// A body that fails at once, which makes the server abort the connection before a
/// complete response was written.
struct ResetBody;

impl http_body::Body for ResetBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated connection reset",
        ))))
    }
}

/// A response whose connection is dropped before it is complete.
pub(crate) fn connection_reset() -> Response {
    let mut resp = Response::new(Body::new(ResetBody));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
