//! transport-ureq end to end against the provider simulator on loopback: every preset, the
//! protected routes, concurrency, injected-clock expiry, bookingtime's chain, every fault.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use provider_sim::{Fault, ORGANIZATIONS, Preset, Provider, Simulator};
use token_core::{Error as CoreError, ErrorCode, ManagerConfig, TransportErrorKind};
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
fn every_preset_end_to_end_including_the_protected_route() {
    let (sim, client, _clock) = setup();
    for preset in Preset::ALL {
        let provider = Provider::from(preset);
        let handle = handle(&sim, &client, preset);
        let (handle, url) = if preset.has_organizations() {
            (
                handle.organization(ORGANIZATIONS[0]),
                sim.org_api_url(ORGANIZATIONS[0]),
            )
        } else {
            (handle, sim.api_url(provider))
        };
        let before = sim.api_calls(provider);
        for _ in 0..3 {
            let mut response = get(&handle, &url);
            assert_eq!(response.status(), 200, "{preset:?}");
            let body = response.body_mut().read_to_string().unwrap();
            assert!(!body.is_empty());
        }
        assert_eq!(sim.api_calls(provider) - before, 3, "{preset:?}");
    }
    // One token request per preset (bookingtime: refresh token + access token, twice).
    assert_eq!(sim.token_requests(Provider::Bookable), 1);
    assert_eq!(sim.token_requests(Provider::Octorate), 1);
    assert_eq!(sim.token_requests(Provider::Bookingtime), 4);
    assert_eq!(sim.total_token_requests(), 10);
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
fn sixty_four_threads_one_token_request() {
    let (sim, client, _clock) = setup();
    let handle = handle(&sim, &client, Preset::Bookable);
    let barrier = Arc::new(Barrier::new(64));
    let tokens: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..64)
            .map(|_| {
                let handle = handle.clone();
                let barrier = Arc::clone(&barrier);
                s.spawn(move || {
                    barrier.wait();
                    handle.token().unwrap().access_token().secret().to_owned()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(sim.token_requests(Provider::Bookable), 1);
    assert!(tokens.iter().all(|t| *t == tokens[0]));
}

#[test]
fn refresh_and_expiry_follow_the_injected_clock() {
    let (sim, client, clock) = setup();
    let handle = handle(&sim, &client, Preset::Octorate); // 1440 s tokens
    let first = handle.token().unwrap();
    clock.advance(Duration::from_secs(1300));
    assert_eq!(handle.token().unwrap().access_token(), first.access_token());
    assert_eq!(sim.token_requests(Provider::Octorate), 1);
    // Inside the 60 s window: this caller refreshes, the token changes.
    clock.advance(Duration::from_secs(90));
    let _ = handle.token().unwrap();
    assert_eq!(sim.token_requests(Provider::Octorate), 2);
    let second = handle.token().unwrap();
    assert_ne!(second.access_token(), first.access_token());
    // Far past expiry: never the old token.
    clock.advance(Duration::from_secs(10_000));
    let third = handle.token().unwrap();
    assert_ne!(third.access_token(), second.access_token());
    assert_eq!(sim.token_requests(Provider::Octorate), 3);
}

#[test]
fn bookingtime_organizations_share_one_refresh_token() {
    let (sim, client, clock) = setup();
    let bookingtime = handle(&sim, &client, Preset::BookingtimeApp);
    for round in 0..3 {
        for org in ORGANIZATIONS {
            let mut r = get(&bookingtime.organization(org), &sim.org_api_url(org));
            assert_eq!(r.status(), 200);
            assert!(r.body_mut().read_to_string().unwrap().contains(org));
        }
        // 5-minute tokens: move past expiry between rounds.
        clock.advance(Duration::from_secs(301));
        let _ = round;
    }
    let leg1 = 1;
    let leg2 = 3 * ORGANIZATIONS.len();
    assert_eq!(sim.token_requests(Provider::Bookingtime), leg1 + leg2);
}

#[test]
fn a_revoked_refresh_token_restarts_the_chain() {
    let (sim, client, clock) = setup();
    let alpha = handle(&sim, &client, Preset::BookingtimeModule).organization("org-alpha");
    alpha.token().unwrap();
    sim.revoke_refresh_tokens();
    clock.advance(Duration::from_secs(301));
    let token = alpha.token().expect("the chain restarts by itself");
    assert!(!token.is_expired(clock_now(&client)));
    // leg1, leg2, leg2 (invalid_grant), leg1, leg2
    assert_eq!(sim.token_requests(Provider::Bookingtime), 5);
}

fn clock_now(client: &TokenClient) -> std::time::Instant {
    client.driver().clock().now()
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

// ---- faults ----

/// Injects `fault` into a fresh client's first fetch and returns the error.
fn first_fetch_error(fault: Fault, timeout: Duration) -> (Simulator, Error) {
    let sim = Simulator::start().unwrap();
    let client = TokenClient::builder()
        .clock(ManualClock::starting_now())
        .timeout(timeout)
        .build();
    let handle = handle(&sim, &client, Preset::Octorate);
    sim.inject(Provider::Octorate, fault, 1);
    let err = handle.token().unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(provider_sim::CLIENT_SECRET), "{shown}");
    (sim, err)
}

#[test]
fn fault_500() {
    let (_sim, err) = first_fetch_error(Fault::InternalError, Duration::from_secs(10));
    assert!(err.is_retryable(), "{err}");
    assert!(
        matches!(&err, Error::Token(e) if e.status() == Some(http::StatusCode::INTERNAL_SERVER_ERROR))
    );
}

#[test]
fn fault_html_503() {
    let (_sim, err) = first_fetch_error(Fault::HtmlServiceUnavailable, Duration::from_secs(10));
    let Error::Token(CoreError::Http(e)) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(e.status, 503);
    assert!(!e.excerpt.contains('<'), "{}", e.excerpt);
    assert!(err.is_retryable());
}

#[test]
fn fault_429_retry_after() {
    let (_sim, err) = first_fetch_error(
        Fault::TooManyRequests {
            retry_after_secs: 17,
        },
        Duration::from_secs(10),
    );
    let Error::Token(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        e.retry_after(),
        Some(token_core::RetryAfter::Delay(Duration::from_secs(17)))
    );
}

#[test]
fn fault_malformed_json() {
    let (_sim, err) = first_fetch_error(Fault::MalformedJson, Duration::from_secs(10));
    assert!(
        matches!(err, Error::Token(CoreError::Malformed { .. })),
        "{err:?}"
    );
}

#[test]
fn fault_oversized_body() {
    let (_sim, err) = first_fetch_error(
        Fault::OversizedBody { bytes: 1 << 20 },
        Duration::from_secs(10),
    );
    assert!(
        matches!(
            err,
            Error::Token(CoreError::BodyTooLarge { limit: 65536, .. })
        ),
        "{err:?}"
    );
}

#[test]
fn fault_slow_body_times_out() {
    let (_sim, err) = first_fetch_error(
        Fault::SlowBody { delay_ms: 60_000 },
        Duration::from_millis(300),
    );
    assert!(
        matches!(&err, Error::Transport(t) if t.kind() == TransportErrorKind::Timeout),
        "{err:?}"
    );
}

#[test]
fn fault_redirect_is_not_followed_and_never_sees_the_secret() {
    let (sim, err) = first_fetch_error(Fault::Redirect, Duration::from_secs(10));
    assert!(
        matches!(&err, Error::Token(CoreError::Http(e)) if e.status == 307),
        "{err:?}"
    );
    assert_eq!(sim.redirect_target_hits(), 0);
    assert!(!sim.redirect_target_saw_secret());
}

#[test]
fn fault_connection_reset() {
    let (_sim, err) = first_fetch_error(Fault::ConnectionReset, Duration::from_secs(10));
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert!(err.is_retryable());
}

#[test]
fn fault_invalid_client() {
    let (_sim, err) = first_fetch_error(Fault::InvalidClient, Duration::from_secs(10));
    assert!(err.is_credentials_rejected(), "{err:?}");
    assert!(!err.is_retryable());
    assert!(matches!(&err, Error::Token(e) if e.oauth_code() == Some(&ErrorCode::InvalidClient)));
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
fn every_fault_during_a_refresh_keeps_the_valid_token_flowing() {
    let faults = [
        Fault::InternalError,
        Fault::HtmlServiceUnavailable,
        Fault::TooManyRequests {
            retry_after_secs: 5,
        },
        Fault::MalformedJson,
        Fault::OversizedBody { bytes: 1 << 20 },
        Fault::SlowBody { delay_ms: 60_000 },
        Fault::Redirect,
        Fault::ConnectionReset,
        Fault::InvalidClient,
    ];
    for fault in faults {
        let sim = Simulator::start().unwrap();
        let clock = ManualClock::starting_now();
        let client = TokenClient::builder()
            .clock(clock.clone())
            .timeout(Duration::from_millis(500))
            .build();
        let handle = handle(&sim, &client, Preset::Bookable);
        let first = handle.token().unwrap();
        clock.advance(Duration::from_secs(3550)); // inside the refresh window
        sim.inject(Provider::Bookable, fault.clone(), 100);
        for _ in 0..5 {
            let t = handle.token().unwrap_or_else(|e| panic!("{fault:?}: {e}"));
            assert_eq!(t.access_token(), first.access_token(), "{fault:?}");
        }
        assert_eq!(
            sim.token_requests(Provider::Bookable),
            2,
            "{fault:?}: one attempt, then backoff"
        );
        // Once expired, the error — never the expired token.
        clock.advance(Duration::from_secs(60));
        assert!(handle.token().is_err(), "{fault:?}");
    }
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
fn tokens_are_never_sent_to_plain_http_apis_off_loopback() {
    let (sim, client, _clock) = setup();
    let handle = handle(&sim, &client, Preset::Bookable);
    let request = http::Request::get("http://api.example.invalid/venues")
        .body(Vec::new())
        .unwrap();
    let err = handle.call(request).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Token(CoreError::Config(
                token_core::ConfigError::InsecureUrl { .. }
            ))
        ),
        "{err:?}"
    );
    assert_eq!(
        sim.total_token_requests(),
        0,
        "refused before fetching a token"
    );
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
