//! Plumbing shared by the token transports (`transport-ureq`, `transport-reqwest`).
//!
//! A transport owns the sockets and the clock; everything else it needs from a token lifecycle
//! is the same whether it blocks or awaits, so it lives here once:
//! - [`Clock`], with [`SystemClock`] and a [`ManualClock`] for tests;
//! - the transports' [`Error`];
//! - [`Driver`]: a [`TokenManager`] behind a mutex plus a published snapshot of the tokens it
//!   would serve without being asked ([`TokenManager::servable`]): fresh tokens, and tokens
//!   inside their refresh window while the refresh is in flight or backing off. A cache hit
//!   ([`Driver::cached`]) reads the snapshot under a read lock that no fetch ever holds, hashes
//!   nothing and allocates nothing; a miss takes one [`Driver::step`] under the manager's mutex
//!   and gets back the lookup and the requests to send; the transport sends them **without** any
//!   lock held and reports each outcome with [`Driver::complete`]. Waiters watch
//!   [`Driver::generation`], which moves whenever a token arrives, a fetch fails or a token is
//!   invalidated.
//!
//! The driver never reads the clock itself: it asks the [`Clock`] it was given.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use std::time::{Duration, Instant, SystemTime};

use token_core::{
    AccessToken, ApiMisuse, ClientConfig, ClientId, Event, Lookup, ManagerConfig, Output,
    RequestId, Target, Token, TokenKey, TokenManager, TokenRequest, TransportFailure,
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

/// Default overall timeout of one token request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default connect timeout of one token request.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings every transport takes, with their defaults; each transport's builder sets these
/// and adds its own HTTP client settings.
#[derive(Clone)]
#[non_exhaustive]
pub struct TransportConfig {
    /// Lifecycle tunables (refresh window, backoff, ...).
    pub manager: ManagerConfig,
    /// Overall timeout of one token request (default 30 s).
    pub timeout: Duration,
    /// Connect timeout of one token request (default 10 s).
    pub connect_timeout: Duration,
    /// The clock (default: the system's).
    pub clock: Arc<dyn Clock>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            manager: ManagerConfig::default(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportConfig")
            .field("manager", &self.manager)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl TransportConfig {
    /// The driver for these settings. The manager's request timeout is raised above the
    /// transport's own timeout if needed, so the manager never abandons a request the transport
    /// is still legitimately waiting on.
    pub fn driver(&self) -> Driver {
        let mut manager = self.manager.clone();
        let floor = self.timeout + Duration::from_secs(5);
        if manager.request_timeout < floor {
            manager.request_timeout = floor;
        }
        Driver::new(manager, Arc::clone(&self.clock))
    }
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

/// A token a cache hit may serve, and the instant it stops being servable without asking the
/// manager (see [`TokenManager::servable`]).
#[derive(Clone)]
struct Servable {
    token: Token,
    until: Instant,
}

impl Servable {
    fn is(&self, token: &Token, until: Instant) -> bool {
        self.token.same_as(token) && self.until == until
    }
}

/// The published tokens, by client and then by organization. Ordered maps rather than a hash
/// map: a hit compares a key or two and hashes nothing (SipHashing the key was most of the cost
/// of a hit), and there is nothing to flood with colliding keys.
#[derive(Clone, Default)]
struct Snapshot(BTreeMap<ClientId, Published>);

/// One client's published tokens: its own (no organization) and its organizations'.
#[derive(Clone, Default)]
struct Published {
    own: Option<Servable>,
    organizations: BTreeMap<Arc<str>, Servable>,
}

impl Snapshot {
    fn get(&self, key: &TokenKey) -> Option<&Servable> {
        let published = self.0.get(&key.client())?;
        match key.organization() {
            None => published.own.as_ref(),
            Some(organization) => published.organizations.get(organization),
        }
    }

    fn keys(&self) -> Vec<TokenKey> {
        let mut keys = Vec::new();
        for (&client, published) in &self.0 {
            if published.own.is_some() {
                keys.push(TokenKey::new(client));
            }
            keys.extend(
                published.organizations.keys().map(|organization| {
                    TokenKey::with_organization(client, Arc::clone(organization))
                }),
            );
        }
        keys
    }

    fn set(&mut self, key: &TokenKey, servable: Option<Servable>) {
        let client = key.client();
        match (servable, key.organization()) {
            (Some(servable), None) => self.0.entry(client).or_default().own = Some(servable),
            (Some(servable), Some(organization)) => {
                let organizations = &mut self.0.entry(client).or_default().organizations;
                match organizations.get_mut(organization) {
                    Some(slot) => *slot = servable,
                    None => {
                        organizations.insert(Arc::from(organization), servable);
                    }
                }
            }
            (None, organization) => {
                let Some(published) = self.0.get_mut(&client) else {
                    return;
                };
                match organization {
                    None => published.own = None,
                    Some(organization) => {
                        published.organizations.remove(organization);
                    }
                }
                if published.own.is_none() && published.organizations.is_empty() {
                    self.0.remove(&client);
                }
            }
        }
    }
}

/// A [`TokenManager`] shared between callers, with a published snapshot of its tokens.
pub struct Driver {
    core: Mutex<TokenManager>,
    snapshot: ArcSwap<Snapshot>,
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
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
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

    /// A token that can be served without touching the manager: one the manager would hand out
    /// without starting anything ([`TokenManager::servable`]), i.e. fresh, or inside its refresh
    /// window while the refresh is in flight or backing off. Takes only the snapshot's read
    /// lock, hashes nothing and allocates nothing.
    pub fn cached(&self, key: &TokenKey) -> Option<Token> {
        let now = self.clock.now();
        self.snapshot
            .load()
            .get(key)
            .filter(|servable| now < servable.until)
            .map(|servable| servable.token.clone())
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
        let sends = self.drain(&mut core, now, Some(key));
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
        let sends = self.drain(&mut core, now, None);
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
            self.republish(&core, now, vec![key.clone()]);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        dropped
    }

    /// Runs `f` with the manager locked (for inspection in tests and tools); the snapshot is
    /// brought in line with whatever `f` did.
    pub fn with_manager<R>(&self, f: impl FnOnce(&mut TokenManager) -> R) -> R {
        let mut core = lock(&self.core);
        let result = f(&mut core);
        let now = self.clock.now();
        self.republish(&core, now, Vec::new());
        result
    }

    /// Drains the manager's output: collects sends, logs tokens and failures, and republishes
    /// the snapshot for every key that may have changed.
    fn drain(
        &self,
        core: &mut TokenManager,
        now: Instant,
        asked: Option<&TokenKey>,
    ) -> Vec<TokenRequest> {
        let mut sends = Vec::new();
        let mut touched: Vec<TokenKey> = asked.cloned().into_iter().collect();
        let mut changed = false;
        loop {
            match core.poll_output(now) {
                Output::Send(request) => {
                    self.requests_sent.fetch_add(1, Ordering::Relaxed);
                    if let Target::Access(key) = &request.target {
                        touched.push(key.clone());
                    }
                    sends.push(request);
                }
                Output::Event(Event::Token { key, token }) => {
                    tracing::debug!(
                        organization = key.organization(),
                        lifetime_secs = token.lifetime().as_secs(),
                        "token cached"
                    );
                    touched.push(key);
                    changed = true;
                }
                Output::Event(Event::Failed { key, error, .. }) => {
                    tracing::warn!(
                        organization = key.organization(),
                        %error,
                        retryable = error.is_retryable(),
                        "token fetch failed"
                    );
                    touched.push(key);
                    changed = true;
                }
                Output::Event(_) => changed = true,
                // No store is configured here yet.
                Output::Store(_) => {}
                Output::Timeout(_) => break,
            }
        }
        self.republish(core, now, touched);
        if changed {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        sends
    }

    /// Makes the snapshot say, for every published key and every key in `touched`, exactly what
    /// the manager would serve now without being asked. Called with the manager locked after
    /// every change to it, so a hit never serves what the manager would not.
    fn republish(&self, core: &TokenManager, now: Instant, mut touched: Vec<TokenKey>) {
        let current = self.snapshot.load();
        let updates: Vec<(TokenKey, Option<Servable>)> = {
            let snapshot = &**current;
            touched.extend(snapshot.keys());
            touched
                .into_iter()
                .filter_map(|key| {
                    let wanted = core.servable(now, &key);
                    let same = match (snapshot.get(&key), wanted) {
                        (None, None) => true,
                        (Some(current), Some((token, until))) => current.is(token, until),
                        _ => false,
                    };
                    (!same).then(|| {
                        let wanted = wanted.map(|(token, until)| Servable {
                            token: token.clone(),
                            until,
                        });
                        (key, wanted)
                    })
                })
                .collect()
        };
        if updates.is_empty() {
            return; // the common case on a miss: nothing to publish
        }
        // Copy on write; every writer holds the manager's mutex, so none is lost.
        let mut next = Snapshot::clone(&current);
        drop(current);
        for (key, servable) in updates {
            next.set(&key, servable);
        }
        self.snapshot.store(Arc::new(next));
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

    // ---- the snapshot serves exactly what the manager would, without asking it ----

    use token_core::{ClientSecret, Credentials, presets};

    fn driver() -> (Driver, ManualClock, TokenKey) {
        let clock = ManualClock::starting_now();
        let driver = Driver::new(ManagerConfig::default(), Arc::new(clock.clone()));
        let config = presets::generic(
            "https://auth.example.com/token",
            Credentials::new("id", ClientSecret::new("secret")),
        )
        .build()
        .unwrap();
        let (id, _) = driver.register(config);
        (driver, clock, TokenKey::new(id))
    }

    fn reply(body: &str) -> Result<http::Response<Vec<u8>>, TransportFailure> {
        let status = if body.starts_with('{') { 200 } else { 503 };
        Ok(http::Response::builder()
            .status(status)
            .body(body.as_bytes().to_vec())
            .unwrap())
    }

    fn token(secret: &str) -> String {
        format!(r#"{{"access_token":"{secret}","expires_in":3600,"token_type":"Bearer"}}"#)
    }

    /// Steps `key` and answers every request it sends with `body`; returns what it was served.
    fn fetch(driver: &Driver, key: &TokenKey, body: &str) -> Lookup {
        let step = driver.step(key).unwrap();
        for send in step.sends {
            assert!(driver.complete(send.id, reply(body)).is_empty());
        }
        step.lookup
    }

    fn cached_secret(driver: &Driver, key: &TokenKey) -> Option<String> {
        driver
            .cached(key)
            .map(|t| t.access_token().secret().to_owned())
    }

    #[test]
    fn hits_cover_the_refresh_window_while_a_refresh_is_in_flight() {
        let (driver, clock, key) = driver();
        assert!(driver.cached(&key).is_none());
        assert!(matches!(
            fetch(&driver, &key, &token("one")),
            Lookup::Pending
        ));
        assert_eq!(cached_secret(&driver, &key).as_deref(), Some("one"));

        // Inside the window with nothing in flight: a miss, so a caller asks the manager...
        clock.advance(Duration::from_secs(3545));
        assert!(driver.cached(&key).is_none());
        let step = driver.step(&key).unwrap();
        assert!(matches!(&step.lookup, Lookup::Ready(t) if t.access_token().secret() == "one"));
        assert_eq!(step.sends.len(), 1);
        // ...and while its refresh is in flight, everyone else is served without asking.
        let sent = driver.token_requests();
        clock.advance(Duration::from_secs(10));
        assert_eq!(cached_secret(&driver, &key).as_deref(), Some("one"));
        assert_eq!(driver.token_requests(), sent);
        // The refresh lands: the new token is served.
        for send in step.sends {
            assert!(driver.complete(send.id, reply(&token("two"))).is_empty());
        }
        assert_eq!(cached_secret(&driver, &key).as_deref(), Some("two"));
    }

    #[test]
    fn hits_stop_where_the_manager_would_start_something() {
        let (driver, clock, key) = driver();
        let _ = fetch(&driver, &key, &token("one"));
        clock.advance(Duration::from_secs(3545));
        // The refresh fails: the token is still served during the backoff, and not after it.
        assert!(matches!(
            fetch(&driver, &key, "<html>503</html>"),
            Lookup::Ready(_)
        ));
        let retry_at = driver
            .with_manager(|m| m.servable(clock.now(), &key).map(|(_, until)| until))
            .unwrap();
        assert_eq!(cached_secret(&driver, &key).as_deref(), Some("one"));
        clock.advance(retry_at - clock.now());
        assert!(driver.cached(&key).is_none());
        // A refresh in flight past the token's expiry: never served at or after expiry.
        let step = driver.step(&key).unwrap();
        assert_eq!(step.sends.len(), 1);
        assert_eq!(cached_secret(&driver, &key).as_deref(), Some("one"));
        let expires_at = driver.with_manager(|m| m.token(clock.now(), &key).unwrap().expires_at());
        clock.advance(expires_at - clock.now());
        assert!(driver.cached(&key).is_none());
    }

    #[test]
    fn invalidation_and_manager_changes_reach_the_snapshot() {
        let (driver, _clock, key) = driver();
        let _ = fetch(&driver, &key, &token("one"));
        let served = driver.cached(&key).unwrap();
        assert!(driver.invalidate(&key, served.access_token()));
        assert!(driver.cached(&key).is_none());

        let _ = fetch(&driver, &key, &token("two"));
        let served = driver.cached(&key).unwrap();
        driver.with_manager(|m| {
            m.confirm(Instant::now(), &key, served.access_token());
            m.invalidate(Instant::now(), &key, served.access_token())
        });
        assert!(driver.cached(&key).is_none());
    }

    #[test]
    fn organizations_are_published_separately() {
        let clock = ManualClock::starting_now();
        let driver = Driver::new(ManagerConfig::default(), Arc::new(clock.clone()));
        let config = presets::bookingtime_app(Credentials::new("id", ClientSecret::new("s")))
            .build()
            .unwrap();
        let (id, _) = driver.register(config);
        let (a, b) = (
            TokenKey::with_organization(id, "org-a"),
            TokenKey::with_organization(id, "org-b"),
        );
        // Leg one (refresh token), then leg two (the organization's access token).
        let leg_one = r#"{"refresh_token":"rt","expires_in":2592000,"token_type":"Bearer"}"#;
        let leg_two = |t: &str| format!(r#"{{"access_token":"{t}","expires_in":300}}"#);
        let step = driver.step(&a).unwrap();
        let mut sends = step.sends;
        let mut answers = vec![leg_one.to_owned(), leg_two("at-a")].into_iter();
        while let Some(send) = sends.pop() {
            sends.extend(driver.complete(send.id, reply(&answers.next().unwrap())));
        }
        assert_eq!(cached_secret(&driver, &a).as_deref(), Some("at-a"));
        assert!(driver.cached(&b).is_none());
        assert!(driver.cached(&TokenKey::new(id)).is_none());
        let _ = fetch(&driver, &b, &leg_two("at-b"));
        assert_eq!(cached_secret(&driver, &b).as_deref(), Some("at-b"));
        assert_eq!(cached_secret(&driver, &a).as_deref(), Some("at-a"));
    }
}
