//! Our two transports and the simulator, set up the same way for every bench.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use provider_sim::{Preset, Simulator};
use token_core::ClientConfig;
use transport_ureq::{Clock, ManualClock};

/// A running simulator.
pub fn simulator() -> Simulator {
    Simulator::start().expect("the simulator starts on loopback")
}

/// `preset` pointed at `sim`.
pub fn config(sim: &Simulator, preset: Preset) -> ClientConfig {
    sim.preset(preset).build().expect("a valid preset")
}

/// A blocking client, on the system clock or on `clock`.
pub fn ureq_client(clock: Option<&ManualClock>) -> transport_ureq::TokenClient {
    let builder = transport_ureq::TokenClient::builder();
    match clock {
        Some(clock) => builder.clock(clock.clone()).build(),
        None => builder.build(),
    }
}

/// An async client, on the system clock or on `clock`.
pub fn reqwest_client(clock: Option<&ManualClock>) -> transport_reqwest::TokenClient {
    let builder = transport_reqwest::TokenClient::builder();
    match clock {
        Some(clock) => builder.clock(clock.clone()),
        None => builder,
    }
    .build()
    .expect("a reqwest token client")
}

/// A current-thread tokio runtime with IO and time.
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A multi-thread tokio runtime with `workers` workers, IO and time.
pub fn multi_thread(workers: usize) -> Arc<tokio::runtime::Runtime> {
    Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .expect("a tokio runtime"),
    )
}

/// How long a token from the simulator stays fresh with the default 60 s refresh window.
pub const FRESH_FOR: Duration = Duration::from_secs(3540);

/// The system clock plus an offset that only grows: time moves on by itself and can be pushed
/// forward, and reading it takes no lock (`ManualClock` locks a mutex on every read, which would
/// put a contended lock on the measured path of the multi-threaded benches). Clones share the
/// offset.
#[derive(Clone, Debug, Default)]
pub struct OffsetClock(Arc<AtomicU64>);

impl OffsetClock {
    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    fn offset(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Instant {
        Instant::now() + self.offset()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now() + self.offset()
    }
}

/// A blocking client on `clock`.
pub fn ureq_client_on(clock: impl Clock) -> transport_ureq::TokenClient {
    transport_ureq::TokenClient::builder().clock(clock).build()
}

/// An async client on `clock`.
pub fn reqwest_client_on(clock: impl Clock) -> transport_reqwest::TokenClient {
    transport_reqwest::TokenClient::builder()
        .clock(clock)
        .build()
        .expect("a reqwest token client")
}
