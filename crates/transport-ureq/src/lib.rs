//! Blocking OAuth 2.0 tokens for booking-platform APIs, over [ureq] 3.
//!
//! One [`TokenClient`] per process (it is `Clone + Send + Sync`; clones share everything), one
//! [`ClientHandle`] per provider configuration. [`ClientHandle::token`] returns a valid token:
//! from the cache (no lock, no allocation), otherwise after at most one request per key however
//! many threads ask at once.
//!
//! Each client runs a **timer thread** that sleeps until the token lifecycle's next deadline and
//! refreshes tokens in use before their refresh point, so in steady state no caller ever waits
//! for a refresh: callers only wait for a key's very first token (or after its token expired
//! with the endpoint down). Requests go out on a small pool of threads (at most
//! [`max_concurrent`](TokenClientBuilder::max_concurrent) at once), so bookingtime's fan-out to
//! many organizations runs in parallel, never on a caller's thread. The timer thread and the
//! pool stop when the last clone of the client is dropped.
//!
//! ```no_run
//! use transport_ureq::TokenClient;
//! use token_core::{presets, Credentials};
//!
//! let client = TokenClient::new();
//! let bookable = client.register(presets::bookable(Credentials::from_env("BOOKABLE")?).build()?);
//!
//! // Attach the token to any http::Request...
//! let mut request = http::Request::get("https://api.bookabletech.com/venues").body(())?;
//! bookable.authorize(&mut request)?;
//! // ...or let the handle send it, renewing the token once on a 401.
//! let venues = bookable.call(http::Request::get("https://api.bookabletech.com/venues").body(Vec::new())?)?;
//! println!("{}", venues.status());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Token requests never follow redirects (the body carries the secret), read at most the
//! configured body cap, and treat HTTP error statuses as answers for token-core to interpret,
//! not as transport errors. API requests sent by [`ClientHandle::call`] have the same timeouts
//! as token requests unless you bring your own agent. The clock is injectable
//! ([`TokenClientBuilder::clock`]) so tests drive expiry, and the background refresh, without
//! sleeping.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod pool;

use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use token_core::{
    ClientConfig, StoreFailure, StoreReply, StoreRequest, Token, TokenKey, TokenRequest,
    TransportErrorKind, TransportFailure,
};
use token_driver::{Driver, Executor, HandleCore, Report, Wake};

/// How a job that never finished is reported ("the token request …", "the store operation …").
const ABANDONED: &str = "was abandoned (a panic, or the client shutting down)";

pub use token_core;
pub use token_driver::{
    BlockingStore, Clock, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Error, ManualClock, Stats,
    SystemClock, TransportConfig,
};

use pool::Pool;

const USER_AGENT: &str = concat!("booking-tokens/", env!("CARGO_PKG_VERSION"), " (ureq)");

/// Configures a [`TokenClient`].
#[must_use]
pub struct TokenClientBuilder {
    config: TransportConfig,
    api_agent: Option<ureq::Agent>,
    store: Option<Arc<dyn BlockingStore>>,
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

    /// The agent [`ClientHandle::call`] uses for API requests (default: ureq's defaults with the
    /// client's timeouts and HTTP error statuses returned as responses).
    pub fn api_agent(mut self, agent: ureq::Agent) -> Self {
        self.api_agent = Some(agent);
        self
    }

    /// A store shared by every process of a fleet (e.g. `token-store-redis`), asked before the
    /// token endpoint and told what was fetched, so the fleet makes one token request per key
    /// per lifetime. Without one, tokens live in this process only.
    pub fn store(mut self, store: impl BlockingStore) -> Self {
        self.store = Some(Arc::new(store));
        if self.config.manager.store.is_none() {
            self.config.manager.store = Some(Default::default());
        }
        self
    }

    /// Builds the client and starts its timer thread.
    pub fn build(self) -> TokenClient {
        let token_agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_global(Some(self.config.timeout))
                .timeout_connect(Some(self.config.connect_timeout))
                .user_agent(USER_AGENT)
                .build(),
        );
        let api_agent = self.api_agent.unwrap_or_else(|| {
            ureq::Agent::new_with_config(
                ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(self.config.timeout))
                    .timeout_connect(Some(self.config.connect_timeout))
                    .user_agent(USER_AGENT)
                    .build(),
            )
        });
        let signal = Arc::new(Signal::default());
        let pool = Arc::new(Pool::new(self.config.max_concurrent));
        let executor = UreqExecutor {
            pool: Arc::clone(&pool),
            token_agent,
            store: self.store,
            signal: Arc::clone(&signal),
        };
        let driver = Driver::new(&self.config, executor);
        let wake: Arc<Wake> = {
            let signal = Arc::clone(&signal);
            Arc::new(move || signal.wake())
        };
        self.config.clock.watch(Arc::downgrade(&wake));
        let worker_driver = Arc::clone(&driver);
        let worker_signal = Arc::clone(&signal);
        let spawned = std::thread::Builder::new()
            .name("token-timers".into())
            .spawn(move || run_worker(&worker_driver, &worker_signal));
        if let Err(error) = spawned {
            // Without a timer thread tokens still flow (callers step the timers when they
            // miss); only the background refresh is lost.
            tracing::error!(%error, "could not start the token timer thread");
        }
        TokenClient {
            inner: Arc::new(Inner {
                driver,
                api_agent,
                signal,
                pool,
                _wake: wake,
            }),
        }
    }
}

/// A blocking token client: cache, single flight, background refresh and backoff over ureq.
/// Cheap to clone; clones share their cache, timer thread and request pool.
#[derive(Clone)]
pub struct TokenClient {
    inner: Arc<Inner>,
}

struct Inner {
    driver: Arc<Driver>,
    api_agent: ureq::Agent,
    signal: Arc<Signal>,
    pool: Arc<Pool>,
    /// Keeps the clock's wake-up callback alive as long as the client.
    _wake: Arc<Wake>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last clone is gone. What the shared store still has to hear (a token to publish,
        // a lease to release) goes out first, for a moment at most, so a process that exits
        // right after fetching does not leave the fleet waiting for its lease to expire. Then
        // stop the timer thread and the pool (requests in progress finish on their own).
        self.driver.flush_store(FLUSH_ON_DROP);
        self.signal.stop();
        self.pool.stop();
    }
}

/// How long dropping the last clone waits for store operations to finish.
const FLUSH_ON_DROP: Duration = Duration::from_secs(3);

impl fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenClient")
            .field("driver", &self.inner.driver)
            .finish_non_exhaustive()
    }
}

impl Default for TokenClient {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenClient {
    /// A client with default settings.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder.
    pub fn builder() -> TokenClientBuilder {
        TokenClientBuilder {
            config: TransportConfig::default(),
            api_agent: None,
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

    /// A valid token for `key` (a handle's [`token`](ClientHandle::token) skips the key lookup).
    pub fn token(&self, key: &TokenKey) -> Result<Token, Error> {
        let slot = self.inner.driver.slot(key);
        self.inner.driver.token_blocking(&slot)
    }

    /// Runs `f` on a valid token for `key` without cloning it (see
    /// [`ClientHandle::with_token`]; this one also looks the key's slot up, which takes a
    /// lock: a handle's is the hit path that touches nothing shared).
    pub fn with_token<R>(&self, key: &TokenKey, f: impl FnOnce(&Token) -> R) -> Result<R, Error> {
        let slot = self.inner.driver.slot(key);
        let f = match self.inner.driver.try_with_cached(&slot, f) {
            Ok(r) => return Ok(r),
            Err(f) => f,
        };
        let token = self.inner.driver.token_blocking(&slot)?;
        Ok(f(&token))
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

/// The timer thread: run the lifecycle's due timers, sleep until the next deadline or a
/// wake-up, until the client is dropped.
fn run_worker(driver: &Arc<Driver>, signal: &Signal) {
    loop {
        let next = driver.run_timers();
        let mut state = signal.lock();
        loop {
            if state.stopped {
                return;
            }
            if state.woken {
                state.woken = false;
                break;
            }
            let now = driver.clock().now();
            if now >= next {
                break;
            }
            state = signal
                .changed
                .wait_timeout(state, next - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

/// Wakes and stops the timer thread.
#[derive(Default)]
struct Signal {
    state: Mutex<SignalState>,
    changed: Condvar,
}

#[derive(Default)]
struct SignalState {
    woken: bool,
    stopped: bool,
}

impl Signal {
    fn lock(&self) -> std::sync::MutexGuard<'_, SignalState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wake(&self) {
        self.lock().woken = true;
        self.changed.notify_one();
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_one();
    }
}

/// Runs requests and store operations on the pool.
struct UreqExecutor {
    pool: Arc<Pool>,
    token_agent: ureq::Agent,
    store: Option<Arc<dyn BlockingStore>>,
    signal: Arc<Signal>,
}

impl Executor for UreqExecutor {
    fn send(&self, driver: &Arc<Driver>, request: TokenRequest) {
        let agent = self.token_agent.clone();
        let mut report = Report::request(driver, request.id, ABANDONED);
        self.pool.submit(Box::new(move || {
            let span = token_driver::request_span(&request);
            let _entered = span.enter();
            report.sent();
            let outcome = execute(&agent, request);
            if let Ok(response) = &outcome {
                span.record("status", response.status().as_u16());
            }
            report.finish(outcome);
        }));
    }

    fn store(&self, driver: &Arc<Driver>, request: StoreRequest) {
        let mut report = Report::store(driver, request.id, ABANDONED);
        let Some(store) = self.store.clone() else {
            report.finish_store(StoreReply::Failed(StoreFailure::new("no store configured")));
            return;
        };
        self.pool.submit(Box::new(move || {
            let reply = store.execute(&request);
            report.finish_store(reply);
        }));
    }

    fn wake(&self) {
        self.signal.wake();
    }
}

/// Sends one token request and reads its response, capped.
fn execute(
    agent: &ureq::Agent,
    send: TokenRequest,
) -> Result<http::Response<Vec<u8>>, TransportFailure> {
    let limit = send.max_body_bytes;
    let response = agent.run(send.request).map_err(failure)?;
    let (parts, body) = response.into_parts();
    let body =
        token_driver::read_capped(body.into_with_config().reader(), limit).map_err(|e| match e
            .into_inner()
            .map(|inner| inner.downcast::<ureq::Error>())
        {
            Some(Ok(ureq_error)) => failure(*ureq_error),
            _ => TransportFailure::new(TransportErrorKind::Io, "reading the response body failed"),
        })?;
    Ok(http::Response::from_parts(parts, body))
}

/// Classifies a ureq error. Its message never names a body or header; URLs in it lose their
/// user info and query.
fn failure(error: ureq::Error) -> TransportFailure {
    use std::io::ErrorKind as Io;
    let kind = match &error {
        ureq::Error::Timeout(_) => TransportErrorKind::Timeout,
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => TransportErrorKind::Connect,
        ureq::Error::Io(e) => match e.kind() {
            Io::ConnectionRefused | Io::AddrNotAvailable | Io::NotFound => {
                TransportErrorKind::Connect
            }
            Io::TimedOut | Io::WouldBlock => TransportErrorKind::Timeout,
            _ => TransportErrorKind::Io,
        },
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => {
            TransportErrorKind::Tls
        }
        ureq::Error::BodyExceedsLimit(_) => TransportErrorKind::BodyTooLarge,
        ureq::Error::Protocol(_) | ureq::Error::BodyStalled => TransportErrorKind::Io,
        _ => TransportErrorKind::Other,
    };
    let message = match &error {
        ureq::Error::BadUri(_) => "invalid URI".to_owned(),
        other => token_core::redact_urls(&other.to_string()),
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

    /// A valid token: the cached one (no lock, no allocation beyond a reference count), or, for
    /// the key's first token, after the fetch.
    pub fn token(&self) -> Result<Token, Error> {
        self.core.driver().token_blocking(self.core.slot())
    }

    /// Runs `f` on a valid token without cloning it: on a cache hit, `f` borrows the cached
    /// token (one clock reading and one atomic load; no lock, no allocation, no reference
    /// count touched); on a miss (no token yet, or past its servable time), the token is
    /// fetched as [`token`](Self::token) does and `f` borrows that.
    ///
    /// The cheapest way to use the token of a hit, e.g. to copy its header into a request:
    /// `handle.with_token(|t| headers.insert(AUTHORIZATION, t.authorization().clone()))`
    /// (the `HeaderValue` clone is a reference count of its own). Keep `f` short: the token
    /// stays published while it runs, but nothing else waits for it.
    #[inline]
    pub fn with_token<R>(&self, f: impl FnOnce(&Token) -> R) -> Result<R, Error> {
        let f = match self.core.try_with_cached(f) {
            Ok(r) => return Ok(r),
            Err(f) => f,
        };
        let token = self.token()?;
        Ok(f(&token))
    }

    /// Adds `Authorization: Bearer …` and the provider's API headers to `request`; returns the
    /// token used (report it to [`invalidate`](HandleCore::invalidate) if the API answers 401).
    ///
    /// Refuses (before fetching a token) an absolute `http://` URL to a host that is not
    /// loopback unless the configuration allows insecure HTTP.
    pub fn authorize<B>(&self, request: &mut http::Request<B>) -> Result<Token, Error> {
        self.config().check_api_uri(request.uri())?;
        let token = self.token()?;
        self.config()
            .authorize_with(request.headers_mut(), token.authorization().clone());
        Ok(token)
    }

    /// Adds `Authorization: Bearer …` and the provider's API headers to a ureq request builder
    /// (`agent.get(url)`); also returns the token used (report it to
    /// [`invalidate`](HandleCore::invalidate) if the API answers 401).
    pub fn authorize_ureq<B>(
        &self,
        request: ureq::RequestBuilder<B>,
    ) -> Result<(ureq::RequestBuilder<B>, Token), Error> {
        if let Some(uri) = request.uri_ref() {
            self.config().check_api_uri(uri)?;
        }
        let token = self.token()?;
        let mut headers = http::HeaderMap::new();
        self.config()
            .authorize_with(&mut headers, token.authorization().clone());
        let request = headers.iter().fold(request, |request, (name, value)| {
            request.header(name, value)
        });
        Ok((request, token))
    }

    /// Sends an API request with the token attached. On a 401 it invalidates the token and,
    /// if that dropped it, retries once with a new one; if the API refused the previous new
    /// token too, renewal is backing off and the 401 is returned as is (see
    /// [`HandleCore::invalidate`]). HTTP error statuses are returned as responses.
    pub fn call(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<ureq::Body>, Error> {
        let mut first = request.clone();
        let token = self.authorize(&mut first)?;
        let response = self.send_api(first)?;
        if response.status() != http::StatusCode::UNAUTHORIZED {
            self.confirm(&token);
            return Ok(response);
        }
        if !self.invalidate(&token) {
            return Ok(response);
        }
        let mut retry = request;
        let token = self.authorize(&mut retry)?;
        let response = self.send_api(retry)?;
        if response.status() == http::StatusCode::UNAUTHORIZED {
            self.invalidate(&token);
        } else {
            self.confirm(&token);
        }
        Ok(response)
    }

    fn send_api(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<ureq::Body>, Error> {
        self.client
            .inner
            .api_agent
            .run(request)
            .map_err(|e| Error::Transport(failure(e)))
    }

    /// A ureq middleware that adds this handle's token to every request of an agent:
    /// `ureq::Agent::config_builder().middleware(handle.middleware())`. A 401 answer
    /// invalidates the token, so the next request fetches a new one.
    pub fn middleware(&self) -> BearerMiddleware {
        BearerMiddleware(self.clone())
    }
}

/// See [`ClientHandle::middleware`].
#[derive(Clone, Debug)]
pub struct BearerMiddleware(ClientHandle);

impl ureq::middleware::Middleware for BearerMiddleware {
    fn handle(
        &self,
        mut request: http::Request<ureq::SendBody>,
        next: ureq::middleware::MiddlewareNext,
    ) -> Result<http::Response<ureq::Body>, ureq::Error> {
        let token = self
            .0
            .authorize(&mut request)
            .map_err(|e| ureq::Error::Other(Box::new(e)))?;
        let response = next.handle(request)?;
        if response.status() == http::StatusCode::UNAUTHORIZED {
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
        check::<BearerMiddleware>();
    }

    #[test]
    fn url_secrets_never_reach_a_failure_message() {
        let f = failure(ureq::Error::BadUri("http://u:PASSWORD@h/?k=KEY".into()));
        assert!(!f.message().contains("PASSWORD") && !f.message().contains("KEY"));
    }
}
