//! Provider presets: each returns a [`ClientConfigBuilder`] already set up as the provider's
//! documentation describes, so `.build()` is usually all that is left. Every preset's endpoint
//! can be overridden with [`ClientConfigBuilder::token_url`] (tests, proxies, self-hosting).
//!
//! | preset | endpoint | body | client auth | extras |
//! |---|---|---|---|---|
//! | [`bookable`] | `https://auth.bookabletech.com/oauth/token` | JSON | in body | `audience=api.bookabletech.com` |
//! | [`bookable_sandbox`] | `https://auth-sandbox.bookabletech.com/oauth/token` | JSON | in body | same |
//! | [`bookable_auth0`] | `https://bookabletech.uk.auth0.com/oauth/token` | JSON | in body | same |
//! | [`bookingtime_app`] | `https://auth.bookingtime.com/oauth/token` | JSON | in body | refresh token → per-organization access token |
//! | [`bookingtime_module`] | same | JSON | id only, no secret | same |
//! | [`octorate`] | `https://api.octorate.com/octotable-pms/api/v2/oauth2/token` | JSON | in body | response says `type` |
//! | [`bookyflow`] | `{site}/bookyflow/api/oauth/token` | form | in body | `scope` required |
//! | [`generic`] | any | form | HTTP Basic | configure by hand |

use std::time::Duration;

use crate::protocol::config::{
    BodyEncoding, ClientAuth, ClientConfig, ClientConfigBuilder, Credentials, Flow, Provider,
};

/// Bookable production token endpoint.
pub const BOOKABLE_TOKEN_URL: &str = "https://auth.bookabletech.com/oauth/token";
/// Bookable sandbox token endpoint.
pub const BOOKABLE_SANDBOX_TOKEN_URL: &str = "https://auth-sandbox.bookabletech.com/oauth/token";
/// Bookable's older Auth0 tenant token endpoint.
pub const BOOKABLE_AUTH0_TOKEN_URL: &str = "https://bookabletech.uk.auth0.com/oauth/token";
/// The `audience` every Bookable token request carries.
pub const BOOKABLE_AUDIENCE: &str = "api.bookabletech.com";
/// bookingtime token endpoint.
pub const BOOKINGTIME_TOKEN_URL: &str = "https://auth.bookingtime.com/oauth/token";
/// Octorate octotable token endpoint.
pub const OCTORATE_TOKEN_URL: &str = "https://api.octorate.com/octotable-pms/api/v2/oauth2/token";
/// Path of BookyFlow's token endpoint under the site root.
pub const BOOKYFLOW_TOKEN_PATH: &str = "/bookyflow/api/oauth/token";

fn bookable_dialect(
    provider: Provider,
    url: &str,
    credentials: Credentials,
) -> ClientConfigBuilder {
    ClientConfig::builder(url, credentials)
        .provider(provider)
        .body_encoding(BodyEncoding::Json)
        .client_auth(ClientAuth::RequestBody)
        .audience(BOOKABLE_AUDIENCE)
        // "expires_in (typically 3600)"; used only if a response omits both expires_in and exp.
        .default_lifetime(Duration::from_secs(3600))
}

/// Bookable production. Credentials are usually
/// `Credentials::from_env("BOOKABLE")` (`BOOKABLE_CLIENT_ID` / `BOOKABLE_CLIENT_SECRET`).
pub fn bookable(credentials: Credentials) -> ClientConfigBuilder {
    bookable_dialect(Provider::Bookable, BOOKABLE_TOKEN_URL, credentials)
}

/// Bookable sandbox.
pub fn bookable_sandbox(credentials: Credentials) -> ClientConfigBuilder {
    bookable_dialect(
        Provider::BookableSandbox,
        BOOKABLE_SANDBOX_TOKEN_URL,
        credentials,
    )
}

/// Bookable's older Auth0 tenant. Its examples refresh 300 s before expiry; pass
/// `.refresh_window(Duration::from_secs(300))` to do the same (the default is 60 s).
pub fn bookable_auth0(credentials: Credentials) -> ClientConfigBuilder {
    bookable_dialect(
        Provider::BookableAuth0,
        BOOKABLE_AUTH0_TOKEN_URL,
        credentials,
    )
}

fn bookingtime_dialect(provider: Provider, credentials: Credentials) -> ClientConfigBuilder {
    ClientConfig::builder(BOOKINGTIME_TOKEN_URL, credentials)
        .provider(provider)
        // The doc's raw HTTP example sends JSON with a JSON content type; its other examples
        // pair that content type with form bodies. JSON is the consistent reading.
        .body_encoding(BodyEncoding::Json)
        .client_auth(ClientAuth::RequestBody)
        .flow(Flow::OrganizationExchange {
            parameter: "organization_id".to_owned(),
        })
        // Access tokens are valid 300 s; used only if a response says nothing.
        .default_lifetime(Duration::from_secs(300))
}

/// bookingtime App API: client id and secret give a 30-day refresh token, which plus an
/// organization id gives a 5-minute access token for that organization.
pub fn bookingtime_app(credentials: Credentials) -> ClientConfigBuilder {
    bookingtime_dialect(Provider::BookingtimeApp, credentials)
}

/// bookingtime Module API: like the App API, but the client secret is omitted.
pub fn bookingtime_module(client_id: impl Into<String>) -> ClientConfigBuilder {
    bookingtime_dialect(
        Provider::BookingtimeModule,
        Credentials::without_secret(client_id),
    )
}

/// Octorate octotable: JSON body with `Accept: application/json`; the response names the token
/// type `type` instead of `token_type`.
pub fn octorate(credentials: Credentials) -> ClientConfigBuilder {
    ClientConfig::builder(OCTORATE_TOKEN_URL, credentials)
        .provider(Provider::Octorate)
        .token_type_alias(true)
        .body_encoding(BodyEncoding::Json)
        .client_auth(ClientAuth::RequestBody)
        .default_lifetime(Duration::from_secs(1440))
}

/// BookyFlow, self-hosted: `site_root` is the site's root URL as in its doc
/// (`https://yourdomain.com`); the token endpoint is `{site_root}/bookyflow/api/oauth/token`.
/// Form body, credentials in the body, `scope` required (e.g. `["read", "write"]`). For the
/// Channel Management Framework add `.bookyflow_channel(name)`.
pub fn bookyflow<S: AsRef<str>>(
    site_root: &str,
    credentials: Credentials,
    scopes: impl IntoIterator<Item = S>,
) -> ClientConfigBuilder {
    let url = format!(
        "{}{BOOKYFLOW_TOKEN_PATH}",
        site_root.trim().trim_end_matches('/')
    );
    ClientConfig::builder(url, credentials)
        .provider(Provider::BookyFlow)
        .body_encoding(BodyEncoding::Form)
        .client_auth(ClientAuth::RequestBody)
        .scopes(scopes)
        .require_scopes()
        // "Tokens expire after 1 hour".
        .default_lifetime(Duration::from_secs(3600))
}

/// Any RFC 6749 client-credentials endpoint, configured by hand (same as
/// [`ClientConfig::builder`]).
pub fn generic(token_url: impl Into<String>, credentials: Credentials) -> ClientConfigBuilder {
    ClientConfig::builder(token_url, credentials)
}
