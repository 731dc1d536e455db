//! What only transport-ureq has, against the provider simulator on loopback: its middleware,
//! request-builder decoration, API agent and settings. The scenarios both transports share are
//! in `conformance.rs`.

use std::sync::Arc;
use std::time::Duration;

use provider_sim::{Fault, Preset, Provider, Simulator};
use token_core::{ManagerConfig, TransportErrorKind};
use transport_ureq::{ClientHandle, Error, ManualClock, TokenClient};

fn setup() -> (Simulator, TokenClient, ManualClock) {
    let sim = Simulator::start().expect("simulator starts");
    let clock = ManualClock::starting_now();
    let client = TokenClient::builder()
        .clock(clock.clone())
        .timeout(Duration::from_secs(10))
        .build();
    (sim, client, clock)
}

fn handle(sim: &Simulator, client: &TokenClient, preset: Preset) -> ClientHandle {
    client.register(sim.preset(preset).build().expect("preset builds"))
}

fn get(handle: &ClientHandle, url: &str) -> http::Response<ureq::Body> {
    handle
        .call(http::Request::get(url).body(Vec::new()).unwrap())
        .expect("API call")
}

#[test]
fn bookyflow_channel_header_reaches_the_api() {
    let (sim, client, _clock) = setup();
    let config = sim
        .preset(Preset::BookyFlow)
        .bookyflow_channel("my-channel")
        .build()
        .unwrap();
    let handle = client.register(config);
    let mut response = get(&handle, &sim.api_url(Provider::BookyFlow));
    let body: serde_json::Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["channel"], "my-channel");
}

#[test]
fn a_401_from_the_api_renews_the_token_once() {
    let (sim, client, _clock) = setup();
    let handle = handle(&sim, &client, Preset::Generic);
    let url = sim.api_url(Provider::Generic);
    assert_eq!(get(&handle, &url).status(), 200);
    sim.revoke_tokens(Provider::Generic);
    assert_eq!(get(&handle, &url).status(), 200);
    assert_eq!(sim.token_requests(Provider::Generic), 2);
    assert_eq!(sim.api_rejections(Provider::Generic), 1);
}

#[test]
fn ureq_middleware_attaches_the_token() {
    let (sim, client, _clock) = setup();
    let handle = handle(&sim, &client, Preset::Bookable);
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .middleware(handle.middleware())
            .build(),
    );
    for _ in 0..3 {
        let r = agent.get(&sim.api_url(Provider::Bookable)).call().unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(sim.token_requests(Provider::Bookable), 1);
    // A 401 invalidates the token; the next request carries a new one.
    sim.revoke_tokens(Provider::Bookable);
    let r = agent.get(&sim.api_url(Provider::Bookable)).call().unwrap();
    assert_eq!(r.status(), 401);
    let r = agent.get(&sim.api_url(Provider::Bookable)).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sim.token_requests(Provider::Bookable), 2);
}

#[test]
fn fault_invalid_grant_on_bookingtime_restarts_the_chain() {
    let (sim, client, clock) = setup();
    let alpha = handle(&sim, &client, Preset::BookingtimeApp).organization("org-alpha");
    alpha.token().unwrap();
    clock.advance(Duration::from_secs(301));
    sim.inject(Provider::Bookingtime, Fault::InvalidGrant, 1);
    alpha.token().expect("invalid_grant restarts the chain");
    assert_eq!(sim.token_requests(Provider::Bookingtime), 5);
}

#[test]
fn manager_config_reaches_the_core() {
    let sim = Simulator::start().unwrap();
    let mut cfg = ManagerConfig::default();
    cfg.refresh_window = Duration::from_secs(300);
    let clock = ManualClock::starting_now();
    let client = TokenClient::builder()
        .clock(clock.clone())
        .manager_config(cfg)
        .build();
    let handle = handle(&sim, &client, Preset::Bookable);
    let t = handle.token().unwrap();
    assert_eq!(t.refresh_at() - t.sent_at(), Duration::from_secs(3300));
}

#[test]
fn ureq_request_builders_get_the_token_too() {
    let (sim, client, _clock) = setup();
    let handle = handle(&sim, &client, Preset::BookyFlow);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let (request, _token) = handle
        .authorize_ureq(agent.get(sim.api_url(Provider::BookyFlow)))
        .unwrap();
    assert_eq!(request.call().unwrap().status(), 200);
    let insecure = handle.authorize_ureq(agent.get("http://api.example.invalid/x"));
    assert!(insecure.is_err());
}

/// Issue "Lifecycle v2", finding 8: the ureq API agent had no timeouts, so `call()` could hang
/// forever on an API that accepts the connection and never answers.
#[test]
fn call_times_out_on_a_hung_api() {
    let (sim, _client, clock) = setup();
    let client = TokenClient::builder()
        .clock(clock)
        .timeout(Duration::from_millis(300))
        .build();
    let handle = handle(&sim, &client, Preset::Bookable);
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/venues", hung.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let request = http::Request::get(url).body(Vec::new()).unwrap();
        let _ = tx.send(handle.call(request).map(|r| r.status()));
    });
    let result = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("call() still blocked: the API agent has no timeout");
    assert!(
        matches!(&result, Err(Error::Transport(t)) if t.kind() == TransportErrorKind::Timeout),
        "{result:?}"
    );
    drop(hung);
}

#[test]
fn a_store_is_asked_before_the_token_endpoint() {
    use token_core::{StoreReply, StoreRequest};
    struct Counting(std::sync::atomic::AtomicUsize);
    impl transport_ureq::BlockingStore for Counting {
        fn execute(&self, _request: &StoreRequest) -> StoreReply {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            StoreReply::Failed(token_core::StoreFailure::new("down"))
        }
    }
    let sim = Simulator::start().unwrap();
    let store = Arc::new(Counting(std::sync::atomic::AtomicUsize::new(0)));
    let client = TokenClient::builder()
        .clock(ManualClock::starting_now())
        .store(Arc::clone(&store))
        .build();
    let handle = handle(&sim, &client, Preset::Bookable);
    // The store fails: the token still comes, from the endpoint.
    assert!(handle.token().is_ok());
    assert_eq!(store.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(sim.token_requests(Provider::Bookable), 1);
}
