//! The lifecycle layer: the token cache and its timers, as a deterministic state machine over
//! the protocol layer.

pub mod manager;
pub(crate) mod misuse;
pub(crate) mod token;
