//! The lifecycle layer: the token cache, its timers, refresh-token grants and the shared
//! store channel, as a deterministic state machine over the protocol layer.

pub(crate) mod fetch;
pub(crate) mod ids;
pub mod manager;
pub(crate) mod misuse;
pub(crate) mod output;
pub(crate) mod schedule;
pub mod store;
pub(crate) mod timers;
pub(crate) mod token;
