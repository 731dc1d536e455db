//! bookingtime: one 30-day refresh token, shared by every organization's 5-minute access token.
//!
//! `cargo run --example bookingtime` uses the embedded simulator, or bookingtime when
//! `BOOKINGTIME_CLIENT_ID`, `BOOKINGTIME_CLIENT_SECRET` and `BOOKINGTIME_ORGANIZATION_ID` are set.

use examples::{human, setup};
use provider_sim::{ORGANIZATIONS, Preset};
use token_core::{ConfigError, presets};
use transport_ureq::TokenClient;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let real_org = std::env::var("BOOKINGTIME_ORGANIZATION_ID").ok();
    let setup = setup(
        "BOOKINGTIME",
        |sim| {
            let config = sim.preset(Preset::BookingtimeApp).build()?;
            Ok((config, sim.org_api_url(ORGANIZATIONS[0])))
        },
        |creds| {
            let org = real_org.clone().ok_or(ConfigError::MissingEnv(
                "BOOKINGTIME_ORGANIZATION_ID".into(),
            ))?;
            let url = format!("https://api.bookingtime.com/app/v3/de/organization/{org}/show");
            Ok((presets::bookingtime_app(creds).build()?, url))
        },
    )?;
    let organizations: Vec<String> = match (&setup.real, &real_org) {
        (true, Some(org)) => vec![org.clone()],
        _ => ORGANIZATIONS.iter().map(|o| o.to_string()).collect(),
    };
    let client = TokenClient::new();
    let bookingtime = client.register(setup.config);
    for org in &organizations {
        let url = setup.api_url.replace(ORGANIZATIONS[0], org);
        let handle = bookingtime.organization(org);
        let response = handle.call(http::Request::get(&url).body(Vec::new())?)?;
        let token = handle.token()?;
        println!(
            "{org}: GET .../organization/{org}/show -> {} (token lives {})",
            response.status(),
            human(token.lifetime())
        );
    }
    println!(
        "{} token requests for {} organizations: one refresh token, then one access token each.",
        client.driver().token_requests(),
        organizations.len()
    );
    Ok(())
}
