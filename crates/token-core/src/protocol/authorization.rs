//! The Authorization Code flow with PKCE (RFC 6749 §4.1, RFC 7636, RFC 9207, RFC 8252,
//! RFC 9700), sans-IO: building the authorization URL, and reading the redirect back.
//!
//! Randomness is an argument, like time: [`PkceVerifier::from_random`] and
//! [`AuthorizationState::from_random`] take the bytes (32 and 16), so the core stays
//! deterministic and tests are exact.
//!
//! # Why it is built this way
//! - **S256 only.** The `plain` method sends the verifier itself as the challenge: anyone who
//!   sees the authorization request (browser history, a proxy log, another app on the device)
//!   can redeem the code. S256 sends only its SHA-256, so the code is useless without the
//!   verifier that never left this process. `plain` is not offered.
//! - **`state`, one-time and checked in constant time.** It binds the redirect to the
//!   authorization this process started, so a forged redirect (login CSRF: an attacker's code
//!   injected into the victim's session) is refused; it is removed once used, so a replayed
//!   redirect is refused too; comparing it in constant time leaks nothing about it.
//! - **Exact redirect URIs.** The code is delivered to the redirect URI; any flexibility there
//!   (prefix matching, open redirects) lets an attacker's URI receive it (RFC 9700 §4.1). The
//!   redirect is accepted only at exactly the URI the authorization named.
//! - **`127.0.0.1`, not `localhost`.** A loopback redirect (RFC 8252 §7.3) must reach this
//!   process, and `localhost` can resolve elsewhere (a hosts file, IPv6 `::1` bound by another
//!   program, DNS): the IP literal cannot.
//! - **`iss` (RFC 9207).** When the server names itself in the redirect, it must be the server
//!   this authorization went to: a mix-up attack sends a code meant for one server to another.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Uri;
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

use crate::protocol::config::{ClientConfig, display_url};
use crate::protocol::error::{ConfigError, ErrorCode, sanitize};

/// A PKCE code verifier (RFC 7636 §4.1): 43 characters of base64url from 32 random bytes.
/// `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct PkceVerifier(String);

impl PkceVerifier {
    /// The verifier for 32 random bytes (from the operating system's generator; the core takes
    /// them as an argument).
    pub fn from_random(bytes: &[u8; 32]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A verifier given as text: 43 to 128 characters of `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
    pub fn new(verifier: impl Into<String>) -> Result<Self, ConfigError> {
        let verifier = verifier.into();
        let ok = (43..=128).contains(&verifier.len())
            && verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if ok {
            Ok(Self(verifier))
        } else {
            Err(ConfigError::Invalid {
                name: "code_verifier",
                reason: "must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
            })
        }
    }

    /// The S256 challenge: `BASE64URL(SHA256(verifier))` (RFC 7636 §4.2).
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(self.0.as_bytes()))
    }

    /// The verifier text. Only for the token request.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PkceVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PkceVerifier([redacted])")
    }
}

/// The `state` of one authorization: 22 characters of base64url from 16 random bytes,
/// compared in constant time. `Debug` prints `[redacted]`.
#[derive(Clone)]
pub struct AuthorizationState(String);

impl AuthorizationState {
    /// The state for 16 random bytes.
    pub fn from_random(bytes: &[u8; 16]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The state text, for the authorization URL.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with what a redirect carried.
    pub fn matches(&self, received: &str) -> bool {
        self.0.as_bytes().ct_eq(received.as_bytes()).into()
    }
}

impl fmt::Debug for AuthorizationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthorizationState([redacted])")
    }
}

/// An authorization code from a redirect. `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationCode(String);

impl AuthorizationCode {
    /// Wraps a code.
    pub fn new(code: impl Into<String>) -> Self {
        Self(code.into())
    }

    /// The code text. Only for the token request.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthorizationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthorizationCode([redacted])")
    }
}

/// Why an authorization could not be started or completed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorizationError {
    /// The client has no authorization endpoint configured
    /// ([`ClientConfigBuilder::authorization_endpoint`](crate::ClientConfigBuilder::authorization_endpoint)).
    #[error("this client has no authorization endpoint configured")]
    NotConfigured,
    /// The redirect URI cannot be used: not absolute, not HTTPS (or `http://127.0.0.1` /
    /// `http://[::1]`), or with a fragment.
    #[error("redirect URI `{uri}` cannot be used: {reason}")]
    InvalidRedirectUri {
        /// The URI (without query).
        uri: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// What came back is not a redirect to the URI the authorization named.
    #[error("the redirect does not match the authorization's redirect URI: {reason}")]
    WrongRedirect {
        /// What is wrong.
        reason: &'static str,
    },
    /// The redirect has no `state`, or a `state` no pending authorization started (forged,
    /// replayed, or expired).
    #[error("the redirect's state matches no pending authorization (forged, replayed or expired)")]
    StateMismatch,
    /// The redirect names an issuer (RFC 9207 `iss`) other than the server the authorization
    /// went to: a mix-up.
    #[error("the redirect's issuer `{received}` is not `{expected}`")]
    IssuerMismatch {
        /// The issuer expected.
        expected: String,
        /// The issuer received (sanitized).
        received: String,
    },
    /// The authorization server refused (RFC 6749 §4.1.2.1), e.g. the user denied access.
    #[error("authorization refused: {code}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        /// The error code (`access_denied`, `invalid_scope`, ...).
        code: ErrorCode,
        /// `error_description`, sanitized.
        description: Option<String>,
    },
    /// A redirect with a valid state but neither `code` nor `error`.
    #[error("the redirect carries no authorization code")]
    MissingCode,
}

/// Checks a redirect URI for the Authorization Code flow: absolute, no fragment, and HTTPS, or
/// plain HTTP to a loopback IP literal (RFC 8252 §7.3; `localhost` is refused, see the module
/// docs). Returns it parsed.
pub fn check_redirect_uri(uri: &str) -> Result<Uri, AuthorizationError> {
    let invalid = |reason| AuthorizationError::InvalidRedirectUri {
        uri: display_url(uri),
        reason,
    };
    if uri.contains('#') {
        return Err(invalid("must not have a fragment"));
    }
    let parsed: Uri = uri.parse().map_err(|_| invalid("does not parse"))?;
    let host = parsed.host().ok_or_else(|| invalid("has no host"))?;
    match parsed.scheme_str() {
        Some("https") => Ok(parsed),
        Some("http") => {
            let ip = host.trim_start_matches('[').trim_end_matches(']');
            match ip.parse::<std::net::IpAddr>() {
                Ok(ip) if ip.is_loopback() => Ok(parsed),
                _ if host.eq_ignore_ascii_case("localhost") => Err(invalid(
                    "use http://127.0.0.1 (or [::1]), not localhost (RFC 8252 §8.3)",
                )),
                _ => Err(invalid("plain HTTP only to a loopback IP literal")),
            }
        }
        _ => Err(invalid("must be https (or http to 127.0.0.1)")),
    }
}

/// The authorization URL for `config`'s authorization endpoint: `response_type=code`,
/// `client_id`, the exact `redirect_uri`, `scope` (if any), `state`, the S256
/// `code_challenge`, then the configured extra parameters, after any query the endpoint URL
/// already has.
pub fn authorization_url(
    config: &ClientConfig,
    redirect_uri: &str,
    state: &AuthorizationState,
    verifier: &PkceVerifier,
) -> Result<String, AuthorizationError> {
    let endpoint = config
        .authorization_endpoint()
        .ok_or(AuthorizationError::NotConfigured)?;
    check_redirect_uri(redirect_uri)?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("response_type", "code");
    query.append_pair("client_id", config.client_id());
    query.append_pair("redirect_uri", redirect_uri);
    if !config.scopes().is_empty() {
        query.append_pair("scope", &config.scopes().to_string());
    }
    query.append_pair("state", state.secret());
    query.append_pair("code_challenge", &verifier.challenge());
    query.append_pair("code_challenge_method", "S256");
    for (name, value) in config.authorization_params() {
        query.append_pair(name, value);
    }
    let endpoint = endpoint.to_string();
    let separator = if endpoint.contains('?') { '&' } else { '?' };
    Ok(format!("{endpoint}{separator}{}", query.finish()))
}

/// What a redirect back from the authorization server says, before its `state` is matched.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Redirect {
    /// The `state` parameter.
    pub state: Option<String>,
    /// The authorization code, on success.
    pub code: Option<AuthorizationCode>,
    /// The RFC 9207 `iss` parameter, if the server sent one.
    pub issuer: Option<String>,
    /// The RFC 6749 §4.1.2.1 error, if the server refused.
    pub error: Option<(ErrorCode, Option<String>)>,
}

/// Reads a redirect: the full URL the browser was sent to (or just its query, starting with
/// `?`). Checks that it is a redirect to `redirect_uri` exactly (scheme, host, port, path);
/// does not match `state` (the manager does, against its pending authorizations).
pub fn parse_redirect(redirect: &str, redirect_uri: &str) -> Result<Redirect, AuthorizationError> {
    let redirect = redirect.trim();
    let (target, query) = match redirect.split_once('?') {
        Some((target, query)) => (target, query),
        None => (redirect, ""),
    };
    let query = query.split('#').next().unwrap_or("");
    if !target.is_empty() {
        let expected = redirect_uri.split('?').next().unwrap_or(redirect_uri);
        let (got, want): (Uri, Uri) = match (target.parse(), expected.parse()) {
            (Ok(got), Ok(want)) => (got, want),
            _ => {
                return Err(AuthorizationError::WrongRedirect {
                    reason: "not a URL",
                });
            }
        };
        let same = got.scheme_str() == want.scheme_str()
            && got.host().map(str::to_ascii_lowercase) == want.host().map(str::to_ascii_lowercase)
            && got.port_u16() == want.port_u16()
            && got.path() == want.path();
        if !same {
            return Err(AuthorizationError::WrongRedirect {
                reason: "a different scheme, host, port or path",
            });
        }
    }
    let mut out = Redirect {
        state: None,
        code: None,
        issuer: None,
        error: None,
    };
    let mut error: Option<String> = None;
    let mut description: Option<String> = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let first = |slot: &mut Option<String>| {
            if slot.is_none() {
                *slot = Some(value.clone().into_owned());
            }
        };
        match name.as_ref() {
            "state" => first(&mut out.state),
            "code" if out.code.is_none() => {
                out.code = Some(AuthorizationCode::new(value.into_owned()));
            }
            "iss" => first(&mut out.issuer),
            "error" => first(&mut error),
            "error_description" => first(&mut description),
            _ => {}
        }
    }
    out.error = error.map(|code| {
        (
            ErrorCode::parse(&sanitize(&code, 64, &[])),
            description
                .map(|d| sanitize(&d, 200, &[]))
                .filter(|d| !d.is_empty()),
        )
    });
    Ok(out)
}

/// Checks a redirect's `iss` (RFC 9207) when it has one: it must be `expected` (the
/// configured issuer, or else the authorization endpoint's origin), ignoring one trailing `/`.
pub fn check_issuer(received: Option<&str>, expected: &str) -> Result<(), AuthorizationError> {
    let Some(received) = received else {
        return Ok(());
    };
    let norm = |s: &str| s.trim_end_matches('/').to_owned();
    if norm(received) == norm(expected) {
        Ok(())
    } else {
        Err(AuthorizationError::IssuerMismatch {
            expected: display_url(expected),
            received: sanitize(received, 200, &[]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    #[test]
    fn rfc7636_appendix_b_vector() {
        let bytes: [u8; 32] = [
            116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212,
            37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
        ];
        let verifier = PkceVerifier::from_random(&bytes);
        assert_eq!(
            verifier.secret(),
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
        assert_eq!(
            verifier.challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(
            PkceVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
                .unwrap()
                .challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(format!("{verifier:?}").contains("redacted"));
    }

    #[test]
    fn verifiers_follow_rfc7636() {
        assert!(PkceVerifier::new("short").is_err());
        assert!(PkceVerifier::new("a".repeat(129)).is_err());
        assert!(PkceVerifier::new(format!("{}+", "a".repeat(43))).is_err());
        assert!(PkceVerifier::new("a".repeat(128)).is_ok());
    }

    #[test]
    fn state_comparison() {
        let state = AuthorizationState::from_random(&[7; 16]);
        assert_eq!(state.secret().len(), 22);
        assert!(state.matches(state.secret()));
        assert!(!state.matches(&state.secret()[1..]));
        assert!(!state.matches(""));
    }

    #[test]
    fn redirect_uris_follow_rfc8252() {
        for ok in [
            "http://127.0.0.1:49152/callback",
            "http://[::1]:8080/cb",
            "https://app.example/oauth/callback",
        ] {
            assert!(check_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://localhost:8080/callback",
            "http://app.example/cb",
            "https://app.example/cb#frag",
            "ftp://x/cb",
            "/relative",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirects_are_read_exactly() {
        let uri = "http://127.0.0.1:5000/callback";
        let r = parse_redirect(
            "http://127.0.0.1:5000/callback?code=c%2B1&state=s1&iss=https%3A%2F%2Fidp",
            uri,
        )
        .unwrap();
        assert_eq!(r.code.unwrap().secret(), "c+1");
        assert_eq!(r.state.as_deref(), Some("s1"));
        assert_eq!(r.issuer.as_deref(), Some("https://idp"));
        // Just the query.
        assert!(
            parse_redirect("?code=c&state=s", uri)
                .unwrap()
                .code
                .is_some()
        );
        for wrong in [
            "http://127.0.0.1:5001/callback?code=c&state=s",
            "http://127.0.0.1:5000/other?code=c&state=s",
            "https://127.0.0.1:5000/callback?code=c&state=s",
            "http://10.0.0.1:5000/callback?code=c&state=s",
        ] {
            assert!(
                matches!(
                    parse_redirect(wrong, uri),
                    Err(AuthorizationError::WrongRedirect { .. })
                ),
                "{wrong}"
            );
        }
        let r = parse_redirect(
            "?error=access_denied&error_description=the+user+said+no&state=s",
            uri,
        )
        .unwrap();
        assert_eq!(
            r.error,
            Some((
                ErrorCode::Other("access_denied".into()),
                Some("the user said no".into())
            ))
        );
    }

    #[test]
    fn issuers_are_compared_when_present() {
        assert!(check_issuer(None, "https://idp").is_ok());
        assert!(check_issuer(Some("https://idp/"), "https://idp").is_ok());
        assert!(matches!(
            check_issuer(Some("https://evil"), "https://idp"),
            Err(AuthorizationError::IssuerMismatch { .. })
        ));
    }
}
