//! Building token requests and decorating API requests.

use base64::Engine as _;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request};
use serde::ser::{SerializeMap, Serializer};

use crate::protocol::authorization::{AuthorizationCode, PkceVerifier};
use crate::protocol::config::{BodyEncoding, ClientAuth, ClientConfig, Flow};
use crate::protocol::error::ConfigError;
use crate::protocol::secret::{AccessToken, RefreshToken};

/// What a token request asks for.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Grant<'a> {
    /// `grant_type=client_credentials` (RFC 6749 §4.4). For bookingtime this is the first leg
    /// and returns a refresh token.
    ClientCredentials,
    /// `grant_type=refresh_token` (RFC 6749 §6), optionally for an organization (bookingtime's
    /// second leg: the organization goes in the flow's parameter, `organization_id`).
    RefreshToken {
        /// The refresh token.
        refresh_token: &'a RefreshToken,
        /// The organization, for [`Flow::OrganizationExchange`] clients.
        organization: Option<&'a str>,
    },
    /// `grant_type=authorization_code` (RFC 6749 §4.1.3) with the PKCE verifier (RFC 7636
    /// §4.5): a user's code for the client's tokens (bookingtime: a refresh token first).
    AuthorizationCode {
        /// The code from the redirect.
        code: &'a AuthorizationCode,
        /// The verifier whose challenge the authorization request carried.
        verifier: &'a PkceVerifier,
        /// The redirect URI the authorization request named, exactly.
        redirect_uri: &'a str,
    },
}

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const FORM: HeaderValue = HeaderValue::from_static("application/x-www-form-urlencoded");

impl ClientConfig {
    /// Builds the token request for `grant`: `POST` to the token URL, `Accept:
    /// application/json`, the body in the configured encoding, client authentication in the
    /// body or as HTTP Basic, then `audience`, `scope`, the grant's fields and extra
    /// parameters, and extra headers.
    ///
    /// The `Authorization` header, if any, is marked sensitive.
    pub fn token_request(&self, grant: Grant<'_>) -> Request<Vec<u8>> {
        let mut fields: Vec<(&str, &str)> = Vec::with_capacity(8 + self.params.len());
        let secret = self
            .credentials
            .client_secret()
            .map(|s| s.expose_secret())
            .filter(|s| !s.is_empty());
        match grant {
            Grant::ClientCredentials => fields.push(("grant_type", "client_credentials")),
            Grant::RefreshToken { .. } => fields.push(("grant_type", "refresh_token")),
            Grant::AuthorizationCode { .. } => fields.push(("grant_type", "authorization_code")),
        }
        let basic = self.auth == ClientAuth::BasicAuth && secret.is_some();
        if !basic {
            // RFC 6749 §2.3.1 (client_secret_post), and public clients (no secret) identify
            // themselves with client_id alone, as bookingtime's Module API does.
            fields.push(("client_id", self.client_id()));
            if let Some(secret) = secret {
                fields.push(("client_secret", secret));
            }
        }
        let scope = (!self.scopes.is_empty()).then(|| self.scopes.to_string());
        match grant {
            Grant::ClientCredentials => {
                if let Some(audience) = &self.audience {
                    fields.push(("audience", audience));
                }
                if let Some(scope) = &scope {
                    fields.push(("scope", scope));
                }
            }
            Grant::RefreshToken {
                refresh_token,
                organization,
            } => {
                fields.push(("refresh_token", refresh_token.secret()));
                if let (Flow::OrganizationExchange { parameter }, Some(org)) =
                    (&self.flow, organization)
                {
                    fields.push((parameter, org));
                }
            }
            Grant::AuthorizationCode {
                code,
                verifier,
                redirect_uri,
            } => {
                fields.push(("code", code.secret()));
                fields.push(("redirect_uri", redirect_uri));
                fields.push(("code_verifier", verifier.secret()));
            }
        }
        fields.extend(self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));

        let (body, content_type) = match self.body {
            BodyEncoding::Json => (json_object(&fields), JSON),
            BodyEncoding::Form => (
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&fields)
                    .finish()
                    .into_bytes(),
                FORM,
            ),
        };

        let mut request = Request::new(body);
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.token_url.clone();
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, content_type);
        headers.insert(ACCEPT, JSON);
        if let (true, Some(secret)) = (basic, secret) {
            headers.insert(AUTHORIZATION, basic_auth(self.client_id(), secret));
        }
        merge_headers(headers, &self.headers);
        request
    }

    /// Decorates an outgoing API request: `Authorization: Bearer <token>` plus the provider's
    /// API headers (BookyFlow's `X-BOOKYFLOW-channel-name`). The header is marked sensitive.
    ///
    /// Fails only if the token has characters a header cannot carry; tokens parsed by this
    /// crate never do.
    pub fn authorize<B>(
        &self,
        request: &mut Request<B>,
        token: &AccessToken,
    ) -> Result<(), ConfigError> {
        let value = bearer_header(token)?;
        self.authorize_with(request.headers_mut(), value);
        Ok(())
    }

    /// Like [`ClientConfig::authorize`] with a ready `Authorization` value (see
    /// [`Token::authorization`](crate::Token::authorization)); never fails, never allocates
    /// beyond the header map's own growth.
    pub fn authorize_with(&self, headers: &mut http::HeaderMap, authorization: HeaderValue) {
        headers.insert(AUTHORIZATION, authorization);
        merge_headers(headers, &self.api_headers);
    }
}

/// Replaces every header named in `extra` with all of `extra`'s values for it.
fn merge_headers(headers: &mut http::HeaderMap, extra: &http::HeaderMap) {
    for name in extra.keys() {
        headers.remove(name);
    }
    for (name, value) in extra {
        headers.append(name, value.clone());
    }
}

/// `Bearer <token>` as a sensitive header value.
pub(crate) fn bearer_header(token: &AccessToken) -> Result<HeaderValue, ConfigError> {
    let mut value = HeaderValue::try_from(format!("Bearer {}", token.secret())).map_err(|_| {
        ConfigError::InvalidHeader {
            name: "authorization".to_owned(),
            reason: "the access token has characters a header cannot carry",
        }
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// RFC 6749 §2.3.1: the id and secret are form-urlencoded, then joined by `:` and base64'd.
fn basic_auth(id: &str, secret: &str) -> HeaderValue {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let credentials = format!("{}:{}", encode(id), encode(secret));
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    let mut value = HeaderValue::try_from(format!("Basic {encoded}"))
        .expect("invariant: base64 output is always a valid header value");
    value.set_sensitive(true);
    value
}

/// Serializes ordered pairs as a JSON object of strings, keeping the order.
fn json_object(fields: &[(&str, &str)]) -> Vec<u8> {
    struct Pairs<'a>(&'a [(&'a str, &'a str)]);
    impl serde::Serialize for Pairs<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut map = serializer.serialize_map(Some(self.0.len()))?;
            for (k, v) in self.0 {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }
    }
    serde_json::to_vec(&Pairs(fields))
        .expect("invariant: a map of strings always serializes to JSON")
}
