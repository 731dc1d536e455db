//! Octorate octotable: the response names the token type `type`; nothing to do about it.
//!
//! `cargo run --example octorate` uses the embedded simulator, or Octorate when
//! `OCTORATE_CLIENT_ID` and `OCTORATE_CLIENT_SECRET` are set (then `OCTORATE_API_URL` names a
//! protected route to call).

use examples::{human, setup};
use provider_sim::{Preset, Provider};
use token_core::presets;
use transport_ureq::TokenClient;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let setup = setup(
        "OCTORATE",
        |sim| {
            let config = sim.preset(Preset::Octorate).build()?;
            Ok((config, sim.api_url(Provider::Octorate)))
        },
        |creds| {
            let url = std::env::var("OCTORATE_API_URL")
                .unwrap_or_else(|_| "https://api.octorate.com/octotable-pms/api/v2/".into());
            Ok((presets::octorate(creds).build()?, url))
        },
    )?;
    let client = TokenClient::new();
    let octorate = client.register(setup.config);
    let token = octorate.token()?;
    println!("Bearer token, lives {}.", human(token.lifetime()));
    let response = octorate.call(http::Request::get(&setup.api_url).body(Vec::new())?)?;
    println!("GET {} -> {}", setup.api_url, response.status());
    Ok(())
}
