//! A key's published token: what cache hits read, without the manager's lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use event_listener::{Event, EventListener};
use token_core::{Token, TokenKey};

/// One key's published token and its waiters. A handle holds its key's slot, so a cache hit is
/// one atomic load, a clock reading and a comparison: no map lookup, no lock, no allocation.
pub struct KeySlot {
    key: TokenKey,
    provider: &'static str,
    published: ArcSwapOption<Servable>,
    changed: Event,
    pub(crate) hits: crate::metrics::HitCounter,
}

impl std::fmt::Debug for KeySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySlot")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A token a cache hit may serve until `until` (see
/// [`TokenManager::servable`](token_core::TokenManager::servable)).
pub(crate) struct Servable {
    pub(crate) token: Token,
    pub(crate) until: Instant,
    /// A hit on this token has been reported to the manager.
    pub(crate) touched: AtomicBool,
    /// The API rejected one of the key's tokens since it last accepted one: report acceptances.
    pub(crate) probation: bool,
}

impl KeySlot {
    pub(crate) fn new(key: TokenKey, provider: &'static str) -> Self {
        Self {
            key,
            provider,
            published: ArcSwapOption::empty(),
            changed: Event::new(),
            hits: crate::metrics::HitCounter::new(provider),
        }
    }

    /// The provider of the key's client (its stable name).
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// The key.
    pub fn key(&self) -> &TokenKey {
        &self.key
    }

    /// Runs `f` on the servable token at `now`, if any; `touch` is called (once per published
    /// token) the first time a hit happens, so the manager learns the key is in use.
    #[inline]
    pub(crate) fn with_hit<R>(
        &self,
        now: Instant,
        touch: impl FnOnce(),
        f: impl FnOnce(&Servable) -> R,
    ) -> Option<R> {
        let guard = self.published.load();
        let servable = guard.as_deref().filter(|s| now < s.until)?;
        if !servable.touched.load(Ordering::Relaxed)
            && !servable.touched.swap(true, Ordering::Relaxed)
        {
            touch();
        }
        Some(f(servable))
    }

    /// Whether the published token is on probation (see [`Servable::probation`]).
    pub(crate) fn probation(&self) -> bool {
        self.published
            .load()
            .as_deref()
            .is_some_and(|s| s.probation)
    }

    /// Publishes what the manager says the key may serve. Called with the manager locked, so
    /// publications never race. Keeps the current publication when nothing changed.
    pub(crate) fn publish(&self, wanted: Option<(&Token, Instant)>, probation: bool) {
        let current = self.published.load();
        match (current.as_deref(), wanted) {
            (None, None) => {}
            (Some(_), None) => self.published.store(None),
            (Some(s), Some((token, until)))
                if s.token.same_as(token) && s.until == until && s.probation == probation => {}
            (current, Some((token, until))) => {
                let touched = current
                    .is_some_and(|s| s.token.same_as(token) && s.touched.load(Ordering::Relaxed));
                self.published.store(Some(Arc::new(Servable {
                    token: token.clone(),
                    until,
                    touched: AtomicBool::new(touched),
                    probation,
                })));
            }
        }
    }

    /// Registers for the next change of this key (a token arrived, a fetch failed, the key was
    /// forgotten). Register before looking, so a change in between is not missed.
    pub fn listen(&self) -> EventListener {
        self.changed.listen()
    }

    pub(crate) fn notify(&self) {
        self.changed.notify(usize::MAX);
    }
}
