//! token-core presets pointed at a running simulator, with the simulator's credentials: what a
//! test needs to drive a real client against it.

use token_core::{ClientConfigBuilder, ClientSecret, Credentials, presets};

use crate::{CLIENT_ID, CLIENT_SECRET, MODULE_CLIENT_ID, Provider, Simulator};

/// Every token-core preset the simulator can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Preset {
    /// `presets::bookable`.
    Bookable,
    /// `presets::bookable_sandbox`.
    BookableSandbox,
    /// `presets::bookable_auth0`.
    BookableAuth0,
    /// `presets::bookingtime_app` (needs organizations).
    BookingtimeApp,
    /// `presets::bookingtime_module` (needs organizations).
    BookingtimeModule,
    /// `presets::octorate`.
    Octorate,
    /// `presets::bookyflow` with scope `read`.
    BookyFlow,
    /// `presets::generic` with HTTP Basic client authentication.
    Generic,
}

impl Preset {
    /// All presets.
    pub const ALL: [Preset; 8] = [
        Preset::Bookable,
        Preset::BookableSandbox,
        Preset::BookableAuth0,
        Preset::BookingtimeApp,
        Preset::BookingtimeModule,
        Preset::Octorate,
        Preset::BookyFlow,
        Preset::Generic,
    ];

    /// The simulated provider this preset talks to.
    pub fn provider(self) -> Provider {
        match self {
            Preset::Bookable => Provider::Bookable,
            Preset::BookableSandbox => Provider::BookableSandbox,
            Preset::BookableAuth0 => Provider::BookableAuth0,
            Preset::BookingtimeApp | Preset::BookingtimeModule => Provider::Bookingtime,
            Preset::Octorate => Provider::Octorate,
            Preset::BookyFlow => Provider::BookyFlow,
            Preset::Generic => Provider::Generic,
        }
    }

    /// True for the bookingtime presets, whose tokens are per organization.
    pub fn needs_organization(self) -> bool {
        matches!(self, Preset::BookingtimeApp | Preset::BookingtimeModule)
    }
}

/// The simulator's confidential-client credentials.
pub fn credentials() -> Credentials {
    Credentials::new(CLIENT_ID, ClientSecret::new(CLIENT_SECRET))
}

impl Simulator {
    /// The token-core preset for `preset`, pointed at this simulator (plain HTTP to loopback,
    /// which token-core allows) with the simulator's credentials. Adjust it further before
    /// `.build()` if a test needs to.
    pub fn preset(&self, preset: Preset) -> ClientConfigBuilder {
        let url = self.token_url(preset.provider());
        match preset {
            Preset::Bookable => presets::bookable(credentials()).token_url(url),
            Preset::BookableSandbox => presets::bookable_sandbox(credentials()).token_url(url),
            Preset::BookableAuth0 => presets::bookable_auth0(credentials()).token_url(url),
            Preset::BookingtimeApp => presets::bookingtime_app(credentials()).token_url(url),
            Preset::BookingtimeModule => {
                presets::bookingtime_module(MODULE_CLIENT_ID).token_url(url)
            }
            Preset::Octorate => presets::octorate(credentials()).token_url(url),
            Preset::BookyFlow => {
                presets::bookyflow(&self.bookyflow_site(), credentials(), ["read"])
            }
            Preset::Generic => presets::generic(url, credentials()),
        }
    }
}
