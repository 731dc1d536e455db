//! The token lifecycle: cache, early refresh, single flight, backoff, invalidation, and
//! bookingtime's refresh-token chain, as a deterministic state machine.
//!
//! [`TokenManager`] does no IO, reads no clock and takes no lock. Its methods come in four kinds
//! (as in quinn-proto):
//! - **getters** (`&self`): [`token`](TokenManager::token), [`client`](TokenManager::client),
//!   [`in_flight`](TokenManager::in_flight);
//! - **commands** from the application: [`register`](TokenManager::register),
//!   [`request`](TokenManager::request), [`invalidate`](TokenManager::invalidate);
//! - **inputs** from the transport: [`handle_response`](TokenManager::handle_response),
//!   [`handle_send_failed`](TokenManager::handle_send_failed),
//!   [`handle_timeout`](TokenManager::handle_timeout);
//! - **output**: [`poll_output`](TokenManager::poll_output), drained after every command and
//!   input until it returns [`Output::Timeout`].
//!
//! # The time contract
//! Every time-dependent method takes `now: Instant` first. The manager keeps the latest `now` it
//! has seen and uses `max(latest, now)`, so a clock that steps backwards can never make an
//! expired token valid again. A token's lifetime counts from when its request was *sent* (the
//! `now` of the call that produced the [`Output::Send`]), the conservative end.
//! [`handle_response`](TokenManager::handle_response) also takes the wall-clock time, used only
//! to read a JWT `exp` claim or an HTTP-date `Retry-After`, the two places where time crosses a
//! process boundary.
//!
//! # The refresh rule
//! `expires_at = sent_at + lifetime` (lifetime capped by
//! [`ManagerConfig::max_lifetime`]). `refresh_at = expires_at - window - jitter`, where `window` is
//! the refresh window (60 s by default, as Bookable recommends) **clamped to half the lifetime**,
//! and `jitter` is drawn from `[0, min(refresh_jitter, lifetime / 2 - window)]`. So a token is
//! always used for at least half of its life without a refresh: bookingtime's 300 s tokens
//! refresh at 240 s, a 60 s token with a 300 s window at 30 s. From `refresh_at` a request for
//! the key still gets the token at once and starts one refresh; from `expires_at` the token is
//! never handed out again.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::lifecycle::misuse::ApiMisuse;
use crate::lifecycle::token::Token;
use crate::protocol::config::{ClientConfig, Flow, Provider};
use crate::protocol::error::{Error, Malformed, RetryAfter, TransportErrorKind, TransportFailure};
use crate::protocol::request::{Grant, bearer_header};
use crate::protocol::response::{TokenResponse, jwt_lifetime, parse_token_response};
use crate::protocol::secret::{AccessToken, RefreshToken};

/// Tunables of the lifecycle. `Default` gives the documented values.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManagerConfig {
    /// Refresh this long before expiry (clamped to half the lifetime). Default 60 s. A client's
    /// own [`ClientConfig::refresh_window`] takes precedence.
    pub refresh_window: Duration,
    /// Refresh up to this much earlier still, at random, to spread a fleet's refreshes. Default
    /// zero.
    pub refresh_jitter: Duration,
    /// First backoff after a retryable failure (5xx, 429, transport). Default 1 s; doubles per
    /// consecutive failure up to `max_backoff`, with equal jitter.
    pub initial_backoff: Duration,
    /// First backoff after a non-retryable failure (rejected credentials, bad request,
    /// malformed answer), so a misconfigured client cannot hammer the endpoint. Default 30 s;
    /// doubles up to `max_backoff`.
    pub rejected_backoff: Duration,
    /// Backoff cap. Default 5 min.
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured. Default 10 min.
    pub max_retry_after: Duration,
    /// Lifetimes are capped at this, whatever the server says. Default 90 days (bookingtime's
    /// refresh token lives 30).
    pub max_lifetime: Duration,
    /// A request without a response or failure after this long is abandoned as timed out (a
    /// late response is then ignored), so a transport that loses a request cannot wedge a key.
    /// Default 60 s.
    pub request_timeout: Duration,
    /// An entry not used for this long and holding no valid token is forgotten. Default 10 min.
    pub idle_timeout: Duration,
    /// Seed for the jitter generator (deterministic tests; vary it per process in a fleet).
    pub seed: u64,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            refresh_window: Duration::from_secs(60),
            refresh_jitter: Duration::ZERO,
            initial_backoff: Duration::from_secs(1),
            rejected_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(90 * 24 * 3600),
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(600),
            seed: 0x5eed_70c3_11fe_c7c1,
        }
    }
}

static NEXT_MANAGER: AtomicU32 = AtomicU32::new(1);

/// A client registered with a [`TokenManager`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId {
    manager: u32,
    index: u32,
}

/// What a cached token is for: a client, and for bookingtime an organization. Equal keys share
/// one cache entry and one in-flight request; the client part stands for its whole
/// [`ClientConfig`] (endpoint, credentials, audience, scopes, parameters), so the cache and the
/// single flight are keyed by exactly the same thing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenKey {
    client: ClientId,
    organization: Option<Arc<str>>,
}

impl TokenKey {
    /// The key of a client without organizations.
    pub fn new(client: ClientId) -> Self {
        Self {
            client,
            organization: None,
        }
    }

    /// The key of a bookingtime organization's access token.
    pub fn with_organization(client: ClientId, organization: impl Into<Arc<str>>) -> Self {
        Self {
            client,
            organization: Some(organization.into()),
        }
    }

    /// The client.
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// The organization, if any.
    pub fn organization(&self) -> Option<&str> {
        self.organization.as_deref()
    }
}

/// Identifies one token request; hand it back with the response or failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId {
    manager: u32,
    seq: u64,
}

/// What a token request fetches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// An access token for a key.
    Access(TokenKey),
    /// bookingtime's refresh token for a client (shared by all its organizations).
    RefreshToken(ClientId),
}

impl Target {
    /// The client the request is for.
    pub fn client(&self) -> ClientId {
        match self {
            Self::Access(key) => key.client,
            Self::RefreshToken(client) => *client,
        }
    }
}

/// A request for the transport to send.
#[non_exhaustive]
pub struct TokenRequest {
    /// Hand this back with the response or failure.
    pub id: RequestId,
    /// What it fetches.
    pub target: Target,
    /// The provider it goes to (for logs and metrics).
    pub provider: Provider,
    /// The request. Send it as is; never follow a redirect (the body holds the secret).
    pub request: http::Request<Vec<u8>>,
    /// Read at most this many bytes of the response body, plus one: a longer body is reported
    /// as [`Error::BodyTooLarge`] when the response is handled, so hand back what was read.
    pub max_body_bytes: usize,
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the request itself: its body and headers carry the secret.
        f.debug_struct("TokenRequest")
            .field("id", &self.id)
            .field("target", &self.target)
            .field("provider", &self.provider)
            .field("method", self.request.method())
            .field("uri", self.request.uri())
            .finish_non_exhaustive()
    }
}

/// Something happened that waiting callers care about.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A new token is cached for `key`.
    Token {
        /// The key.
        key: TokenKey,
        /// The token.
        token: Token,
    },
    /// Fetching a token for `key` failed; no request for it starts before `retry_at`.
    Failed {
        /// The key.
        key: TokenKey,
        /// What went wrong.
        error: Error,
        /// The earliest instant of the next attempt.
        retry_at: Instant,
    },
}

/// Output of [`TokenManager::poll_output`]. Drain until `Timeout`.
#[derive(Debug)]
#[must_use]
pub enum Output {
    /// Send this request, then report its response or failure.
    Send(TokenRequest),
    /// Tell waiting callers.
    Event(Event),
    /// Nothing more to do now; call [`TokenManager::handle_timeout`] at this instant (always
    /// later than the `now` given).
    Timeout(Instant),
}

/// The answer to [`TokenManager::request`].
#[derive(Clone, Debug)]
#[must_use]
pub enum Lookup {
    /// Use this token. If it was inside its refresh window, a refresh has been started (see
    /// [`Output::Send`]); the token stays valid until it expires.
    Ready(Token),
    /// A fetch is in flight; wait for an [`Event`] for the key, then ask again.
    Pending,
    /// There is no valid token and the last attempt failed; nothing is sent before `retry_at`.
    Failed {
        /// The last error.
        error: Error,
        /// The earliest instant of the next attempt.
        retry_at: Instant,
    },
}

/// Fetch bookkeeping shared by access-token entries and refresh-token chains.
#[derive(Debug, Default)]
struct Fetch {
    flight: Option<RequestId>,
    retry_at: Option<Instant>,
    failures: u32,
    last_error: Option<Error>,
}

impl Fetch {
    fn can_start(&self, now: Instant) -> bool {
        self.flight.is_none() && self.retry_at.is_none_or(|t| now >= t)
    }

    fn succeeded(&mut self) {
        self.retry_at = None;
        self.failures = 0;
        self.last_error = None;
    }

    fn in_backoff(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|t| now < t)
    }
}

#[derive(Debug)]
struct Entry {
    token: Option<Token>,
    fetch: Fetch,
    last_used: Instant,
    /// Organization keys: waiting for the client's refresh token.
    awaiting_chain: bool,
    /// Organization keys: chain restarts (rejected refresh tokens) since the last success.
    chain_restarts: u32,
}

#[derive(Debug)]
struct CachedRefresh {
    token: RefreshToken,
    expires_at: Instant,
    refresh_at: Instant,
    generation: u64,
}

#[derive(Debug, Default)]
struct Chain {
    refresh: Option<CachedRefresh>,
    generation: u64,
    fetch: Fetch,
}

impl Chain {
    fn usable(&self, now: Instant) -> Option<&CachedRefresh> {
        self.refresh.as_ref().filter(|r| now < r.expires_at)
    }
}

#[derive(Debug)]
struct Client {
    config: Arc<ClientConfig>,
    chain: Option<Chain>,
}

#[derive(Debug)]
struct Flight {
    target: Target,
    sent_at: Instant,
    /// Refresh-token generation an organization request was made with.
    via_generation: Option<u64>,
}

/// The sans-IO token lifecycle manager. See the [module docs](self) for the method kinds, the
/// time contract and the refresh rule, and the crate docs for the drive loop.
pub struct TokenManager {
    id: u32,
    config: ManagerConfig,
    clients: Vec<Client>,
    entries: HashMap<TokenKey, Entry>,
    in_flight: HashMap<RequestId, Flight>,
    next_seq: u64,
    last_now: Option<Instant>,
    rng: fastrand::Rng,
    sends: VecDeque<TokenRequest>,
    events: VecDeque<Event>,
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManager")
            .field("clients", &self.clients.len())
            .field("entries", &self.entries.len())
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl TokenManager {
    /// A manager with no clients.
    pub fn new(config: ManagerConfig) -> Self {
        let rng = fastrand::Rng::with_seed(config.seed);
        Self {
            id: NEXT_MANAGER.fetch_add(1, Ordering::Relaxed),
            config,
            clients: Vec::new(),
            entries: HashMap::new(),
            in_flight: HashMap::new(),
            next_seq: 0,
            last_now: None,
            rng,
            sends: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    // ---- getters ----

    /// The manager's configuration.
    pub fn config(&self) -> &ManagerConfig {
        &self.config
    }

    /// A registered client's configuration.
    pub fn client(&self, id: ClientId) -> Option<&Arc<ClientConfig>> {
        self.client_index(id).map(|i| &self.clients[i].config)
    }

    /// The cached token for `key` if it has not expired at `now`. Never mutates, never starts a
    /// fetch: use [`request`](Self::request) for that.
    pub fn token(&self, now: Instant, key: &TokenKey) -> Option<&Token> {
        let now = self.last_now.map_or(now, |last| last.max(now));
        self.entries
            .get(key)?
            .token
            .as_ref()
            .filter(|t| !t.is_expired(now))
    }

    /// The token for `key` and the instant until which a driver may serve it without asking the
    /// manager again: `refresh_at` while the token is fresh; inside the refresh window, the end
    /// of the refresh in flight (its request timeout) or of the backoff after a failed one;
    /// never past `expires_at`. `None` when there is no valid token or the manager must be asked
    /// now (a refresh is due). Serving from this is exactly what [`request`](Self::request)
    /// would answer, without the call: it lets a driver publish a snapshot that cache hits read
    /// without touching the manager, even while a refresh is in flight or failing.
    pub fn servable(&self, now: Instant, key: &TokenKey) -> Option<(&Token, Instant)> {
        let now = self.last_now.map_or(now, |last| last.max(now));
        let entry = self.entries.get(key)?;
        let token = entry.token.as_ref().filter(|t| !t.is_expired(now))?;
        let flight_end = |id: &RequestId| {
            self.in_flight
                .get(id)
                .map(|f| later(f.sent_at, self.config.request_timeout))
        };
        let until = if token.is_fresh(now) {
            Some(token.refresh_at())
        } else if let Some(id) = &entry.fetch.flight {
            flight_end(id)
        } else if entry.awaiting_chain {
            self.chain(key.client)
                .and_then(|c| c.fetch.flight.as_ref())
                .and_then(flight_end)
        } else if entry.fetch.in_backoff(now) {
            entry.fetch.retry_at
        } else {
            None
        }?;
        let until = until.min(token.expires_at());
        (until > now).then_some((token, until))
    }

    /// Number of requests sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Number of cache entries (for memory checks).
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    // ---- commands ----

    /// Registers a client and returns its id. Registering an equal configuration again returns
    /// the same id, so equal configurations share their tokens.
    pub fn register(&mut self, config: ClientConfig) -> ClientId {
        let index = match self.clients.iter().position(|c| *c.config == config) {
            Some(i) => i,
            None => {
                let chain =
                    matches!(config.flow, Flow::OrganizationExchange { .. }).then(Chain::default);
                self.clients.push(Client {
                    config: Arc::new(config),
                    chain,
                });
                self.clients.len() - 1
            }
        };
        ClientId {
            manager: self.id,
            index: u32::try_from(index).expect("invariant: fewer than 2^32 clients"),
        }
    }

    /// Asks for a token for `key` at `now`: a token to use (starting a refresh if it is inside
    /// its refresh window), or "pending" (a fetch is in flight, possibly just started: drain
    /// [`poll_output`](Self::poll_output)), or the last error while in backoff with no valid
    /// token. An expired token is never returned.
    pub fn request(&mut self, now: Instant, key: &TokenKey) -> Result<Lookup, ApiMisuse> {
        let now = self.observe(now);
        self.check_key(key)?;
        let entry = self.entries.entry(key.clone()).or_insert_with(|| Entry {
            token: None,
            fetch: Fetch::default(),
            last_used: now,
            awaiting_chain: false,
            chain_restarts: 0,
        });
        entry.last_used = now;
        if let Some(token) = &entry.token {
            if !token.is_expired(now) {
                let token = token.clone();
                if !token.is_fresh(now) {
                    self.start_access(now, key);
                }
                return Ok(Lookup::Ready(token));
            }
            entry.token = None;
        }
        self.start_access(now, key);
        Ok(self.pending_or_failed(now, key))
    }

    /// Reports that the API rejected `rejected` (e.g. a 401). The cached token for `key` is
    /// dropped only if it is still that token, so many concurrent 401s for one token cause one
    /// renewal. Returns whether it was dropped. The next [`request`](Self::request) fetches.
    pub fn invalidate(&mut self, now: Instant, key: &TokenKey, rejected: &AccessToken) -> bool {
        self.observe(now);
        match self.entries.get_mut(key) {
            Some(entry)
                if entry
                    .token
                    .as_ref()
                    .is_some_and(|t| t.access_token() == rejected) =>
            {
                entry.token = None;
                true
            }
            _ => false,
        }
    }

    // ---- inputs ----

    /// Hands back the response to request `id`. `wall` is the wall-clock time, used only for a
    /// JWT `exp` claim or an HTTP-date `Retry-After`. A response to a request that was
    /// superseded (abandoned after [`ManagerConfig::request_timeout`]) or already answered is
    /// ignored; an id this manager never issued is an [`ApiMisuse`].
    pub fn handle_response(
        &mut self,
        now: Instant,
        wall: SystemTime,
        id: RequestId,
        response: http::Response<Vec<u8>>,
    ) -> Result<(), ApiMisuse> {
        let now = self.observe(now);
        let Some(flight) = self.take_flight(id)? else {
            return Ok(());
        };
        let client = self
            .client_index(flight.target.client())
            .expect("invariant: flights name registered clients");
        let config = Arc::clone(&self.clients[client].config);
        let status = response.status();
        let parsed = parse_token_response(&config, &response).map(|r| (status, r));
        let accepted = match &flight.target {
            Target::Access(key) => self.accept_access(now, wall, &config, key, &flight, parsed),
            Target::RefreshToken(client) => {
                self.accept_chain(now, wall, &config, *client, &flight, parsed)
            }
        };
        if let Err(error) = accepted {
            self.fail(now, Some(wall), flight, error);
        }
        Ok(())
    }

    /// Reports that request `id` got no HTTP response (connect error, timeout, reset).
    pub fn handle_send_failed(
        &mut self,
        now: Instant,
        id: RequestId,
        failure: TransportFailure,
    ) -> Result<(), ApiMisuse> {
        let now = self.observe(now);
        if let Some(flight) = self.take_flight(id)? {
            self.fail(now, None, flight, Error::Transport(failure));
        }
        Ok(())
    }

    /// Advances timers: abandons requests older than the request timeout, starts due refreshes
    /// of tokens that were used since they were fetched, and forgets idle entries. Early or
    /// repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.observe(now);
        let timeout = self.config.request_timeout;
        let mut stale: Vec<RequestId> = self
            .in_flight
            .iter()
            .filter(|(_, f)| now >= later(f.sent_at, timeout))
            .map(|(id, _)| *id)
            .collect();
        stale.sort();
        for id in stale {
            let flight = self
                .in_flight
                .remove(&id)
                .expect("invariant: id was just read from the map");
            let failure = TransportFailure::new(
                TransportErrorKind::Timeout,
                "no response within the manager's request timeout",
            );
            self.fail(now, None, flight, Error::Transport(failure));
        }

        let mut due: Vec<TokenKey> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.fetch.can_start(now)
                    && e.token.as_ref().is_some_and(|t| {
                        !t.is_expired(now) && !t.is_fresh(now) && e.last_used >= t.sent_at()
                    })
            })
            .map(|(k, _)| k.clone())
            .collect();
        due.sort_by(|a, b| (a.client, &a.organization).cmp(&(b.client, &b.organization)));
        for key in due {
            self.start_access(now, &key);
        }

        let idle = self.config.idle_timeout;
        let chains_in_flight: Vec<ClientId> = self
            .in_flight
            .values()
            .filter_map(|f| match f.target {
                Target::RefreshToken(client) => Some(client),
                Target::Access(_) => None,
            })
            .collect();
        self.entries.retain(|key, e| {
            if e.token.as_ref().is_some_and(|t| t.is_expired(now)) {
                e.token = None;
            }
            e.token.is_some()
                || e.fetch.flight.is_some()
                || (e.awaiting_chain && chains_in_flight.contains(&key.client))
                || e.fetch.in_backoff(now)
                || now < later(e.last_used, idle)
        });
        for client in &mut self.clients {
            if let Some(chain) = &mut client.chain {
                if chain.refresh.as_ref().is_some_and(|r| now >= r.expires_at) {
                    chain.refresh = None;
                }
            }
        }
    }

    // ---- output ----

    /// The next thing to do: a request to send, an event for waiting callers, or the instant of
    /// the next [`handle_timeout`](Self::handle_timeout) (always later than `now`).
    pub fn poll_output(&mut self, now: Instant) -> Output {
        if let Some(send) = self.sends.pop_front() {
            return Output::Send(send);
        }
        if let Some(event) = self.events.pop_front() {
            return Output::Event(event);
        }
        Output::Timeout(self.next_timeout(now))
    }

    // ---- internals ----

    fn observe(&mut self, now: Instant) -> Instant {
        let now = self.last_now.map_or(now, |last| last.max(now));
        self.last_now = Some(now);
        now
    }

    fn client_index(&self, id: ClientId) -> Option<usize> {
        let index = usize::try_from(id.index).ok()?;
        (id.manager == self.id && index < self.clients.len()).then_some(index)
    }

    fn check_key(&self, key: &TokenKey) -> Result<(), ApiMisuse> {
        let index = self
            .client_index(key.client)
            .ok_or(ApiMisuse::UnknownClient)?;
        match (&self.clients[index].config.flow, &key.organization) {
            (Flow::OrganizationExchange { .. }, None) => Err(ApiMisuse::OrganizationRequired),
            (Flow::ClientCredentials, Some(_)) => Err(ApiMisuse::OrganizationNotSupported),
            _ => Ok(()),
        }
    }

    fn take_flight(&mut self, id: RequestId) -> Result<Option<Flight>, ApiMisuse> {
        if id.manager != self.id || id.seq >= self.next_seq {
            return Err(ApiMisuse::UnknownRequest(id));
        }
        Ok(self.in_flight.remove(&id))
    }

    fn pending_or_failed(&self, now: Instant, key: &TokenKey) -> Lookup {
        let entry = &self.entries[key];
        if entry.fetch.flight.is_some() {
            return Lookup::Pending;
        }
        let chain = entry
            .awaiting_chain
            .then(|| self.chain(key.client))
            .flatten();
        let fetch = match chain {
            Some(chain) if chain.fetch.flight.is_some() => return Lookup::Pending,
            Some(chain) => &chain.fetch,
            None => &entry.fetch,
        };
        match &fetch.last_error {
            Some(error) => Lookup::Failed {
                error: error.clone(),
                retry_at: fetch.retry_at.unwrap_or(now),
            },
            // Unreachable by construction (a fetch that cannot start is in backoff, which always
            // has an error); waiting is the safe answer, bounded by the request timeout.
            None => Lookup::Pending,
        }
    }

    fn chain(&self, client: ClientId) -> Option<&Chain> {
        let index = self.client_index(client)?;
        self.clients[index].chain.as_ref()
    }

    fn chain_mut(&mut self, client: ClientId) -> Option<&mut Chain> {
        let index = self.client_index(client)?;
        self.clients[index].chain.as_mut()
    }

    /// Queues a request and records its flight.
    fn issue(
        &mut self,
        now: Instant,
        target: Target,
        grant: Grant<'_>,
        via_generation: Option<u64>,
    ) -> RequestId {
        let id = RequestId {
            manager: self.id,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        let index = self
            .client_index(target.client())
            .expect("invariant: targets name registered clients");
        let config = &self.clients[index].config;
        let (request, provider, max_body_bytes) = (
            config.token_request(grant),
            config.provider(),
            config.max_body_bytes(),
        );
        self.in_flight.insert(
            id,
            Flight {
                target: target.clone(),
                sent_at: now,
                via_generation,
            },
        );
        self.sends.push_back(TokenRequest {
            id,
            target,
            provider,
            request,
            max_body_bytes,
        });
        id
    }

    /// Starts a fetch for an access-token key if none is in flight and it is not in backoff.
    fn start_access(&mut self, now: Instant, key: &TokenKey) {
        let Some(entry) = self.entries.get(key) else {
            return;
        };
        if !entry.fetch.can_start(now) {
            return;
        }
        let Some(org) = key.organization.clone() else {
            let id = self.issue(
                now,
                Target::Access(key.clone()),
                Grant::ClientCredentials,
                None,
            );
            self.entry_mut(key).fetch.flight = Some(id);
            return;
        };
        let usable = self
            .chain(key.client)
            .and_then(|c| c.usable(now))
            .map(|r| (r.token.clone(), r.generation, now >= r.refresh_at));
        match usable {
            Some((refresh_token, generation, refresh_due)) => {
                if refresh_due {
                    self.start_chain(now, key.client);
                }
                let grant = Grant::RefreshToken {
                    refresh_token: &refresh_token,
                    organization: Some(&org),
                };
                let id = self.issue(now, Target::Access(key.clone()), grant, Some(generation));
                let entry = self.entry_mut(key);
                entry.fetch.flight = Some(id);
                entry.awaiting_chain = false;
            }
            None => {
                self.entry_mut(key).awaiting_chain = true;
                self.start_chain(now, key.client);
            }
        }
    }

    fn entry_mut(&mut self, key: &TokenKey) -> &mut Entry {
        self.entries
            .get_mut(key)
            .expect("invariant: callers checked the entry exists")
    }

    /// Starts fetching a client's refresh token if none is in flight and it is not in backoff.
    fn start_chain(&mut self, now: Instant, client: ClientId) {
        let Some(chain) = self.chain(client) else {
            return;
        };
        if !chain.fetch.can_start(now) {
            return;
        }
        let id = self.issue(
            now,
            Target::RefreshToken(client),
            Grant::ClientCredentials,
            None,
        );
        if let Some(chain) = self.chain_mut(client) {
            chain.fetch.flight = Some(id);
        }
    }

    fn schedule(
        &mut self,
        sent_at: Instant,
        lifetime: Duration,
        window: Duration,
    ) -> (Instant, Instant) {
        let lifetime = lifetime.min(self.config.max_lifetime);
        let half = lifetime / 2;
        let window = window.min(half);
        let room = (half - window).min(self.config.refresh_jitter);
        let jitter = if room.is_zero() {
            Duration::ZERO
        } else {
            let max = u64::try_from(room.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(self.rng.u64(0..=max))
        };
        let expires_at = later(sent_at, lifetime);
        let refresh_at = later(sent_at, lifetime - window - jitter);
        (expires_at, refresh_at)
    }

    fn window_for(&self, config: &ClientConfig) -> Duration {
        config.refresh_window.unwrap_or(self.config.refresh_window)
    }

    /// Caches the access token a response carries, or says why it cannot.
    fn accept_access(
        &mut self,
        now: Instant,
        wall: SystemTime,
        config: &ClientConfig,
        key: &TokenKey,
        flight: &Flight,
        parsed: Result<(http::StatusCode, TokenResponse), Error>,
    ) -> Result<(), Error> {
        let (token, response) = parsed.and_then(|(status, response)| {
            let malformed = |reason| Error::Malformed { status, reason };
            let access = response
                .access_token()
                .ok_or_else(|| malformed(Malformed::MissingField("access_token")))?
                .clone();
            let (lifetime, source) = response.lifetime(wall, config.default_lifetime());
            let window = self.window_for(config);
            let (expires_at, refresh_at) = self.schedule(flight.sent_at, lifetime, window);
            if expires_at <= now {
                return Err(malformed(Malformed::AlreadyExpired));
            }
            let authorization = bearer_header(&access).map_err(|_| {
                malformed(Malformed::InvalidField {
                    field: "access_token",
                    reason: "has characters an HTTP header cannot carry",
                })
            })?;
            let lifetime = lifetime.min(self.config.max_lifetime);
            // The wall-clock time the request was sent, from the wall clock now.
            let wall_sent = wall.checked_sub(now - flight.sent_at).unwrap_or(wall);
            let token = Token::new(
                access,
                authorization,
                response.scope().cloned(),
                flight.sent_at,
                expires_at,
                refresh_at,
                wall_sent.checked_add(lifetime).unwrap_or(wall_sent),
                lifetime,
                source,
            );
            Ok((token, response))
        })?;
        if let Some(entry) = self.entries.get_mut(key) {
            entry.token = Some(token.clone());
            entry.fetch.flight = None;
            entry.fetch.succeeded();
            entry.chain_restarts = 0;
            entry.awaiting_chain = false;
        }
        // A rotated refresh token (bookingtime may send one) replaces the chain's. Its lifetime
        // is its JWT `exp` if it has one, else the chain's 30-day default.
        if let Some(rotated) = response.refresh_token() {
            if self.chain(key.client).is_some() {
                let lifetime =
                    jwt_lifetime(rotated.secret(), wall).unwrap_or(BOOKINGTIME_REFRESH_DEFAULT);
                self.store_refresh(
                    config,
                    key.client,
                    flight.sent_at,
                    rotated.clone(),
                    lifetime,
                );
            }
        }
        self.events.push_back(Event::Token {
            key: key.clone(),
            token,
        });
        Ok(())
    }

    /// Caches a client's refresh token (a new generation).
    fn store_refresh(
        &mut self,
        config: &ClientConfig,
        client: ClientId,
        sent_at: Instant,
        token: RefreshToken,
        lifetime: Duration,
    ) {
        let window = self.window_for(config);
        let (expires_at, refresh_at) = self.schedule(sent_at, lifetime, window);
        if let Some(chain) = self.chain_mut(client) {
            chain.generation += 1;
            chain.refresh = Some(CachedRefresh {
                token,
                expires_at,
                refresh_at,
                generation: chain.generation,
            });
        }
    }

    /// Caches the refresh token a response carries and starts the organizations waiting for
    /// it, or says why it cannot.
    fn accept_chain(
        &mut self,
        now: Instant,
        wall: SystemTime,
        config: &ClientConfig,
        client: ClientId,
        flight: &Flight,
        parsed: Result<(http::StatusCode, TokenResponse), Error>,
    ) -> Result<(), Error> {
        let (token, lifetime) = parsed.and_then(|(status, response)| {
            let malformed = |reason| Error::Malformed { status, reason };
            let token = response
                .refresh_token()
                .ok_or_else(|| malformed(Malformed::MissingField("refresh_token")))?
                .clone();
            let (lifetime, _) = response.lifetime(wall, BOOKINGTIME_REFRESH_DEFAULT);
            if later(flight.sent_at, lifetime.min(self.config.max_lifetime)) <= now {
                return Err(malformed(Malformed::AlreadyExpired));
            }
            Ok((token, lifetime))
        })?;
        self.store_refresh(config, client, flight.sent_at, token, lifetime);
        if let Some(chain) = self.chain_mut(client) {
            chain.fetch.flight = None;
            chain.fetch.succeeded();
        }
        let mut waiting: Vec<TokenKey> = self
            .entries
            .iter()
            .filter(|(k, e)| k.client == client && e.awaiting_chain)
            .map(|(k, _)| k.clone())
            .collect();
        waiting.sort_by(|a, b| a.organization.cmp(&b.organization));
        for key in waiting {
            self.start_access(now, &key);
        }
        Ok(())
    }

    /// Backoff for the `failures`-th consecutive failure with `error`: exponential from the
    /// error class's initial delay, capped, with equal jitter; at least the server's
    /// `Retry-After` (itself capped).
    fn backoff(&mut self, error: &Error, failures: u32, retry_after: Option<Duration>) -> Duration {
        let base = if error.is_retryable() {
            self.config.initial_backoff
        } else {
            self.config.rejected_backoff
        };
        let exp = base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
            .min(self.config.max_backoff);
        let half = exp / 2;
        let max = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jittered = half + Duration::from_nanos(self.rng.u64(0..=max));
        let server = retry_after
            .unwrap_or(Duration::ZERO)
            .min(self.config.max_retry_after);
        jittered.max(server)
    }

    /// Records a failed fetch and tells waiting callers; restarts bookingtime's chain once per
    /// rejected refresh token. `wall` dates an HTTP-date `Retry-After`.
    fn fail(&mut self, now: Instant, wall: Option<SystemTime>, flight: Flight, error: Error) {
        let retry_after = error.retry_after().map(|r| match (r, wall) {
            (_, Some(wall)) => r.delay_from(wall),
            (RetryAfter::Delay(d), None) => d,
            (RetryAfter::At(_), None) => Duration::ZERO,
        });
        match flight.target {
            Target::Access(key) => {
                let Some(entry) = self.entries.get_mut(&key) else {
                    return;
                };
                entry.fetch.flight = None;
                if let (true, Some(generation)) = (error.is_grant_rejected(), flight.via_generation)
                {
                    let first_restart = entry.chain_restarts == 0;
                    entry.chain_restarts += 1;
                    if let Some(chain) = self.chain_mut(key.client) {
                        // Token-aware: drop the refresh token only if it is the rejected one.
                        if chain
                            .refresh
                            .as_ref()
                            .is_some_and(|r| r.generation == generation)
                        {
                            chain.refresh = None;
                        }
                    }
                    if first_restart {
                        self.start_access(now, &key);
                        let chain_busy = self
                            .chain(key.client)
                            .is_some_and(|c| c.fetch.flight.is_some());
                        let entry = self.entry_mut(&key);
                        if entry.fetch.flight.is_some() || (entry.awaiting_chain && chain_busy) {
                            return;
                        }
                        // The chain is in backoff: report this failure instead of waiting.
                        entry.awaiting_chain = false;
                    }
                }
                let entry = self.entry_mut(&key);
                entry.fetch.failures = entry.fetch.failures.saturating_add(1);
                let failures = entry.fetch.failures;
                let delay = self.backoff(&error, failures, retry_after);
                let retry_at = later(now, delay);
                let entry = self.entry_mut(&key);
                entry.fetch.retry_at = Some(retry_at);
                entry.fetch.last_error = Some(error.clone());
                self.events.push_back(Event::Failed {
                    key,
                    error,
                    retry_at,
                });
            }
            Target::RefreshToken(client) => {
                let failures = match self.chain_mut(client) {
                    Some(chain) => {
                        chain.fetch.flight = None;
                        chain.fetch.failures = chain.fetch.failures.saturating_add(1);
                        chain.fetch.failures
                    }
                    None => return,
                };
                let delay = self.backoff(&error, failures, retry_after);
                let retry_at = later(now, delay);
                if let Some(chain) = self.chain_mut(client) {
                    chain.fetch.retry_at = Some(retry_at);
                    chain.fetch.last_error = Some(error.clone());
                }
                let mut waiting: Vec<TokenKey> = Vec::new();
                for (key, entry) in &mut self.entries {
                    if key.client == client && entry.awaiting_chain {
                        entry.awaiting_chain = false;
                        entry.fetch.retry_at = Some(retry_at);
                        entry.fetch.last_error = Some(error.clone());
                        waiting.push(key.clone());
                    }
                }
                waiting.sort_by(|a, b| a.organization.cmp(&b.organization));
                for key in waiting {
                    self.events.push_back(Event::Failed {
                        key,
                        error: error.clone(),
                        retry_at,
                    });
                }
            }
        }
    }

    fn next_timeout(&self, now: Instant) -> Instant {
        let now = self.last_now.map_or(now, |last| last.max(now));
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| {
            if t > now && next.is_none_or(|n| t < n) {
                next = Some(t);
            }
        };
        for flight in self.in_flight.values() {
            consider(later(flight.sent_at, self.config.request_timeout));
        }
        for entry in self.entries.values() {
            if let Some(t) = &entry.token {
                consider(t.expires_at());
                if entry.fetch.flight.is_none() && entry.last_used >= t.sent_at() {
                    consider(t.refresh_at());
                }
            }
            if let Some(retry_at) = entry.fetch.retry_at {
                consider(retry_at);
            }
            if entry.fetch.flight.is_none() {
                consider(later(entry.last_used, self.config.idle_timeout));
            }
        }
        for client in &self.clients {
            if let Some(refresh) = client.chain.as_ref().and_then(|c| c.refresh.as_ref()) {
                consider(refresh.expires_at);
            }
        }
        next.unwrap_or_else(|| later(now, self.config.idle_timeout.max(Duration::from_secs(1))))
    }
}

/// bookingtime's documented refresh-token lifetime (30 days), used when a response omits it.
const BOOKINGTIME_REFRESH_DEFAULT: Duration = Duration::from_secs(2_592_000);

/// `t + d`, saturating instead of panicking when the platform's `Instant` cannot represent it.
fn later(t: Instant, d: Duration) -> Instant {
    let mut d = d;
    loop {
        if let Some(x) = t.checked_add(d) {
            return x;
        }
        d /= 2;
        if d.is_zero() {
            return t;
        }
    }
}
