//! `ClientHandle::with_token` and `TokenClient::with_token`: a hit borrows the cached token; a
//! miss (first use, past expiry) fetches and borrows the new one.

use std::time::Duration;

use provider_sim::{Preset, Provider, Simulator};
use transport_ureq::{ManualClock, TokenClient};

fn secret(t: &token_core::Token) -> String {
    t.access_token().secret().to_owned()
}

#[test]
fn with_token_hits_the_cache_and_falls_back_on_a_miss() {
    let sim = Simulator::start().expect("simulator starts");
    sim.set_token_lifetime(Provider::Bookable, 60);
    let clock = ManualClock::starting_now();
    let client = TokenClient::builder()
        .clock(clock.clone())
        .timeout(Duration::from_secs(10))
        .build();
    let handle = client.register(sim.preset(Preset::Bookable).build().unwrap());

    // A miss: the first token is fetched, and the closure borrows it.
    let first = handle.with_token(secret).expect("fetched");
    assert_eq!(sim.token_requests(Provider::Bookable), 1);
    assert_eq!(first, secret(&handle.token().unwrap()));

    // Hits: the cached token, no request, counted as cache hits.
    let hits = client.stats().cache_hits;
    for _ in 0..10 {
        assert_eq!(handle.with_token(secret).unwrap(), first);
        assert_eq!(client.with_token(handle.key(), secret).unwrap(), first);
    }
    assert_eq!(sim.token_requests(Provider::Bookable), 1);
    assert!(client.stats().cache_hits >= hits + 20);

    // Past expiry: a miss again, which fetches a new token.
    clock.advance(Duration::from_secs(120));
    let second = handle.with_token(secret).expect("refetched");
    assert_ne!(second, first);
    assert_eq!(sim.token_requests(Provider::Bookable), 2);
    assert_eq!(client.with_token(handle.key(), secret).unwrap(), second);
    assert_eq!(sim.token_requests(Provider::Bookable), 2);
}

#[test]
fn token_client_with_token_fetches_on_first_use() {
    let sim = Simulator::start().expect("simulator starts");
    let client = TokenClient::builder()
        .clock(ManualClock::starting_now())
        .timeout(Duration::from_secs(10))
        .build();
    let handle = client.register(sim.preset(Preset::Bookable).build().unwrap());
    let t = client.with_token(handle.key(), secret).expect("fetched");
    assert_eq!(sim.token_requests(Provider::Bookable), 1);
    assert_eq!(handle.with_token(secret).unwrap(), t);
    assert_eq!(sim.token_requests(Provider::Bookable), 1);
}
