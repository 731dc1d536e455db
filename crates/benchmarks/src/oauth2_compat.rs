//! `oauth2` 5.x as its documentation uses it, next to ours: a `BasicClient` per provider
//! configuration, `exchange_client_credentials()`, and `BasicTokenResponse`.
//!
//! `oauth2` is built without default features (its default pulls reqwest 0.12, a second
//! reqwest), so its HTTP goes through adapters over our ureq 3 and reqwest 0.13 written the way
//! its own `ureq`/`reqwest` adapters are. To look at a request without sending it,
//! [`build_request`] runs it against an "HTTP client" that hands the request back as its error.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use oauth2::basic::{BasicClient, BasicTokenResponse};
use oauth2::{
    AsyncHttpClient, AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, HttpRequest,
    HttpResponse, RequestTokenError, Scope, SyncHttpClient, TokenUrl,
};
use token_core::{ClientAuth, ClientConfig};

/// A `BasicClient` with its token endpoint set.
pub type Client =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// What a caller keeps to make `oauth2` client-credentials requests for one configuration.
#[derive(Debug)]
pub struct Setup {
    /// The client.
    pub client: Client,
    /// `audience` and any other extra parameter.
    pub extra: Vec<(String, String)>,
    /// Requested scopes.
    pub scopes: Vec<String>,
}

impl Setup {
    /// The `oauth2` equivalent of `config`'s client-credentials request: same endpoint, client
    /// id and secret, client authentication (body or HTTP Basic), audience and scopes. The body
    /// is always a form: `oauth2` cannot send the JSON bodies Bookable, bookingtime and Octorate
    /// document.
    pub fn equivalent(config: &ClientConfig) -> Self {
        let mut client = BasicClient::new(ClientId::new(config.client_id().to_owned()))
            .set_auth_type(match config.client_auth() {
                ClientAuth::BasicAuth => AuthType::BasicAuth,
                _ => AuthType::RequestBody,
            })
            .set_token_uri(
                TokenUrl::new(config.token_url().to_string()).expect("a valid token URL"),
            );
        if let Some(secret) = config
            .credentials()
            .client_secret()
            .filter(|s| !s.is_empty())
        {
            client = client.set_client_secret(ClientSecret::new(secret.expose_secret().to_owned()));
        }
        Setup {
            client,
            extra: config
                .audience()
                .map(|a| ("audience".to_owned(), a.to_owned()))
                .into_iter()
                .collect(),
            scopes: config.scopes().iter().map(str::to_owned).collect(),
        }
    }

    /// A client-credentials request, set up the way `oauth2`'s docs show.
    pub fn exchange(
        &self,
    ) -> oauth2::ClientCredentialsTokenRequest<
        '_,
        oauth2::basic::BasicErrorResponse,
        BasicTokenResponse,
    > {
        let mut request = self.client.exchange_client_credentials();
        for (name, value) in &self.extra {
            request = request.add_extra_param(name.as_str(), value.as_str());
        }
        for scope in &self.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        request
    }
}

/// The request `oauth2` would send, captured by an HTTP client that returns it as its error.
#[derive(Debug)]
pub struct Captured(pub HttpRequest);

impl fmt::Display for Captured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("captured")
    }
}

impl std::error::Error for Captured {}

// Boxing the request would add an allocation to the oauth2 side of the measurement.
#[allow(clippy::result_large_err)]
fn capture(request: HttpRequest) -> Result<HttpResponse, Captured> {
    Err(Captured(request))
}

/// Builds `setup`'s client-credentials request with `oauth2` and returns it unsent.
pub fn build_request(setup: &Setup) -> HttpRequest {
    match setup.exchange().request(&capture) {
        Err(RequestTokenError::Request(Captured(request))) => request,
        other => panic!("oauth2 did not hand over its request: {other:?}"),
    }
}

/// Parses a body the way `oauth2` does after a 200 (its `BasicTokenResponse`, via serde_json).
pub fn parse(body: &[u8]) -> Result<BasicTokenResponse, serde_json::Error> {
    serde_json::from_slice(body)
}

/// `oauth2::SyncHttpClient` over a ureq 3 agent, as `oauth2`'s ureq 2 adapter does it (with
/// redirects off, as its docs require).
#[derive(Debug)]
pub struct UreqHttp(pub ureq::Agent);

impl Default for UreqHttp {
    fn default() -> Self {
        UreqHttp(ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .build(),
        ))
    }
}

impl SyncHttpClient for UreqHttp {
    type Error = ureq::Error;

    fn call(&self, request: HttpRequest) -> Result<HttpResponse, ureq::Error> {
        let response = self.0.run(request)?;
        let (parts, mut body) = response.into_parts();
        let body = body.read_to_vec()?;
        Ok(http::Response::from_parts(parts, body))
    }
}

/// `oauth2::AsyncHttpClient` over a reqwest 0.13 client, as `oauth2`'s reqwest 0.12 adapter
/// does it.
#[derive(Clone, Debug)]
pub struct ReqwestHttp(pub reqwest::Client);

impl ReqwestHttp {
    /// With redirects off, as `oauth2`'s docs require (TLS from `transport_reqwest`).
    pub fn new() -> Self {
        ReqwestHttp(
            transport_reqwest::http_client_builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a reqwest client"),
        )
    }
}

impl Default for ReqwestHttp {
    fn default() -> Self {
        Self::new()
    }
}

impl<'c> AsyncHttpClient<'c> for ReqwestHttp {
    type Error = reqwest::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, reqwest::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self.0.execute(request.try_into()?).await?;
            let mut builder = http::Response::builder()
                .status(response.status())
                .version(response.version());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = response.bytes().await?.to_vec();
            Ok(builder.body(body).expect("parts from a valid response"))
        })
    }
}

/// When a hand-written cache refreshes: the same rule as ours (60 s before expiry, clamped to
/// half the lifetime), so both make the same number of requests.
fn refresh_after(lifetime: std::time::Duration) -> std::time::Duration {
    lifetime - (lifetime / 2).min(std::time::Duration::from_secs(60))
}

/// What a caller of `oauth2` would write to cache its token: the token and its refresh point
/// behind a mutex; the caller that finds it due fetches with `oauth2` while holding the lock
/// (one request at a time), and everyone else waits on the lock meanwhile. Its [`Watch`] lets a
/// bench see it without taking the lock, and counts the callers that waited for a fetch (the
/// fetcher, and every caller that got the lock after a fetch it was queued behind).
#[derive(Debug)]
pub struct CachedOauth2 {
    setup: Setup,
    http: UreqHttp,
    slot: std::sync::Mutex<Option<(String, std::time::Instant)>>,
    watch: Watch,
}

/// Lock-free view of a hand-written cache, for benches.
#[derive(Debug)]
pub struct Watch {
    origin: std::time::Instant,
    generation: std::sync::atomic::AtomicU64,
    refresh_at_ns: std::sync::atomic::AtomicU64,
    waits: std::sync::atomic::AtomicU64,
}

impl Watch {
    fn new() -> Self {
        Self {
            origin: std::time::Instant::now(),
            generation: Default::default(),
            refresh_at_ns: Default::default(),
            waits: Default::default(),
        }
    }

    fn stored(&self, refresh_at: std::time::Instant) {
        use std::sync::atomic::Ordering::Release;
        let ns = refresh_at.saturating_duration_since(self.origin).as_nanos() as u64;
        self.refresh_at_ns.store(ns, Release);
        self.generation.fetch_add(1, Release);
    }

    /// Counts a caller that waited for a fetch: it fetched, or a token was stored while it
    /// waited for the lock.
    fn waited(&self) {
        self.waits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Callers that waited for a fetch (see [`CachedOauth2`]), the fetching caller included.
    pub fn waits(&self) -> u64 {
        self.waits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many tokens were stored so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The current token's refresh point.
    pub fn refresh_at(&self) -> std::time::Instant {
        let ns = self
            .refresh_at_ns
            .load(std::sync::atomic::Ordering::Acquire);
        self.origin + std::time::Duration::from_nanos(ns)
    }
}

impl CachedOauth2 {
    /// A cache for `config`'s client-credentials token.
    pub fn new(config: &ClientConfig) -> Self {
        Self {
            setup: Setup::equivalent(config),
            http: UreqHttp::default(),
            slot: std::sync::Mutex::new(None),
            watch: Watch::new(),
        }
    }

    /// The cached token, or a new one fetched by this caller (the others wait on the lock).
    pub fn token(&self) -> String {
        use oauth2::TokenResponse as _;
        let now = std::time::Instant::now();
        let generation = self.watch.generation();
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((token, refresh_at)) = &*slot
            && now < *refresh_at
        {
            if self.watch.generation() != generation {
                self.watch.waited();
            }
            return token.clone();
        }
        self.watch.waited();
        let sent = std::time::Instant::now();
        let response = self.setup.exchange().request(&self.http).expect("a token");
        let lifetime = response
            .expires_in()
            .unwrap_or(std::time::Duration::from_secs(3600));
        let refresh_at = sent + refresh_after(lifetime);
        let token = response.access_token().secret().clone();
        *slot = Some((token.clone(), refresh_at));
        self.watch.stored(refresh_at);
        token
    }

    /// The lock-free view.
    pub fn watch(&self) -> &Watch {
        &self.watch
    }
}

/// [`CachedOauth2`] for async callers: a `tokio::sync::Mutex`, `request_async`.
#[derive(Debug)]
pub struct AsyncCachedOauth2 {
    setup: Setup,
    http: ReqwestHttp,
    slot: tokio::sync::Mutex<Option<(String, std::time::Instant)>>,
    watch: Watch,
}

impl AsyncCachedOauth2 {
    /// A cache for `config`'s client-credentials token.
    pub fn new(config: &ClientConfig) -> Self {
        Self {
            setup: Setup::equivalent(config),
            http: ReqwestHttp::new(),
            slot: tokio::sync::Mutex::new(None),
            watch: Watch::new(),
        }
    }

    /// The cached token, or a new one fetched by this caller (the others wait on the lock).
    pub async fn token(&self) -> String {
        use oauth2::TokenResponse as _;
        let now = std::time::Instant::now();
        let generation = self.watch.generation();
        let mut slot = self.slot.lock().await;
        if let Some((token, refresh_at)) = &*slot
            && now < *refresh_at
        {
            if self.watch.generation() != generation {
                self.watch.waited();
            }
            return token.clone();
        }
        self.watch.waited();
        let sent = std::time::Instant::now();
        let response = self
            .setup
            .exchange()
            .request_async(&self.http)
            .await
            .expect("a token");
        let lifetime = response
            .expires_in()
            .unwrap_or(std::time::Duration::from_secs(3600));
        let refresh_at = sent + refresh_after(lifetime);
        let token = response.access_token().secret().clone();
        *slot = Some((token.clone(), refresh_at));
        self.watch.stored(refresh_at);
        token
    }

    /// The lock-free view.
    pub fn watch(&self) -> &Watch {
        &self.watch
    }
}
