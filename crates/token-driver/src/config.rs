//! The settings every transport takes, and the builder methods that set them, written once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use token_core::ManagerConfig;

use crate::clock::{Clock, SystemClock};

/// Default overall timeout of one token request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default connect timeout of one token request.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on token requests (and store operations) in progress at once per client.
pub const DEFAULT_MAX_CONCURRENT: usize = 16;

/// The settings every transport takes, with their defaults; each transport's builder sets these
/// (through [`transport_builder_settings!`](crate::transport_builder_settings)) and adds its own
/// HTTP client and store settings.
#[derive(Clone)]
#[non_exhaustive]
pub struct TransportConfig {
    /// Lifecycle tunables (refresh window, backoff, ...).
    pub manager: ManagerConfig,
    /// Overall timeout of one token request (default 30 s).
    pub timeout: Duration,
    /// Connect timeout of one token request (default 10 s).
    pub connect_timeout: Duration,
    /// Token requests and store operations in progress at once, at most (default 16): a
    /// bookingtime fan-out to thousands of organizations goes out in parallel, this many at a
    /// time, each timed from its own send.
    pub max_concurrent: usize,
    /// The clock (default: the system's).
    pub clock: Arc<dyn Clock>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            manager: ManagerConfig::default(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportConfig")
            .field("manager", &self.manager)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_concurrent", &self.max_concurrent)
            .finish_non_exhaustive()
    }
}

impl TransportConfig {
    /// The manager configuration a driver runs: the request timeout is raised above the
    /// transport's own timeout if needed, so the manager never abandons a request the transport
    /// is still legitimately waiting on.
    pub fn manager_config(&self) -> ManagerConfig {
        let mut manager = self.manager.clone();
        let floor = self.timeout + Duration::from_secs(5);
        if manager.request_timeout < floor {
            manager.request_timeout = floor;
        }
        manager
    }
}

/// Generates the builder methods for a transport builder's [`TransportConfig`] (a field named
/// `config`), so both transports offer the same settings with the same documentation.
#[macro_export]
macro_rules! transport_builder_settings {
    () => {
        /// Lifecycle tunables (refresh window, backoff, ...).
        pub fn manager_config(mut self, config: $crate::token_core::ManagerConfig) -> Self {
            self.config.manager = config;
            self
        }

        /// Overall timeout of one token request (default 30 s).
        pub fn timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.config.timeout = timeout;
            self
        }

        /// Connect timeout of one token request (default 10 s).
        pub fn connect_timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.config.connect_timeout = timeout;
            self
        }

        /// Token requests and store operations in progress at once, at most (default 16; at
        /// least 1).
        pub fn max_concurrent(mut self, max: usize) -> Self {
            self.config.max_concurrent = max.max(1);
            self
        }

        /// The clock (default: the system's). Inject a [`ManualClock`]($crate::ManualClock) to
        /// test expiry: the background refresh follows it.
        pub fn clock(mut self, clock: impl $crate::Clock) -> Self {
            self.config.clock = ::std::sync::Arc::new(clock);
            self
        }
    };
}
