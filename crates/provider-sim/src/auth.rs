//! The Authorization Code flow with PKCE (RFC 6749 §4.1, RFC 7636, RFC 9207): the
//! authorization endpoint, redirect-URI matching (exact, except the port of a loopback IP
//! literal, RFC 8252 §7.3), and the checks of the `authorization_code` grant.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{self, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

use crate::state::{AuthCode, Redeemed, Shared};
use crate::wire::{OAuthError, Params, method_not_allowed, oauth_error, parse_form};
use crate::{CLIENT_ID, PUBLIC_CLIENT_ID, Provider, TEST_USER};

/// The clients the authorization endpoints know.
pub(crate) fn is_authorization_client(client_id: &str) -> bool {
    client_id == CLIENT_ID || client_id == PUBLIC_CLIENT_ID
}

/// The base64url (no padding) SHA-256 of `verifier`: the S256 `code_challenge`.
pub(crate) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Compares without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An S256 challenge is the base64url form of 32 bytes: 43 characters, no padding.
fn is_valid_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// A URI split as `http://{loopback IP literal}[:port]{rest}`, if it is one.
fn split_loopback(uri: &str) -> Option<(&str, &str)> {
    let after_scheme = uri.strip_prefix("http://")?;
    let host = ["127.0.0.1", "[::1]"]
        .into_iter()
        .find(|h| after_scheme.starts_with(h))?;
    let after_host = &after_scheme[host.len()..];
    let rest = match after_host.strip_prefix(':') {
        Some(port_and_rest) => {
            let digits = port_and_rest.bytes().take_while(u8::is_ascii_digit).count();
            port_and_rest[..digits].parse::<u16>().ok()?;
            &port_and_rest[digits..]
        }
        None => after_host,
    };
    // The host must end here: `http://127.0.0.1.example/` is not loopback.
    match rest.bytes().next() {
        None | Some(b'/' | b'?' | b'#') => Some((host, rest)),
        Some(_) => None,
    }
}

/// Whether `requested` may be used for the registered `registered`: the same string, or
/// for a loopback IP literal over `http` the same string up to the port (RFC 8252 §7.3).
pub(crate) fn redirect_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    match (split_loopback(registered), split_loopback(requested)) {
        (Some((host_a, rest_a)), Some((host_b, rest_b))) => host_a == host_b && rest_a == rest_b,
        _ => false,
    }
}

/// A 400 answered to the browser instead of a redirect: the redirect URI or the client
/// cannot be trusted (RFC 6749 §4.1.2.1).
fn error_page(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

/// `redirect_uri` with `pairs` appended to its query, form-encoded (RFC 6749 Appendix B).
fn redirect_location(redirect_uri: &str, pairs: &[(&str, &str)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{sep}{query}")
}

fn found(location: &str) -> Response {
    let Ok(location) = HeaderValue::from_str(location) else {
        return error_page("redirect_uri cannot be used in a Location header");
    };
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::FOUND;
    let headers = resp.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The issuer identifier of `p` (RFC 9207), e.g. `http://127.0.0.1:PORT/generic`.
pub(crate) fn issuer(base_url: &str, p: Provider) -> String {
    format!("{base_url}/{}", p.name())
}

/// `GET {authorize_path}`: auto-approves (or, if so configured, denies for) [`TEST_USER`].
pub(crate) async fn authorize_endpoint(shared: Arc<Shared>, p: Provider, req: Request) -> Response {
    let state = shared.provider(p);
    state.count_authorization_request();
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    let params = match parse_form(req.uri().query().unwrap_or("").as_bytes()) {
        Ok(params) => params,
        Err(description) => return error_page(&description),
    };
    // Failures before the redirect URI is trusted are shown, never redirected.
    let Some(client_id) = nonempty(&params, "client_id") else {
        return error_page("missing client_id");
    };
    if !is_authorization_client(client_id) {
        return error_page("unknown client_id");
    }
    let Some(redirect_uri) = nonempty(&params, "redirect_uri") else {
        return error_page("missing redirect_uri");
    };
    if redirect_uri.contains('#') {
        return error_page("redirect_uri must not contain a fragment");
    }
    if !state
        .redirect_uris(client_id)
        .iter()
        .any(|registered| redirect_matches(registered, redirect_uri))
    {
        return error_page("redirect_uri is not registered for this client");
    }
    let iss = issuer(&shared.base_url, p);
    let client_state = params.get("state").map(String::as_str);
    let redirect_error = |code: &str, description: &str| {
        let mut pairs = vec![("error", code), ("error_description", description)];
        if let Some(s) = client_state {
            pairs.push(("state", s));
        }
        pairs.push(("iss", &iss));
        found(&redirect_location(redirect_uri, &pairs))
    };
    match nonempty(&params, "response_type") {
        None => return redirect_error("invalid_request", "missing response_type"),
        Some("code") => {}
        Some(_) => {
            return redirect_error(
                "unsupported_response_type",
                "only response_type=code is supported",
            );
        }
    }
    let Some(challenge) = nonempty(&params, "code_challenge") else {
        return redirect_error("invalid_request", "code_challenge required (PKCE)");
    };
    match nonempty(&params, "code_challenge_method") {
        Some("S256") => {}
        Some("plain") => {
            return redirect_error(
                "invalid_request",
                "code_challenge_method plain is not allowed",
            );
        }
        Some(_) => {
            return redirect_error(
                "invalid_request",
                "transform algorithm not supported; use S256",
            );
        }
        None => return redirect_error("invalid_request", "code_challenge_method=S256 required"),
    }
    if !is_valid_s256_challenge(challenge) {
        return redirect_error("invalid_request", "malformed code_challenge");
    }
    if state.user_denies() {
        return redirect_error("access_denied", "the user denied the request");
    }
    let scopes = nonempty(&params, "scope")
        .map(|s| {
            let mut scopes: Vec<String> = Vec::new();
            for word in s.split_whitespace() {
                if !scopes.iter().any(|known| known == word) {
                    scopes.push(word.to_owned());
                }
            }
            scopes
        })
        .unwrap_or_default();
    let code = shared.issue_code(AuthCode {
        provider: p,
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        code_challenge: challenge.to_owned(),
        scopes,
        user: TEST_USER.to_owned(),
        expires_at_ms: 0,
    });
    state.count_authorization();
    let mut pairs = vec![("code", code.as_str())];
    if let Some(s) = client_state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", &iss));
    found(&redirect_location(redirect_uri, &pairs))
}

fn nonempty<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// The parameters of an `authorization_code` grant, checked for shape.
pub(crate) struct CodeGrant<'a> {
    pub(crate) code: &'a str,
    redirect_uri: &'a str,
    verifier: &'a str,
}

impl<'a> CodeGrant<'a> {
    /// Reads `code`, `redirect_uri` and `code_verifier`: missing or malformed ones are
    /// `invalid_request`, and the code is not spent.
    pub(crate) fn parse(params: &'a Params) -> Result<CodeGrant<'a>, OAuthError> {
        let code =
            nonempty(params, "code").ok_or_else(|| OAuthError::invalid_request("missing code"))?;
        let redirect_uri = nonempty(params, "redirect_uri")
            .ok_or_else(|| OAuthError::invalid_request("missing redirect_uri"))?;
        let verifier = nonempty(params, "code_verifier")
            .ok_or_else(|| OAuthError::invalid_request("missing code_verifier (PKCE)"))?;
        if !is_valid_verifier(verifier) {
            return Err(OAuthError::invalid_request(
                "code_verifier must be 43 to 128 unreserved characters",
            ));
        }
        Ok(CodeGrant {
            code,
            redirect_uri,
            verifier,
        })
    }

    /// Spends the code for `client_id` (already authenticated) at `p`: every failure is
    /// `invalid_grant`, and the code cannot be presented again in any case.
    pub(crate) fn redeem(
        &self,
        shared: &Shared,
        p: Provider,
        client_id: &str,
    ) -> Result<AuthCode, OAuthError> {
        let code = match shared.redeem_code(p, self.code) {
            Redeemed::Unknown => {
                return Err(OAuthError::invalid_grant("unknown authorization code"));
            }
            Redeemed::Reused => {
                return Err(OAuthError::invalid_grant(
                    "authorization code was already used; the tokens it issued are revoked",
                ));
            }
            Redeemed::Fresh(code) => code,
        };
        if code.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "authorization code was issued to another client",
            ));
        }
        if code.expired() {
            return Err(OAuthError::invalid_grant("authorization code expired"));
        }
        if code.redirect_uri != self.redirect_uri {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        if !constant_time_eq(
            s256(self.verifier).as_bytes(),
            code.code_challenge.as_bytes(),
        ) {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
        shared.provider(p).count_code_exchange();
        Ok(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(is_valid_verifier(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ));
        assert!(is_valid_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!is_valid_verifier("short"));
        assert!(!is_valid_verifier(&"a".repeat(129)));
        assert!(!is_valid_verifier(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn loopback_ports_are_free_everything_else_is_exact() {
        let reg = "http://127.0.0.1/callback";
        assert!(redirect_matches(reg, "http://127.0.0.1/callback"));
        assert!(redirect_matches(reg, "http://127.0.0.1:53124/callback"));
        assert!(redirect_matches(
            "http://127.0.0.1:8080/callback",
            "http://127.0.0.1:9/callback"
        ));
        assert!(redirect_matches(
            "http://[::1]/callback",
            "http://[::1]:4000/callback"
        ));
        for bad in [
            "http://127.0.0.1:53124/callback/",
            "http://127.0.0.1:53124/Callback",
            "http://127.0.0.1:53124/callback?x=1",
            "http://127.0.0.1:/callback",
            "http://127.0.0.1:99999/callback",
            "http://127.0.0.1:53124/other",
            "http://localhost:53124/callback",
            "https://127.0.0.1:53124/callback",
            "http://127.0.0.1.evil.example/callback",
            "http://127.0.0.1@evil.example/callback",
            "http://[::1]:4000/callback",
        ] {
            assert!(!redirect_matches(reg, bad), "{bad}");
        }
        let reg = "https://app.example:8443/cb";
        assert!(redirect_matches(reg, reg));
        assert!(!redirect_matches(reg, "https://app.example:9443/cb"));
        assert!(!redirect_matches(reg, "https://app.example/cb"));
    }

    #[test]
    fn locations_keep_an_existing_query() {
        assert_eq!(
            redirect_location("http://127.0.0.1:1/cb?a=b", &[("code", "x y")]),
            "http://127.0.0.1:1/cb?a=b&code=x+y"
        );
        assert_eq!(
            redirect_location("http://127.0.0.1:1/cb", &[("state", "&=#")]),
            "http://127.0.0.1:1/cb?state=%26%3D%23"
        );
    }
}
