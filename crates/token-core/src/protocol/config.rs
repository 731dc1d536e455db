//! Client configuration: where the token endpoint is, who the client is, and the provider's
//! dialect (body encoding, client authentication, audience, scopes, quirks).
//!
//! Build one with a preset from [`presets`](crate::protocol::presets) or with
//! [`ClientConfig::builder`] for any RFC 6749 endpoint.

use std::fmt;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Uri};

use crate::protocol::error::ConfigError;
use crate::protocol::secret::ClientSecret;

/// Default cap on a token response body: 64 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// A client id and (optional) secret.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    client_id: String,
    client_secret: Option<ClientSecret>,
}

impl Credentials {
    /// A confidential client: id and secret.
    pub fn new(client_id: impl Into<String>, client_secret: ClientSecret) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: Some(client_secret),
        }
    }

    /// A client without a secret (bookingtime's Module API).
    pub fn without_secret(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: None,
        }
    }

    /// Reads `{PREFIX}_CLIENT_ID` and `{PREFIX}_CLIENT_SECRET` from the environment, e.g.
    /// `Credentials::from_env("BOOKABLE")`. The error names the variable that is missing.
    pub fn from_env(prefix: &str) -> Result<Self, ConfigError> {
        Self::from_lookup(prefix, |name| std::env::var_os(name))
    }

    /// Reads `{PREFIX}_CLIENT_ID` only (clients without a secret).
    pub fn id_from_env(prefix: &str) -> Result<Self, ConfigError> {
        let id = lookup_var(&format!("{prefix}_CLIENT_ID"), |n| std::env::var_os(n))?;
        Ok(Self::without_secret(id))
    }

    /// Like [`Credentials::from_env`] with a custom variable lookup (for tests and config
    /// systems).
    pub fn from_lookup(
        prefix: &str,
        lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Self, ConfigError> {
        let id = lookup_var(&format!("{prefix}_CLIENT_ID"), &lookup)?;
        let secret = lookup_var(&format!("{prefix}_CLIENT_SECRET"), &lookup)?;
        Ok(Self::new(id, ClientSecret::new(secret)))
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The client secret, if any.
    pub fn client_secret(&self) -> Option<&ClientSecret> {
        self.client_secret.as_ref()
    }
}

fn lookup_var(
    name: &str,
    lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<String, ConfigError> {
    let value = lookup(name).ok_or_else(|| ConfigError::MissingEnv(name.to_owned()))?;
    let value = value
        .into_string()
        .map_err(|_| ConfigError::InvalidEnv(name.to_owned()))?;
    if value.trim().is_empty() {
        return Err(ConfigError::EmptyEnv(name.to_owned()));
    }
    Ok(value)
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .finish()
    }
}

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the request body (`client_secret_post`).
    RequestBody,
    /// HTTP Basic with the form-urlencoded id and secret (`client_secret_basic`).
    BasicAuth,
}

/// How the token request body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BodyEncoding {
    /// `application/json` (Bookable, bookingtime, Octorate).
    Json,
    /// `application/x-www-form-urlencoded` (RFC 6749, BookyFlow).
    Form,
}

/// Which provider a configuration speaks to. Selects response quirks and defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provider {
    /// Bookable production.
    Bookable,
    /// Bookable sandbox.
    BookableSandbox,
    /// Bookable's older Auth0 tenant.
    BookableAuth0,
    /// bookingtime App API (client id and secret).
    BookingtimeApp,
    /// bookingtime Module API (client id, no secret).
    BookingtimeModule,
    /// Octorate octotable.
    Octorate,
    /// BookyFlow (self-hosted).
    BookyFlow,
    /// Any RFC 6749 client-credentials endpoint.
    Generic,
}

impl Provider {
    /// Every provider, in declaration order.
    pub const ALL: [Provider; 8] = [
        Provider::Bookable,
        Provider::BookableSandbox,
        Provider::BookableAuth0,
        Provider::BookingtimeApp,
        Provider::BookingtimeModule,
        Provider::Octorate,
        Provider::BookyFlow,
        Provider::Generic,
    ];

    /// The provider whose [`name`](Provider::name) is `name`.
    pub fn from_name(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether its tokens are per organization (bookingtime's presets use
    /// [`Flow::OrganizationExchange`]).
    pub fn has_organizations(self) -> bool {
        matches!(self, Self::BookingtimeApp | Self::BookingtimeModule)
    }

    /// A short stable name, e.g. `"bookable-sandbox"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bookable => "bookable",
            Self::BookableSandbox => "bookable-sandbox",
            Self::BookableAuth0 => "bookable-auth0",
            Self::BookingtimeApp => "bookingtime",
            Self::BookingtimeModule => "bookingtime-module",
            Self::Octorate => "octorate",
            Self::BookyFlow => "bookyflow",
            Self::Generic => "generic",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a client turns credentials into an access token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Flow {
    /// One request: `grant_type=client_credentials` returns the access token.
    ClientCredentials,
    /// bookingtime's chain: `client_credentials` returns a long-lived refresh token; then
    /// `grant_type=refresh_token` plus `{parameter}=<organization id>` returns an access token for
    /// that organization. Every [`TokenKey`](crate::TokenKey) of such a client names an
    /// organization.
    OrganizationExchange {
        /// The body parameter that carries the organization id (`organization_id`).
        parameter: String,
    },
}

/// A set of scopes; space-joined on the wire (RFC 6749 §3.3).
///
/// Kept in canonical form, sorted and deduplicated, as the one string it is on the wire: equal
/// sets are equal values, and a response's scope costs one allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scopes(Box<str>);

impl Scopes {
    /// Parses a space-separated scope string.
    pub fn parse(s: &str) -> Self {
        // Already canonical (single spaces, sorted, distinct; as many servers send it): one
        // copy. Checked in one pass over the bytes.
        let bytes = s.as_bytes();
        let mut canonical = true;
        let (mut start, mut previous): (usize, Option<&[u8]>) = (0, None);
        for i in 0..=bytes.len() {
            let b = bytes.get(i).copied().unwrap_or(b' ');
            if b == b' ' {
                let word = &bytes[start..i];
                if word.is_empty() || previous.is_some_and(|p| p >= word) {
                    canonical = false;
                    break;
                }
                previous = Some(word);
                start = i + 1;
            } else if b.is_ascii_whitespace() {
                canonical = false;
                break;
            }
        }
        if canonical {
            return Self(Box::from(s));
        }
        // A few words (as usual): sorted on the stack; one allocation, the result.
        let mut few = [""; 8];
        let mut n = 0;
        for word in s.split_ascii_whitespace() {
            if n == few.len() {
                return std::iter::once(s).collect();
            }
            few[n] = word;
            n += 1;
        }
        Self::join(&mut few[..n])
    }

    /// The canonical form of `words`: sorted, deduplicated, space-joined (one allocation, of
    /// exactly the right size).
    fn join(words: &mut [&str]) -> Self {
        words.sort_unstable();
        let mut n = 0;
        for i in 0..words.len() {
            if n == 0 || words[n - 1] != words[i] {
                words[n] = words[i];
                n += 1;
            }
        }
        let words = &words[..n];
        let len = words.iter().map(|w| w.len()).sum::<usize>() + n.saturating_sub(1);
        let mut out = String::with_capacity(len);
        for (k, word) in words.iter().enumerate() {
            if k > 0 {
                out.push(' ');
            }
            out.push_str(word);
        }
        Self(out.into_boxed_str())
    }

    /// True when there are no scopes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `scope` is in the set.
    pub fn contains(&self, scope: &str) -> bool {
        self.iter().any(|s| s == scope)
    }

    /// Iterates the scopes in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split(' ').filter(|s| !s.is_empty())
    }

    /// The number of scopes.
    pub fn len(&self) -> usize {
        self.iter().count()
    }
}

impl<S: AsRef<str>> FromIterator<S> for Scopes {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let items: Vec<S> = iter.into_iter().collect();
        let mut words: Vec<&str> = items
            .iter()
            .flat_map(|item| item.as_ref().split_ascii_whitespace())
            .collect();
        Self::join(&mut words)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated client configuration. Immutable; build it with a preset or
/// [`ClientConfig::builder`].
///
/// Two configurations that are equal get the same tokens; everything that can make a token
/// different (endpoint, client id and secret, audience, scopes, parameters, headers, flow) takes
/// part in equality, so caches and single flight keyed by it can never mix tokens up.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
    pub(crate) provider: Provider,
    pub(crate) token_url: Uri,
    pub(crate) credentials: Credentials,
    pub(crate) auth: ClientAuth,
    pub(crate) body: BodyEncoding,
    pub(crate) audience: Option<String>,
    pub(crate) scopes: Scopes,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) api_headers: HeaderMap,
    pub(crate) flow: Flow,
    pub(crate) default_lifetime: Duration,
    pub(crate) refresh_window: Option<Duration>,
    pub(crate) max_body_bytes: usize,
    pub(crate) allow_insecure_http: bool,
    pub(crate) type_alias: bool,
    pub(crate) authorization_endpoint: Option<Uri>,
    pub(crate) authorization_params: Vec<(String, String)>,
    pub(crate) issuer: Option<String>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("provider", &self.provider)
            .field("token_url", &self.token_url)
            .field("credentials", &self.credentials)
            .field("auth", &self.auth)
            .field("body", &self.body)
            .field("audience", &self.audience)
            .field("scopes", &self.scopes)
            .field(
                "params",
                &self.params.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("api_headers", &self.api_headers.keys().collect::<Vec<_>>())
            .field("flow", &self.flow)
            .field("default_lifetime", &self.default_lifetime)
            .field("refresh_window", &self.refresh_window)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("type_alias", &self.type_alias)
            .field("authorization_endpoint", &self.authorization_endpoint)
            .field(
                "authorization_params",
                &self
                    .authorization_params
                    .iter()
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>(),
            )
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl ClientConfig {
    /// A builder for any RFC 6749 client-credentials endpoint. Defaults: form body, HTTP Basic
    /// client authentication (the method RFC 6749 §2.3.1 requires servers to support), no
    /// audience, no scopes, a 1-hour lifetime when the response says nothing, HTTPS only.
    pub fn builder(token_url: impl Into<String>, credentials: Credentials) -> ClientConfigBuilder {
        ClientConfigBuilder {
            provider: Provider::Generic,
            token_url: token_url.into(),
            credentials,
            auth: ClientAuth::BasicAuth,
            body: BodyEncoding::Form,
            audience: None,
            scopes: Vec::new(),
            params: Vec::new(),
            headers: Vec::new(),
            api_headers: Vec::new(),
            flow: Flow::ClientCredentials,
            default_lifetime: Duration::from_secs(3600),
            refresh_window: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            allow_insecure_http: false,
            scopes_required: false,
            type_alias: false,
            authorization_endpoint: None,
            authorization_params: Vec::new(),
            issuer: None,
        }
    }

    /// The provider this configuration speaks to.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The token endpoint.
    pub fn token_url(&self) -> &Uri {
        &self.token_url
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.credentials.client_id
    }

    /// The credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Client authentication method.
    pub fn client_auth(&self) -> ClientAuth {
        self.auth
    }

    /// Request body encoding.
    pub fn body_encoding(&self) -> BodyEncoding {
        self.body
    }

    /// The `audience` parameter, if any.
    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    /// The requested scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    /// The flow.
    pub fn flow(&self) -> &Flow {
        &self.flow
    }

    /// Headers added to API requests next to `Authorization` (e.g. BookyFlow's channel).
    pub fn api_headers(&self) -> &HeaderMap {
        &self.api_headers
    }

    /// Lifetime assumed when a response has neither `expires_in` nor a JWT `exp`.
    pub fn default_lifetime(&self) -> Duration {
        self.default_lifetime
    }

    /// Per-client refresh window overriding the manager's, if set.
    pub fn refresh_window(&self) -> Option<Duration> {
        self.refresh_window
    }

    /// Cap on a token response body, in bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The authorization endpoint, for the Authorization Code flow (users' grants).
    pub fn authorization_endpoint(&self) -> Option<&Uri> {
        self.authorization_endpoint.as_ref()
    }

    /// Extra parameters for the authorization URL (`prompt`, RFC 8707 `resource`, ...).
    pub fn authorization_params(&self) -> &[(String, String)] {
        &self.authorization_params
    }

    /// The issuer a redirect's RFC 9207 `iss` must name: the configured one, else the
    /// authorization endpoint's origin (`scheme://host[:port]`).
    pub fn expected_issuer(&self) -> Option<String> {
        if let Some(issuer) = &self.issuer {
            return Some(issuer.clone());
        }
        let endpoint = self.authorization_endpoint.as_ref()?;
        Some(format!(
            "{}://{}",
            endpoint.scheme_str().unwrap_or("https"),
            endpoint.authority()?.as_str()
        ))
    }

    /// Whether a response's `type` field names the token type (Octorate's dialect). Off for
    /// every other provider, where `type` is just another field.
    pub fn accepts_type_alias(&self) -> bool {
        self.type_alias
    }

    /// Checks that this client's tokens may be sent to `url`: an absolute `http://` URL is
    /// refused unless its host is loopback or insecure HTTP was allowed for this client (a
    /// bearer token in clear text is as good as a password for its lifetime). Relative URLs
    /// pass: there is no scheme to judge.
    pub fn check_api_url(&self, url: &str) -> Result<(), ConfigError> {
        match url.trim().parse::<Uri>() {
            Ok(uri) => self.check_api_uri(&uri),
            Err(_) => Ok(()), // not ours to judge: the HTTP client reports unparsable URLs
        }
    }

    /// [`check_api_url`](Self::check_api_url) for a parsed URI (allocates only to report).
    pub fn check_api_uri(&self, uri: &Uri) -> Result<(), ConfigError> {
        if self.allows_api_target(uri.scheme_str(), uri.host()) {
            Ok(())
        } else {
            Err(ConfigError::InsecureUrl {
                url: display_url(&uri.to_string()),
            })
        }
    }

    /// The rule behind [`check_api_url`](Self::check_api_url) on a URL's scheme and host, for
    /// HTTP clients with their own URL type: false for `http` to a non-loopback host unless
    /// insecure HTTP is allowed.
    pub fn allows_api_target(&self, scheme: Option<&str>, host: Option<&str>) -> bool {
        match (scheme, host) {
            (Some(scheme), Some(host)) if scheme.eq_ignore_ascii_case("http") => {
                self.allow_insecure_http || is_loopback(host)
            }
            _ => true,
        }
    }

    /// A stable, canonical description of everything that makes this client's tokens what they
    /// are, without its secret: the format version, provider, token URL, client id, audience,
    /// scopes, flow, and the extra parameters and headers (by name and value). Equal
    /// configurations (whatever their secrets) have equal fingerprints in every process and
    /// every version that keeps the format; shared stores key their entries by it (hashed).
    /// It is not printed by any `Debug`: extra parameters may be sensitive.
    pub fn fingerprint(&self) -> String {
        fn push(out: &mut String, field: &str) {
            // One field per line; escape the separator so no two inputs collide.
            for c in field.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('\n');
        }
        let mut out = String::from("booking-tokens/fingerprint/1\n");
        push(&mut out, self.provider.name());
        push(&mut out, &self.token_url.to_string());
        push(&mut out, self.client_id());
        push(&mut out, self.audience.as_deref().unwrap_or(""));
        push(&mut out, &self.scopes.to_string());
        match &self.flow {
            Flow::ClientCredentials => push(&mut out, "client_credentials"),
            Flow::OrganizationExchange { parameter } => {
                push(&mut out, &format!("organization_exchange:{parameter}"));
            }
        }
        let mut params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        params.sort();
        push(&mut out, &params.join("&"));
        let mut headers: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v.as_bytes())))
            .collect();
        headers.sort();
        push(&mut out, &headers.join("&"));
        // Only when there are some: fingerprints of configurations without them are unchanged.
        if !self.authorization_params.is_empty() {
            let mut params: Vec<String> = self
                .authorization_params
                .iter()
                .map(|(k, v)| format!("authorize:{k}={v}"))
                .collect();
            params.sort();
            push(&mut out, &params.join("&"));
        }
        out
    }

    /// Strings that must never appear in errors or logs derived from this client's traffic.
    pub(crate) fn redactions(&self) -> Vec<&str> {
        self.credentials
            .client_secret
            .as_ref()
            .map(|s| s.expose_secret())
            .into_iter()
            .collect()
    }
}

/// Builds a [`ClientConfig`]. Every setter consumes and returns the builder; [`build`] validates.
///
/// [`build`]: ClientConfigBuilder::build
#[derive(Clone)]
#[must_use]
pub struct ClientConfigBuilder {
    provider: Provider,
    token_url: String,
    credentials: Credentials,
    auth: ClientAuth,
    body: BodyEncoding,
    audience: Option<String>,
    scopes: Vec<String>,
    params: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    api_headers: Vec<(String, String)>,
    flow: Flow,
    default_lifetime: Duration,
    refresh_window: Option<Duration>,
    max_body_bytes: usize,
    allow_insecure_http: bool,
    scopes_required: bool,
    type_alias: bool,
    authorization_endpoint: Option<String>,
    authorization_params: Vec<(String, String)>,
    issuer: Option<String>,
}

impl fmt::Debug for ClientConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfigBuilder")
            .field("provider", &self.provider)
            .field("token_url", &self.token_url)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl ClientConfigBuilder {
    pub(crate) fn provider(mut self, provider: Provider) -> Self {
        self.provider = provider;
        self
    }

    pub(crate) fn require_scopes(mut self) -> Self {
        self.scopes_required = true;
        self
    }

    /// Overrides the token endpoint (tests, proxies, self-hosting).
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = url.into();
        self
    }

    /// Sets the client authentication method.
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the request body encoding.
    pub fn body_encoding(mut self, body: BodyEncoding) -> Self {
        self.body = body;
        self
    }

    /// Sets the `audience` parameter.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Adds scopes (each item may itself be space-separated).
    pub fn scopes<S: AsRef<str>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes
            .extend(scopes.into_iter().map(|s| s.as_ref().to_owned()));
        self
    }

    /// Adds an extra body parameter.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// Adds an extra header to token requests.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a header to API requests decorated with this client's tokens.
    pub fn api_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.api_headers.push((name.into(), value.into()));
        self
    }

    /// BookyFlow Channel Management Framework: API requests carry
    /// `X-BOOKYFLOW-channel-name: <name>` (announce the channel first).
    pub fn bookyflow_channel(self, name: impl Into<String>) -> Self {
        self.api_header("X-BOOKYFLOW-channel-name", name)
    }

    /// Sets the flow.
    pub fn flow(mut self, flow: Flow) -> Self {
        self.flow = flow;
        self
    }

    /// Lifetime assumed when a response has neither `expires_in` nor a JWT `exp`.
    pub fn default_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = lifetime;
        self
    }

    /// Refresh this client's tokens `window` before they expire, overriding the manager's
    /// window (e.g. 300 s, as Bookable's older page does). Still clamped for short-lived tokens.
    pub fn refresh_window(mut self, window: Duration) -> Self {
        self.refresh_window = Some(window);
        self
    }

    /// Caps the token response body (default 64 KiB).
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// Allows `http://` token URLs to hosts that are not loopback. Off by default: the client
    /// secret would cross the network in clear text.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Also read the token type from a `type` field when `token_type` is absent, as Octorate's
    /// responses name it (its preset sets this). Off by default: elsewhere `type` is just
    /// another field (`"type":"service"`), never a token type to refuse.
    pub fn token_type_alias(mut self, accept: bool) -> Self {
        self.type_alias = accept;
        self
    }

    /// The authorization endpoint, for the Authorization Code flow (a user grants access in a
    /// browser). Required for users' grants: bookingtime's public docs do not name it, so it is
    /// never guessed. HTTPS, or HTTP to loopback, as the token URL.
    pub fn authorization_endpoint(mut self, url: impl Into<String>) -> Self {
        self.authorization_endpoint = Some(url.into());
        self
    }

    /// Adds a parameter to the authorization URL, such as `prompt=consent` (which some servers
    /// require before they issue a refresh token) or an RFC 8707 `resource`. The parameters the
    /// flow itself sets (`response_type`, `client_id`, `redirect_uri`, `scope`, `state`,
    /// `code_challenge`, `code_challenge_method`) cannot be overridden: `build` refuses them.
    pub fn authorization_param(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.authorization_params.push((name.into(), value.into()));
        self
    }

    /// The authorization server's issuer identifier, which a redirect's RFC 9207 `iss` must
    /// name (default: the authorization endpoint's origin).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Validates and builds the configuration.
    pub fn build(self) -> Result<ClientConfig, ConfigError> {
        let token_url = validate_token_url(&self.token_url, self.allow_insecure_http)?;
        if self.credentials.client_id.is_empty() {
            return Err(ConfigError::Missing("client id"));
        }
        let scopes: Scopes = self.scopes.iter().collect();
        if self.scopes_required && scopes.is_empty() {
            return Err(ConfigError::Missing(
                "scopes (this provider requires `scope`)",
            ));
        }
        if self.default_lifetime.is_zero() {
            return Err(ConfigError::Invalid {
                name: "default_lifetime",
                reason: "must be positive",
            });
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::Invalid {
                name: "max_body_bytes",
                reason: "must be positive",
            });
        }
        if let Flow::OrganizationExchange { parameter } = &self.flow
            && parameter.is_empty()
        {
            return Err(ConfigError::Invalid {
                name: "flow",
                reason: "organization parameter name is empty",
            });
        }
        Ok(ClientConfig {
            provider: self.provider,
            token_url,
            credentials: self.credentials,
            auth: self.auth,
            body: self.body,
            audience: self.audience,
            scopes,
            params: self.params,
            headers: header_map(&self.headers)?,
            api_headers: header_map(&self.api_headers)?,
            flow: self.flow,
            default_lifetime: self.default_lifetime,
            refresh_window: self.refresh_window,
            max_body_bytes: self.max_body_bytes,
            allow_insecure_http: self.allow_insecure_http,
            type_alias: self.type_alias,
            authorization_endpoint: self
                .authorization_endpoint
                .as_deref()
                .map(|url| validate_token_url(url, self.allow_insecure_http))
                .transpose()?,
            authorization_params: checked_authorization_params(self.authorization_params)?,
            issuer: self.issuer,
        })
    }
}

/// The parameters the Authorization Code flow sets itself, which extra ones may not override.
const FLOW_PARAMETERS: [&str; 7] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

fn checked_authorization_params(
    params: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    if params.iter().any(|(name, _)| name.is_empty()) {
        return Err(ConfigError::Invalid {
            name: "authorization_param",
            reason: "a parameter name is empty",
        });
    }
    if params
        .iter()
        .any(|(name, _)| FLOW_PARAMETERS.contains(&name.as_str()))
    {
        return Err(ConfigError::Invalid {
            name: "authorization_param",
            reason: "the flow sets response_type, client_id, redirect_uri, scope, state and the PKCE challenge itself",
        });
    }
    Ok(params)
}

fn header_map(pairs: &[(String, String)]) -> Result<HeaderMap, ConfigError> {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let header =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| ConfigError::InvalidHeader {
                name: crate::protocol::error::sanitize(name, 64, &[]),
                reason: "not a valid header name",
            })?;
        let mut value = HeaderValue::from_str(value).map_err(|_| ConfigError::InvalidHeader {
            name: name.clone(),
            reason: "value has characters a header cannot carry",
        })?;
        if header == http::header::AUTHORIZATION {
            value.set_sensitive(true);
        }
        map.append(header, value);
    }
    Ok(map)
}

/// Parses a token URL and enforces HTTPS except to loopback hosts (or when opted out).
pub(crate) fn validate_token_url(url: &str, allow_insecure_http: bool) -> Result<Uri, ConfigError> {
    let invalid = |reason| ConfigError::InvalidUrl {
        url: display_url(url),
        reason,
    };
    let uri: Uri = url.trim().parse().map_err(|_| invalid("does not parse"))?;
    let authority = uri.authority().ok_or_else(|| invalid("has no host"))?;
    if authority.as_str().contains('@') {
        return Err(invalid("must not contain user info (credentials)"));
    }
    if authority.host().is_empty() {
        return Err(invalid("has no host"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if allow_insecure_http || is_loopback(authority.host()) => Ok(uri),
        Some("http") => Err(ConfigError::InsecureUrl {
            url: display_url(url),
        }),
        _ => Err(invalid("scheme must be https (or http to loopback)")),
    }
}

/// `text` with every URL in it (anything from a `scheme://`) passed through [`display_url`]:
/// for error messages of HTTP clients, which quote the URL they failed on.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The URL starts after the last separator before `://`.
        let start = rest[..at]
            .rfind(|c: char| c.is_whitespace() || "([<\"'".contains(c))
            .map_or(0, |i| i + 1);
        let len = rest[start..]
            .find(|c: char| c.is_whitespace() || ")]>\"'".contains(c))
            .unwrap_or(rest.len() - start);
        out.push_str(&rest[..start]);
        out.push_str(&display_url(&rest[start..start + len]));
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

/// A URL as it may appear in a message or a log: without user info (`user:password@`), query
/// and fragment (`?api_key=…`), sanitized and capped. Works on anything, parsable or not.
pub fn display_url(url: &str) -> String {
    let url = url.trim();
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    let url = match url.find("://") {
        Some(scheme_end) => {
            let rest = &url[scheme_end + 3..];
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    };
    crate::protocol::error::sanitize(&url, 200, &[])
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials::new("id", ClientSecret::new("shh-very-secret"))
    }

    #[test]
    fn https_required_except_loopback() {
        for ok in [
            "https://auth.example.com/oauth/token",
            "http://127.0.0.1:8080/token",
            "http://localhost/token",
            "http://[::1]:9/token",
        ] {
            assert!(validate_token_url(ok, false).is_ok(), "{ok}");
        }
        assert!(matches!(
            validate_token_url("http://auth.example.com/token", false),
            Err(ConfigError::InsecureUrl { .. })
        ));
        assert!(validate_token_url("http://auth.example.com/token", true).is_ok());
        for bad in [
            "ftp://x/token",
            "/oauth/token",
            "https://",
            "not a url",
            "https://user:pw@host/token",
        ] {
            let err = validate_token_url(bad, true).unwrap_err();
            assert!(
                matches!(err, ConfigError::InvalidUrl { .. }),
                "{bad}: {err}"
            );
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
    }

    #[test]
    fn from_env_names_the_missing_variable() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| std::ffi::OsString::from(*v))
            }
        };
        let err = Credentials::from_lookup("BOOKABLE", env(&[])).unwrap_err();
        assert_eq!(err, ConfigError::MissingEnv("BOOKABLE_CLIENT_ID".into()));
        let err =
            Credentials::from_lookup("BOOKABLE", env(&[("BOOKABLE_CLIENT_ID", "x")])).unwrap_err();
        assert_eq!(
            err,
            ConfigError::MissingEnv("BOOKABLE_CLIENT_SECRET".into())
        );
        let c = Credentials::from_lookup(
            "BOOKABLE",
            env(&[("BOOKABLE_CLIENT_ID", "x"), ("BOOKABLE_CLIENT_SECRET", "y")]),
        )
        .unwrap();
        assert_eq!(c.client_id(), "x");
        assert_eq!(c.client_secret().unwrap().expose_secret(), "y");
    }

    #[test]
    fn debug_hides_secret_and_header_values() {
        let cfg = ClientConfig::builder("https://a.example/token", creds())
            .header("X-Api-Key", "key-value-secret")
            .param("p", "param-value-secret")
            .build()
            .unwrap();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("shh-very-secret"));
        assert!(!dbg.contains("key-value-secret"));
        assert!(!dbg.contains("param-value-secret"));
    }

    #[test]
    fn invalid_headers_are_typed_errors() {
        let err = ClientConfig::builder("https://a.example/token", creds())
            .header("bad header", "v")
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::InvalidHeader { .. }));
        let err = ClientConfig::builder("https://a.example/token", creds())
            .api_header("X-Ok", "line\nbreak")
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::InvalidHeader { .. }));
    }

    #[test]
    fn api_urls_need_https_except_loopback_or_opt_in() {
        let cfg = ClientConfig::builder("https://a.example/token", creds())
            .build()
            .unwrap();
        assert!(cfg.check_api_url("https://api.example/v1").is_ok());
        assert!(cfg.check_api_url("http://127.0.0.1:8080/v1").is_ok());
        assert!(cfg.check_api_url("http://localhost/v1").is_ok());
        assert!(cfg.check_api_url("/relative").is_ok());
        assert!(matches!(
            cfg.check_api_url("http://api.example/v1"),
            Err(ConfigError::InsecureUrl { .. })
        ));
        let lax = ClientConfig::builder("https://a.example/token", creds())
            .allow_insecure_http(true)
            .build()
            .unwrap();
        assert!(lax.check_api_url("http://api.example/v1").is_ok());
    }

    #[test]
    fn fingerprints_are_stable_secret_free_and_tell_configs_apart() {
        let build = |secret: &str, scope: &str| {
            ClientConfig::builder(
                "https://a.example/token",
                Credentials::new("id", ClientSecret::new(secret)),
            )
            .audience("api")
            .scopes([scope])
            .build()
            .unwrap()
        };
        let a = build("secret-one", "read");
        assert_eq!(a.fingerprint(), build("secret-two", "read").fingerprint());
        assert_ne!(a.fingerprint(), build("secret-one", "write").fingerprint());
        assert!(!a.fingerprint().contains("secret-one"));
        assert_eq!(
            a.fingerprint(),
            "booking-tokens/fingerprint/1\ngeneric\nhttps://a.example/token\nid\napi\nread\nclient_credentials\n\n\n"
        );
        // A newline inside a field cannot forge another field.
        let odd = ClientConfig::builder(
            "https://a.example/token",
            Credentials::new("id\napi", ClientSecret::new("s")),
        )
        .build()
        .unwrap();
        assert!(odd.fingerprint().contains("id\\napi\n"));
    }

    /// Issue "Lifecycle v2", finding 8: API URLs in errors kept user info and query.
    #[test]
    fn urls_in_messages_lose_user_info_and_query() {
        let cfg = ClientConfig::builder("https://a.example/token", creds())
            .build()
            .unwrap();
        let err = cfg
            .check_api_url("http://user:PASSWORD@api.example/v1?api_key=KEY123#frag")
            .unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("PASSWORD") && !shown.contains("KEY123"),
            "{shown}"
        );
        assert!(shown.contains("http://api.example/v1"), "{shown}");
        let err =
            validate_token_url("http://u:PASSWORD@idp.example/t?x=KEY123", false).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("PASSWORD") && !shown.contains("KEY123"),
            "{shown}"
        );
        assert_eq!(display_url("https://h/p?q=1"), "https://h/p");
        assert_eq!(display_url("https://a@b@h:1/p@x"), "https://h:1/p@x");
        assert_eq!(display_url("no url at all?secret"), "no url at all");
        assert_eq!(
            redact_urls("error sending request for url (http://u:PW@h:1/p?key=K): refused"),
            "error sending request for url (http://h:1/p): refused"
        );
        assert_eq!(
            redact_urls("a https://x/?q b http://y#f"),
            "a https://x/ b http://y"
        );
        assert_eq!(redact_urls("no url"), "no url");
    }

    #[test]
    fn empty_env_vars_are_named_as_empty() {
        let err = Credentials::from_lookup("X", |_| Some(" ".into())).unwrap_err();
        assert_eq!(err, ConfigError::EmptyEnv("X_CLIENT_ID".into()));
    }

    #[test]
    fn provider_names_round_trip() {
        for p in Provider::ALL {
            assert_eq!(Provider::from_name(p.name()), Some(p));
        }
        assert_eq!(Provider::from_name("nonsense"), None);
    }

    #[test]
    fn scopes_normalize() {
        let s: Scopes = ["write read", "read"].into_iter().collect();
        assert_eq!(s.to_string(), "read write");
        assert_eq!(Scopes::parse(" a  b ").len(), 2);
        // One canonical form however it is written: equal sets are equal values.
        for written in ["b a", "a b", "a\tb b", " b  a a ", "a b"] {
            let s = Scopes::parse(written);
            assert_eq!(s, Scopes::parse("a b"), "{written:?}");
            assert_eq!(s.to_string(), "a b");
            assert_eq!(s.iter().collect::<Vec<_>>(), ["a", "b"]);
            assert!(s.contains("a") && s.contains("b") && !s.contains("a b"));
        }
        for empty in ["", " ", "\t \n"] {
            let s = Scopes::parse(empty);
            assert!(s.is_empty() && s.iter().next().is_none());
            assert_eq!(s.len(), 0);
            assert_eq!(s, Scopes::default());
        }
        assert!(!Scopes::parse("a").contains(""));
    }
}
