//! Plumbing shared by the token transports (`transport-ureq`, `transport-reqwest`).
//!
//! A transport owns the sockets and the clock; everything else it needs from a token lifecycle
//! is the same whether it blocks or awaits, so it lives here once:
//! - [`Clock`], with [`SystemClock`] and a [`ManualClock`] for tests;
//! - the transports' [`Error`];
//! - [`Driver`]: a [`TokenManager`] behind a mutex plus a published snapshot of fresh tokens.
//!   A cache hit ([`Driver::cached`]) reads the snapshot under a read lock that no fetch ever
//!   holds and allocates nothing; a miss takes one [`Driver::step`] under the manager's mutex and
//!   gets back the lookup and the requests to send; the transport sends them **without** any
//!   lock held and reports each outcome with [`Driver::complete`]. Waiters watch
//!   [`Driver::generation`], which moves whenever a token arrives, a fetch fails or a token is
//!   invalidated.
//!
//! The driver never reads the clock itself: it asks the [`Clock`] it was given.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use token_core::{
    AccessToken, ApiMisuse, ClientConfig, ClientId, Event, Lookup, ManagerConfig, Output,
    RequestId, Token, TokenKey, TokenManager, TokenRequest, TransportFailure,
};

pub use token_core;

/// Where a transport gets the time. Inject a [`ManualClock`] to drive expiry in tests.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time, for scheduling.
    fn now(&self) -> Instant;
    /// Wall-clock time, only for JWT `exp` claims and HTTP-date `Retry-After` values.
    fn wall(&self) -> SystemTime;
}

/// The operating system's clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to, for deterministic tests. Clones share the time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<(Instant, SystemTime)>>);

impl ManualClock {
    /// Starts at the given instants.
    pub fn new(now: Instant, wall: SystemTime) -> Self {
        Self(Arc::new(Mutex::new((now, wall))))
    }

    /// Starts at the system's current time.
    pub fn starting_now() -> Self {
        Self::new(Instant::now(), SystemTime::now())
    }

    /// Moves both clocks forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut t = lock(&self.0);
        t.0 += d;
        t.1 += d;
    }

    /// Moves the monotonic clock back by `d` (to test clock steps; the manager never lets time
    /// run backwards for its own decisions).
    pub fn step_back(&self, d: Duration) {
        let mut t = lock(&self.0);
        t.0 = t.0.checked_sub(d).unwrap_or(t.0);
        t.1 = t.1.checked_sub(d).unwrap_or(t.1);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        lock(&self.0).0
    }

    fn wall(&self) -> SystemTime {
        lock(&self.0).1
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: the state behind
/// every mutex here stays consistent between statements, so a poisoned lock is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A transport's error: typed, `Send + Sync`, `Clone`, and free of secrets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token endpoint (or API) could not be reached, timed out or broke the connection.
    #[error("transport: {0}")]
    Transport(TransportFailure),
    /// The token endpoint answered without a usable token, or the configuration cannot work.
    #[error(transparent)]
    Token(token_core::Error),
    /// The API was misused (e.g. an organization for a provider without organizations).
    #[error(transparent)]
    Misuse(#[from] ApiMisuse),
}

impl From<token_core::Error> for Error {
    fn from(e: token_core::Error) -> Self {
        match e {
            token_core::Error::Transport(t) => Self::Transport(t),
            other => Self::Token(other),
        }
    }
}

impl From<token_core::ConfigError> for Error {
    fn from(e: token_core::ConfigError) -> Self {
        Self::Token(token_core::Error::Config(e))
    }
}

impl Error {
    /// Whether retrying later can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(t) => token_core::Error::Transport(t.clone()).is_retryable(),
            Self::Token(e) => e.is_retryable(),
            Self::Misuse(_) => false,
        }
    }

    /// Whether the endpoint rejected the credentials or permissions.
    pub fn is_credentials_rejected(&self) -> bool {
        matches!(self, Self::Token(e) if e.is_credentials_rejected())
    }
}

/// The result of one [`Driver::step`].
#[derive(Debug)]
pub struct Step {
    /// What the manager said for the key.
    pub lookup: Lookup,
    /// Requests to send now, without holding any lock.
    pub sends: Vec<TokenRequest>,
    /// [`Driver::generation`] as of this step: wait for it to change before stepping again.
    pub generation: u64,
}

/// A [`TokenManager`] shared between callers, with a published snapshot of its tokens.
pub struct Driver {
    core: Mutex<TokenManager>,
    snapshot: RwLock<HashMap<TokenKey, Token>>,
    generation: AtomicU64,
    requests_sent: AtomicU64,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// A driver over a new manager.
    pub fn new(config: ManagerConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            core: Mutex::new(TokenManager::new(config)),
            snapshot: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            requests_sent: AtomicU64::new(0),
            clock,
        }
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Registers a client (equal configurations share tokens).
    pub fn register(&self, config: ClientConfig) -> (ClientId, Arc<ClientConfig>) {
        let mut core = lock(&self.core);
        let id = core.register(config);
        let config = Arc::clone(core.client(id).expect("invariant: just registered"));
        (id, config)
    }

    /// A token that can be served without touching the manager: cached and not yet inside its
    /// refresh window. Takes only the snapshot's read lock and allocates nothing.
    pub fn cached(&self, key: &TokenKey) -> Option<Token> {
        let now = self.clock.now();
        let snapshot = self
            .snapshot
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        snapshot.get(key).filter(|t| t.is_fresh(now)).cloned()
    }

    /// How many token requests this driver has handed to its transport (all keys), for metrics
    /// and for showing that caching works.
    pub fn token_requests(&self) -> u64 {
        self.requests_sent.load(Ordering::Relaxed)
    }

    /// Moves whenever a token arrives, a fetch fails or a token is invalidated.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Asks the manager for `key` (after handling due timers) and collects what to send.
    pub fn step(&self, key: &TokenKey) -> Result<Step, ApiMisuse> {
        let mut core = lock(&self.core);
        let now = self.clock.now();
        core.handle_timeout(now);
        let lookup = core.request(now, key)?;
        let sends = self.drain(&mut core, now);
        if let Lookup::Ready(token) = &lookup {
            self.publish(key, token);
        }
        Ok(Step {
            lookup,
            sends,
            generation: self.generation(),
        })
    }

    /// Reports the outcome of a request and returns any requests it caused (bookingtime's
    /// chain continues this way).
    pub fn complete(
        &self,
        id: RequestId,
        outcome: Result<http::Response<Vec<u8>>, TransportFailure>,
    ) -> Vec<TokenRequest> {
        let mut core = lock(&self.core);
        let now = self.clock.now();
        let handled = match outcome {
            Ok(response) => core.handle_response(now, self.clock.wall(), id, response),
            Err(failure) => core.handle_send_failed(now, id, failure),
        };
        if let Err(misuse) = handled {
            // Only reachable if a transport reports an id twice across drivers; never panic.
            tracing::warn!(%misuse, "token response for an unknown request ignored");
        }
        let sends = self.drain(&mut core, now);
        // Even an ignored (late) response bumps the generation: waiters re-check, harmlessly.
        self.generation.fetch_add(1, Ordering::AcqRel);
        sends
    }

    /// Drops `key`'s token if it is still `rejected` (token-aware invalidation after a 401).
    pub fn invalidate(&self, key: &TokenKey, rejected: &AccessToken) -> bool {
        let mut core = lock(&self.core);
        let now = self.clock.now();
        let dropped = core.invalidate(now, key, rejected);
        if dropped {
            let mut snapshot = self
                .snapshot
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if snapshot
                .get(key)
                .is_some_and(|t| t.access_token() == rejected)
            {
                snapshot.remove(key);
            }
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        dropped
    }

    /// Runs `f` with the manager locked (for inspection in tests and tools).
    pub fn with_manager<R>(&self, f: impl FnOnce(&mut TokenManager) -> R) -> R {
        f(&mut lock(&self.core))
    }

    fn publish(&self, key: &TokenKey, token: &Token) {
        let mut snapshot = self
            .snapshot
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match snapshot.get(key) {
            Some(current) if current.same_as(token) => {}
            _ => {
                snapshot.insert(key.clone(), token.clone());
            }
        }
    }

    /// Drains the manager's output: collects sends, publishes tokens, logs failures, and
    /// forgets published tokens that have expired.
    fn drain(&self, core: &mut TokenManager, now: Instant) -> Vec<TokenRequest> {
        let mut sends = Vec::new();
        let mut changed = false;
        loop {
            match core.poll_output(now) {
                Output::Send(request) => {
                    self.requests_sent.fetch_add(1, Ordering::Relaxed);
                    sends.push(request);
                }
                Output::Event(Event::Token { key, token }) => {
                    tracing::debug!(
                        organization = key.organization(),
                        lifetime_secs = token.lifetime().as_secs(),
                        "token cached"
                    );
                    self.publish(&key, &token);
                    changed = true;
                }
                Output::Event(Event::Failed { key, error, .. }) => {
                    tracing::warn!(
                        organization = key.organization(),
                        %error,
                        retryable = error.is_retryable(),
                        "token fetch failed"
                    );
                    changed = true;
                }
                Output::Event(_) => changed = true,
                Output::Timeout(_) => break,
            }
        }
        let mut snapshot = self
            .snapshot
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        snapshot.retain(|key, token| !token.is_expired(now) && core.token(now, key).is_some());
        drop(snapshot);
        if changed {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        sends
    }
}

/// Reads `response`-like bodies: at most `limit + 1` bytes, so the core can tell an oversized
/// body (and report [`token_core::Error::BodyTooLarge`]) without anything unbounded in memory.
pub fn read_capped(reader: impl std::io::Read, limit: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut body = Vec::with_capacity(limit.min(8 * 1024));
    reader.take(cap).read_to_end(&mut body)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn shared_types_are_send_and_sync() {
        assert_send_sync::<Driver>();
        assert_send_sync::<Error>();
        assert_send_sync::<ManualClock>();
    }

    #[test]
    fn read_capped_reads_one_byte_past_the_limit_at_most() {
        let data = [7u8; 100];
        assert_eq!(read_capped(&data[..], 10).unwrap().len(), 11);
        assert_eq!(read_capped(&data[..], 100).unwrap().len(), 100);
        assert_eq!(read_capped(&data[..], 1000).unwrap().len(), 100);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::starting_now();
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.advance(Duration::from_secs(5));
        assert_eq!(c.now() - t0, Duration::from_secs(5));
        c.step_back(Duration::from_secs(2));
        assert_eq!(c.now() - t0, Duration::from_secs(3));
    }

    #[test]
    fn transport_failures_map_to_the_transport_variant() {
        let f = TransportFailure::new(token_core::TransportErrorKind::Connect, "refused");
        assert_eq!(
            Error::from(token_core::Error::Transport(f.clone())),
            Error::Transport(f)
        );
    }
}
