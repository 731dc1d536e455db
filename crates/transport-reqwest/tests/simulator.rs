//! transport-reqwest end to end against the provider simulator on loopback: every preset,
//! 1,000 tasks, cancellation, both runtime flavours, injected-clock refresh, bookingtime's
//! chain, every fault.

use std::sync::Arc;
use std::time::Duration;

use provider_sim::{Fault, ORGANIZATIONS, Preset, Provider, Simulator};
use token_core::{Error as CoreError, TransportErrorKind};
use transport_reqwest::{ClientHandle, Error, ManualClock, TokenClient};

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
async fn every_preset_end_to_end_including_the_protected_route() {
    let sim = Simulator::start().unwrap();
    let clock = ManualClock::starting_now();
    let client = client(&clock, Duration::from_secs(10));
    let http = transport_reqwest::http_client_builder().build().unwrap();
    for preset in Preset::ALL {
        let provider = Provider::from(preset);
        let handle = handle(&sim, &client, preset);
        let (handle, url) = if preset.has_organizations() {
            (
                handle.organization(ORGANIZATIONS[1]),
                sim.org_api_url(ORGANIZATIONS[1]),
            )
        } else {
            (handle, sim.api_url(provider))
        };
        let before = sim.api_calls(provider);
        for _ in 0..3 {
            let response = handle.send(http.get(&url)).await.unwrap();
            assert_eq!(response.status(), 200, "{preset:?}");
            assert!(!response.text().await.unwrap().is_empty());
        }
        assert_eq!(sim.api_calls(provider) - before, 3, "{preset:?}");
    }
    assert_eq!(sim.token_requests(Provider::Bookingtime), 4);
    assert_eq!(sim.total_token_requests(), 10);
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
async fn stale_while_refresh_with_the_injected_clock() {
    let sim = Simulator::start().unwrap();
    let clock = ManualClock::starting_now();
    let client = client(&clock, Duration::from_secs(10));
    let handle = handle(&sim, &client, Preset::BookyFlow); // 3600 s
    let first = handle.token().await.unwrap();
    clock.advance(Duration::from_secs(3545));
    // Inside the window: served at once, one refresh spawned in the background.
    let served = handle.token().await.unwrap();
    assert!(served.same_as(&first));
    // Past the old token's expiry: the caller gets the refreshed token, from that same
    // background request (whether it has landed yet or is still in flight).
    // (56 s: past expiry, within the manager's request timeout for the request in flight.)
    clock.advance(Duration::from_secs(56));
    let refreshed = handle.token().await.unwrap();
    assert!(!refreshed.same_as(&first));
    assert_eq!(sim.token_requests(Provider::BookyFlow), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookingtime_organizations_share_one_refresh_token() {
    let sim = Simulator::start().unwrap();
    let clock = ManualClock::starting_now();
    let client = client(&clock, Duration::from_secs(10));
    let bookingtime = handle(&sim, &client, Preset::BookingtimeApp);
    let http = transport_reqwest::http_client_builder().build().unwrap();
    for _ in 0..2 {
        let calls: Vec<_> = ORGANIZATIONS
            .iter()
            .map(|org| {
                let handle = bookingtime.organization(org);
                let request = http.get(sim.org_api_url(org));
                tokio::spawn(async move { handle.send(request).await.unwrap().status() })
            })
            .collect();
        for c in calls {
            assert_eq!(c.await.unwrap(), 200);
        }
        clock.advance(Duration::from_secs(301));
    }
    assert_eq!(
        sim.token_requests(Provider::Bookingtime),
        1 + 2 * ORGANIZATIONS.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_from_the_api_renews_the_token_once_even_for_many_tasks() {
    let sim = Simulator::start().unwrap();
    let clock = ManualClock::starting_now();
    let client = client(&clock, Duration::from_secs(10));
    let handle = handle(&sim, &client, Preset::Bookable);
    let http = transport_reqwest::http_client_builder().build().unwrap();
    let url = sim.api_url(Provider::Bookable);
    handle.token().await.unwrap();
    sim.revoke_tokens(Provider::Bookable);
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (handle, request) = (handle.clone(), http.get(&url));
            tokio::spawn(async move { handle.send(request).await.unwrap().status() })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap(), 200);
    }
    assert_eq!(
        sim.token_requests(Provider::Bookable),
        2,
        "one renewal for twenty 401s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_gives_its_typed_error_and_never_the_secret() {
    type Expected = fn(&Error) -> bool;
    let cases: Vec<(Fault, Expected)> = vec![
        (Fault::InternalError, |e| e.is_retryable()),
        (
            Fault::HtmlServiceUnavailable,
            |e| matches!(e, Error::Token(CoreError::Http(h)) if h.status == 503),
        ),
        (
            Fault::TooManyRequests {
                retry_after_secs: 9,
            },
            |e| matches!(e, Error::Token(c) if c.retry_after().is_some()),
        ),
        (Fault::MalformedJson, |e| {
            matches!(e, Error::Token(CoreError::Malformed { .. }))
        }),
        (Fault::OversizedBody { bytes: 1 << 20 }, |e| {
            matches!(e, Error::Token(CoreError::BodyTooLarge { .. }))
        }),
        (
            Fault::SlowBody { delay_ms: 60_000 },
            |e| matches!(e, Error::Transport(t) if t.kind() == TransportErrorKind::Timeout),
        ),
        (
            Fault::Redirect,
            |e| matches!(e, Error::Token(CoreError::Http(h)) if h.status == 307),
        ),
        (Fault::ConnectionReset, |e| matches!(e, Error::Transport(_))),
        (Fault::InvalidClient, |e| e.is_credentials_rejected()),
    ];
    for (fault, expected) in cases {
        let sim = Simulator::start().unwrap();
        let clock = ManualClock::starting_now();
        let client = client(&clock, Duration::from_millis(500));
        let handle = handle(&sim, &client, Preset::Bookable);
        sim.inject(Provider::Bookable, fault.clone(), 1);
        let err = handle.token().await.unwrap_err();
        assert!(expected(&err), "{fault:?}: {err:?}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(provider_sim::CLIENT_SECRET), "{shown}");
        assert_eq!(sim.redirect_target_hits(), 0);
        // A still-valid token keeps flowing through the same fault during a refresh.
        clock.advance(Duration::from_secs(3600)); // past backoff
        let token = handle.token().await.unwrap();
        clock.advance(Duration::from_secs(3550));
        sim.inject(Provider::Bookable, fault.clone(), 100);
        for _ in 0..3 {
            assert!(handle.token().await.unwrap().same_as(&token), "{fault:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_never_receives_the_client_secret() {
    let sim = Simulator::start().unwrap();
    let clock = ManualClock::starting_now();
    let client = client(&clock, Duration::from_secs(10));
    for preset in [Preset::Generic, Preset::Bookable, Preset::BookyFlow] {
        let handle = handle(&sim, &client, preset);
        sim.inject(Provider::from(preset), Fault::Redirect, 1);
        assert!(handle.token().await.is_err());
    }
    assert_eq!(sim.redirect_target_hits(), 0);
    assert!(!sim.redirect_target_saw_secret());
}

#[cfg(feature = "middleware")]
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

#[tokio::test(flavor = "current_thread")]
async fn tokens_are_never_sent_to_plain_http_apis_off_loopback() {
    let sim = Simulator::start().unwrap();
    let clock = ManualClock::starting_now();
    let client = client(&clock, Duration::from_secs(10));
    let handle = handle(&sim, &client, Preset::Bookable);
    let http = transport_reqwest::http_client_builder().build().unwrap();
    let err = handle
        .send(http.get("http://api.example.invalid/venues"))
        .await
        .unwrap_err();
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
