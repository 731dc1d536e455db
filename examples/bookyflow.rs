//! BookyFlow (self-hosted): form body, required scopes, and the Channel Management Framework
//! header on every API request.
//!
//! `cargo run --example bookyflow` uses the embedded simulator, or your BookyFlow site when
//! `BOOKYFLOW_CLIENT_ID`, `BOOKYFLOW_CLIENT_SECRET` and `BOOKYFLOW_SITE` (e.g.
//! `https://yourdomain.com`) are set; `BOOKYFLOW_CHANNEL` names an announced CMF channel.

use examples::setup;
use provider_sim::{Preset, Provider};
use token_core::{ConfigError, presets};
use transport_ureq::TokenClient;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let channel = std::env::var("BOOKYFLOW_CHANNEL").unwrap_or_else(|_| "demo-channel".into());
    let setup = setup(
        "BOOKYFLOW",
        |sim| {
            let config = sim
                .preset(Preset::BookyFlow)
                .bookyflow_channel(&channel)
                .build()?;
            Ok((config, sim.api_url(Provider::BookyFlow)))
        },
        |creds| {
            let site = std::env::var("BOOKYFLOW_SITE")
                .map_err(|_| ConfigError::MissingEnv("BOOKYFLOW_SITE".into()))?;
            let config = presets::bookyflow(&site, creds, ["read"])
                .bookyflow_channel(&channel)
                .build()?;
            let api = format!("{}/bookyflow/api/properties", site.trim_end_matches('/'));
            Ok((config, api))
        },
    )?;
    let client = TokenClient::new();
    let bookyflow = client.register(setup.config);
    let request = http::Request::get(&setup.api_url).body(Vec::new())?;
    let mut response = bookyflow.call(request)?;
    println!(
        "GET /bookyflow/api/properties (channel {channel}) -> {}: {}",
        response.status(),
        response.body_mut().read_to_string()?
    );
    Ok(())
}
