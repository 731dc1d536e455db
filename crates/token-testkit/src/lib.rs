//! Test support shared by the workspace (`publish = false`).
//!
//! - [`sansio`]: a sans-IO fake token endpoint, a fake shared store and a virtual-time harness
//!   around `token_core::TokenManager`, for the core's tests (nothing sleeps: time is an
//!   `Instant` the test moves).
//! - [`metrics`]: a `metrics` recorder that keeps what it is given, for the metrics tests.
//! - [`redis`] and [`proxy`]: a real `redis-server` on a free loopback port (stopped on
//!   drop), and a TCP proxy that black-holes or resets connections on command.
//! - [`processes`]: tests that run as several processes (the test binary re-run as children).
//! - [`conformance`]: the transport scenarios, written once against the [`conformance::Transport`]
//!   trait and run by each transport's tests.

#![forbid(unsafe_code)]
#![allow(missing_docs, clippy::missing_panics_doc)]

pub mod conformance;
pub mod metrics;
pub mod processes;
pub mod proxy;
pub mod redis;
pub mod sansio;
