//! What the token transports (`transport-ureq`, `transport-reqwest`) share, written once.
//!
//! A transport owns the sockets, the clock and a timer worker; everything else it needs from a
//! token lifecycle is the same whether it blocks or awaits:
//! - [`Clock`], with [`SystemClock`] and a [`ManualClock`] for tests (a timer worker sleeping on
//!   a manual clock wakes when the test moves it);
//! - [`TransportConfig`] and [`transport_builder_settings!`], the settings both builders offer;
//! - the transports' [`Error`];
//! - [`Driver`]: a [`TokenManager`](token_core::TokenManager) behind a mutex, each key's
//!   published token in a [`KeySlot`], and the one place where the manager's output is drained.
//!   A cache hit reads the key's slot: one atomic load, a clock reading, no lock, no
//!   allocation, and the manager hears about the first hit on each token (so the key counts as
//!   in use and is refreshed in the background). A miss takes one step under the manager's
//!   mutex. Requests and store operations go to the transport's [`Executor`] with no lock held;
//!   waiters are woken per key. The transport's timer worker calls [`Driver::run_timers`] and
//!   sleeps until the instant it returns (or until [`Executor::wake`]), so refreshes happen
//!   before any caller needs them;
//! - [`HandleCore`], the handle accessors both transports share, [`request_span`], and the
//!   store interfaces [`BlockingStore`] and [`AsyncStore`].
//!
//! The driver never reads the clock itself: it asks the [`Clock`] it was given.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod body;
mod clock;
mod config;
mod driver;
mod error;
mod handle;
mod local;
mod metrics;
mod report;
mod slot;
mod span;
mod stats;
mod store;

use std::sync::{Mutex, MutexGuard};

pub use body::{push_capped, read_capped};
pub use clock::{Clock, ManualClock, SystemClock, Wake};
pub use config::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CONCURRENT, DEFAULT_TIMEOUT, TransportConfig,
};
pub use driver::{Driver, Executor};
pub use error::Error;
pub use event_listener;
pub use handle::HandleCore;
pub use report::Report;
pub use slot::KeySlot;
pub use span::request_span;
pub use stats::Stats;
pub use store::{AsyncStore, BlockingStore, StoreFuture};
pub use token_core;

/// Locks a mutex, recovering the data if a panicking thread poisoned it: the state behind
/// every mutex here stays consistent between statements, so a poisoned lock is still usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
