//! Bookable: one cached token for every `GET /venues`, refreshed 60 s before expiry.
//!
//! `cargo run --example bookable` uses the embedded simulator, or Bookable's sandbox when
//! `BOOKABLE_CLIENT_ID` and `BOOKABLE_CLIENT_SECRET` are set.

use examples::{human, setup};
use provider_sim::{Preset, Provider};
use token_core::presets;
use transport_ureq::TokenClient;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let setup = setup(
        "BOOKABLE",
        |sim| {
            let config = sim.preset(Preset::Bookable).build()?;
            Ok((config, sim.api_url(Provider::Bookable)))
        },
        |creds| {
            let config = presets::bookable_sandbox(creds).build()?;
            Ok((config, "https://api.bookabletech.com/venues".into()))
        },
    )?;
    let client = TokenClient::new();
    let bookable = client.register(setup.config);
    for _ in 0..3 {
        let request = http::Request::get(&setup.api_url).body(Vec::new())?;
        let mut response = bookable.call(request)?;
        let body = response.body_mut().read_to_string()?;
        println!(
            "GET /venues -> {} ({} bytes)",
            response.status(),
            body.len()
        );
    }
    let token = bookable.token()?;
    println!(
        "{} token request(s) for 3 calls; the token lives {} and is refreshed {} before expiry.",
        client.driver().token_requests(),
        human(token.lifetime()),
        human(token.expires_at() - token.refresh_at()),
    );
    Ok(())
}
