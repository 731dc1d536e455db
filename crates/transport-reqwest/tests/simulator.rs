//! What only transport-reqwest has, against the provider simulator on loopback: 1,000 tasks,
//! cancellation, both runtime flavours, the reqwest-middleware integration. The scenarios both
//! transports share are in `conformance.rs`.

use std::sync::Arc;
use std::time::Duration;

use provider_sim::{Fault, Preset, Provider, Simulator};
use transport_reqwest::{ClientHandle, ManualClock, TokenClient};

fn client(clock: &ManualClock, timeout: Duration) -> TokenClient {
    TokenClient::builder()
        .clock(clock.clone())
        .timeout(timeout)
        .build()
        .expect("client builds")
}

fn handle(sim: &Simulator, client: &TokenClient, preset: Preset) -> ClientHandle {
    client.register(sim.preset(preset).build().expect("preset builds"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tasks_one_token_request() {
    let sim = Simulator::start().unwrap();
    let clock = ManualClock::starting_now();
    let client = client(&clock, Duration::from_secs(10));
    let handle = handle(&sim, &client, Preset::Bookable);
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let handle = handle.clone();
            tokio::spawn(async move { handle.token().await.unwrap() })
        })
        .collect();
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap());
    }
    assert_eq!(sim.token_requests(Provider::Bookable), 1);
    assert!(tokens.iter().all(|t| t.same_as(&tokens[0])));
}

#[test]
fn works_on_a_current_thread_runtime() {
    let sim = Simulator::start().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let clock = ManualClock::starting_now();
        let client = client(&clock, Duration::from_secs(10));
        let handle = handle(&sim, &client, Preset::Octorate);
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let handle = handle.clone();
                tokio::spawn(async move { handle.token().await.map(|_| ()) })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    });
    assert_eq!(sim.token_requests(Provider::Octorate), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_dropped_caller_wedges_no_one_and_causes_no_second_request() {
    let sim = Simulator::start().unwrap();
    let clock = ManualClock::starting_now();
    let client = client(&clock, Duration::from_secs(10));
    let handle = handle(&sim, &client, Preset::Generic);
    // The token endpoint answers slowly; the first caller gives up (its future is dropped)
    // while the fetch is in flight.
    sim.inject(Provider::Generic, Fault::SlowBody { delay_ms: 400 }, 1);
    let gave_up = tokio::time::timeout(Duration::from_millis(50), handle.token()).await;
    assert!(
        gave_up.is_err(),
        "the first caller timed out and was dropped"
    );
    // Later callers get the token from that same request.
    let token = handle
        .token()
        .await
        .expect("the fetch carried on without its caller");
    assert!(!token.access_token().secret().is_empty());
    assert_eq!(sim.token_requests(Provider::Generic), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_middleware_attaches_the_token() {
    let sim = Simulator::start().unwrap();
    let clock = ManualClock::starting_now();
    let client = client(&clock, Duration::from_secs(10));
    let handle = handle(&sim, &client, Preset::Octorate);
    let http = reqwest_middleware::ClientBuilder::new(
        transport_reqwest::http_client_builder().build().unwrap(),
    )
    .with(transport_reqwest::BearerMiddleware(handle))
    .build();
    for _ in 0..3 {
        let r = http
            .get(sim.api_url(Provider::Octorate))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(sim.token_requests(Provider::Octorate), 1);
}

#[test]
fn shared_across_threads() {
    fn check<T: Send + Sync>(_: &T) {}
    let clock = ManualClock::starting_now();
    let c = Arc::new(client(&clock, Duration::from_secs(1)));
    check(&c);
}
