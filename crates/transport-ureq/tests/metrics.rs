//! The `metrics` feature: what a recorder sees from a client against the simulator.

use provider_sim::{Preset, Simulator};
use token_testkit::metrics::TestRecorder;
use transport_ureq::{ManualClock, TokenClient};

#[test]
fn counters_and_gauges_reach_the_recorder() {
    let recorder = TestRecorder::global();
    let sim = Simulator::start().unwrap();
    let client = TokenClient::builder()
        .clock(ManualClock::starting_now())
        .build();
    let handle = client.register(sim.preset(Preset::Octorate).build().unwrap());
    for _ in 0..10 {
        handle.token().unwrap();
    }
    let names = recorder.names();
    let counter = |name: &str| recorder.counter(name);
    assert_eq!(
        counter("booking_tokens_token_requests_total{provider=octorate,target=access}"),
        1,
        "{names:?}"
    );
    assert_eq!(
        counter("booking_tokens_token_responses_total{outcome=token,provider=octorate}"),
        1
    );
    assert_eq!(
        counter("booking_tokens_cache_misses_total{provider=octorate}"),
        1
    );
    assert_eq!(
        counter("booking_tokens_cache_hits_total{provider=octorate}"),
        9
    );
    let left = recorder
        .gauge("booking_tokens_token_seconds_left{organization=,provider=octorate}")
        .expect("seconds-left gauge");
    assert!(left > 1400.0 && left <= 1440.0, "{left}");
    // The statistics snapshot counts the same.
    let stats = client.stats();
    assert_eq!(
        (stats.cache_hits, stats.cache_misses, stats.token_requests),
        (9, 1, 1)
    );
}
