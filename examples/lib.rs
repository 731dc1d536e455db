//! Shared bits of the examples, and the README's code blocks as doctests.

use std::time::Duration;

/// "59m 0s", "4m 0s", "30d 0h": the two largest units.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

use provider_sim::Simulator;
use token_core::{ClientConfig, ConfigError, Credentials};

/// Where an example's tokens and API calls go.
pub struct Setup {
    /// The client configuration.
    pub config: ClientConfig,
    /// A protected API route to call.
    pub api_url: String,
    /// Whether this is the real provider (credentials were in the environment).
    pub real: bool,
    /// Keeps the simulator running when one is used.
    pub simulator: Option<Simulator>,
}

/// The real provider when `{prefix}_CLIENT_ID` and `{prefix}_CLIENT_SECRET` (and whatever else
/// `real` needs) are in the environment; otherwise the embedded simulator, configured by `sim`.
/// Each closure returns the configuration and a protected API route to call.
pub fn setup(
    prefix: &str,
    sim: impl FnOnce(&Simulator) -> Result<(ClientConfig, String), ConfigError>,
    real: impl FnOnce(Credentials) -> Result<(ClientConfig, String), ConfigError>,
) -> Result<Setup, Box<dyn std::error::Error>> {
    if let Ok(creds) = Credentials::from_env(prefix) {
        let (config, api_url) = real(creds)?;
        println!(
            "Using the real {} endpoint ({prefix}_* is set).",
            config.provider()
        );
        return Ok(Setup {
            config,
            api_url,
            real: true,
            simulator: None,
        });
    }
    let simulator = Simulator::start()?;
    println!(
        "{prefix}_CLIENT_ID / {prefix}_CLIENT_SECRET not set: using the embedded simulator at {}.",
        simulator.base_url()
    );
    let (config, api_url) = sim(&simulator)?;
    Ok(Setup {
        config,
        api_url,
        real: false,
        simulator: Some(simulator),
    })
}

/// The README's code blocks, compiled (and, where they need no credentials, run) by
/// `cargo test --doc -p examples`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
