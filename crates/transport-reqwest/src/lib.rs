//! Async OAuth 2.0 tokens for booking-platform APIs, over [reqwest] and tokio.
//!
//! One [`TokenClient`] per process (`Clone + Send + Sync`; clones share everything), one
//! [`ClientHandle`] per provider configuration. [`ClientHandle::token`] returns a valid token:
//! from the cache (no lock, no allocation), otherwise after at most one request per key however
//! many tasks ask at once.
//!
//! Each client runs a **timer task** (started on first use, on the runtime in use then) that
//! sleeps until the token lifecycle's next deadline and refreshes tokens in use before their
//! refresh point, so in steady state no caller ever waits for a refresh. Requests run on
//! spawned tasks (at most [`max_concurrent`](TokenClientBuilder::max_concurrent) at once), so a
//! caller whose future is dropped mid-fetch cancels nothing, wedges no one and causes no second
//! request, and bookingtime's fan-out runs in parallel. The timer task stops when the last clone
//! of the client is dropped. Works on multi-thread and current-thread runtimes (with time
//! enabled, as reqwest needs).
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use token_core::{
    ClientConfig, StoreFailure, StoreReply, StoreRequest, Token, TokenKey, TokenRequest,
    TransportErrorKind, TransportFailure,
};
use token_driver::{Driver, Executor, HandleCore, KeySlot, Report, Wake};

/// How a job that never finished is reported ("the token request …", "the store operation …").
const ABANDONED: &str = "task was dropped (no runtime, or it shut down)";
use tracing::Instrument as _;

pub use token_core;
pub use token_driver::{
    AsyncStore, Clock, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Error, ManualClock, Stats,
    SystemClock, TransportConfig,
};

const USER_AGENT: &str = concat!("booking-tokens/", env!("CARGO_PKG_VERSION"), " (reqwest)");

/// Configures a [`TokenClient`].
#[must_use]
pub struct TokenClientBuilder {
    config: TransportConfig,
    http: Option<reqwest::ClientBuilder>,
    store: Option<Arc<dyn AsyncStore>>,
}

impl fmt::Debug for TokenClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenClientBuilder")
            .field("config", &self.config)
            .field("store", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

impl TokenClientBuilder {
    token_driver::transport_builder_settings!();

    /// Starts the token requests' HTTP client from this builder (proxies, TLS roots, ...). The
    /// redirect policy and timeouts are set over it: token requests never follow redirects.
    pub fn http_client(mut self, builder: reqwest::ClientBuilder) -> Self {
        self.http = Some(builder);
        self
    }

    /// A store shared by every process of a fleet (e.g. `token-store-redis`), asked before the
    /// token endpoint and told what was fetched, so the fleet makes one token request per key
    /// per lifetime. Without one, tokens live in this process only.
    pub fn store(mut self, store: impl AsyncStore) -> Self {
        self.store = Some(Arc::new(store));
        if self.config.manager.store.is_none() {
            self.config.manager.store = Some(Default::default());
        }
        self
    }

    /// Builds the client. Its timer task starts on the first call that needs a token (or now,
    /// when built inside a tokio runtime).
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
            .map_err(|e| Error::Transport(failure(e)))?;
        let control = Arc::new(Control::default());
        let executor = ReqwestExecutor {
            http,
            store: self.store,
            permits: Arc::new(tokio::sync::Semaphore::new(self.config.max_concurrent)),
            store_timeout: self
                .config
                .manager
                .store
                .as_ref()
                .map_or(Duration::from_secs(5), |s| s.op_timeout * 5),
            control: Arc::clone(&control),
        };
        let driver = Driver::new(&self.config, executor);
        let wake: Arc<Wake> = {
            let control = Arc::clone(&control);
            Arc::new(move || control.wake.notify_one())
        };
        self.config.clock.watch(Arc::downgrade(&wake));
        let client = TokenClient {
            inner: Arc::new(Inner {
                driver,
                control,
                _wake: wake,
            }),
        };
        client.inner.ensure_worker();
        Ok(client)
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

/// An async token client: cache, single flight, background refresh and backoff over reqwest.
/// Cheap to clone; clones share their cache and timer task.
#[derive(Clone)]
pub struct TokenClient {
    inner: Arc<Inner>,
}

struct Inner {
    driver: Arc<Driver>,
    control: Arc<Control>,
    /// Keeps the clock's wake-up callback alive as long as the client.
    _wake: Arc<Wake>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.control.stopped.store(true, Ordering::Release);
        self.control.wake.notify_one();
    }
}

/// What the timer task and the executor share with the client.
#[derive(Default)]
struct Control {
    wake: tokio::sync::Notify,
    stopped: AtomicBool,
    /// The runtime of the running timer task, if one is running.
    worker: Mutex<Option<tokio::runtime::Handle>>,
}

impl Control {
    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| lock(&self.worker).clone())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Inner {
    /// Starts the timer task on the current runtime unless one is running.
    fn ensure_worker(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut worker = lock(&self.control.worker);
            if worker.is_some() {
                return;
            }
            *worker = Some(runtime.clone());
        }
        let driver = Arc::clone(&self.driver);
        let control = Arc::clone(&self.control);
        drop(runtime.spawn(async move {
            // If the runtime drops the task, the next call starts another one.
            struct Running(Arc<Control>);
            impl Drop for Running {
                fn drop(&mut self) {
                    *lock(&self.0.worker) = None;
                }
            }
            let _running = Running(Arc::clone(&control));
            loop {
                if control.stopped.load(Ordering::Acquire) {
                    return;
                }
                let next = driver.run_timers();
                let sleep = next
                    .saturating_duration_since(driver.clock().now())
                    .min(Duration::from_secs(24 * 3600));
                let _ = tokio::time::timeout(sleep, control.wake.notified()).await;
            }
        }));
    }
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
            store: None,
        }
    }

    /// Registers a provider configuration. Registering an equal configuration again shares
    /// its tokens.
    pub fn register(&self, config: ClientConfig) -> ClientHandle {
        ClientHandle {
            core: HandleCore::register(&self.inner.driver, config),
            client: self.clone(),
        }
    }

    /// A valid token for `key` (a handle's [`token`](ClientHandle::token) skips the key
    /// lookup). Cancellation-safe.
    pub async fn token(&self, key: &TokenKey) -> Result<Token, Error> {
        let slot = self.inner.driver.slot(key);
        if let Some(token) = self.inner.driver.cached(&slot) {
            return Ok(token);
        }
        self.wait_for_token(&slot).await
    }

    /// Runs `f` on a valid token for `key` without cloning it (see
    /// [`ClientHandle::with_token`]; this one also looks the key's slot up, which takes a
    /// lock: a handle's is the hit path that touches nothing shared). Cancellation-safe.
    pub async fn with_token<R>(
        &self,
        key: &TokenKey,
        f: impl FnOnce(&Token) -> R,
    ) -> Result<R, Error> {
        let slot = self.inner.driver.slot(key);
        let f = match self.inner.driver.try_with_cached(&slot, f) {
            Ok(r) => return Ok(r),
            Err(f) => f,
        };
        let token = self.wait_for_token(&slot).await?;
        Ok(f(&token))
    }

    /// The slow path of [`token`](Self::token), a future of its own so that a cache hit does
    /// not set up (or drop) its state.
    async fn wait_for_token(&self, slot: &KeySlot) -> Result<Token, Error> {
        self.inner.ensure_worker();
        let driver = &self.inner.driver;
        let mut waited = false;
        loop {
            // Register for wake-ups before looking, so a change in between is not missed.
            let listener = slot.listen();
            match driver.step(slot)? {
                token_core::Lookup::Ready(token) => return Ok(token),
                token_core::Lookup::Failed { error, .. } => return Err(error.into()),
                token_core::Lookup::Pending if !waited => {
                    waited = true;
                    driver.record_wait();
                }
                token_core::Lookup::Pending => {}
            }
            // The manager's request and store timeouts end every wait; the bound only guards
            // against a timer task that is gone.
            let _ = tokio::time::timeout(Duration::from_secs(1), listener).await;
            if let Some(token) = driver.cached_after_wait(slot) {
                return Ok(token);
            }
        }
    }

    /// Waits (at most `timeout`) until the shared store has heard everything it should (a
    /// token to publish, a lease to release). Call it before a process exits right after
    /// fetching, so the fleet need not wait for its lease to expire; dropping the client does
    /// not wait (it cannot block a runtime). True if nothing is left.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let driver = &self.inner.driver;
        let wait = async {
            loop {
                let listener = driver.listen_settled();
                if !driver.store_pending() {
                    return;
                }
                listener.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// What the client did so far (cache hits and misses, token requests, refreshes, ...).
    pub fn stats(&self) -> Stats {
        self.inner.driver.stats()
    }

    /// The shared driver (for inspection in tests and tools).
    pub fn driver(&self) -> &Arc<Driver> {
        &self.inner.driver
    }
}

/// Runs requests and store operations on spawned tasks.
struct ReqwestExecutor {
    http: reqwest::Client,
    store: Option<Arc<dyn AsyncStore>>,
    permits: Arc<tokio::sync::Semaphore>,
    store_timeout: Duration,
    control: Arc<Control>,
}

impl ReqwestExecutor {
    /// Spawns `future` on the runtime in use (or the timer task's). With no runtime at all,
    /// dropping it drops the [`Report`] inside, which fails its request.
    fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        if let Some(runtime) = self.control.runtime() {
            drop(runtime.spawn(future));
        }
    }
}

impl Executor for ReqwestExecutor {
    fn send(&self, driver: &Arc<Driver>, request: TokenRequest) {
        let span = token_driver::request_span(&request);
        let http = self.http.clone();
        let permits = Arc::clone(&self.permits);
        let report = Report::request(driver, request.id, ABANDONED);
        self.spawn(
            async move {
                let mut report = report;
                let _permit = permits.acquire_owned().await;
                report.sent();
                let outcome = execute(&http, request).await;
                report.finish(outcome);
            }
            .instrument(span),
        );
    }

    fn store(&self, driver: &Arc<Driver>, request: StoreRequest) {
        let mut report = Report::store(driver, request.id, ABANDONED);
        let Some(store) = self.store.clone() else {
            report.finish_store(StoreReply::Failed(StoreFailure::new("no store configured")));
            return;
        };
        let permits = Arc::clone(&self.permits);
        let timeout = self.store_timeout;
        self.spawn(async move {
            let mut report = report;
            let _permit = permits.acquire_owned().await;
            let reply = match tokio::time::timeout(timeout, store.execute(&request)).await {
                Ok(reply) => reply,
                Err(_) => StoreReply::Failed(StoreFailure::new("store operation timed out")),
            };
            report.finish_store(reply);
        });
    }

    fn wake(&self) {
        self.control.wake.notify_one();
    }
}

async fn execute(
    http: &reqwest::Client,
    send: TokenRequest,
) -> Result<http::Response<Vec<u8>>, TransportFailure> {
    let limit = send.max_body_bytes;
    let request = reqwest::Request::try_from(send.request).map_err(failure)?;
    let mut response = http.execute(request).await.map_err(failure)?;
    tracing::Span::current().record("status", response.status().as_u16());
    let mut builder = http::Response::builder()
        .status(response.status())
        .version(response.version());
    if let Some(headers) = builder.headers_mut() {
        *headers = std::mem::take(response.headers_mut());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failure)? {
        if !token_driver::push_capped(&mut body, &chunk, limit) {
            break; // token-core reports the oversized body
        }
    }
    builder
        .body(body)
        .map_err(|e| TransportFailure::new(TransportErrorKind::Other, e.to_string()))
}

/// Classifies a reqwest error. Its message names no body or header, and the URL it quotes
/// loses its user info and query.
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
    let url = error.url().map(|u| token_core::display_url(u.as_str()));
    let message = token_core::redact_urls(&error.without_url().to_string());
    let message = match url {
        Some(url) => format!("{message} ({url})"),
        None => message,
    };
    TransportFailure::new(kind, message)
}

/// One registered provider configuration (and, for bookingtime, one organization; for the
/// Authorization Code flow, one user). Cheap to clone.
#[derive(Clone)]
pub struct ClientHandle {
    core: HandleCore,
    client: TokenClient,
}

impl fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt(f)
    }
}

impl std::ops::Deref for ClientHandle {
    type Target = HandleCore;

    /// The accessors and commands both transports' handles share: [`HandleCore::config`],
    /// [`HandleCore::key`], [`HandleCore::invalidate`], [`HandleCore::confirm`], ...
    fn deref(&self) -> &HandleCore {
        &self.core
    }
}

impl ClientHandle {
    /// The same client for one bookingtime organization (its own 5-minute access tokens,
    /// sharing the client's refresh token).
    pub fn organization(&self, organization: &str) -> ClientHandle {
        ClientHandle {
            core: self.core.organization(organization),
            client: self.client.clone(),
        }
    }

    /// The same client for a user's grant (the Authorization Code flow), named by your id for
    /// the user.
    pub fn user(&self, user: &str) -> ClientHandle {
        ClientHandle {
            core: self.core.user(user),
            client: self.client.clone(),
        }
    }

    /// Completes a user's authorization (started with
    /// [`start_authorization`](HandleCore::start_authorization)) from the URL the browser was
    /// redirected to: checks it, exchanges the code, and returns the handle of the user's
    /// tokens (for bookingtime, then pick an [`organization`](Self::organization)).
    pub fn complete_authorization(&self, redirect: &str) -> Result<ClientHandle, Error> {
        Ok(ClientHandle {
            core: self.core.complete_authorization(redirect)?,
            client: self.client.clone(),
        })
    }

    /// A valid token. Cancellation-safe.
    pub async fn token(&self) -> Result<Token, Error> {
        // The cache hit inline, rather than through the slow path's future.
        if let Some(token) = self.core.cached() {
            return Ok(token);
        }
        self.client.wait_for_token(self.core.slot()).await
    }

    /// Runs `f` on a valid token without cloning it: on a cache hit (the future is ready on
    /// its first poll), `f` borrows the cached token (one clock reading and one atomic load; no
    /// lock, no allocation, no reference count touched); on a miss (no token yet, or past its
    /// servable time), the token is fetched as [`token`](Self::token) does and `f` borrows
    /// that. Cancellation-safe.
    ///
    /// The cheapest way to use the token of a hit, e.g. to copy its header into a request:
    /// `handle.with_token(|t| headers.insert(AUTHORIZATION, t.authorization().clone())).await`
    /// (the `HeaderValue` clone is a reference count of its own).
    pub async fn with_token<R>(&self, f: impl FnOnce(&Token) -> R) -> Result<R, Error> {
        let f = match self.core.try_with_cached(f) {
            Ok(r) => return Ok(r),
            Err(f) => f,
        };
        let token = self.client.wait_for_token(self.core.slot()).await?;
        Ok(f(&token))
    }

    /// Adds `Authorization: Bearer …` and the provider's API headers to a request builder;
    /// also returns the token used (report it to [`invalidate`](HandleCore::invalidate) on a
    /// 401).
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
            .config()
            .allows_api_target(Some(url.scheme()), url.host_str())
        {
            let url = token_core::display_url(url.as_str());
            return Err(token_core::ConfigError::InsecureUrl { url }.into());
        }
        let token = self.token().await?;
        self.config()
            .authorize_with(request.headers_mut(), token.authorization().clone());
        Ok(token)
    }

    /// Adds `Authorization: Bearer …` and the provider's API headers to an `http::Request`
    /// (with the same URL check as [`authorize`](Self::authorize)).
    pub async fn authorize_request<B>(
        &self,
        request: &mut http::Request<B>,
    ) -> Result<Token, Error> {
        self.config().check_api_uri(request.uri())?;
        let token = self.token().await?;
        self.config()
            .authorize_with(request.headers_mut(), token.authorization().clone());
        Ok(token)
    }

    /// Sends an API request with the token attached. On a 401 it invalidates the token and,
    /// if that dropped it (and the request can be cloned, i.e. its body is not a stream),
    /// retries once with a new one; if the API refused the previous new token too, renewal is
    /// backing off and the 401 is returned as is (see [`HandleCore::invalidate`]). HTTP error
    /// statuses are returned as responses.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
        let (client, request) = request.build_split();
        let mut first = request.map_err(api_failure)?;
        let retry = first.try_clone();
        let token = self.authorize_reqwest(&mut first).await?;
        let response = client.execute(first).await.map_err(api_failure)?;
        if response.status() != reqwest::StatusCode::UNAUTHORIZED {
            self.confirm(&token);
            return Ok(response);
        }
        match retry {
            Some(mut retry) if self.invalidate(&token) => {
                let token = self.authorize_reqwest(&mut retry).await?;
                let response = client.execute(retry).await.map_err(api_failure)?;
                if response.status() == reqwest::StatusCode::UNAUTHORIZED {
                    self.invalidate(&token);
                } else {
                    self.confirm(&token);
                }
                Ok(response)
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
        } else {
            self.0.confirm(&token);
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
