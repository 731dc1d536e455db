//! Counters of what a client did, for users without a metrics recorder (and for tests).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::local::EXCLUSIVE;

/// A counter many threads bump at once without sharing a cache line: a stripe per thread,
/// summed on read. The first [`EXCLUSIVE`] threads alive at once each own a stripe and bump it
/// with a plain load and store (no atomic read-modify-write: one writer); further threads share
/// one stripe and add atomically.
#[derive(Default)]
pub(crate) struct Striped([Padded; EXCLUSIVE + 1]);

#[derive(Default)]
#[repr(align(64))]
struct Padded(AtomicU64);

impl Striped {
    /// Bumps this thread's stripe.
    #[cfg(test)]
    pub(crate) fn bump(&self) {
        crate::local::with(|local| {
            self.bump_at(local.map_or(EXCLUSIVE, crate::local::Local::stripe))
        });
    }

    /// Bumps stripe `i`, which is this thread's ([`Local::stripe`]).
    #[inline]
    pub(crate) fn bump_at(&self, i: usize) {
        let counter = &self.0[i.min(EXCLUSIVE)].0;
        if i < EXCLUSIVE {
            counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        } else {
            counter.fetch_add(1, Ordering::Relaxed);
        }
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

#[cfg(test)]
mod striped_tests {
    use super::Striped;
    use std::sync::{Arc, Barrier};

    /// Exact whatever the threads: more at once than there are owned stripes, and many more
    /// over time than that (stripes are handed on when threads exit).
    #[test]
    fn striped_counts_are_exact() {
        let counter = Arc::new(Striped::default());
        let threads = 40;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (counter, barrier) = (Arc::clone(&counter), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..10_000 {
                        counter.bump();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(counter.get(), 400_000);
        for _ in 0..100 {
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || counter.bump()).join().unwrap();
        }
        assert_eq!(counter.get(), 400_100);
    }
}
