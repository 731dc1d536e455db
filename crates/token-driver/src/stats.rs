//! Counters of what a client did, for users without a metrics recorder (and for tests).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A counter many threads bump at once without sharing a cache line: one stripe per thread
/// (threads beyond the stripe count share), summed on read.
#[derive(Default)]
pub(crate) struct Striped([Padded; STRIPES]);

const STRIPES: usize = 16;

#[derive(Default)]
#[repr(align(64))]
struct Padded(AtomicU64);

fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES);
        }
        s.get()
    })
}

impl Striped {
    #[inline]
    pub(crate) fn bump(&self) {
        self.0[stripe()].0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.iter().map(|p| p.0.load(Ordering::Relaxed)).sum()
    }
}

/// What a client did since it was built. Every count is monotonic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Tokens served from the cache without asking the manager.
    pub cache_hits: u64,
    /// Calls that had to ask the manager (no token, or one due for refresh).
    pub cache_misses: u64,
    /// Calls that had to wait for a fetch (a key's first token, or after it expired). In steady
    /// state this stays still: refreshes happen in the background.
    pub waits: u64,
    /// Token requests sent to token endpoints (all keys, access and refresh tokens).
    pub token_requests: u64,
    /// Of those, requests for a key that already had a token (refreshes).
    pub refreshes: u64,
    /// Tokens cached (fetched, or loaded from a shared store).
    pub tokens_cached: u64,
    /// Fetches that failed (the key backs off).
    pub failures: u64,
    /// Operations sent to a shared store.
    pub store_operations: u64,
    /// Store operations that failed or timed out.
    pub store_failures: u64,
}

/// The live counters behind [`Stats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) cache_hits: Striped,
    pub(crate) cache_misses: AtomicU64,
    pub(crate) waits: AtomicU64,
    pub(crate) token_requests: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) tokens_cached: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) store_operations: AtomicU64,
    pub(crate) store_failures: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            cache_hits: self.cache_hits.get(),
            cache_misses: get(&self.cache_misses),
            waits: get(&self.waits),
            token_requests: get(&self.token_requests),
            refreshes: get(&self.refreshes),
            tokens_cached: get(&self.tokens_cached),
            failures: get(&self.failures),
            store_operations: get(&self.store_operations),
            store_failures: get(&self.store_failures),
        }
    }
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn striped_counts_from_many_threads_add_up() {
        let c = std::sync::Arc::new(Striped::default());
        let threads: Vec<_> = (0..20)
            .map(|_| {
                let c = std::sync::Arc::clone(&c);
                std::thread::spawn(move || (0..1000).for_each(|_| c.bump()))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(c.get(), 20_000);
    }
}
