//! The protocol layer: how each provider wants its token requested and how to read what its
//! endpoint answers. Pure functions and values; nothing here knows about caching or time
//! beyond reading a JWT `exp` against a wall-clock time it is given. Never imports the
//! lifecycle.

pub mod authorization;
pub(crate) mod config;
pub(crate) mod error;
pub mod jwt;
pub mod presets;
pub mod quota;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod secret;
