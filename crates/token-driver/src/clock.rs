//! Where a transport gets the time: the system's clocks, or a [`ManualClock`] for tests.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use crate::lock;

/// A callback a clock that moves by hand calls whenever it moves.
pub type Wake = dyn Fn() + Send + Sync;

/// Where a transport gets the time. Inject a [`ManualClock`] to drive expiry in tests.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time, for scheduling.
    fn now(&self) -> Instant;

    /// Wall-clock time, only for JWT `exp` claims, HTTP-date `Retry-After` values and display.
    fn wall(&self) -> SystemTime;

    /// Clocks that move by hand call `wake` (while it is alive) whenever they move, so a timer
    /// worker sleeping until a deadline on this clock looks again. Real clocks move by
    /// themselves: the default does nothing.
    fn watch(&self, wake: Weak<Wake>) {
        let _ = wake;
    }
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

/// A clock that moves only when told to, for deterministic tests. Clones share the time. Timer
/// workers watching it are woken whenever it moves, so a test that advances it past a refresh
/// point sees the background refresh happen without anyone calling.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<ManualInner>);

#[derive(Default)]
struct Watchers(Vec<Weak<Wake>>);

impl std::fmt::Debug for Watchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} watchers", self.0.len())
    }
}

#[derive(Debug)]
struct ManualInner {
    time: Mutex<(Instant, SystemTime)>,
    watchers: Mutex<Watchers>,
}

impl ManualClock {
    /// Starts at the given instants.
    pub fn new(now: Instant, wall: SystemTime) -> Self {
        Self(Arc::new(ManualInner {
            time: Mutex::new((now, wall)),
            watchers: Mutex::new(Watchers::default()),
        }))
    }

    /// Starts at the system's current time.
    pub fn starting_now() -> Self {
        Self::new(Instant::now(), SystemTime::now())
    }

    /// Moves both clocks forward by `d`.
    pub fn advance(&self, d: Duration) {
        {
            let mut t = lock(&self.0.time);
            t.0 += d;
            t.1 += d;
        }
        self.moved();
    }

    /// Moves both clocks back by `d` (to test clock steps; the manager never lets time run
    /// backwards for its own decisions).
    pub fn step_back(&self, d: Duration) {
        {
            let mut t = lock(&self.0.time);
            t.0 = t.0.checked_sub(d).unwrap_or(t.0);
            t.1 = t.1.checked_sub(d).unwrap_or(t.1);
        }
        self.moved();
    }

    fn moved(&self) {
        // Call the watchers outside the lock: they take locks of their own.
        let alive: Vec<Arc<Wake>> = {
            let mut watchers = lock(&self.0.watchers);
            watchers.0.retain(|w| w.strong_count() > 0);
            watchers.0.iter().filter_map(Weak::upgrade).collect()
        };
        for wake in alive {
            wake();
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        lock(&self.0.time).0
    }

    fn wall(&self) -> SystemTime {
        lock(&self.0.time).1
    }

    fn watch(&self, wake: Weak<Wake>) {
        let mut watchers = lock(&self.0.watchers);
        watchers.0.retain(|w| w.strong_count() > 0);
        watchers.0.push(wake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn manual_clock_moves_only_when_told_and_wakes_its_watchers() {
        let c = ManualClock::starting_now();
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        let woken = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&woken);
        let wake: Arc<Wake> = Arc::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        c.watch(Arc::downgrade(&wake));
        c.advance(Duration::from_secs(5));
        assert_eq!(c.now() - t0, Duration::from_secs(5));
        c.step_back(Duration::from_secs(2));
        assert_eq!(c.now() - t0, Duration::from_secs(3));
        assert_eq!(woken.load(Ordering::Relaxed), 2);
        drop(wake);
        c.advance(Duration::from_secs(1));
        assert_eq!(
            woken.load(Ordering::Relaxed),
            2,
            "a dropped watcher is not called"
        );
    }
}
