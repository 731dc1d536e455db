//! Async OAuth 2.0 tokens for booking-platform APIs, over [reqwest] and tokio.
//!
//! One [`TokenClient`] per process (`Clone + Send + Sync`; clones share everything), one
//! [`ClientHandle`] per provider configuration. [`ClientHandle::token`] returns a valid token:
//! from the cache if it is fresh (no lock a fetch holds, no allocation), otherwise after at most
//! one request per key however many tasks ask at once. Fetches run on spawned tasks, so a caller
//! whose future is dropped mid-fetch cancels nothing, wedges no one and causes no second request.
//! A token inside its refresh window is still served at once while one spawned task refreshes
//! it. Works on multi-thread and current-thread runtimes (with time enabled, as reqwest needs).
//!
//! ```no_run
//! use transport_reqwest::TokenClient;
//! use token_core::{presets, Credentials};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = TokenClient::new()?;
//! let bookable = client.register(presets::bookable(Credentials::from_env("BOOKABLE")?).build()?);
//! let http = transport_reqwest::http_client_builder().build()?;
//!
//! // Attach the token to a request...
//! let (request, _token) = bookable.authorize(http.get("https://api.bookabletech.com/venues")).await?;
//! let venues = request.send().await?;
//! // ...or let the handle send it, renewing the token once on a 401.
//! let venues = bookable.send(http.get("https://api.bookabletech.com/venues")).await?;
//! println!("{}", venues.status());
//! # Ok(()) }
//! ```
//!
//! Token requests never follow redirects (the body carries the secret), read at most the
//! configured body cap, and hand HTTP error statuses to token-core to interpret. The clock is
//! injectable ([`TokenClientBuilder::clock`]).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use token_core::{
    ClientConfig, Lookup, ManagerConfig, RequestId, Target, Token, TokenKey, TokenRequest,
    TransportErrorKind, TransportFailure,
};
use token_driver::Driver;
use tracing::Instrument as _;

pub use token_core;
pub use token_driver::{
    Clock, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Error, ManualClock, SystemClock,
    TransportConfig,
};

const USER_AGENT: &str = concat!("booking-tokens/", env!("CARGO_PKG_VERSION"), " (reqwest)");

/// Configures a [`TokenClient`].
#[must_use]
pub struct TokenClientBuilder {
    config: TransportConfig,
    http: Option<reqwest::ClientBuilder>,
}

impl fmt::Debug for TokenClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenClientBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TokenClientBuilder {
    /// Lifecycle tunables (refresh window, backoff, ...).
    pub fn manager_config(mut self, config: ManagerConfig) -> Self {
        self.config.manager = config;
        self
    }

    /// Overall timeout of one token request (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Connect timeout of one token request (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// The clock (default: the system's). Inject a [`ManualClock`] to test expiry.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.config.clock = Arc::new(clock);
        self
    }

    /// Starts the token requests' HTTP client from this builder (proxies, TLS roots, ...). The
    /// redirect policy and timeouts are set over it: token requests never follow redirects.
    pub fn http_client(mut self, builder: reqwest::ClientBuilder) -> Self {
        self.http = Some(builder);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<TokenClient, Error> {
        let builder = match self.http {
            Some(builder) => builder,
            None => default_tls(reqwest::Client::builder()),
        };
        let http = builder
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.config.timeout)
            .connect_timeout(self.config.connect_timeout)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| {
                Error::Transport(TransportFailure::new(
                    TransportErrorKind::Other,
                    e.to_string(),
                ))
            })?;
        Ok(TokenClient {
            inner: Arc::new(Inner {
                driver: self.config.driver(),
                http,
                changed: tokio::sync::Notify::new(),
            }),
        })
    }
}

/// A `reqwest::ClientBuilder` with this crate's TLS setup (rustls on ring with Mozilla's roots
/// under the default `rustls` feature), for your API requests. Without a TLS setup of its own,
/// a reqwest built only with `rustls-no-provider` panics when a client is built.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    default_tls(reqwest::Client::builder())
}

/// rustls on the ring provider with Mozilla's roots, configured here rather than through a
/// process-wide default provider.
#[cfg(feature = "rustls")]
fn default_tls(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(tls) => builder
            .tls_backend_preconfigured(tls.with_root_certificates(roots).with_no_client_auth()),
        // ring supports the safe defaults; should that ever change, reqwest reports it at build.
        Err(_) => builder,
    }
}

#[cfg(not(feature = "rustls"))]
fn default_tls(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    builder
}

/// An async token client: cache, single flight, early refresh and backoff over reqwest.
/// Cheap to clone; clones share their cache.
#[derive(Clone)]
pub struct TokenClient {
    inner: Arc<Inner>,
}

struct Inner {
    driver: Driver,
    http: reqwest::Client,
    changed: tokio::sync::Notify,
}

impl fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenClient")
            .field("driver", &self.inner.driver)
            .finish_non_exhaustive()
    }
}

impl TokenClient {
    /// A client with default settings.
    pub fn new() -> Result<Self, Error> {
        Self::builder().build()
    }

    /// A builder.
    pub fn builder() -> TokenClientBuilder {
        TokenClientBuilder {
            config: TransportConfig::default(),
            http: None,
        }
    }

    /// Registers a provider configuration. Registering an equal configuration again shares
    /// its tokens.
    pub fn register(&self, config: ClientConfig) -> ClientHandle {
        let (id, config) = self.inner.driver.register(config);
        ClientHandle {
            client: self.clone(),
            key: TokenKey::new(id),
            config,
        }
    }

    /// A valid token for `key`. Cancellation-safe.
    pub async fn token(&self, key: &TokenKey) -> Result<Token, Error> {
        if let Some(token) = self.inner.driver.cached(key) {
            return Ok(token);
        }
        self.wait_for_token(key).await
    }

    /// The slow path of [`token`](Self::token), a future of its own so that a cache hit does
    /// not set up (or drop) its state.
    async fn wait_for_token(&self, key: &TokenKey) -> Result<Token, Error> {
        loop {
            // Register for wake-ups before looking, so a change in between is not missed.
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let step = self.inner.driver.step(key)?;
            Inner::spawn_all(&self.inner, step.sends);
            match step.lookup {
                Lookup::Ready(token) => return Ok(token),
                Lookup::Failed { error, .. } => return Err(error.into()),
                Lookup::Pending if self.inner.driver.generation() != step.generation => {}
                Lookup::Pending => {
                    // Bounded, belt and braces: every fetch task reports back even if dropped.
                    let _ = tokio::time::timeout(Duration::from_secs(1), changed).await;
                }
            }
        }
    }

    /// The shared driver (for inspection in tests and tools).
    pub fn driver(&self) -> &Driver {
        &self.inner.driver
    }
}

impl Inner {
    /// Spawns one task per request; each reports its outcome (or its own cancellation).
    fn spawn_all(this: &Arc<Inner>, sends: Vec<TokenRequest>) {
        for send in sends {
            let inner = Arc::clone(this);
            let id = send.id;
            let span = request_span(&send);
            let mut guard = Completion {
                inner: Arc::clone(this),
                id: Some(id),
            };
            spawn(
                async move {
                    let outcome = inner.execute(send).await;
                    guard.finish(outcome);
                }
                .instrument(span),
            );
        }
    }

    async fn execute(
        &self,
        send: TokenRequest,
    ) -> Result<http::Response<Vec<u8>>, TransportFailure> {
        let limit = send.max_body_bytes;
        let request = reqwest::Request::try_from(send.request)
            .map_err(|e| TransportFailure::new(TransportErrorKind::Other, e.to_string()))?;
        let mut response = self.http.execute(request).await.map_err(failure)?;
        tracing::Span::current().record("status", response.status().as_u16());
        let mut builder = http::Response::builder()
            .status(response.status())
            .version(response.version());
        if let Some(headers) = builder.headers_mut() {
            *headers = std::mem::take(response.headers_mut());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failure)? {
            let room = limit.saturating_add(1) - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() > limit {
                break; // token-core reports the oversized body
            }
        }
        builder
            .body(body)
            .map_err(|e| TransportFailure::new(TransportErrorKind::Other, e.to_string()))
    }
}

/// Reports a request's outcome exactly once: with its result, or, if the task is dropped (a
/// runtime shutting down), as a failure, so no key waits on a request nobody will answer.
struct Completion {
    inner: Arc<Inner>,
    id: Option<RequestId>,
}

impl Completion {
    fn finish(&mut self, outcome: Result<http::Response<Vec<u8>>, TransportFailure>) {
        if let Some(id) = self.id.take() {
            let more = self.inner.driver.complete(id, outcome);
            self.inner.changed.notify_waiters();
            if !more.is_empty() {
                Inner::spawn_all(&self.inner, more);
            }
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let failure = TransportFailure::new(
                TransportErrorKind::Other,
                "the token request task was dropped",
            );
            // Do not spawn follow-ups from a dropped task: the runtime may be going away.
            let _ = self.inner.driver.complete(id, Err(failure));
            self.inner.changed.notify_waiters();
        }
    }
}

fn spawn(future: impl Future<Output = ()> + Send + 'static) {
    drop(tokio::spawn(future));
}

fn request_span(send: &TokenRequest) -> tracing::Span {
    let (kind, organization) = match &send.target {
        Target::Access(key) => ("access", key.organization()),
        _ => ("refresh", None),
    };
    tracing::info_span!(
        "token_request",
        provider = %send.provider,
        target = kind,
        organization,
        status = tracing::field::Empty,
    )
}

/// Classifies a reqwest error. Its message names the URL (never credentials: token-core
/// refuses URLs with user info) and no body or header.
fn failure(error: reqwest::Error) -> TransportFailure {
    let kind = if error.is_timeout() {
        TransportErrorKind::Timeout
    } else if error.is_connect() {
        TransportErrorKind::Connect
    } else if error.is_body() || error.is_decode() || error.is_request() {
        TransportErrorKind::Io
    } else {
        TransportErrorKind::Other
    };
    TransportFailure::new(kind, error.to_string())
}

/// One registered provider configuration (and, for bookingtime, one organization).
/// Cheap to clone.
#[derive(Clone)]
pub struct ClientHandle {
    client: TokenClient,
    key: TokenKey,
    config: Arc<ClientConfig>,
}

impl fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandle")
            .field("provider", &self.config.provider())
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ClientHandle {
    /// The same client for one bookingtime organization (its own 5-minute access tokens,
    /// sharing the client's refresh token).
    pub fn organization(&self, organization: &str) -> ClientHandle {
        ClientHandle {
            client: self.client.clone(),
            key: TokenKey::with_organization(self.key.client(), organization),
            config: Arc::clone(&self.config),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The cache key.
    pub fn key(&self) -> &TokenKey {
        &self.key
    }

    /// A valid token. Cancellation-safe.
    pub async fn token(&self) -> Result<Token, Error> {
        // The cache hit inline, as in `TokenClient::token`, rather than through its future.
        if let Some(token) = self.client.inner.driver.cached(&self.key) {
            return Ok(token);
        }
        self.client.wait_for_token(&self.key).await
    }

    /// Adds `Authorization: Bearer …` and the provider's API headers to a request builder;
    /// also returns the token used (report it to [`invalidate`](Self::invalidate) on a 401).
    ///
    /// Refuses (before fetching a token) an `http://` URL to a host that is not loopback unless
    /// the configuration allows insecure HTTP.
    pub async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::RequestBuilder, Token), Error> {
        let (client, request) = request.build_split();
        let mut request = request.map_err(api_failure)?;
        let token = self.authorize_reqwest(&mut request).await?;
        Ok((reqwest::RequestBuilder::from_parts(client, request), token))
    }

    async fn authorize_reqwest(&self, request: &mut reqwest::Request) -> Result<Token, Error> {
        let url = request.url();
        if !self
            .config
            .allows_api_target(Some(url.scheme()), url.host_str())
        {
            let url = url.as_str().to_owned();
            return Err(token_core::ConfigError::InsecureUrl { url }.into());
        }
        let token = self.token().await?;
        self.config
            .authorize_with(request.headers_mut(), token.authorization().clone());
        Ok(token)
    }

    /// Adds `Authorization: Bearer …` and the provider's API headers to an `http::Request`
    /// (with the same URL check as [`authorize`](Self::authorize)).
    pub async fn authorize_request<B>(
        &self,
        request: &mut http::Request<B>,
    ) -> Result<Token, Error> {
        self.config.check_api_uri(request.uri())?;
        let token = self.token().await?;
        self.config
            .authorize_with(request.headers_mut(), token.authorization().clone());
        Ok(token)
    }

    /// Reports that the API rejected `token`; the cache drops it only if it is still current,
    /// so many 401s for one token cause one renewal. Returns whether it was dropped.
    pub fn invalidate(&self, token: &Token) -> bool {
        self.client
            .inner
            .driver
            .invalidate(&self.key, token.access_token())
    }

    /// Sends an API request with the token attached. On a 401 it invalidates the token, gets a
    /// new one and retries once (if the request can be cloned, i.e. its body is not a stream).
    /// HTTP error statuses are returned as responses.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
        let (client, request) = request.build_split();
        let mut first = request.map_err(api_failure)?;
        let retry = first.try_clone();
        let token = self.authorize_reqwest(&mut first).await?;
        let response = client.execute(first).await.map_err(api_failure)?;
        match retry {
            Some(mut retry) if response.status() == reqwest::StatusCode::UNAUTHORIZED => {
                self.invalidate(&token);
                self.authorize_reqwest(&mut retry).await?;
                client.execute(retry).await.map_err(api_failure)
            }
            _ => Ok(response),
        }
    }
}

fn api_failure(error: reqwest::Error) -> Error {
    Error::Transport(failure(error))
}

/// `reqwest-middleware` integration (feature `middleware`): attaches a handle's token to every
/// request of a `reqwest_middleware::ClientWithMiddleware`; a 401 invalidates the token.
#[cfg(feature = "middleware")]
#[derive(Clone, Debug)]
pub struct BearerMiddleware(pub ClientHandle);

#[cfg(feature = "middleware")]
#[async_trait::async_trait]
impl reqwest_middleware::Middleware for BearerMiddleware {
    async fn handle(
        &self,
        mut request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let token = self
            .0
            .authorize_reqwest(&mut request)
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        let response = next.run(request, extensions).await?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            self.0.invalidate(&token);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_types_are_send_sync_and_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<TokenClient>();
        check::<ClientHandle>();
    }
}
