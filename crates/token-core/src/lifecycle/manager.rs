//! The token lifecycle: cache, early refresh, single flight, backoff, bounded renewal after
//! rejections, refresh-token grants (bookingtime's chain, users' grants) and the shared store,
//! as a deterministic state machine.
//!
//! [`TokenManager`] does no IO, reads no clock and takes no lock. Its methods come in four kinds
//! (as in quinn-proto):
//! - **getters** (`&self`): [`token`](TokenManager::token), [`servable`](TokenManager::servable),
//!   [`client`](TokenManager::client), [`in_flight`](TokenManager::in_flight), ...;
//! - **commands** from the application: [`register`](TokenManager::register),
//!   [`request`](TokenManager::request), [`touch`](TokenManager::touch),
//!   [`invalidate`](TokenManager::invalidate), [`confirm`](TokenManager::confirm);
//! - **inputs** from the driver: [`handle_response`](TokenManager::handle_response),
//!   [`handle_send_failed`](TokenManager::handle_send_failed),
//!   [`handle_store`](TokenManager::handle_store),
//!   [`handle_timeout`](TokenManager::handle_timeout);
//! - **output**: [`poll_output`](TokenManager::poll_output), drained after every command and
//!   input until it returns [`Output::Timeout`].
//!
//! # The time contract
//! Every time-dependent method takes `now: Instant` first. The manager keeps the latest `now` it
//! has seen and uses `max(latest, now)`, so a clock that steps backwards can never make an
//! expired token valid again. A token's lifetime counts from when its request was *issued* (the
//! `now` of the call that produced the [`Output::Send`]), the conservative end; a token loaded
//! from a shared store expires at the instant its load was issued plus the store's TTL for it.
//! The wall-clock time is taken only where time crosses a process boundary: a JWT `exp` claim
//! and an HTTP-date `Retry-After`.
//!
//! # Timers
//! Every deadline (request timeout, store timeout, store poll, refresh, backoff end, expiry,
//! idle eviction) lives in one timer table, derived from each key's state in one place.
//! [`handle_timeout`](TokenManager::handle_timeout) fires what is due, the `Timeout` output is the
//! earliest deadline, and [`servable`](TokenManager::servable) is "the token, until the key's
//! next deadline". A change costs O(log n) in the number of keys; nothing is scanned.
//!
//! # The refresh rule
//! `expires_at = sent_at + lifetime` (lifetime capped by [`ManagerConfig::max_lifetime`]).
//! `refresh_at = expires_at - window - jitter`, where `window` is the refresh window (60 s by
//! default, as Bookable recommends) **clamped to half the lifetime**, and `jitter` is drawn from
//! `[0, min(refresh_jitter, lifetime / 2 - window)]`. So a token is always used for at least half
//! of its life without a refresh: bookingtime's 300 s tokens refresh at 240 s. A token that was
//! used since it was cached is refreshed at `refresh_at` by the timer, with no caller involved; a
//! request inside the window still gets the token at once (and starts the refresh if nothing
//! did). From `expires_at` the token is never handed out again.
//!
//! # Rejected tokens
//! [`invalidate`](TokenManager::invalidate) reports that the API refused a token. The first
//! rejection since the API last accepted one of the key's tokens ([`confirm`]) drops the token at
//! once, so the next request fetches a new one. If that one is refused too, renewal backs off:
//! the refused token is still served (callers get the API's answer) and is renewed only after
//! [`ManagerConfig::rejected_backoff`], doubling per further rejection up to
//! [`ManagerConfig::max_backoff`]. [`confirm`] resets the rule. So an API that refuses every
//! token costs a handful of token requests, not one per call.
//!
//! # Refresh-token grants
//! bookingtime's client-credentials request returns a 30-day refresh token that, with an
//! `organization_id`, yields each organization's 5-minute access token; a user's Authorization
//! Code grant yields a refresh token the same way. One grant feeds many keys. A transient
//! failure never discards a refresh token. An `invalid_grant` for an organization drops the
//! refresh token it was sent with (once per generation) and fetches a new one; if the fresh one
//! is refused for that organization too, the organization's own error surfaces with its own
//! backoff, and the organization may challenge the refresh token again only after an hour
//! (`GRANT_CHALLENGE_INTERVAL`). A user's refresh token cannot be renewed without the user:
//! once it is rejected or expired, the user's keys fail with
//! [`Error::AuthorizationRequired`] and nothing is sent.
//!
//! [`confirm`]: TokenManager::confirm

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use slab::Slab;

use crate::lifecycle::fetch::{Fetch, Phase};
use crate::lifecycle::ids::next_manager_id;
use crate::lifecycle::misuse::ApiMisuse;
use crate::lifecycle::schedule::{self, earlier, later};
use crate::lifecycle::store::{
    Breaker, Record, StoreKey, StoreOp, StoreRecord, StoreReply, StoreRequest, StoreSettings,
    StoredValue,
};
use crate::lifecycle::timers::{Deadlines, Owner, Timer, TimerTable};
use crate::lifecycle::token::Token;
use crate::protocol::authorization::{
    self, AuthorizationCode, AuthorizationError, AuthorizationState, PkceVerifier,
};
use crate::protocol::config::{ClientConfig, Flow};
use crate::protocol::error::{Error, Malformed, TransportErrorKind, TransportFailure};
use crate::protocol::request::{Grant, bearer_header};
use crate::protocol::response::{TokenResponse, jwt_lifetime, parse_token_response_redacting};
use crate::protocol::secret::{AccessToken, RefreshToken};

pub use crate::lifecycle::ids::{ClientId, GrantKey, RequestId, StoreOpId, Subject, TokenKey};
pub use crate::lifecycle::output::{Event, Lookup, Output, Target, TokenRequest};

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
    /// malformed answer), and the first delay before renewing a key whose fresh token the API
    /// rejected too, so a misconfigured client cannot hammer the endpoint. Default 30 s;
    /// doubles up to `max_backoff`.
    pub rejected_backoff: Duration,
    /// Backoff cap. Default 5 min.
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured. Default 10 min.
    pub max_retry_after: Duration,
    /// Lifetimes are capped at this, whatever the server says. Default 90 days (bookingtime's
    /// refresh token lives 30).
    pub max_lifetime: Duration,
    /// A request without a response or failure this long after it was issued is abandoned as
    /// timed out (a late response is then ignored), so a transport that loses a request cannot
    /// wedge a key. Default 60 s.
    pub request_timeout: Duration,
    /// An entry not used for this long and holding no valid token is forgotten. Default 10 min.
    pub idle_timeout: Duration,
    /// Seed for the jitter generator (deterministic tests; vary it per process in a fleet).
    pub seed: u64,
    /// A shared store (see [`store`](crate::lifecycle::store)); `None` (the default): tokens
    /// live in this manager only.
    pub store: Option<StoreSettings>,
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
            store: None,
        }
    }
}

/// What [`TokenManager::invalidate`] did with a rejected token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalidation {
    /// It was the current token and is dropped: the next request fetches a new one.
    Dropped,
    /// It is not (or no longer) the key's current token: nothing changed (a newer token may
    /// already be there).
    NotCurrent,
    /// It was the current token, but the previous new token was refused too: it is kept (so
    /// callers get the API's answer) and renewed after a backoff.
    Kept,
}

impl Invalidation {
    /// Whether it was dropped.
    pub fn dropped(self) -> bool {
        self == Self::Dropped
    }

    /// Whether retrying the API call with the key's token (now or soon a new one) is
    /// worthwhile: not when renewal is backing off.
    pub fn retry(self) -> bool {
        self != Self::Kept
    }
}

/// Why [`TokenManager::start_authorization`] could not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StartAuthorizationError {
    /// The client id is not this manager's.
    #[error(transparent)]
    Misuse(#[from] ApiMisuse),
    /// The client or the redirect URI cannot do it.
    #[error(transparent)]
    Authorization(#[from] AuthorizationError),
}

/// An organization may drop its grant's refresh token after an `invalid_grant` at most this
/// often while its own failures continue.
const GRANT_CHALLENGE_INTERVAL: Duration = Duration::from_secs(3600);

/// bookingtime's documented refresh-token lifetime (30 days), used when a response omits it.
const BOOKINGTIME_REFRESH_DEFAULT: Duration = Duration::from_secs(2_592_000);

/// The timers whose firing may change what a key serves: `servable` holds until the earliest.
const SERVING_TIMERS: [Timer; 6] = [
    Timer::Request,
    Timer::Store,
    Timer::Poll,
    Timer::Refresh,
    Timer::Retry,
    Timer::Expire,
];

#[derive(Debug)]
struct Client {
    config: Arc<ClientConfig>,
    fingerprint: String,
}

/// An access-token cache entry.
#[derive(Debug)]
struct Entry {
    key: TokenKey,
    token: Option<Token>,
    /// The store generation of `token`, if it went through the store.
    store_gen: Option<u64>,
    fetch: Fetch,
    /// The last request (or reported cache hit): the key is in use if this is not older than
    /// its token.
    last_used: Instant,
    /// Renew no later than this, whatever `refresh_at` says (a rejected token, backing off).
    renew_at: Option<Instant>,
    /// Rejections since the API last accepted one of this key's tokens.
    rejections: u32,
    /// When this key's `invalid_grant` last dropped its grant's refresh token.
    challenged_at: Option<Instant>,
    /// The grant feeding this key, if any.
    grant: Option<usize>,
    deadlines: Deadlines,
    change_queued: bool,
}

impl Entry {
    /// Used since its token was fetched (the request that fetched it counts).
    fn in_use(&self) -> bool {
        self.token
            .as_ref()
            .is_some_and(|t| self.last_used >= t.sent_at())
    }
}

#[derive(Debug)]
struct CachedRefresh {
    token: RefreshToken,
    expires_at: Instant,
    refresh_at: Instant,
    lifetime: Duration,
    generation: u64,
    store_gen: Option<u64>,
}

/// A refresh-token grant: bookingtime's client-credentials chain, or a user's grant.
#[derive(Debug)]
struct GrantState {
    key: GrantKey,
    refresh: Option<CachedRefresh>,
    /// Local generation counter of `refresh`, for token-aware rejection.
    generation: u64,
    fetch: Fetch,
    /// Entries waiting for a refresh token.
    waiting: Vec<usize>,
    /// A key fetched with the current refresh token since it was cached.
    used: bool,
    /// Client credentials can renew it; a user's grant only the user can.
    renewable: bool,
    /// A user's code waiting to be exchanged.
    code: Option<CodeExchange>,
    deadlines: Deadlines,
}

/// An authorization code to exchange, with what the exchange needs.
#[derive(Debug)]
struct CodeExchange {
    code: AuthorizationCode,
    verifier: PkceVerifier,
    redirect_uri: String,
}

/// An authorization started and not yet completed.
#[derive(Debug)]
struct PendingAuthorization {
    state: AuthorizationState,
    verifier: PkceVerifier,
    redirect_uri: String,
    grant: GrantKey,
    expires_at: Instant,
}

/// How long a started authorization waits for its redirect.
const AUTHORIZATION_TIMEOUT: Duration = Duration::from_secs(600);

/// An authorization to send the user's browser to (see
/// [`TokenManager::start_authorization`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AuthorizationStart {
    /// The authorization URL.
    pub url: String,
    /// The grant the authorization is for (the client and the user).
    pub grant: GrantKey,
    /// The redirect is refused after this.
    pub expires_at: Instant,
}

impl GrantState {
    fn usable(&self, now: Instant) -> Option<&CachedRefresh> {
        self.refresh.as_ref().filter(|r| now < r.expires_at)
    }
}

#[derive(Debug)]
struct Flight {
    owner: Owner,
    sent_at: Instant,
    /// The refresh-token generation an access request was made with.
    via_generation: Option<u64>,
    /// A secret the request carried besides the client's own (a refresh token), redacted from
    /// any error about it.
    sent_secret: Option<Arc<str>>,
}

/// The sans-IO token lifecycle manager. See the [module docs](self) for the method kinds, the
/// time contract, the timers and the rules, and the crate docs for the drive loop.
pub struct TokenManager {
    id: u32,
    config: ManagerConfig,
    clients: Vec<Client>,
    keys: HashMap<TokenKey, usize>,
    entries: Slab<Entry>,
    authorizations: Vec<PendingAuthorization>,
    grant_keys: HashMap<GrantKey, usize>,
    grants: Slab<GrantState>,
    flights: HashMap<RequestId, Flight>,
    acquires: HashMap<StoreOpId, Owner>,
    timers: TimerTable,
    breaker: Breaker,
    next_seq: u64,
    next_store_seq: u64,
    last_now: Option<Instant>,
    rng: fastrand::Rng,
    sends: VecDeque<TokenRequest>,
    store_ops: VecDeque<StoreRequest>,
    changed: VecDeque<usize>,
    events: VecDeque<Event>,
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManager")
            .field("clients", &self.clients.len())
            .field("entries", &self.entries.len())
            .field("grants", &self.grants.len())
            .field("in_flight", &self.flights.len())
            .finish_non_exhaustive()
    }
}

impl TokenManager {
    /// A manager with no clients.
    pub fn new(config: ManagerConfig) -> Self {
        let rng = fastrand::Rng::with_seed(config.seed);
        Self {
            id: next_manager_id(),
            config,
            clients: Vec::new(),
            keys: HashMap::new(),
            entries: Slab::new(),
            authorizations: Vec::new(),
            grant_keys: HashMap::new(),
            grants: Slab::new(),
            flights: HashMap::new(),
            acquires: HashMap::new(),
            timers: TimerTable::default(),
            breaker: Breaker::default(),
            next_seq: 0,
            next_store_seq: 0,
            last_now: None,
            rng,
            sends: VecDeque::new(),
            store_ops: VecDeque::new(),
            changed: VecDeque::new(),
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
        let now = self.clamp(now);
        self.entry(key)?
            .token
            .as_ref()
            .filter(|t| !t.is_expired(now))
    }

    /// The token for `key` and the instant until which a driver may serve it without asking the
    /// manager again: the key's next deadline (its refresh point while it is fresh and in use; the
    /// end of the refresh in flight or of the backoff after a failed one; never past its
    /// expiry). `None` when there is no valid token. Serving from this is what
    /// [`request`](Self::request) would answer, without the call: it lets a driver publish a
    /// snapshot that cache hits read without touching the manager. A driver reports the first
    /// hit on each published token with [`touch`](Self::touch), so the manager knows the key
    /// is in use.
    pub fn servable(&self, now: Instant, key: &TokenKey) -> Option<(&Token, Instant)> {
        let now = self.clamp(now);
        let entry = self.entry(key)?;
        let token = entry.token.as_ref().filter(|t| !t.is_expired(now))?;
        let until = entry
            .deadlines
            .earliest(&SERVING_TIMERS)
            .unwrap_or(token.expires_at())
            .min(token.expires_at());
        (until > now).then_some((token, until))
    }

    /// Whether the API rejected one of `key`'s tokens since it last accepted one: a driver then
    /// reports the next accepted call with [`confirm`](Self::confirm).
    pub fn on_probation(&self, key: &TokenKey) -> bool {
        self.entry(key).is_some_and(|e| e.rejections > 0)
    }

    /// When `key`'s token is due for refresh: its [`Token::refresh_at`], or earlier once a
    /// renewal is scheduled after a rejection (see [`invalidate`](Self::invalidate)).
    pub fn refresh_due_at(&self, key: &TokenKey) -> Option<Instant> {
        let &i = self.keys.get(key)?;
        self.refresh_point(Owner::Entry(i))
    }

    /// Number of token requests sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }

    /// Number of store loads in flight.
    pub fn store_in_flight(&self) -> usize {
        self.acquires.len()
    }

    /// Number of cache entries (for memory checks).
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// The earliest deadline, if any (what the next [`Output::Timeout`] will say).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    // ---- commands ----

    /// Registers a client and returns its id. Registering an equal configuration again returns
    /// the same id, so equal configurations share their tokens.
    pub fn register(&mut self, config: ClientConfig) -> ClientId {
        let index = match self.clients.iter().position(|c| *c.config == config) {
            Some(i) => i,
            None => {
                self.clients.push(Client {
                    fingerprint: config.fingerprint(),
                    config: Arc::new(config),
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
    /// its refresh window and none is under way), or "pending" (a fetch is in progress, possibly
    /// just started: drain [`poll_output`](Self::poll_output)), or the last error while in
    /// backoff with no valid token. An expired token is never returned.
    pub fn request(&mut self, now: Instant, key: &TokenKey) -> Result<Lookup, ApiMisuse> {
        let now = self.observe(now);
        self.check_key(key)?;
        let i = self.entry_index(now, key);
        let lookup = self.use_entry(now, i);
        self.rearm(now, Owner::Entry(i));
        Ok(lookup)
    }

    /// Reports that a driver served `key`'s token from its snapshot (a cache hit the manager
    /// did not see): the key is in use, so its token is refreshed in the background at its
    /// refresh point. Does what [`request`](Self::request) does, without the answer. Unknown or
    /// forgotten keys are ignored.
    pub fn touch(&mut self, now: Instant, key: &TokenKey) {
        let now = self.observe(now);
        if let Some(&i) = self.keys.get(key) {
            let _ = self.use_entry(now, i);
            self.rearm(now, Owner::Entry(i));
        }
    }

    /// Reports that the API rejected `rejected` (e.g. a 401). Only the current token counts, so
    /// a burst of 401s for one token is one rejection. The first rejection since the API last
    /// accepted a token drops it (the next request fetches a new one); later ones keep serving
    /// it and schedule a renewal with backoff (see the [module docs](self#rejected-tokens)).
    pub fn invalidate(
        &mut self,
        now: Instant,
        key: &TokenKey,
        rejected: &AccessToken,
    ) -> Invalidation {
        let now = self.observe(now);
        let Some(&i) = self.keys.get(key) else {
            return Invalidation::NotCurrent;
        };
        let entry = &self.entries[i];
        if !entry
            .token
            .as_ref()
            .is_some_and(|t| t.access_token() == rejected)
        {
            return Invalidation::NotCurrent;
        }
        let (store_gen, rejections) = (entry.store_gen, entry.rejections);
        if let Some(generation) = store_gen {
            self.store_op(Owner::Entry(i), StoreOp::Invalidate { generation });
            self.fetch_mut(Owner::Entry(i))
                .reject_generation(generation);
        }
        let outcome = if rejections == 0 {
            let entry = &mut self.entries[i];
            entry.token = None;
            entry.store_gen = None;
            Invalidation::Dropped
        } else {
            let delay = schedule::exponential(
                &mut self.rng,
                self.config.rejected_backoff,
                rejections,
                self.config.max_backoff,
            );
            let renew = later(now, delay);
            let entry = &mut self.entries[i];
            entry.renew_at = Some(entry.renew_at.map_or(renew, |r| r.min(renew)));
            Invalidation::Kept
        };
        let entry = &mut self.entries[i];
        entry.rejections = rejections.saturating_add(1);
        self.rearm(now, Owner::Entry(i));
        outcome
    }

    /// Reports that the API accepted `accepted`: clears the key's rejection backoff.
    pub fn confirm(&mut self, now: Instant, key: &TokenKey, accepted: &AccessToken) {
        let now = self.observe(now);
        let Some(&i) = self.keys.get(key) else {
            return;
        };
        let entry = &mut self.entries[i];
        if entry
            .token
            .as_ref()
            .is_some_and(|t| t.access_token() == accepted)
            && entry.rejections > 0
        {
            entry.rejections = 0;
            entry.renew_at = None;
            self.rearm(now, Owner::Entry(i));
        }
    }

    /// Starts a user's authorization (the Authorization Code flow with PKCE, S256) for
    /// `client`: returns the URL to send the user's browser to. `user` is the application's id
    /// for the user (their tokens are keyed [`TokenKey::for_user`]); `redirect_uri` is where
    /// the authorization server sends the browser back (HTTPS, or `http://127.0.0.1:{port}/…`
    /// for a loopback listener); `random` is 48 bytes from the operating system's generator
    /// (the verifier's 32 and the state's 16): the core takes randomness as an argument, like
    /// time. The redirect is accepted for ten minutes, once.
    pub fn start_authorization(
        &mut self,
        now: Instant,
        client: ClientId,
        user: impl Into<Arc<str>>,
        redirect_uri: &str,
        random: &[u8; 48],
    ) -> Result<AuthorizationStart, StartAuthorizationError> {
        let now = self.observe(now);
        let index = self
            .client_index(client)
            .ok_or(StartAuthorizationError::Misuse(ApiMisuse::UnknownClient))?;
        let config = Arc::clone(&self.clients[index].config);
        let (verifier_bytes, state_bytes) = random.split_at(32);
        let verifier = PkceVerifier::from_random(
            verifier_bytes
                .try_into()
                .expect("invariant: 48 bytes split at 32"),
        );
        let state = AuthorizationState::from_random(
            state_bytes
                .try_into()
                .expect("invariant: 48 bytes split at 32"),
        );
        let url = authorization::authorization_url(&config, redirect_uri, &state, &verifier)?;
        let grant = GrantKey {
            client,
            subject: Subject::User(user.into()),
        };
        self.authorizations.retain(|a| now < a.expires_at);
        let expires_at = later(now, AUTHORIZATION_TIMEOUT);
        self.authorizations.push(PendingAuthorization {
            state,
            verifier,
            redirect_uri: redirect_uri.to_owned(),
            grant: grant.clone(),
            expires_at,
        });
        Ok(AuthorizationStart {
            url,
            grant,
            expires_at,
        })
    }

    /// Completes an authorization from the redirect the browser was sent to (the full URL, or
    /// its query): matches its `state` (in constant time) to a pending authorization (which it
    /// consumes: a replay is refused), checks that it came to that authorization's redirect
    /// URI exactly and that its RFC 9207 `iss`, if any, names the right server, and sends the
    /// code-for-token request (with the PKCE verifier). Returns the user's grant: ask for
    /// [`TokenKey::for_user`] (with an organization for bookingtime) and the request waits for
    /// the exchange. The user's refresh token feeds their access tokens from then on, and is
    /// replaced at once when a response rotates it.
    pub fn complete_authorization(
        &mut self,
        now: Instant,
        redirect: &str,
    ) -> Result<GrantKey, AuthorizationError> {
        let now = self.observe(now);
        self.authorizations.retain(|a| now < a.expires_at);
        let query_only = redirect.split_once('?').map_or("", |(_, query)| query);
        let state = form_urlencoded::parse(query_only.as_bytes())
            .find(|(name, _)| name == "state")
            .map(|(_, value)| value.into_owned())
            .ok_or(AuthorizationError::StateMismatch)?;
        // Every pending state is compared (in constant time), whichever matches.
        let mut found = None;
        for (i, pending) in self.authorizations.iter().enumerate() {
            if pending.state.matches(&state) {
                found = Some(i);
            }
        }
        let pending = self
            .authorizations
            .swap_remove(found.ok_or(AuthorizationError::StateMismatch)?);
        let parsed = authorization::parse_redirect(redirect, &pending.redirect_uri)?;
        let index = self
            .client_index(pending.grant.client)
            .expect("invariant: authorizations name registered clients");
        if let Some(expected) = self.clients[index].config.expected_issuer() {
            authorization::check_issuer(parsed.issuer.as_deref(), &expected)?;
        }
        if let Some((code, description)) = parsed.error {
            return Err(AuthorizationError::Refused { code, description });
        }
        let code = parsed.code.ok_or(AuthorizationError::MissingCode)?;
        let g = self.grant_index(&pending.grant);
        let grant = &mut self.grants[g];
        grant.refresh = None;
        grant.fetch.retry_at = None;
        grant.fetch.failures = 0;
        grant.code = Some(CodeExchange {
            code,
            verifier: pending.verifier,
            redirect_uri: pending.redirect_uri,
        });
        if grant.fetch.phase == Phase::Idle {
            self.fetch_now(now, Owner::Grant(g), None);
        }
        self.rearm(now, Owner::Grant(g));
        Ok(pending.grant)
    }

    // ---- inputs ----

    /// Hands back the response to request `id`. `wall` is the wall-clock time, used only for a
    /// JWT `exp` claim or an HTTP-date `Retry-After`. A response to a request that was
    /// abandoned (after [`ManagerConfig::request_timeout`]) or already answered is ignored; an
    /// id this manager never issued is an [`ApiMisuse`].
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
        let config = Arc::clone(&self.clients[self.client_of(flight.owner)].config);
        let sent: Vec<&str> = flight.sent_secret.as_deref().into_iter().collect();
        let parsed = parse_token_response_redacting(&config, &response, &sent)
            .map(|r| (response.status(), r));
        let owner = flight.owner;
        let accepted = match owner {
            Owner::Entry(i) => self.accept_access(now, wall, &config, i, &flight, parsed),
            Owner::Grant(g) => self.accept_grant(now, wall, &config, g, &flight, parsed),
        };
        if let Err(error) = accepted {
            self.fail(now, Some(wall), flight, error);
        }
        self.rearm(now, owner);
        Ok(())
    }

    /// Reports that request `id` actually went out at `now` (a driver that queues requests
    /// before sending them): its timeout, and its token's lifetime, count from here rather than
    /// from when it was issued. Optional; unknown or finished requests are ignored.
    pub fn handle_sent(&mut self, now: Instant, id: RequestId) -> Result<(), ApiMisuse> {
        let now = self.observe(now);
        if id.manager != self.id || id.seq >= self.next_seq {
            return Err(ApiMisuse::UnknownRequest(id));
        }
        let Some(flight) = self.flights.get_mut(&id) else {
            return Ok(());
        };
        let owner = flight.owner;
        flight.sent_at = flight.sent_at.max(now);
        let sent = flight.sent_at;
        if let Some(Phase::Fetching {
            request, sent_at, ..
        }) = self.fetch_mut_checked(owner).map(|f| &mut f.phase)
            && *request == id
        {
            *sent_at = sent;
        }
        self.rearm(now, owner);
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
            let owner = flight.owner;
            self.fail(now, None, flight, Error::Transport(failure));
            self.rearm(now, owner);
        }
        Ok(())
    }

    /// Hands back the store's reply to operation `id`. `wall` dates the loaded token for display
    /// ([`Token::expires_at_wall`]). A reply to an operation that timed out is used only as a
    /// sign of the store's health; an id this manager never issued is an [`ApiMisuse`].
    pub fn handle_store(
        &mut self,
        now: Instant,
        wall: SystemTime,
        id: StoreOpId,
        reply: StoreReply,
    ) -> Result<(), ApiMisuse> {
        let now = self.observe(now);
        if id.manager != self.id || id.seq >= self.next_store_seq {
            return Err(ApiMisuse::UnknownStoreOp(id));
        }
        match &reply {
            StoreReply::Failed(_) => self.store_failed(now),
            _ => self.breaker.succeeded(),
        }
        let Some(owner) = self.acquires.remove(&id) else {
            return Ok(());
        };
        let issued_at = match self.fetch(owner).map(|f| &f.phase) {
            Some(&Phase::Acquiring { op, issued_at }) if op == id => issued_at,
            _ => return Ok(()),
        };
        self.fetch_mut(owner).phase = Phase::Idle;
        let rejected = self.fetch_mut(owner).rejected_gen;
        let usable = |value: &StoredValue| rejected.is_none_or(|r| value.generation > r);
        match reply {
            // The value this process saw rejected: the load overtook the invalidation. Look
            // again shortly (by then the invalidation has landed, or another process fetches).
            // Twice in a row means the invalidation did not land (a store error): fetch in this
            // process rather than poll the store forever.
            StoreReply::Value(value) if !usable(&value) => {
                let fetch = self.fetch_mut(owner);
                fetch.overtaken += 1;
                if fetch.overtaken > 2 {
                    fetch.overtaken = 0;
                    self.fetch_now(now, owner, None);
                } else {
                    self.follow(now, owner, Duration::ZERO);
                }
            }
            StoreReply::Value(value) => {
                if !self.adopt(now, wall, owner, issued_at, value, true) {
                    self.fetch_now(now, owner, None);
                }
            }
            StoreReply::Leased { generation, stale } => {
                let mut stale = stale.filter(usable);
                // Due by the window this process asked with, but not by the lifetime the value
                // records (a process that has not seen the key yet asks with its full window):
                // use it, and give the lease back.
                if let Some(value) = stale.take_if(|v| self.not_due_yet(now, owner, issued_at, v))
                    && self.adopt(now, wall, owner, issued_at, value, true)
                {
                    self.store_op(owner, StoreOp::Release { generation });
                    self.rearm(now, owner);
                    return Ok(());
                }
                if let Some(stale) = stale
                    && !self.has_valid(now, owner)
                {
                    self.adopt(now, wall, owner, issued_at, stale, false);
                }
                self.fetch_now(now, owner, Some(generation));
            }
            StoreReply::Busy { value, lease_ttl } => {
                if let Some(value) = value.filter(usable)
                    && !self.has_valid(now, owner)
                {
                    self.adopt(now, wall, owner, issued_at, value, false);
                }
                self.follow(now, owner, lease_ttl);
            }
            StoreReply::Done | StoreReply::Failed(_) => self.fetch_now(now, owner, None),
        }
        self.rearm(now, owner);
        Ok(())
    }

    /// Fires every deadline due at `now`: abandons requests and store loads past their timeout,
    /// refreshes tokens in use at their refresh point, retries after backoff, looks at the store
    /// again while another process fetches, drops expired tokens and forgets idle entries.
    /// Early or repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.observe(now);
        while let Some((owner, timer)) = self.timers.pop_due(now) {
            match owner {
                Owner::Entry(i) if self.entries.contains(i) => {
                    self.entries[i].deadlines.set(timer, None);
                }
                Owner::Grant(g) if self.grants.contains(g) => {
                    self.grants[g].deadlines.set(timer, None);
                }
                _ => continue,
            }
            match timer {
                Timer::Request => self.request_timed_out(now, owner),
                Timer::Store => self.store_timed_out(now, owner),
                Timer::Poll => self.poll_store(now, owner),
                Timer::Retry => {
                    self.fetch_mut(owner).retry_at = None;
                    self.refresh_if_due(now, owner);
                }
                Timer::Refresh => self.refresh_if_due(now, owner),
                Timer::Expire => self.expire(now, owner),
                Timer::Idle => {
                    if let Owner::Entry(i) = owner
                        && self.evict_if_idle(now, i)
                    {
                        continue;
                    }
                }
            }
            self.rearm(now, owner);
        }
    }

    // ---- output ----

    /// The next thing to do: a request to send, a store operation to run, an event, or the
    /// instant of the next [`handle_timeout`](Self::handle_timeout) (always later than `now`).
    pub fn poll_output(&mut self, now: Instant) -> Output {
        if let Some(send) = self.sends.pop_front() {
            return Output::Send(send);
        }
        if let Some(op) = self.store_ops.pop_front() {
            return Output::Store(op);
        }
        while let Some(i) = self.changed.pop_front() {
            if let Some(entry) = self.entries.get_mut(i)
                && entry.change_queued
            {
                entry.change_queued = false;
                return Output::Event(Event::Changed {
                    key: entry.key.clone(),
                });
            }
        }
        if let Some(event) = self.events.pop_front() {
            return Output::Event(event);
        }
        let now = self.clamp(now);
        let floor = later(now, Duration::from_nanos(1));
        Output::Timeout(match self.timers.next() {
            Some(next) => next.max(floor),
            None => later(now, self.config.idle_timeout.max(Duration::from_secs(1))),
        })
    }

    // ---- internals: bookkeeping ----

    fn clamp(&self, now: Instant) -> Instant {
        self.last_now.map_or(now, |last| last.max(now))
    }

    fn observe(&mut self, now: Instant) -> Instant {
        let now = self.clamp(now);
        self.last_now = Some(now);
        now
    }

    fn client_index(&self, id: ClientId) -> Option<usize> {
        let index = usize::try_from(id.index).ok()?;
        (id.manager == self.id && index < self.clients.len()).then_some(index)
    }

    fn client_of(&self, owner: Owner) -> usize {
        let client = match owner {
            Owner::Entry(i) => self.entries[i].key.client,
            Owner::Grant(g) => self.grants[g].key.client,
        };
        self.client_index(client)
            .expect("invariant: entries and grants name registered clients")
    }

    fn config_of(&self, owner: Owner) -> &Arc<ClientConfig> {
        &self.clients[self.client_of(owner)].config
    }

    fn entry(&self, key: &TokenKey) -> Option<&Entry> {
        self.keys.get(key).map(|&i| &self.entries[i])
    }

    /// Checks that `key` can be asked for: a client this manager registered, with an
    /// organization exactly when its flow has organizations.
    pub fn check_key(&self, key: &TokenKey) -> Result<(), ApiMisuse> {
        let index = self
            .client_index(key.client)
            .ok_or(ApiMisuse::UnknownClient)?;
        match (&self.clients[index].config.flow, &key.organization) {
            (Flow::OrganizationExchange { .. }, None) => Err(ApiMisuse::OrganizationRequired),
            (Flow::ClientCredentials, Some(_)) => Err(ApiMisuse::OrganizationNotSupported),
            _ => Ok(()),
        }
    }

    /// The entry for `key`, created (and linked to its grant) if need be.
    fn entry_index(&mut self, now: Instant, key: &TokenKey) -> usize {
        if let Some(&i) = self.keys.get(key) {
            return i;
        }
        let fed_by_grant = key.organization.is_some() || key.subject != Subject::App;
        let grant = fed_by_grant.then(|| self.grant_index(&key.grant()));
        let i = self.entries.insert(Entry {
            key: key.clone(),
            token: None,
            store_gen: None,
            fetch: Fetch::default(),
            last_used: now,
            renew_at: None,
            rejections: 0,
            challenged_at: None,
            grant,
            deadlines: Deadlines::default(),
            change_queued: false,
        });
        self.keys.insert(key.clone(), i);
        i
    }

    fn grant_index(&mut self, key: &GrantKey) -> usize {
        if let Some(&g) = self.grant_keys.get(key) {
            return g;
        }
        let g = self.grants.insert(GrantState {
            key: key.clone(),
            refresh: None,
            generation: 0,
            fetch: Fetch::default(),
            waiting: Vec::new(),
            used: false,
            renewable: key.subject == Subject::App,
            code: None,
            deadlines: Deadlines::default(),
        });
        self.grant_keys.insert(key.clone(), g);
        g
    }

    fn fetch(&self, owner: Owner) -> Option<&Fetch> {
        match owner {
            Owner::Entry(i) => self.entries.get(i).map(|e| &e.fetch),
            Owner::Grant(g) => self.grants.get(g).map(|g| &g.fetch),
        }
    }

    fn fetch_mut_checked(&mut self, owner: Owner) -> Option<&mut Fetch> {
        match owner {
            Owner::Entry(i) => self.entries.get_mut(i).map(|e| &mut e.fetch),
            Owner::Grant(g) => self.grants.get_mut(g).map(|g| &mut g.fetch),
        }
    }

    fn fetch_mut(&mut self, owner: Owner) -> &mut Fetch {
        match owner {
            Owner::Entry(i) => &mut self.entries[i].fetch,
            Owner::Grant(g) => &mut self.grants[g].fetch,
        }
    }

    /// Whether `owner` holds a credential that is still valid at `now`.
    fn has_valid(&self, now: Instant, owner: Owner) -> bool {
        match owner {
            Owner::Entry(i) => self.entries[i]
                .token
                .as_ref()
                .is_some_and(|t| !t.is_expired(now)),
            Owner::Grant(g) => self.grants[g].usable(now).is_some(),
        }
    }

    fn window_for(&self, config: &ClientConfig) -> Duration {
        config.refresh_window.unwrap_or(self.config.refresh_window)
    }

    /// A cache entry's token is fresh: before its refresh point and any renewal scheduled after
    /// a rejection.
    fn is_fresh(&self, now: Instant, i: usize) -> bool {
        let entry = &self.entries[i];
        entry.token.as_ref().is_some_and(|t| t.is_fresh(now))
            && entry.renew_at.is_none_or(|r| now < r)
    }

    /// Whether a stored value, loaded by a request issued at `issued_at`, would not be due
    /// for refresh yet once adopted, whatever jitter [`adopt`](Self::adopt) draws: the
    /// earliest refresh point it could plan is still ahead.
    fn not_due_yet(
        &self,
        now: Instant,
        owner: Owner,
        issued_at: Instant,
        value: &StoredValue,
    ) -> bool {
        let Some(record) = value.record.decode() else {
            return false;
        };
        // As `adopt` plans it.
        let lifetime = record.lifetime().max(value.ttl);
        let expires_at = later(issued_at, value.ttl);
        let fetched_at = later(
            earlier(expires_at, lifetime),
            schedule::store_margin(lifetime),
        );
        let capped = lifetime.min(self.config.max_lifetime);
        let window = self.window_for(self.config_of(owner)).min(capped / 2);
        let earliest = later(
            fetched_at,
            capped.saturating_sub(window + self.config.refresh_jitter),
        );
        earliest > later(now, Duration::from_millis(1))
    }

    /// The lifetime of `owner`'s current (or last) credential, if it has one.
    fn last_lifetime(&self, owner: Owner) -> Option<Duration> {
        match owner {
            Owner::Entry(i) => self.entries[i].token.as_ref().map(Token::lifetime),
            Owner::Grant(g) => self.grants[g].refresh.as_ref().map(|r| r.lifetime),
        }
    }

    /// The instant `owner`'s credential is due for refresh, if it has one.
    fn refresh_point(&self, owner: Owner) -> Option<Instant> {
        match owner {
            Owner::Entry(i) => {
                let entry = &self.entries[i];
                let at = entry.token.as_ref()?.refresh_at();
                Some(entry.renew_at.map_or(at, |r| r.min(at)))
            }
            Owner::Grant(g) => self.grants[g].refresh.as_ref().map(|r| r.refresh_at),
        }
    }

    /// A request (or a reported hit) for entry `i`: marks it used, starts a fetch if it needs
    /// one, and answers.
    fn use_entry(&mut self, now: Instant, i: usize) -> Lookup {
        let entry = &mut self.entries[i];
        entry.last_used = now;
        match self.entries[i].token.clone() {
            Some(token) if !token.is_expired(now) => {
                if !self.is_fresh(now, i) {
                    self.start(now, Owner::Entry(i));
                }
                Lookup::Ready(token)
            }
            _ => {
                let entry = &mut self.entries[i];
                entry.token = None;
                entry.store_gen = None;
                self.start(now, Owner::Entry(i));
                self.pending_or_failed(now, i)
            }
        }
    }

    fn pending_or_failed(&self, now: Instant, i: usize) -> Lookup {
        let fetch = &self.entries[i].fetch;
        match (&fetch.phase, &fetch.last_error) {
            (Phase::Idle, Some(error)) => Lookup::Failed {
                error: error.clone(),
                retry_at: fetch.retry_at.unwrap_or(now),
            },
            // Idle without an error is unreachable by construction (a fetch that cannot start
            // is in backoff, which always has an error); waiting is the safe answer.
            _ => Lookup::Pending,
        }
    }

    // ---- internals: timers ----

    /// Derives `owner`'s deadlines from its state (the one place that does) and updates the
    /// timer table; queues a `Changed` event for an entry.
    fn rearm(&mut self, now: Instant, owner: Owner) {
        let Some(fetch) = self.fetch(owner) else {
            return;
        };
        let mut want = Deadlines::default();
        match fetch.phase {
            Phase::Fetching { sent_at, .. } => want.set(
                Timer::Request,
                Some(later(sent_at, self.config.request_timeout)),
            ),
            Phase::Acquiring { issued_at, .. } => {
                let timeout = self
                    .config
                    .store
                    .as_ref()
                    .map_or(Duration::ZERO, |s| s.op_timeout);
                want.set(Timer::Store, Some(later(issued_at, timeout)));
            }
            Phase::Following { poll_at, .. } => want.set(Timer::Poll, Some(poll_at)),
            Phase::Idle | Phase::AwaitingGrant { .. } => {}
        }
        let retry_at = fetch.retry_at.filter(|t| *t > now);
        want.set(Timer::Retry, retry_at);
        let idle_fetch = fetch.phase == Phase::Idle && retry_at.is_none();
        let (expires, used, renewable) = match owner {
            Owner::Entry(i) => {
                let entry = &self.entries[i];
                (
                    entry.token.as_ref().map(Token::expires_at),
                    entry.in_use(),
                    true,
                )
            }
            Owner::Grant(g) => {
                let grant = &self.grants[g];
                let expires = grant.refresh.as_ref().map(|r| r.expires_at);
                (expires, grant.used, grant.renewable)
            }
        };
        want.set(Timer::Expire, expires);
        if expires.is_some_and(|t| t > now) && idle_fetch && used && renewable {
            // A refresh already due (a token that arrived inside its window) is armed in the
            // past: the next `handle_timeout` starts it, and `servable` says "ask" meanwhile.
            let at = self.refresh_point(owner);
            want.set(Timer::Refresh, at);
        }
        if let Owner::Entry(i) = owner {
            let entry = &self.entries[i];
            if expires.is_none() && entry.fetch.phase == Phase::Idle {
                let idle = later(entry.last_used, self.config.idle_timeout);
                let idle = retry_at.map_or(idle, |r| idle.max(r));
                want.set(Timer::Idle, Some(idle));
            }
            let entry = &mut self.entries[i];
            self.timers.update(owner, &mut entry.deadlines, want);
            if !entry.change_queued {
                entry.change_queued = true;
                self.changed.push_back(i);
            }
        } else if let Owner::Grant(g) = owner {
            self.timers
                .update(owner, &mut self.grants[g].deadlines, want);
        }
    }

    fn request_timed_out(&mut self, now: Instant, owner: Owner) {
        if let Phase::Fetching { request, .. } = self.fetch_mut(owner).phase
            && let Some(flight) = self.flights.remove(&request)
        {
            let failure = TransportFailure::new(
                TransportErrorKind::Timeout,
                "no response within the manager's request timeout",
            );
            self.fail(now, None, flight, Error::Transport(failure));
        }
    }

    fn store_timed_out(&mut self, now: Instant, owner: Owner) {
        if let Phase::Acquiring { op, .. } = self.fetch_mut(owner).phase {
            self.acquires.remove(&op);
            self.store_failed(now);
            self.fetch_mut(owner).phase = Phase::Idle;
            self.fetch_now(now, owner, None);
        }
    }

    fn poll_store(&mut self, now: Instant, owner: Owner) {
        if let Phase::Following { give_up_at, .. } = self.fetch_mut(owner).phase {
            self.fetch_mut(owner).phase = Phase::Idle;
            if now >= give_up_at || !self.store_usable(now) {
                self.fetch_now(now, owner, None);
            } else {
                self.acquire(now, owner);
            }
        }
    }

    /// At a refresh point or the end of a backoff: refreshes the credential if it is valid, in
    /// use and due.
    fn refresh_if_due(&mut self, now: Instant, owner: Owner) {
        let due = self.has_valid(now, owner)
            && self.refresh_point(owner).is_some_and(|at| now >= at)
            && match owner {
                Owner::Entry(i) => self.entries[i].in_use(),
                Owner::Grant(g) => self.grants[g].used && self.grants[g].renewable,
            };
        if due {
            self.start(now, owner);
        }
    }

    fn expire(&mut self, now: Instant, owner: Owner) {
        match owner {
            Owner::Entry(i) => {
                let entry = &mut self.entries[i];
                if entry.token.as_ref().is_some_and(|t| t.is_expired(now)) {
                    entry.token = None;
                    entry.store_gen = None;
                }
            }
            Owner::Grant(g) => {
                let grant = &mut self.grants[g];
                if grant.refresh.as_ref().is_some_and(|r| now >= r.expires_at) {
                    grant.refresh = None;
                }
            }
        }
    }

    /// Forgets entry `i` if it holds nothing and nobody used it for the idle timeout.
    fn evict_if_idle(&mut self, now: Instant, i: usize) -> bool {
        let entry = &self.entries[i];
        let idle = entry.token.is_none()
            && entry.fetch.phase == Phase::Idle
            && !entry.fetch.in_backoff(now)
            && now >= later(entry.last_used, self.config.idle_timeout);
        if !idle {
            return false;
        }
        let mut entry = self.entries.remove(i);
        self.timers.clear(Owner::Entry(i), &mut entry.deadlines);
        self.keys.remove(&entry.key);
        self.events.push_back(Event::Evicted { key: entry.key });
        true
    }

    // ---- internals: fetching ----

    /// Starts fetching `owner`'s credential if nothing is under way and it is not backing off:
    /// from the store first when there is one (and it is not failing), otherwise directly.
    fn start(&mut self, now: Instant, owner: Owner) {
        if !self.fetch(owner).is_some_and(|f| f.can_start(now)) {
            return;
        }
        if self.store_usable(now) {
            self.acquire(now, owner);
        } else {
            self.fetch_now(now, owner, None);
        }
    }

    fn store_usable(&self, now: Instant) -> bool {
        self.config.store.is_some() && self.breaker.allows(now)
    }

    fn store_failed(&mut self, now: Instant) {
        if let Some(settings) = &self.config.store {
            self.breaker.failed(now, settings);
        }
    }

    fn store_key(&self, owner: Owner) -> StoreKey {
        let client = &self.clients[self.client_of(owner)];
        let mut fingerprint = client.fingerprint.clone();
        let (kind, subject, organization) = match owner {
            Owner::Entry(i) => {
                let key = &self.entries[i].key;
                ("access", &key.subject, key.organization.as_deref())
            }
            Owner::Grant(g) => ("refresh", &self.grants[g].key.subject, None),
        };
        fingerprint.push_str(kind);
        fingerprint.push('\n');
        match subject {
            Subject::App => fingerprint.push_str("app"),
            Subject::User(user) => {
                fingerprint.push_str("user:");
                fingerprint.push_str(&user.replace('\\', "\\\\").replace('\n', "\\n"));
            }
        }
        fingerprint.push('\n');
        if let Some(org) = organization {
            fingerprint.push_str(&org.replace('\\', "\\\\").replace('\n', "\\n"));
        }
        fingerprint.push('\n');
        StoreKey::new(fingerprint, Arc::clone(&client.config))
    }

    /// Queues a store operation about `owner`'s credential.
    fn store_op(&mut self, owner: Owner, op: StoreOp) -> StoreOpId {
        let id = StoreOpId {
            manager: self.id,
            seq: self.next_store_seq,
        };
        self.next_store_seq += 1;
        let key = self.store_key(owner);
        self.store_ops.push_back(StoreRequest { id, key, op });
        id
    }

    /// Asks the store for `owner`'s credential (or its lease).
    fn acquire(&mut self, now: Instant, owner: Owner) {
        let settings = self
            .config
            .store
            .clone()
            .expect("invariant: acquire only with a store");
        let config = Arc::clone(self.config_of(owner));
        // A stored value is due when it has no more left than this key's refresh window (the
        // window clamped to half the lifetime this key's tokens last had) plus the jitter.
        let mut window = self.window_for(&config);
        if let Some(lifetime) = self.last_lifetime(owner) {
            window = window.min(lifetime / 2);
        }
        let refresh_ahead = window + self.config.refresh_jitter;
        let lease_ttl = settings
            .lease_ttl
            .unwrap_or(self.config.request_timeout + Duration::from_secs(5));
        let op = self.store_op(
            owner,
            StoreOp::Acquire {
                refresh_ahead,
                lease_ttl,
            },
        );
        self.acquires.insert(op, owner);
        self.fetch_mut(owner).phase = Phase::Acquiring { op, issued_at: now };
    }

    /// Another process holds the lease: look again soon (jittered, doubling), and fetch
    /// ourselves if the holder has not published by the time its lease must have ended.
    fn follow(&mut self, now: Instant, owner: Owner, lease_ttl: Duration) {
        let settings = self
            .config
            .store
            .clone()
            .expect("invariant: follow only with a store");
        let (attempt, give_up_at) = match self.fetch_mut(owner).phase {
            Phase::Following {
                attempt,
                give_up_at,
                ..
            } => (attempt + 1, give_up_at),
            _ => (1, later(now, lease_ttl + settings.op_timeout)),
        };
        let delay = schedule::exponential(
            &mut self.rng,
            settings.poll_initial,
            attempt,
            settings.poll_max,
        )
        .max(Duration::from_millis(1));
        self.fetch_mut(owner).phase = Phase::Following {
            poll_at: later(now, delay).min(give_up_at),
            attempt,
            give_up_at,
        };
    }

    /// Sends the token request for `owner` now (holding store lease `lease`, if any).
    fn fetch_now(&mut self, now: Instant, owner: Owner, lease: Option<u64>) {
        match owner {
            Owner::Entry(i) => match self.entries[i].grant {
                None => {
                    let key = self.entries[i].key.clone();
                    let id = self.issue(
                        now,
                        owner,
                        Target::Access(key),
                        Grant::ClientCredentials,
                        None,
                    );
                    self.entries[i].fetch.phase = Phase::Fetching {
                        request: id,
                        sent_at: now,
                        lease,
                    };
                }
                Some(g) => self.fetch_with_grant(now, i, g, lease),
            },
            Owner::Grant(g) => {
                let key = self.grants[g].key.clone();
                let id = if let Some(exchange) = self.grants[g].code.take() {
                    // A user's code, for their refresh token.
                    let sent = Arc::from(exchange.code.secret());
                    self.issue(
                        now,
                        owner,
                        Target::RefreshToken(key),
                        Grant::AuthorizationCode {
                            code: &exchange.code,
                            verifier: &exchange.verifier,
                            redirect_uri: &exchange.redirect_uri,
                        },
                        Some((0, sent)),
                    )
                } else if self.grants[g].renewable {
                    self.issue(
                        now,
                        owner,
                        Target::RefreshToken(key),
                        Grant::ClientCredentials,
                        None,
                    )
                } else {
                    // Only the user can renew a user's grant.
                    self.grants[g].fetch.phase = Phase::Idle;
                    if let Some(generation) = lease {
                        self.store_op(owner, StoreOp::Release { generation });
                    }
                    self.grant_failed(now, g, Error::AuthorizationRequired, None, false);
                    return;
                };
                self.grants[g].fetch.phase = Phase::Fetching {
                    request: id,
                    sent_at: now,
                    lease,
                };
            }
        }
    }

    /// Entry `i` is fed by grant `g`: fetch with its refresh token, or wait for one.
    fn fetch_with_grant(&mut self, now: Instant, i: usize, g: usize, lease: Option<u64>) {
        let usable = self.grants[g]
            .usable(now)
            .map(|r| (r.token.clone(), r.generation, now >= r.refresh_at));
        let Some((refresh_token, generation, renew_due)) = usable else {
            self.entries[i].fetch.phase = Phase::AwaitingGrant { lease };
            if !self.grants[g].waiting.contains(&i) {
                self.grants[g].waiting.push(i);
            }
            self.start(now, Owner::Grant(g));
            if !self.grants[g].fetch.busy() && self.entries[i].fetch.busy() {
                // The grant cannot start (it is backing off): report its error at once.
                let error = self.grants[g]
                    .fetch
                    .last_error
                    .clone()
                    .unwrap_or(Error::AuthorizationRequired);
                let retry_at = self.grants[g].fetch.retry_at;
                self.grants[g].waiting.retain(|&w| w != i);
                self.entry_failed_with(now, i, error, retry_at);
            }
            self.rearm(now, Owner::Grant(g));
            return;
        };
        self.grants[g].used = true;
        if renew_due {
            self.start(now, Owner::Grant(g));
            self.rearm(now, Owner::Grant(g));
        }
        let key = self.entries[i].key.clone();
        let organization = key.organization.clone();
        let id = self.issue(
            now,
            Owner::Entry(i),
            Target::Access(key),
            Grant::RefreshToken {
                refresh_token: &refresh_token,
                organization: organization.as_deref(),
            },
            Some((generation, Arc::from(refresh_token.secret()))),
        );
        self.entries[i].fetch.phase = Phase::Fetching {
            request: id,
            sent_at: now,
            lease,
        };
    }

    /// Queues a request and records its flight.
    fn issue(
        &mut self,
        now: Instant,
        owner: Owner,
        target: Target,
        grant: Grant<'_>,
        via: Option<(u64, Arc<str>)>,
    ) -> RequestId {
        let id = RequestId {
            manager: self.id,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        let config = self.config_of(owner);
        let (request, provider, max_body_bytes) = (
            config.token_request(grant),
            config.provider(),
            config.max_body_bytes(),
        );
        let (via_generation, sent_secret) = via.unzip();
        self.flights.insert(
            id,
            Flight {
                owner,
                sent_at: now,
                via_generation,
                sent_secret,
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

    fn take_flight(&mut self, id: RequestId) -> Result<Option<Flight>, ApiMisuse> {
        if id.manager != self.id || id.seq >= self.next_seq {
            return Err(ApiMisuse::UnknownRequest(id));
        }
        let Some(flight) = self.flights.remove(&id) else {
            return Ok(None);
        };
        // The owner's phase must still name this request (it always does: a flight is removed
        // whenever its owner moves on).
        let current = self.fetch(flight.owner).map(|f| &f.phase);
        Ok(
            matches!(current, Some(Phase::Fetching { request, .. }) if *request == id)
                .then_some(flight),
        )
    }

    // ---- internals: results ----

    /// Caches the access token a response carries, or says why it cannot.
    fn accept_access(
        &mut self,
        now: Instant,
        wall: SystemTime,
        config: &ClientConfig,
        i: usize,
        flight: &Flight,
        parsed: Result<(http::StatusCode, TokenResponse), Error>,
    ) -> Result<(), Error> {
        let (status, response) = parsed?;
        let lease = self.entries[i].fetch.lease();
        let token = self.access_token(now, wall, config, flight.sent_at, status, &response)?;
        self.cache_access(now, i, token, lease);
        // A rotated refresh token (bookingtime may send one; users' grants often do) replaces
        // the grant's at once.
        if let (Some(g), Some(rotated)) = (self.entries[i].grant, response.refresh_token()) {
            let lifetime = jwt_lifetime(rotated.secret(), wall)
                .unwrap_or_else(|| self.refresh_default(config));
            self.cache_refresh(g, rotated.clone(), flight.sent_at, lifetime, None);
            let record = self.refresh_record(now, g);
            self.publish(now, Owner::Grant(g), None, record);
            self.rearm(now, Owner::Grant(g));
        }
        Ok(())
    }

    /// The token a response carries, scheduled from `sent_at`.
    fn access_token(
        &mut self,
        now: Instant,
        wall: SystemTime,
        config: &ClientConfig,
        sent_at: Instant,
        status: http::StatusCode,
        response: &TokenResponse,
    ) -> Result<Token, Error> {
        let malformed = |reason| Error::Malformed { status, reason };
        let access = response
            .access_token()
            .ok_or_else(|| malformed(Malformed::MissingField("access_token")))?
            .clone();
        let (lifetime, source) = response.lifetime(wall, config.default_lifetime());
        let window = self.window_for(config);
        let (expires_at, refresh_at) =
            schedule::plan(&self.config, &mut self.rng, sent_at, lifetime, window);
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
        let wall_sent = wall.checked_sub(now - sent_at).unwrap_or(wall);
        Ok(Token::new(
            access,
            authorization,
            response.scope().cloned(),
            sent_at,
            expires_at,
            refresh_at,
            wall_sent.checked_add(lifetime).unwrap_or(wall_sent),
            lifetime,
            source,
            response.quota().cloned(),
        ))
    }

    /// Caches `token` for entry `i` (under store lease `lease`, published to the store).
    fn cache_access(&mut self, now: Instant, i: usize, token: Token, lease: Option<u64>) {
        let entry = &mut self.entries[i];
        entry.token = Some(token.clone());
        entry.store_gen = lease;
        entry.fetch.succeeded();
        entry.renew_at = None;
        entry.challenged_at = None;
        let key = entry.key.clone();
        if lease.is_some() {
            let record = StoreRecord::encode(&Record::new(
                token.access_token().secret(),
                token.lifetime(),
                token.scopes(),
            ));
            let remaining = token.expires_at().saturating_duration_since(now);
            self.publish_record(
                now,
                Owner::Entry(i),
                lease,
                record,
                remaining,
                token.lifetime(),
            );
        }
        self.events.push_back(Event::Token { key, token });
    }

    /// Caches the refresh token a grant's response carries and resumes the keys waiting for
    /// it, or says why it cannot.
    fn accept_grant(
        &mut self,
        now: Instant,
        wall: SystemTime,
        config: &ClientConfig,
        g: usize,
        flight: &Flight,
        parsed: Result<(http::StatusCode, TokenResponse), Error>,
    ) -> Result<(), Error> {
        let (status, response) = parsed?;
        let malformed = |reason| Error::Malformed { status, reason };
        let exchanged = !self.grants[g].renewable;
        // A code exchange that returned an access token (RFC 6749 servers do; bookingtime
        // returns the refresh token alone): it is the user's own key's token.
        let own_access =
            response.access_token().is_some() && config.flow == Flow::ClientCredentials;
        let Some(token) = response.refresh_token().cloned() else {
            // RFC 6749 §5.1: the refresh token is optional. Without one the user still gets
            // the exchange's access token; once it is spent, only the user can renew it.
            if exchanged && own_access {
                let lease = self.grants[g].fetch.lease();
                if let Some(generation) = lease {
                    self.store_op(Owner::Grant(g), StoreOp::Release { generation });
                }
                self.grants[g].fetch.succeeded();
                self.accept_own_access(now, wall, config, g, flight, status, &response)?;
                self.resume_waiting(now, g);
                return Ok(());
            }
            return Err(malformed(Malformed::MissingField("refresh_token")));
        };
        // `expires_in` is the refresh token's own lifetime only when no access token came
        // with it (bookingtime's first leg).
        let lifetime = if response.access_token().is_none() {
            response.lifetime(wall, self.refresh_default(config)).0
        } else {
            jwt_lifetime(token.secret(), wall).unwrap_or_else(|| self.refresh_default(config))
        };
        if later(flight.sent_at, lifetime.min(self.config.max_lifetime)) <= now {
            return Err(malformed(Malformed::AlreadyExpired));
        }
        let lease = self.grants[g].fetch.lease();
        self.cache_refresh(g, token, flight.sent_at, lifetime, lease);
        self.grants[g].fetch.succeeded();
        if lease.is_some() || exchanged {
            // A user's new grant is published under a new generation: it is the newest.
            let record = self.refresh_record(now, g);
            self.publish(now, Owner::Grant(g), lease, record);
        }
        if own_access {
            self.accept_own_access(now, wall, config, g, flight, status, &response)?;
        }
        self.resume_waiting(now, g);
        Ok(())
    }

    /// Caches the access token a grant's response carried as the grant's own key's token.
    #[allow(clippy::too_many_arguments)]
    fn accept_own_access(
        &mut self,
        now: Instant,
        wall: SystemTime,
        config: &ClientConfig,
        g: usize,
        flight: &Flight,
        status: http::StatusCode,
        response: &TokenResponse,
    ) -> Result<(), Error> {
        let key = TokenKey {
            client: self.grants[g].key.client,
            subject: self.grants[g].key.subject.clone(),
            organization: None,
        };
        let i = self.entry_index(now, &key);
        let token = self.access_token(now, wall, config, flight.sent_at, status, response)?;
        self.cache_access(now, i, token, None);
        self.rearm(now, Owner::Entry(i));
        Ok(())
    }

    /// The default lifetime of a refresh token whose response does not say.
    fn refresh_default(&self, config: &ClientConfig) -> Duration {
        match config.flow {
            Flow::OrganizationExchange { .. } => BOOKINGTIME_REFRESH_DEFAULT,
            Flow::ClientCredentials => self.config.max_lifetime,
        }
    }

    /// Caches a grant's refresh token as a new generation.
    fn cache_refresh(
        &mut self,
        g: usize,
        token: RefreshToken,
        sent_at: Instant,
        lifetime: Duration,
        store_gen: Option<u64>,
    ) {
        let config = Arc::clone(self.config_of(Owner::Grant(g)));
        let window = self.window_for(&config);
        let (expires_at, refresh_at) =
            schedule::plan(&self.config, &mut self.rng, sent_at, lifetime, window);
        let grant = &mut self.grants[g];
        grant.generation += 1;
        grant.used = false;
        grant.refresh = Some(CachedRefresh {
            token,
            expires_at,
            refresh_at,
            lifetime: lifetime.min(self.config.max_lifetime),
            generation: grant.generation,
            store_gen,
        });
    }

    fn refresh_record(&self, now: Instant, g: usize) -> Option<(StoreRecord, Duration, Duration)> {
        let refresh = self.grants[g].refresh.as_ref()?;
        let record =
            StoreRecord::encode(&Record::new(refresh.token.secret(), refresh.lifetime, None));
        let remaining = refresh.expires_at.saturating_duration_since(now);
        Some((record, remaining, refresh.lifetime))
    }

    fn publish(
        &mut self,
        now: Instant,
        owner: Owner,
        generation: Option<u64>,
        record: Option<(StoreRecord, Duration, Duration)>,
    ) {
        if let Some((record, remaining, lifetime)) = record {
            self.publish_record(now, owner, generation, record, remaining, lifetime);
        }
    }

    fn publish_record(
        &mut self,
        now: Instant,
        owner: Owner,
        generation: Option<u64>,
        record: StoreRecord,
        remaining: Duration,
        lifetime: Duration,
    ) {
        if !self.store_usable(now) {
            return;
        }
        let ttl = schedule::store_ttl(remaining, lifetime);
        if ttl.is_zero() {
            if let Some(generation) = generation {
                self.store_op(owner, StoreOp::Release { generation });
            }
            return;
        }
        self.store_op(
            owner,
            StoreOp::Publish {
                generation,
                record,
                ttl,
            },
        );
    }

    /// Resumes the entries waiting for grant `g`'s refresh token.
    fn resume_waiting(&mut self, now: Instant, g: usize) {
        for i in std::mem::take(&mut self.grants[g].waiting) {
            if let Some(&Phase::AwaitingGrant { lease }) =
                self.entries.get(i).map(|e| &e.fetch.phase)
            {
                self.entries[i].fetch.phase = Phase::Idle;
                self.fetch_now(now, Owner::Entry(i), lease);
                self.rearm(now, Owner::Entry(i));
            }
        }
    }

    /// Adopts a value loaded from the store as `owner`'s credential; `settle` ends the fetch
    /// (a value to use), otherwise the fetch goes on (a stale value served meanwhile). False
    /// when the record is not one this version reads.
    fn adopt(
        &mut self,
        now: Instant,
        wall: SystemTime,
        owner: Owner,
        issued_at: Instant,
        value: StoredValue,
        settle: bool,
    ) -> bool {
        let Some(record) = value.record.decode() else {
            return false;
        };
        let expires_at = later(issued_at, value.ttl);
        if expires_at <= now {
            return false;
        }
        let lifetime = record.lifetime().max(value.ttl);
        // The instant the token would have been fetched to expire when the store says.
        let sent_at = earlier(expires_at, lifetime);
        // Refresh when the fetcher would: the store's TTL is short of the token's real expiry
        // by the publisher's safety margin, so a loader planning from the TTL alone would come
        // due that much earlier, and the fleet would refresh before every lifetime is used.
        // (The copy still expires at the store's TTL, and never refreshes after it.)
        let fetched_at = later(sent_at, schedule::store_margin(lifetime));
        let config = Arc::clone(self.config_of(owner));
        let window = self.window_for(&config);
        let (_, refresh_at) =
            schedule::plan(&self.config, &mut self.rng, fetched_at, lifetime, window);
        // A value the store calls fresh is used for a moment at least, never refreshed at once.
        let refresh_at = refresh_at
            .max(later(now, Duration::from_millis(1)))
            .min(expires_at);
        match owner {
            Owner::Entry(i) => {
                let access = AccessToken::new(record.token.as_str());
                let Ok(authorization) = bearer_header(&access) else {
                    return false;
                };
                let scopes = record.scope.as_deref().map(crate::Scopes::parse);
                let remaining = expires_at.saturating_duration_since(now);
                let token = Token::new(
                    access,
                    authorization,
                    scopes,
                    sent_at,
                    expires_at,
                    refresh_at,
                    wall.checked_add(remaining).unwrap_or(wall),
                    lifetime,
                    crate::LifetimeSource::Store,
                    None,
                );
                let entry = &mut self.entries[i];
                entry.token = Some(token.clone());
                entry.store_gen = Some(value.generation);
                entry.renew_at = None;
                if settle {
                    entry.fetch.succeeded();
                }
                let key = entry.key.clone();
                self.events.push_back(Event::Token { key, token });
            }
            Owner::Grant(g) => {
                let grant = &mut self.grants[g];
                grant.generation += 1;
                grant.used = false;
                grant.refresh = Some(CachedRefresh {
                    token: RefreshToken::new(record.token.as_str()),
                    expires_at,
                    refresh_at,
                    lifetime,
                    generation: grant.generation,
                    store_gen: Some(value.generation),
                });
                if settle {
                    grant.fetch.succeeded();
                    self.resume_waiting(now, g);
                }
            }
        }
        true
    }

    /// Records a failed fetch; handles `invalid_grant` for keys fed by a grant. `wall` dates an
    /// HTTP-date `Retry-After`.
    fn fail(&mut self, now: Instant, wall: Option<SystemTime>, flight: Flight, error: Error) {
        // At least what the server asked for: its Retry-After, or the reset of a used-up quota.
        let retry_after = error.server_delay(wall);
        match flight.owner {
            Owner::Entry(i) => {
                let lease = self.entries[i].fetch.lease();
                self.entries[i].fetch.phase = Phase::Idle;
                if let (true, Some(generation), Some(g)) = (
                    error.is_grant_rejected(),
                    flight.via_generation,
                    self.entries[i].grant,
                ) && self.grant_rejected(now, i, g, generation, lease)
                {
                    return;
                }
                if let Some(generation) = lease {
                    self.store_op(flight.owner, StoreOp::Release { generation });
                }
                let failures = self.entries[i].fetch.failures.saturating_add(1);
                self.entries[i].fetch.failures = failures;
                let delay = schedule::backoff(
                    &self.config,
                    &mut self.rng,
                    error.is_retryable(),
                    failures,
                    retry_after,
                );
                self.entry_failed_with(now, i, error, Some(later(now, delay)));
            }
            Owner::Grant(g) => {
                self.grant_failed(now, g, error, retry_after, true);
            }
        }
    }

    /// Entry `i`'s request with grant `g`'s refresh token of `generation` got `invalid_grant`.
    /// Returns true when it was handled by renewing the refresh token (or retrying with a newer
    /// one); false when it is the entry's own failure.
    fn grant_rejected(
        &mut self,
        now: Instant,
        i: usize,
        g: usize,
        generation: u64,
        lease: Option<u64>,
    ) -> bool {
        let current = self.grants[g].refresh.as_ref().map(|r| r.generation);
        match current {
            // The grant renewed since: try once with the new refresh token.
            Some(current) if current > generation => {
                if self.entries[i].fetch.failures > 0 {
                    return false;
                }
                self.fetch_with_grant(now, i, g, lease);
                true
            }
            // The refresh token it was sent with is still the grant's: drop it (once per
            // generation), unless this entry challenged it recently.
            _ => {
                let challenged_recently = self.entries[i]
                    .challenged_at
                    .is_some_and(|t| now < later(t, GRANT_CHALLENGE_INTERVAL));
                if challenged_recently {
                    return false;
                }
                self.entries[i].challenged_at = Some(now);
                if current == Some(generation)
                    && let Some(store_gen) = self.grants[g].refresh.take().and_then(|r| r.store_gen)
                {
                    self.store_op(
                        Owner::Grant(g),
                        StoreOp::Invalidate {
                            generation: store_gen,
                        },
                    );
                    self.grants[g].fetch.reject_generation(store_gen);
                }
                self.fetch_with_grant(now, i, g, lease);
                true
            }
        }
    }

    /// Entry `i` failed with `error`; no attempt before `retry_at`.
    fn entry_failed_with(
        &mut self,
        now: Instant,
        i: usize,
        error: Error,
        retry_at: Option<Instant>,
    ) {
        let entry = &mut self.entries[i];
        entry.fetch.phase = Phase::Idle;
        entry.fetch.retry_at = retry_at;
        entry.fetch.last_error = Some(error.clone());
        let key = entry.key.clone();
        self.events.push_back(Event::Failed {
            key,
            error,
            retry_at: retry_at.unwrap_or(now),
        });
        self.rearm(now, Owner::Entry(i));
    }

    /// Grant `g`'s fetch failed: back off (when `backoff`) and fail every key waiting for it.
    /// Its refresh token, if it still has a valid one, is kept.
    fn grant_failed(
        &mut self,
        now: Instant,
        g: usize,
        error: Error,
        retry_after: Option<Duration>,
        backoff: bool,
    ) {
        if let Some(generation) = self.grants[g].fetch.lease() {
            self.store_op(Owner::Grant(g), StoreOp::Release { generation });
        }
        let grant = &mut self.grants[g];
        grant.fetch.phase = Phase::Idle;
        let retry_at = if backoff {
            grant.fetch.failures = grant.fetch.failures.saturating_add(1);
            let failures = grant.fetch.failures;
            let delay = schedule::backoff(
                &self.config,
                &mut self.rng,
                error.is_retryable(),
                failures,
                retry_after,
            );
            Some(later(now, delay))
        } else {
            None
        };
        let grant = &mut self.grants[g];
        grant.fetch.retry_at = retry_at;
        grant.fetch.last_error = Some(error.clone());
        for i in std::mem::take(&mut grant.waiting) {
            if let Some(&Phase::AwaitingGrant { lease }) =
                self.entries.get(i).map(|e| &e.fetch.phase)
            {
                if let Some(generation) = lease {
                    self.store_op(Owner::Entry(i), StoreOp::Release { generation });
                }
                self.entry_failed_with(now, i, error.clone(), retry_at);
            }
        }
        self.rearm(now, Owner::Grant(g));
    }
}
