//! Test harness for the workspace's integration tests (not published).
//!
//! - [`redis`]: a real `redis-server` process per test, on a free loopback port, with faults
//!   (shutdown, restart empty) and a tiny RESP client to inspect or poke it.
//! - [`proxy`]: a loopback TCP proxy whose mode (pass-through, blackhole, reset) switches at
//!   run time, standing in for network partitions.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod proxy;
pub mod redis;
