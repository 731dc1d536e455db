//! Blocking OAuth 2.0 tokens for booking-platform APIs, over [ureq] 3.
//!
//! One [`TokenClient`] per process (it is `Clone + Send + Sync`; clones share everything),
//! one [`ClientHandle`] per provider configuration. [`ClientHandle::token`] returns a valid
//! token: from the cache if it is fresh (no lock a fetch holds, no allocation), otherwise after
//! at most one request per key however many threads ask at once. A token inside its refresh
//! window is still served; the first caller to see it there performs the refresh inline while
//! every other caller keeps getting the cached token.
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
//! not as transport errors. The clock is injectable ([`TokenClientBuilder::clock`]) so tests can
//! drive expiry without sleeping.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use token_core::{
    ClientConfig, Lookup, ManagerConfig, Target, Token, TokenKey, TokenRequest, TransportErrorKind,
    TransportFailure,
};
use token_driver::Driver;

pub use token_core;
pub use token_driver::{
    Clock, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Error, ManualClock, SystemClock,
    TransportConfig,
};

const USER_AGENT: &str = concat!("booking-tokens/", env!("CARGO_PKG_VERSION"), " (ureq)");

/// Configures a [`TokenClient`].
#[must_use]
pub struct TokenClientBuilder {
    config: TransportConfig,
    api_agent: Option<ureq::Agent>,
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

    /// The agent [`ClientHandle::call`] uses for API requests (default: ureq's defaults with
    /// HTTP error statuses returned as responses).
    pub fn api_agent(mut self, agent: ureq::Agent) -> Self {
        self.api_agent = Some(agent);
        self
    }

    /// Builds the client.
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
                    .user_agent(USER_AGENT)
                    .build(),
            )
        });
        TokenClient {
            inner: Arc::new(Inner {
                driver: self.config.driver(),
                token_agent,
                api_agent,
                wake: Mutex::new(()),
                changed: Condvar::new(),
            }),
        }
    }
}

/// A blocking token client: cache, single flight, early refresh and backoff over ureq.
/// Cheap to clone; clones share their cache.
#[derive(Clone)]
pub struct TokenClient {
    inner: Arc<Inner>,
}

struct Inner {
    driver: Driver,
    token_agent: ureq::Agent,
    api_agent: ureq::Agent,
    wake: Mutex<()>,
    changed: Condvar,
}

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

    /// A valid token for `key`.
    pub fn token(&self, key: &TokenKey) -> Result<Token, Error> {
        if let Some(token) = self.inner.driver.cached(key) {
            return Ok(token);
        }
        loop {
            let step = self.inner.driver.step(key)?;
            let sent = !step.sends.is_empty();
            self.send_all(step.sends);
            match step.lookup {
                Lookup::Ready(token) => return Ok(token),
                Lookup::Failed { error, .. } => return Err(error.into()),
                Lookup::Pending if sent => continue,
                Lookup::Pending => self.wait_for_change(step.generation),
            }
        }
    }

    /// The shared driver (for inspection in tests and tools).
    pub fn driver(&self) -> &Driver {
        &self.inner.driver
    }

    fn wait_for_change(&self, generation: u64) {
        let guard = self
            .inner
            .wake
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // A bounded wait: each wake-up steps the manager again, which also abandons a request
        // whose sender vanished, so nobody waits forever.
        let _ = self
            .inner
            .changed
            .wait_timeout_while(guard, Duration::from_millis(250), |_| {
                self.inner.driver.generation() == generation
            });
    }

    fn notify(&self) {
        drop(
            self.inner
                .wake
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        self.inner.changed.notify_all();
    }

    /// Sends each request (and any it causes) on this thread, with no lock held.
    fn send_all(&self, mut sends: Vec<TokenRequest>) {
        while let Some(send) = sends.pop() {
            let id = send.id;
            let outcome = self.execute(send);
            sends.extend(self.inner.driver.complete(id, outcome));
            self.notify();
        }
    }

    fn execute(&self, send: TokenRequest) -> Result<http::Response<Vec<u8>>, TransportFailure> {
        let (kind, organization) = match &send.target {
            Target::Access(key) => ("access", key.organization().map(str::to_owned)),
            _ => ("refresh", None),
        };
        let span = tracing::info_span!(
            "token_request",
            provider = %send.provider,
            target = kind,
            organization = organization.as_deref(),
            status = tracing::field::Empty,
        );
        let _entered = span.enter();
        let limit = send.max_body_bytes;
        let response = self.inner.token_agent.run(send.request).map_err(failure)?;
        span.record("status", response.status().as_u16());
        let (parts, body) = response.into_parts();
        let body = token_driver::read_capped(body.into_with_config().reader(), limit).map_err(
            |e| match e.into_inner().map(|inner| inner.downcast::<ureq::Error>()) {
                Some(Ok(ureq_error)) => failure(*ureq_error),
                _ => TransportFailure::new(
                    TransportErrorKind::Io,
                    "reading the response body failed",
                ),
            },
        )?;
        Ok(http::Response::from_parts(parts, body))
    }
}

/// Classifies a ureq error (its message names no secret: ureq never prints bodies or headers).
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

    /// A valid token.
    pub fn token(&self) -> Result<Token, Error> {
        self.client.token(&self.key)
    }

    /// Adds `Authorization: Bearer …` and the provider's API headers to `request`; returns the
    /// token used (report it to [`invalidate`](Self::invalidate) if the API answers 401).
    ///
    /// Refuses (before fetching a token) an absolute `http://` URL to a host that is not
    /// loopback unless the configuration allows insecure HTTP.
    pub fn authorize<B>(&self, request: &mut http::Request<B>) -> Result<Token, Error> {
        self.config.check_api_uri(request.uri())?;
        let token = self.token()?;
        self.config
            .authorize_with(request.headers_mut(), token.authorization().clone());
        Ok(token)
    }

    /// Adds `Authorization: Bearer …` and the provider's API headers to a ureq request builder
    /// (`agent.get(url)`); also returns the token used (report it to
    /// [`invalidate`](Self::invalidate) if the API answers 401).
    pub fn authorize_ureq<B>(
        &self,
        request: ureq::RequestBuilder<B>,
    ) -> Result<(ureq::RequestBuilder<B>, Token), Error> {
        if let Some(uri) = request.uri_ref() {
            self.config.check_api_uri(uri)?;
        }
        let token = self.token()?;
        let mut headers = http::HeaderMap::new();
        self.config
            .authorize_with(&mut headers, token.authorization().clone());
        let request = headers.iter().fold(request, |request, (name, value)| {
            request.header(name, value)
        });
        Ok((request, token))
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
    /// new one and retries once. HTTP error statuses are returned as responses.
    pub fn call(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<ureq::Body>, Error> {
        let mut first = request.clone();
        let token = self.authorize(&mut first)?;
        let response = self.send_api(first)?;
        if response.status() != http::StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        self.invalidate(&token);
        let mut retry = request;
        self.authorize(&mut retry)?;
        self.send_api(retry)
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
}
