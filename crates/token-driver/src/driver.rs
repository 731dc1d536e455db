//! The shared driver: a [`TokenManager`] behind a mutex, the keys' published tokens, and the
//! one place where the manager's output is drained and handed to the transport.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_listener::{Event as Signal, Listener as _};
use token_core::{
    AccessToken, ApiMisuse, AuthorizationStart, ClientConfig, ClientId, Event, GrantKey,
    Invalidation, Lookup, Output, RequestId, StoreOpId, StoreReply, StoreRequest, Target, Token,
    TokenKey, TokenManager, TokenRequest, TransportFailure,
};

use crate::clock::Clock;
use crate::config::TransportConfig;
use crate::error::Error;
use crate::lock;
use crate::metrics;
use crate::slot::KeySlot;
use crate::stats::{Counters, Stats, bump};

/// What a transport does with the manager's output: it owns the sockets (and the store
/// connection) and the timer worker; the driver decides everything else.
pub trait Executor: Send + Sync + 'static {
    /// Sends a token request (without blocking the caller), reports that it went out with
    /// [`Driver::sent`] and its outcome with [`Driver::complete`], exactly once, even if the task
    /// sending it dies.
    fn send(&self, driver: &Arc<Driver>, request: TokenRequest);

    /// Runs a store operation (without blocking the caller) and reports its reply with
    /// [`Driver::complete_store`], exactly once.
    fn store(&self, driver: &Arc<Driver>, request: StoreRequest);

    /// The manager's next deadline moved earlier than the timer worker planned: wake it so it
    /// runs [`Driver::run_timers`] again.
    fn wake(&self);
}

/// What one drain of the manager left to do once its lock is released.
#[derive(Default)]
struct Work {
    sends: Vec<TokenRequest>,
    stores: Vec<StoreRequest>,
    notify: Vec<Arc<KeySlot>>,
    wake: bool,
}

/// The manager and what its lock also guards.
struct Core {
    manager: TokenManager,
    /// The deadline the timer worker last planned to wake at.
    planned: Option<Instant>,
}

/// A [`TokenManager`] shared between callers, its published tokens, and its transport.
pub struct Driver {
    /// The manager. A fair lock (parking_lot's eventual fairness): under a stream of misses
    /// and timer runs, a waiter (a hit reporting its key in use) is never starved.
    core: parking_lot::Mutex<Core>,
    slots: Mutex<HashMap<TokenKey, Arc<KeySlot>>>,
    clock: Arc<dyn Clock>,
    executor: Box<dyn Executor>,
    counters: Counters,
    /// Store operations handed to the executor and not yet reported.
    store_outstanding: AtomicUsize,
    /// Hits on their way to tell the manager their key is in use.
    touches_outstanding: AtomicUsize,
    /// Notified after every change, for [`Driver::wait_settled`].
    settled: Signal,
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// A driver over a new manager configured by `config`, executing through `executor`.
    pub fn new(config: &TransportConfig, executor: impl Executor) -> Arc<Self> {
        Arc::new(Self {
            core: parking_lot::Mutex::new(Core {
                manager: TokenManager::new(config.manager_config()),
                planned: None,
            }),
            slots: Mutex::new(HashMap::new()),
            clock: Arc::clone(&config.clock),
            executor: Box::new(executor),
            counters: Counters::default(),
            store_outstanding: AtomicUsize::new(0),
            touches_outstanding: AtomicUsize::new(0),
            settled: Signal::new(),
        })
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// What the client did so far.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// How many token requests this driver has handed to its transport (all keys).
    pub fn token_requests(&self) -> u64 {
        self.stats().token_requests
    }

    /// Registers a client (equal configurations share tokens).
    pub fn register(&self, config: ClientConfig) -> (ClientId, Arc<ClientConfig>) {
        let mut core = self.lock_core();
        let id = core.manager.register(config);
        let config = Arc::clone(core.manager.client(id).expect("invariant: just registered"));
        (id, config)
    }

    /// The published-token slot of `key` (created on first use). Handles keep theirs, so their
    /// cache hits look nothing up.
    pub fn slot(&self, key: &TokenKey) -> Arc<KeySlot> {
        let core = self.lock_core();
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get(key) {
            return Arc::clone(slot);
        }
        let provider = core
            .manager
            .client(key.client())
            .map_or("unknown", |c| c.provider().name());
        let slot = Arc::new(KeySlot::new(key.clone(), provider));
        let now = self.clock.now();
        slot.publish(
            core.manager.servable(now, key),
            core.manager.on_probation(key),
        );
        slots.insert(key.clone(), Arc::clone(&slot));
        slot
    }

    // ---- cache hits ----

    /// A token that can be served without touching the manager ([`TokenManager::servable`]):
    /// one atomic load and a clock reading; no lock, no allocation. The first hit on each
    /// published token tells the manager the key is in use (so it refreshes it in the
    /// background).
    #[inline]
    pub fn cached(self: &Arc<Self>, slot: &KeySlot) -> Option<Token> {
        self.with_cached(slot, Token::clone)
    }

    /// Runs `f` on the cached token without cloning it (no reference count touched), if there
    /// is one to serve.
    #[inline]
    pub fn with_cached<R>(
        self: &Arc<Self>,
        slot: &KeySlot,
        f: impl FnOnce(&Token) -> R,
    ) -> Option<R> {
        self.try_with_cached(slot, f).ok()
    }

    /// [`with_cached`](Self::with_cached), handing `f` back on a miss (for a caller that
    /// then fetches and runs it on the fetched token).
    #[inline]
    pub fn try_with_cached<R, F: FnOnce(&Token) -> R>(
        self: &Arc<Self>,
        slot: &KeySlot,
        f: F,
    ) -> Result<R, F> {
        let now = self.clock.now();
        let hit = slot.with_hit(now, Some(&self.counters.cache_hits), || self.touch(slot), f);
        if hit.is_ok() {
            slot.hits.bump();
        }
        hit
    }

    /// The cached token for a caller that waited for it: like [`cached`](Self::cached), but
    /// not counted as a cache hit (the call was a miss).
    pub fn cached_after_wait(self: &Arc<Self>, slot: &KeySlot) -> Option<Token> {
        let now = self.clock.now();
        slot.with_hit(now, None, || self.touch(slot), Token::clone)
            .ok()
    }

    fn touch(self: &Arc<Self>, slot: &KeySlot) {
        self.touches_outstanding.fetch_add(1, Ordering::AcqRel);
        let work = {
            let mut core = self.lock_core();
            let now = self.clock.now();
            core.manager.touch(now, slot.key());
            self.drain(&mut core, now)
        };
        self.touches_outstanding.fetch_sub(1, Ordering::AcqRel);
        self.execute(work);
    }

    // ---- misses ----

    /// Asks the manager for `slot`'s key (after firing due timers) and starts what that needs.
    /// Everything the manager queued is handed on, whatever the answer.
    pub fn step(self: &Arc<Self>, slot: &KeySlot) -> Result<Lookup, ApiMisuse> {
        bump(&self.counters.cache_misses);
        metrics::miss(slot.provider());
        let (lookup, work) = {
            let mut core = self.lock_core();
            let now = self.clock.now();
            core.manager.handle_timeout(now);
            let lookup = core.manager.request(now, slot.key());
            (lookup, self.drain(&mut core, now))
        };
        self.execute(work);
        lookup
    }

    /// A valid token for `slot`'s key, blocking the calling thread while a fetch it needs is
    /// in progress (never while a refresh runs: a token inside its refresh window is served at
    /// once). Returns the token current when it returns, never one superseded while it waited.
    pub fn token_blocking(self: &Arc<Self>, slot: &KeySlot) -> Result<Token, Error> {
        if let Some(token) = self.cached(slot) {
            return Ok(token);
        }
        let mut waited = false;
        loop {
            let listener = slot.listen();
            match self.step(slot)? {
                Lookup::Ready(token) => return Ok(token),
                Lookup::Failed { error, .. } => return Err(error.into()),
                Lookup::Pending if !waited => {
                    waited = true;
                    self.record_wait();
                }
                Lookup::Pending => {}
            }
            // The manager's own request and store timeouts end every wait; this bound only
            // guards against a timer worker that is gone.
            listener.wait_timeout(Duration::from_secs(1));
            if let Some(token) = self.cached_after_wait(slot) {
                return Ok(token);
            }
        }
    }

    /// Counts a caller that waits for a fetch ([`Stats::waits`]); transports with their own
    /// waiting loop call it when [`step`](Self::step) says `Pending`.
    pub fn record_wait(&self) {
        bump(&self.counters.waits);
    }

    // ---- outcomes, from the executor ----

    /// Reports that request `id` actually went out now (its timeout and its token's lifetime
    /// count from here).
    pub fn sent(self: &Arc<Self>, id: RequestId) {
        self.with_core(|manager, now| {
            let _ = manager.handle_sent(now, id);
        });
    }

    /// Reports the outcome of a request.
    pub fn complete(
        self: &Arc<Self>,
        id: RequestId,
        outcome: Result<http::Response<Vec<u8>>, TransportFailure>,
    ) {
        let wall = self.clock.wall();
        self.with_core(|manager, now| {
            let handled = match outcome {
                Ok(response) => manager.handle_response(now, wall, id, response),
                Err(failure) => manager.handle_send_failed(now, id, failure),
            };
            if let Err(misuse) = handled {
                // Only reachable if an executor reports an id twice or to the wrong driver.
                tracing::warn!(%misuse, "token response for an unknown request ignored");
            }
        });
    }

    /// Reports a store operation's reply.
    pub fn complete_store(self: &Arc<Self>, id: StoreOpId, reply: StoreReply) {
        let failed = matches!(reply, StoreReply::Failed(_));
        if failed {
            bump(&self.counters.store_failures);
        }
        metrics::store_operation(!failed);
        let wall = self.clock.wall();
        self.with_core(|manager, now| {
            if let Err(misuse) = manager.handle_store(now, wall, id, reply) {
                tracing::warn!(%misuse, "store reply for an unknown operation ignored");
            }
        });
        let _ = self
            .store_outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.settled.notify(usize::MAX);
    }

    // ---- commands ----

    /// Reports that the API rejected `token` for `slot`'s key (see
    /// [`TokenManager::invalidate`]).
    pub fn invalidate(self: &Arc<Self>, slot: &KeySlot, token: &AccessToken) -> Invalidation {
        self.with_core(|manager, now| manager.invalidate(now, slot.key(), token))
    }

    /// Reports that the API accepted `token` for `slot`'s key. Costs nothing unless the key is
    /// on probation after a rejection.
    pub fn confirm(self: &Arc<Self>, slot: &KeySlot, token: &AccessToken) {
        if slot.probation() {
            self.with_core(|manager, now| manager.confirm(now, slot.key(), token));
        }
    }

    /// Starts a user's authorization for `client` (see
    /// [`TokenManager::start_authorization`]), with 48 bytes from the operating system's random
    /// generator.
    pub fn start_authorization(
        self: &Arc<Self>,
        client: ClientId,
        user: &str,
        redirect_uri: &str,
    ) -> Result<AuthorizationStart, Error> {
        let mut random = [0u8; 48];
        getrandom::fill(&mut random).map_err(|e| {
            Error::Transport(TransportFailure::new(
                token_core::TransportErrorKind::Other,
                format!("no randomness from the operating system: {e}"),
            ))
        })?;
        let started = self.with_core(|manager, now| {
            manager.start_authorization(now, client, user, redirect_uri, &random)
        });
        random.fill(0);
        Ok(started?)
    }

    /// Completes an authorization from its redirect (see
    /// [`TokenManager::complete_authorization`]): the code exchange goes out at once.
    pub fn complete_authorization(self: &Arc<Self>, redirect: &str) -> Result<GrantKey, Error> {
        Ok(self.with_core(|manager, now| manager.complete_authorization(now, redirect))?)
    }

    /// Runs `f` with the manager locked (for inspection in tests and tools); whatever it
    /// queued is handed on.
    pub fn with_manager<R>(self: &Arc<Self>, f: impl FnOnce(&mut TokenManager) -> R) -> R {
        self.with_core(|manager, _| f(manager))
    }

    // ---- the timer worker ----

    /// Fires the manager's due timers and starts what they need; returns the instant to call
    /// this again (the worker sleeps until then, or until [`Executor::wake`]).
    pub fn run_timers(self: &Arc<Self>) -> Instant {
        let (next, work) = {
            let mut core = self.lock_core();
            let now = self.clock.now();
            core.manager.handle_timeout(now);
            let work = self.drain(&mut core, now);
            let next = core.planned.unwrap_or(now);
            (next, work)
        };
        let mut work = work;
        work.wake = false; // the worker is awake: it is the caller
        self.execute(work);
        next
    }

    /// True when nothing is in progress: no request, store operation or report of a hit
    /// outstanding, and no timer due at the clock's current time.
    pub fn is_settled(&self) -> bool {
        let core = self.lock_core();
        let now = self.clock.now();
        core.manager.in_flight() == 0
            && core.manager.store_in_flight() == 0
            && self.store_outstanding.load(Ordering::Acquire) == 0
            && self.touches_outstanding.load(Ordering::Acquire) == 0
            && core.manager.next_deadline().is_none_or(|t| t > now)
    }

    /// Waits (at most `timeout`) until [`is_settled`](Self::is_settled): for tests and tools
    /// that move a manual clock and then look at what the background worker did.
    pub fn wait_settled(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let listener = self.settled.listen();
            if self.is_settled() {
                return true;
            }
            if listener.wait_deadline(deadline).is_none() && Instant::now() >= deadline {
                return self.is_settled();
            }
        }
    }

    /// Whether store operations (a publish, say) are still on their way to the store.
    pub fn store_pending(&self) -> bool {
        self.store_outstanding.load(Ordering::Acquire) > 0
    }

    /// Waits (at most `timeout`) until no store operation is outstanding: a process about to
    /// exit calls this so the token it fetched reaches the shared store (and its lease is
    /// released) instead of leaving the fleet to wait for the lease to expire. True if none is
    /// left.
    pub fn flush_store(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let listener = self.settled.listen();
            if !self.store_pending() {
                return true;
            }
            if listener.wait_deadline(deadline).is_none() && Instant::now() >= deadline {
                return !self.store_pending();
            }
        }
    }

    /// A notification of the next change (for async transports that wait for
    /// [`store_pending`](Self::store_pending) to clear).
    pub fn listen_settled(&self) -> event_listener::EventListener {
        self.settled.listen()
    }

    // ---- internals ----

    fn lock_core(&self) -> parking_lot::MutexGuard<'_, Core> {
        self.core.lock()
    }

    fn with_core<R>(self: &Arc<Self>, f: impl FnOnce(&mut TokenManager, Instant) -> R) -> R {
        let (result, work) = {
            let mut core = self.lock_core();
            let now = self.clock.now();
            let result = f(&mut core.manager, now);
            (result, self.drain(&mut core, now))
        };
        self.execute(work);
        result
    }

    /// Drains the manager's output with its lock held: collects requests and store operations,
    /// publishes what changed, logs, and notes whom to wake.
    fn drain(&self, core: &mut Core, now: Instant) -> Work {
        let mut work = Work::default();
        let mut slots = lock(&self.slots);
        loop {
            match core.manager.poll_output(now) {
                Output::Send(request) => {
                    bump(&self.counters.token_requests);
                    let provider = request.provider.name();
                    metrics::token_request(provider, request.target.kind());
                    if let Target::Access(key) = &request.target
                        && core.manager.token(now, key).is_some()
                    {
                        bump(&self.counters.refreshes);
                        metrics::refresh(provider);
                    }
                    work.sends.push(request);
                }
                Output::Store(request) => {
                    bump(&self.counters.store_operations);
                    work.stores.push(request);
                }
                Output::Event(Event::Changed { key }) => {
                    if let Some(slot) = slots.get(&key) {
                        let servable = core.manager.servable(now, &key);
                        if let Some((token, _)) = servable {
                            let left = token.expires_at().saturating_duration_since(now);
                            metrics::seconds_left(
                                slot.provider(),
                                key.organization(),
                                left.as_secs_f64(),
                            );
                        }
                        slot.publish(servable, core.manager.on_probation(&key));
                    }
                }
                Output::Event(Event::Token { key, token }) => {
                    bump(&self.counters.tokens_cached);
                    let provider = provider_of(&core.manager, &key);
                    metrics::response(provider, true);
                    metrics::quota(provider, token.quota());
                    tracing::debug!(
                        organization = key.organization(),
                        lifetime_secs = token.lifetime().as_secs(),
                        source = ?token.lifetime_source(),
                        "token cached"
                    );
                    warn_if_low(token.quota());
                    work.notify.extend(slots.get(&key).cloned());
                }
                Output::Event(Event::Failed { key, error, .. }) => {
                    warn_if_low(error.quota());
                    bump(&self.counters.failures);
                    let provider = provider_of(&core.manager, &key);
                    metrics::response(provider, false);
                    metrics::failure(provider, error.is_retryable());
                    metrics::quota(provider, error.quota());
                    tracing::warn!(
                        organization = key.organization(),
                        %error,
                        retryable = error.is_retryable(),
                        "token fetch failed"
                    );
                    work.notify.extend(slots.get(&key).cloned());
                }
                Output::Event(Event::Evicted { key }) => {
                    if let Some(slot) = slots.get(&key) {
                        if Arc::strong_count(slot) == 1 {
                            // Nobody holds it: forget it with the key.
                            slots.remove(&key);
                        } else {
                            slot.publish(None, false);
                            work.notify.push(Arc::clone(slot));
                        }
                    }
                }
                Output::Event(_) => {}
                Output::Timeout(at) => {
                    if core.planned.is_none_or(|planned| at < planned) {
                        work.wake = true;
                    }
                    core.planned = Some(at);
                    break;
                }
            }
        }
        work
    }

    /// Hands on what a drain collected, with no lock held.
    fn execute(self: &Arc<Self>, work: Work) {
        for request in work.sends {
            self.executor.send(self, request);
        }
        for request in work.stores {
            self.store_outstanding.fetch_add(1, Ordering::AcqRel);
            self.executor.store(self, request);
        }
        for slot in work.notify {
            slot.notify();
        }
        if work.wake {
            self.executor.wake();
        }
        self.settled.notify(usize::MAX);
    }
}

/// Warns when a quota bucket has less than a tenth left (Auth0 meters machine-to-machine
/// tokens: this is the moment to look before it costs money or an outage).
fn warn_if_low(quota: Option<&token_core::Quota>) {
    for (bucket, b) in quota.into_iter().flat_map(token_core::Quota::buckets) {
        if b.low() {
            tracing::warn!(
                bucket,
                quota = b.quota,
                remaining = b.remaining,
                reset_secs = b.reset_secs,
                "token quota almost used up"
            );
        }
    }
}

/// The stable name of `key`'s provider (for metric labels).
fn provider_of(manager: &TokenManager, key: &TokenKey) -> &'static str {
    manager
        .client(key.client())
        .map_or("unknown", |c| c.provider().name())
}
