//! The async transport in ten lines: many tasks, one token request.
//!
//! `cargo run --example async_usage` (embedded simulator, no credentials).

use provider_sim::{Preset, Provider, Simulator};
use transport_reqwest::TokenClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sim = Simulator::start()?;
    let client = TokenClient::new()?;
    let bookable = client.register(sim.preset(Preset::Bookable).build()?);
    let http = transport_reqwest::http_client_builder().build()?;

    let calls: Vec<_> = (0..100)
        .map(|_| {
            let (bookable, request) = (bookable.clone(), http.get(sim.api_url(Provider::Bookable)));
            tokio::spawn(async move { bookable.send(request).await.map(|r| r.status()) })
        })
        .collect();
    for call in calls {
        assert!(call.await??.is_success());
    }
    println!(
        "100 concurrent API calls, {} token request.",
        sim.token_requests(Provider::Bookable)
    );
    Ok(())
}
