//! A key's published token: what cache hits read, without the manager's lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use event_listener::{Event, EventListener};
use token_core::{Token, TokenKey};

use crate::local::{self, EXCLUSIVE, SEEN_WAYS};
use crate::stats::Striped;

/// One key's published token and its waiters. A handle holds its key's slot, so a cache hit is
/// a clock reading, one atomic load and a comparison: no map lookup, no lock, no allocation, and
/// (once a thread has seen the current publication) no atomic read-modify-write.
pub struct KeySlot {
    key: TokenKey,
    provider: &'static str,
    /// Unique among all slots of the process, ever: what a thread's [`Seen`] entries name.
    id: u64,
    /// Bumped after every change of `published` (under the manager's lock).
    generation: AtomicU64,
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
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self {
            key,
            provider,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
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

    /// Runs `f` on the servable token at `now`, if any, counting the hit in `hits`; hands `f`
    /// back on a miss. `touch` is called (once per published token) the first time a hit
    /// happens, so the manager learns the key is in use.
    #[inline]
    pub(crate) fn with_hit<R, F: FnOnce(&Token) -> R>(
        &self,
        now: Instant,
        hits: Option<&Striped>,
        touch: impl FnOnce(),
        f: F,
    ) -> Result<R, F> {
        let generation = self.generation.load(Ordering::Acquire);
        local::with(|local| {
            let Some(local) = local else {
                // The thread is exiting: the plain way.
                let guard = self.published.load();
                return match guard.as_deref().filter(|s| now < s.until) {
                    Some(servable) => {
                        if let Some(hits) = hits {
                            hits.bump_at(EXCLUSIVE);
                        }
                        Ok(Self::serve(servable, touch, f))
                    }
                    None => Err(f),
                };
            };
            // The publication this thread saw last, if the slot has not changed since: no
            // atomic read-modify-write at all (arc_swap's load takes two). It is taken out
            // while it is used, so `f` may use the cache again (it finds this entry empty).
            let seen = &local.seen[(self.id % SEEN_WAYS as u64) as usize];
            let mut servable = seen.servable.take();
            let current = seen.slot.get() == self.id + 1 && seen.generation.get() == generation;
            // Marked empty while taken: a hit inside `f` must not read "nothing published".
            seen.slot.set(0);
            if !current {
                // Loaded after the generation: at least as new (publish stores first).
                servable = self.published.load_full();
            }
            let hit = match servable.as_deref().filter(|s| now < s.until) {
                Some(servable) => {
                    if let Some(hits) = hits {
                        hits.bump_at(local.stripe());
                    }
                    Ok(Self::serve(servable, touch, f))
                }
                None => Err(f),
            };
            // (If `f` used this entry meanwhile, it named what it left there: put ours back
            // under our own name.)
            seen.slot.set(self.id + 1);
            seen.generation.set(generation);
            seen.servable.set(servable);
            hit
        })
    }

    #[inline]
    fn serve<R>(servable: &Servable, touch: impl FnOnce(), f: impl FnOnce(&Token) -> R) -> R {
        if !servable.touched.load(Ordering::Relaxed)
            && !servable.touched.swap(true, Ordering::Relaxed)
        {
            touch();
        }
        f(&servable.token)
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
            (Some(_), None) => {
                self.published.store(None);
                self.generation.fetch_add(1, Ordering::Release);
            }
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
                self.generation.fetch_add(1, Ordering::Release);
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
