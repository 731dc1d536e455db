//! Any RFC 6749 client-credentials endpoint, configured by hand: form body, HTTP Basic client
//! authentication, scopes, audience and extra parameters.
//!
//! `cargo run --example generic` uses the embedded simulator, or your endpoint when
//! `TOKEN_CLIENT_ID`, `TOKEN_CLIENT_SECRET` and `TOKEN_URL` are set (`TOKEN_API_URL` names a
//! protected route to call).

use examples::{human, setup};
use provider_sim::{Preset, Provider};
use token_core::{ConfigError, presets};
use transport_ureq::TokenClient;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let setup = setup(
        "TOKEN",
        |sim| {
            let config = sim.preset(Preset::Generic).scopes(["read"]).build()?;
            Ok((config, sim.api_url(Provider::Generic)))
        },
        |creds| {
            let url = std::env::var("TOKEN_URL")
                .map_err(|_| ConfigError::MissingEnv("TOKEN_URL".into()))?;
            let api = std::env::var("TOKEN_API_URL")
                .map_err(|_| ConfigError::MissingEnv("TOKEN_API_URL".into()))?;
            Ok((presets::generic(url, creds).scopes(["read"]).build()?, api))
        },
    )?;
    let client = TokenClient::new();
    let api = client.register(setup.config);
    let token = api.token()?;
    println!(
        "token: lives {}, scopes {:?}",
        human(token.lifetime()),
        token.scopes().map(|s| s.to_string())
    );
    let response = api.call(http::Request::get(&setup.api_url).body(Vec::new())?)?;
    println!("GET {} -> {}", setup.api_url, response.status());
    Ok(())
}
