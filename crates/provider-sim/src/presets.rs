//! token-core presets pointed at a running simulator, with the simulator's credentials: what a
//! test needs to drive a real client against it.

use token_core::{ClientConfigBuilder, ClientSecret, Credentials, presets};

use crate::{CLIENT_ID, CLIENT_SECRET, MODULE_CLIENT_ID, Provider, Simulator};

/// A token-core preset, named by the provider it configures: `token_core::Provider`.
pub type Preset = token_core::Provider;

impl From<Preset> for Provider {
    /// The simulated provider a token-core preset talks to (both bookingtime presets talk to
    /// the one bookingtime endpoint).
    fn from(preset: Preset) -> Provider {
        match preset {
            Preset::Bookable => Provider::Bookable,
            Preset::BookableSandbox => Provider::BookableSandbox,
            Preset::BookableAuth0 => Provider::BookableAuth0,
            Preset::BookingtimeApp | Preset::BookingtimeModule => Provider::Bookingtime,
            Preset::Octorate => Provider::Octorate,
            Preset::BookyFlow => Provider::BookyFlow,
            // Generic, and any provider token-core adds later: an RFC 6749 endpoint.
            _ => Provider::Generic,
        }
    }
}

impl Simulator {
    /// A configuration of `provider` for users' grants (the Authorization Code flow with
    /// PKCE): the public client [`PUBLIC_CLIENT_ID`](crate::PUBLIC_CLIENT_ID) (no secret), the
    /// simulator's authorization endpoint and issuer. `None` for providers without an
    /// authorization endpoint.
    pub fn public_preset(&self, provider: Provider) -> Option<ClientConfigBuilder> {
        let authorize = self.authorize_url(provider)?;
        let credentials = Credentials::without_secret(crate::PUBLIC_CLIENT_ID);
        let builder = match provider {
            Provider::Bookingtime => presets::bookingtime_app(credentials),
            _ => presets::generic(self.token_url(provider), credentials),
        };
        Some(
            builder
                .token_url(self.token_url(provider))
                .authorization_endpoint(authorize)
                .issuer(self.issuer(provider)),
        )
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
        let url = self.token_url(Provider::from(preset));
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
            _ => presets::generic(url, credentials()),
        }
    }
}
