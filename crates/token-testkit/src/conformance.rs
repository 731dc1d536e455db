//! The transport scenarios, written once and run by each transport's tests against the
//! provider simulator on loopback, with an injected [`ManualClock`]: nothing sleeps to let
//! time pass; tests move the clock and wait for the client to settle.
//!
//! A transport implements [`Transport`]; its test file calls [`run_all`] or the scenarios one
//! by one (`#[test] fn x() { scenario::<Ureq>() }`).

use std::sync::{Arc, Barrier, Weak};
use std::time::{Duration, Instant};

use provider_sim::{Fault, ORGANIZATIONS, Preset, Provider, Simulator};
use token_core::{ClientConfig, ConfigError, Error as CoreError, ManagerConfig, Token};
use token_driver::{Clock, Driver, Error, HandleCore, ManualClock};

/// How a scenario wants its client built.
#[derive(Clone)]
pub struct Options {
    pub clock: Arc<dyn Clock>,
    pub timeout: Duration,
    pub manager: ManagerConfig,
}

impl Options {
    pub fn new(clock: &ManualClock) -> Self {
        Self {
            clock: Arc::new(clock.clone()),
            timeout: Duration::from_secs(10),
            manager: ManagerConfig::default(),
        }
    }
}

/// A transport under test. Calls block (async transports run them on their own runtime), so
/// scenarios can use plain threads for concurrency.
pub trait Transport: Send + Sync + Sized + 'static {
    /// A registered client (one key).
    type Handle: Clone + Send + Sync + std::fmt::Debug + 'static;

    /// Builds a client.
    fn build(options: Options) -> Self;
    /// Registers a configuration.
    fn register(&self, config: ClientConfig) -> Self::Handle;
    /// The transport-independent part of a handle.
    fn core(handle: &Self::Handle) -> &HandleCore;
    /// The same client for an organization.
    fn organization(handle: &Self::Handle, organization: &str) -> Self::Handle;
    /// A valid token.
    fn token(handle: &Self::Handle) -> Result<Token, Error>;
    /// A GET of `url` with the token attached, renewing it on a 401 as the transport's own
    /// `call`/`send` does; the status.
    fn call(handle: &Self::Handle, url: &str) -> Result<u16, Error>;
    /// The client's driver.
    fn driver(&self) -> &Arc<Driver>;
    /// Completes a user's authorization from its redirect: the user's handle.
    fn complete_authorization(handle: &Self::Handle, redirect: &str)
    -> Result<Self::Handle, Error>;
}

/// Runs every scenario.
pub fn run_all<T: Transport>() {
    every_preset_end_to_end::<T>();
    many_callers_one_token_request::<T>();
    the_timer_refreshes_a_token_in_use_and_no_caller_waits::<T>();
    a_late_caller_gets_a_valid_token_at_once::<T>();
    an_unused_token_is_not_refreshed::<T>();
    expiry_follows_the_injected_clock::<T>();
    bookingtime_organizations_share_one_refresh_token::<T>();
    a_revoked_refresh_token_restarts_the_chain::<T>();
    a_401_renews_once_for_many_callers::<T>();
    every_fault_on_a_first_fetch_is_typed_and_secret_free::<T>();
    every_fault_during_a_refresh_keeps_the_valid_token_flowing::<T>();
    insecure_api_urls_are_refused_and_never_echo_secrets::<T>();
    a_panic_in_a_fetch_fails_its_waiters_at_once::<T>();
    the_worker_stops_with_the_last_clone::<T>();
    an_api_that_rejects_every_token_costs_a_handful_of_token_requests::<T>();
    bookingtime_fan_out_goes_out_in_parallel::<T>();
    a_users_authorization_end_to_end::<T>();
    a_denied_or_forged_authorization_is_a_typed_error::<T>();
    auth0_quota_reaches_the_token::<T>();
    tokens_flow_under_load_and_nobody_waits_for_a_refresh::<T>();
}

fn setup<T: Transport>() -> (Simulator, T, ManualClock) {
    let sim = Simulator::start().expect("simulator starts");
    let clock = ManualClock::starting_now();
    let client = T::build(Options::new(&clock));
    (sim, client, clock)
}

fn register<T: Transport>(sim: &Simulator, client: &T, preset: Preset) -> T::Handle {
    client.register(sim.preset(preset).build().expect("preset builds"))
}

fn settle<T: Transport>(client: &T) {
    assert!(
        client.driver().wait_settled(Duration::from_secs(30)),
        "the client did not settle"
    );
}

/// Runs `f` on a thread and fails (instead of hanging) if it has not returned within `limit`:
/// for scenarios whose failure mode is a caller blocked forever.
fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("the call was still blocked after the limit")
}

fn secret(token: &Token) -> String {
    token.access_token().secret().to_owned()
}

pub fn every_preset_end_to_end<T: Transport>() {
    let (sim, client, _clock) = setup::<T>();
    for preset in Preset::ALL {
        let provider = Provider::from(preset);
        let handle = register(&sim, &client, preset);
        let (handle, url) = if preset.has_organizations() {
            (
                T::organization(&handle, ORGANIZATIONS[0]),
                sim.org_api_url(ORGANIZATIONS[0]),
            )
        } else {
            (handle, sim.api_url(provider))
        };
        let before = sim.api_calls(provider);
        for _ in 0..3 {
            assert_eq!(T::call(&handle, &url).unwrap(), 200, "{preset:?}");
        }
        assert_eq!(sim.api_calls(provider) - before, 3, "{preset:?}");
    }
    assert_eq!(sim.token_requests(Provider::Bookable), 1);
    assert_eq!(sim.token_requests(Provider::Octorate), 1);
    assert_eq!(sim.token_requests(Provider::Bookingtime), 4);
    assert_eq!(sim.total_token_requests(), 10);
}

pub fn many_callers_one_token_request<T: Transport>() {
    let (sim, client, _clock) = setup::<T>();
    let handle = register(&sim, &client, Preset::Bookable);
    let barrier = Arc::new(Barrier::new(64));
    let tokens: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..64)
            .map(|_| {
                let (handle, barrier) = (handle.clone(), Arc::clone(&barrier));
                s.spawn(move || {
                    barrier.wait();
                    secret(&T::token(&handle).unwrap())
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(sim.token_requests(Provider::Bookable), 1);
    assert!(tokens.iter().all(|t| *t == tokens[0]));
}

/// Issue "Lifecycle v2", finding 2: one caller per refresh blocked in transport-ureq.
pub fn the_timer_refreshes_a_token_in_use_and_no_caller_waits<T: Transport>() {
    let (sim, client, clock) = setup::<T>();
    let handle = register(&sim, &client, Preset::Octorate); // 1440 s, refresh at 1380 s
    let first = T::token(&handle).unwrap();
    for _ in 0..10 {
        assert_eq!(secret(&T::token(&handle).unwrap()), secret(&first));
    }
    let before = client.driver().stats();
    assert_eq!(before.waits, 1, "only the first token was waited for");
    // The clock reaches the refresh point: the timer refreshes with no caller involved.
    clock.advance(Duration::from_secs(1380));
    settle(&client);
    assert_eq!(sim.token_requests(Provider::Octorate), 2);
    let second = T::token(&handle).unwrap();
    assert_ne!(secret(&second), secret(&first));
    let after = client.driver().stats();
    assert_eq!(after.waits, 1, "nobody waited for the refresh");
    assert_eq!(after.cache_misses, before.cache_misses, "nobody even asked");
    assert_eq!(after.refreshes, 1);
}

/// Issue "Lifecycle v2", finding 1: after an inline refresh, transport-ureq returned the token
/// it looked up before the refresh (expired by then, or at least superseded).
pub fn a_late_caller_gets_a_valid_token_at_once<T: Transport>() {
    let (sim, client, clock) = setup::<T>();
    let handle = register(&sim, &client, Preset::Octorate);
    let first = T::token(&handle).unwrap();
    // Late in the token's window (1438 s of 1440), before the timer had a chance to run.
    clock.advance(Duration::from_secs(1438));
    let late = T::token(&handle).unwrap();
    let now = client.driver().clock().now();
    assert!(!late.is_expired(now), "an expired token was returned");
    settle(&client);
    let current = T::token(&handle).unwrap();
    assert_ne!(secret(&current), secret(&first), "the refresh landed");
    if secret(&late) != secret(&first) {
        assert_eq!(secret(&late), secret(&current));
    }
    assert_eq!(
        client.driver().stats().waits,
        1,
        "the late caller did not wait"
    );
    assert_eq!(sim.token_requests(Provider::Octorate), 2);
}

pub fn an_unused_token_is_not_refreshed<T: Transport>() {
    let (sim, client, clock) = setup::<T>();
    let handle = register(&sim, &client, Preset::Octorate);
    let _ = T::token(&handle).unwrap();
    clock.advance(Duration::from_secs(1380));
    settle(&client);
    assert_eq!(
        sim.token_requests(Provider::Octorate),
        2,
        "refreshed once: it was used"
    );
    // Nobody uses the new token: it is left to expire.
    clock.advance(Duration::from_secs(1380));
    settle(&client);
    clock.advance(Duration::from_secs(100));
    settle(&client);
    assert_eq!(sim.token_requests(Provider::Octorate), 2);
}

pub fn expiry_follows_the_injected_clock<T: Transport>() {
    let (sim, client, clock) = setup::<T>();
    let handle = register(&sim, &client, Preset::Octorate);
    let first = T::token(&handle).unwrap();
    clock.advance(Duration::from_secs(1300));
    assert_eq!(secret(&T::token(&handle).unwrap()), secret(&first));
    // Far past expiry (a suspended laptop): never the old token.
    clock.advance(Duration::from_secs(10_000));
    let later = T::token(&handle).unwrap();
    assert_ne!(secret(&later), secret(&first));
    assert!(!later.is_expired(client.driver().clock().now()));
}

pub fn bookingtime_organizations_share_one_refresh_token<T: Transport>() {
    let (sim, client, clock) = setup::<T>();
    let bookingtime = register(&sim, &client, Preset::BookingtimeApp);
    for _ in 0..3 {
        for org in ORGANIZATIONS {
            let handle = T::organization(&bookingtime, org);
            assert_eq!(T::call(&handle, &sim.org_api_url(org)).unwrap(), 200);
        }
        // 5-minute tokens: past expiry between rounds (nobody used them in between).
        clock.advance(Duration::from_secs(301));
        settle(&client);
    }
    // One refresh token; each organization's token fetched once per round, plus the timer's
    // refreshes of tokens in use (at 240 s of each round).
    let requests = sim.token_requests(Provider::Bookingtime);
    assert!(
        (1 + 3 * ORGANIZATIONS.len()..=1 + 6 * ORGANIZATIONS.len()).contains(&requests),
        "{requests}"
    );
}

pub fn a_revoked_refresh_token_restarts_the_chain<T: Transport>() {
    let (sim, client, clock) = setup::<T>();
    let alpha = T::organization(
        &register(&sim, &client, Preset::BookingtimeModule),
        "org-alpha",
    );
    T::token(&alpha).unwrap();
    sim.revoke_refresh_tokens();
    clock.advance(Duration::from_secs(301));
    let token = T::token(&alpha).expect("the chain restarts by itself");
    assert!(!token.is_expired(client.driver().clock().now()));
}

pub fn a_401_renews_once_for_many_callers<T: Transport>() {
    let (sim, client, _clock) = setup::<T>();
    let handle = register(&sim, &client, Preset::Bookable);
    let url = sim.api_url(Provider::Bookable);
    T::token(&handle).unwrap();
    sim.revoke_tokens(Provider::Bookable);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let (handle, url) = (handle.clone(), url.clone());
                s.spawn(move || T::call(&handle, &url).unwrap())
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        sim.token_requests(Provider::Bookable),
        2,
        "one renewal for twenty 401s"
    );
}

pub fn every_fault_on_a_first_fetch_is_typed_and_secret_free<T: Transport>() {
    type Check = fn(&Error) -> bool;
    let cases: Vec<(Fault, Check)> = vec![
        (Fault::InternalError, |e| {
            e.is_retryable()
                && matches!(e, Error::Token(c) if c.status() == Some(http::StatusCode::INTERNAL_SERVER_ERROR))
        }),
        (
            Fault::HtmlServiceUnavailable,
            |e| matches!(e, Error::Token(CoreError::Http(h)) if h.status == 503 && !h.excerpt.contains('<')),
        ),
        (
            Fault::TooManyRequests {
                retry_after_secs: 17,
            },
            |e| matches!(e, Error::Token(c) if c.retry_after() == Some(token_core::RetryAfter::Delay(Duration::from_secs(17)))),
        ),
        (Fault::MalformedJson, |e| {
            matches!(e, Error::Token(CoreError::Malformed { .. }))
        }),
        (Fault::OversizedBody { bytes: 1 << 20 }, |e| {
            matches!(
                e,
                Error::Token(CoreError::BodyTooLarge { limit: 65536, .. })
            )
        }),
        (
            Fault::SlowBody { delay_ms: 60_000 },
            |e| matches!(e, Error::Transport(t) if t.kind() == token_core::TransportErrorKind::Timeout),
        ),
        (
            Fault::Redirect,
            |e| matches!(e, Error::Token(CoreError::Http(h)) if h.status == 307),
        ),
        (Fault::ConnectionReset, |e| {
            matches!(e, Error::Transport(_)) && e.is_retryable()
        }),
        (Fault::InvalidClient, |e| {
            e.is_credentials_rejected() && !e.is_retryable()
        }),
    ];
    for (fault, check) in cases {
        let sim = Simulator::start().unwrap();
        let clock = ManualClock::starting_now();
        let client = T::build(Options {
            timeout: Duration::from_millis(500),
            ..Options::new(&clock)
        });
        let handle = register(&sim, &client, Preset::Octorate);
        sim.inject(Provider::Octorate, fault.clone(), 1);
        let err = T::token(&handle).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains(provider_sim::CLIENT_SECRET),
            "{fault:?}: {shown}"
        );
        assert!(check(&err), "{fault:?}: {err:?}");
        if matches!(fault, Fault::Redirect) {
            assert_eq!(sim.redirect_target_hits(), 0, "a redirect was followed");
            assert!(!sim.redirect_target_saw_secret());
        }
    }
}

pub fn every_fault_during_a_refresh_keeps_the_valid_token_flowing<T: Transport>() {
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
        let client = T::build(Options {
            timeout: Duration::from_millis(500),
            ..Options::new(&clock)
        });
        let handle = register(&sim, &client, Preset::Bookable);
        let first = T::token(&handle).unwrap();
        sim.inject(Provider::Bookable, fault.clone(), 100);
        // Into the refresh window: the timer's refresh fails, callers keep the token.
        clock.advance(Duration::from_secs(3550));
        settle(&client);
        for _ in 0..5 {
            let t = T::token(&handle).unwrap_or_else(|e| panic!("{fault:?}: {e}"));
            assert_eq!(secret(&t), secret(&first), "{fault:?}");
        }
        assert_eq!(
            sim.token_requests(Provider::Bookable),
            2,
            "{fault:?}: one attempt, then backoff"
        );
        // Once expired, the error — never the expired token.
        clock.advance(Duration::from_secs(60));
        settle(&client);
        assert!(T::token(&handle).is_err(), "{fault:?}");
    }
}

/// Issue "Lifecycle v2", finding 8: API URLs in errors kept user info and query.
pub fn insecure_api_urls_are_refused_and_never_echo_secrets<T: Transport>() {
    let (sim, client, _clock) = setup::<T>();
    let handle = register(&sim, &client, Preset::Bookable);
    let err = T::call(
        &handle,
        "http://user:PASSWORD@api.example.invalid/venues?api_key=KEY123",
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Token(CoreError::Config(ConfigError::InsecureUrl { .. }))
        ),
        "{err:?}"
    );
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains("PASSWORD") && !shown.contains("KEY123"),
        "{shown}"
    );
    assert_eq!(
        sim.total_token_requests(),
        0,
        "refused before fetching a token"
    );
}

/// A clock whose wall reading panics while armed: a panic inside a fetch's completion.
#[derive(Clone)]
struct PanickingClock {
    inner: ManualClock,
    armed: Arc<std::sync::atomic::AtomicBool>,
}

impl Clock for PanickingClock {
    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn wall(&self) -> std::time::SystemTime {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            panic!("a panic inside a fetch (the injected clock)");
        }
        self.inner.wall()
    }

    fn watch(&self, wake: Weak<token_driver::Wake>) {
        self.inner.watch(wake);
    }
}

/// Issue "Lifecycle v2", finding 8: a panic inside a fetch left waiters blocked until the
/// request timeout (which, on a manual clock, never comes).
pub fn a_panic_in_a_fetch_fails_its_waiters_at_once<T: Transport>() {
    let sim = Simulator::start().unwrap();
    let clock = PanickingClock {
        inner: ManualClock::starting_now(),
        armed: Arc::new(std::sync::atomic::AtomicBool::new(true)),
    };
    let client = T::build(Options {
        clock: Arc::new(clock.clone()),
        ..Options::new(&clock.inner)
    });
    let handle = register(&sim, &client, Preset::Bookable);
    let result = within(Duration::from_secs(30), move || {
        T::token(&handle).map(|_| ())
    });
    assert!(result.is_err(), "the waiter got the failure");
    // And the client goes on working once the failure's backoff is over.
    clock.inner.advance(Duration::from_secs(5));
    let handle = register(&sim, &client, Preset::Bookable);
    assert!(T::token(&handle).is_ok());
}

pub fn the_worker_stops_with_the_last_clone<T: Transport>() {
    let (sim, client, _clock) = setup::<T>();
    let handle = register(&sim, &client, Preset::Bookable);
    T::token(&handle).unwrap();
    let weak = Arc::downgrade(client.driver());
    drop(handle);
    drop(client);
    // The timer worker lets go of the driver once it sees the client is gone.
    within(Duration::from_secs(30), move || {
        while weak.strong_count() > 0 {
            std::thread::yield_now();
        }
    });
}

/// Issue "Lifecycle v2", must-have 2 under load: 16 threads calling continuously through
/// several refreshes get a valid token every time and never wait after the first fetch.
pub fn tokens_flow_under_load_and_nobody_waits_for_a_refresh<T: Transport>() {
    let (sim, client, clock) = setup::<T>();
    let handle = register(&sim, &client, Preset::Octorate);
    let _ = T::token(&handle).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let expired = std::thread::scope(|s| {
        let workers: Vec<_> = (0..16)
            .map(|_| {
                let (handle, stop) = (handle.clone(), Arc::clone(&stop));
                let calls = Arc::clone(&calls);
                let clock = client.driver().clock().clone();
                s.spawn(move || {
                    let mut expired = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        // Served at or after `before`: it must be valid then.
                        let before = clock.now();
                        let token = T::token(&handle).unwrap();
                        if token.is_expired(before) {
                            expired += 1;
                        }
                        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    expired
                })
            })
            .collect();
        // Five token lifetimes, in steps of a minute. Virtual time must not outrun the callers
        // (or the token is not "in use"): each step waits for calls that began after the last
        // one (each of the 16 threads may be in the middle of one older call, so 17 or more).
        for _ in 0..(5 * 24) {
            let target = calls.load(std::sync::atomic::Ordering::Relaxed) + 32;
            let deadline = Instant::now() + Duration::from_secs(30);
            while calls.load(std::sync::atomic::Ordering::Relaxed) < target {
                assert!(Instant::now() < deadline, "the callers stopped calling");
                std::thread::yield_now();
            }
            clock.advance(Duration::from_secs(60));
            settle(&client);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .sum::<usize>()
    });
    assert_eq!(expired, 0, "an expired token was served");
    let stats = client.driver().stats();
    assert_eq!(stats.waits, 1, "a caller waited for a refresh: {stats:?}");
    let requests = sim.token_requests(Provider::Octorate);
    assert!(
        (5..=7).contains(&requests),
        "{requests} token requests in 5 lifetimes"
    );
}

/// Issue "Lifecycle v2", finding 3: 50 calls to an API that rejects every token (wrong
/// audience, revoked grant, clock skew) made 50 token requests.
pub fn an_api_that_rejects_every_token_costs_a_handful_of_token_requests<T: Transport>() {
    let (sim, client, _clock) = setup::<T>();
    let handle = register(&sim, &client, Preset::Generic);
    let url = sim.api_url(Provider::Generic);
    sim.set_api_rejects_all(Provider::Generic, true);
    for _ in 0..50 {
        assert_eq!(
            T::call(&handle, &url).unwrap(),
            401,
            "the caller gets the API's 401"
        );
    }
    let requests = sim.token_requests(Provider::Generic);
    assert!(
        requests <= 3,
        "{requests} token requests for 50 refused calls"
    );
    // The API accepts tokens again: the next call renews as soon as its backoff allows, and
    // an accepted call clears the rule.
    sim.set_api_rejects_all(Provider::Generic, false);
    assert_eq!(T::call(&handle, &url).unwrap(), 200);
}

/// Issue "Lifecycle v2", finding 5: bookingtime's fan-out to the organizations waiting for a
/// new refresh token was serial on one caller's thread.
pub fn bookingtime_fan_out_goes_out_in_parallel<T: Transport>() {
    let (sim, client, _clock) = setup::<T>();
    let bookingtime = register(&sim, &client, Preset::BookingtimeApp);
    // Each request takes a moment: serial requests would never overlap.
    sim.set_token_latency(Provider::Bookingtime, Duration::from_millis(200));
    let orgs: Vec<String> = (0..8).map(|i| format!("org-{i}")).collect();
    let barrier = Arc::new(Barrier::new(orgs.len()));
    std::thread::scope(|s| {
        for org in &orgs {
            let (handle, barrier) = (T::organization(&bookingtime, org), Arc::clone(&barrier));
            s.spawn(move || {
                barrier.wait();
                T::token(&handle).unwrap()
            });
        }
    });
    // One refresh token, then every waiting organization's request at once.
    assert_eq!(sim.token_requests(Provider::Bookingtime), 1 + orgs.len());
    let parallel = sim.max_concurrent_token_requests(Provider::Bookingtime);
    assert!(
        parallel >= orgs.len(),
        "at most {parallel} requests overlapped"
    );
}

/// Plays the user's browser: GETs the authorization URL (the simulator auto-approves) and
/// returns where it redirects.
pub fn browse(authorization_url: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent
        .get(authorization_url)
        .call()
        .expect("the authorization endpoint answers");
    assert_eq!(
        response.status(),
        302,
        "the authorization endpoint redirects"
    );
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("a Location header")
        .to_owned()
}

const REDIRECT_URI: &str = "http://127.0.0.1:53682/callback";

/// Issue "User authentication": start an authorization, complete it from the redirect, then
/// tokens for that user (and organization), with the same guarantees as the app's.
pub fn a_users_authorization_end_to_end<T: Transport>() {
    for provider in [Provider::Generic, Provider::Bookingtime] {
        let (sim, client, _clock) = setup::<T>();
        let config = sim.public_preset(provider).unwrap().build().unwrap();
        let handle = client.register(config);
        let start = T::core(&handle)
            .start_authorization("alice", REDIRECT_URI)
            .unwrap();
        let redirect = browse(&start.url);
        assert!(redirect.starts_with(REDIRECT_URI), "{redirect}");
        let user = T::complete_authorization(&handle, &redirect).unwrap();
        let user = if provider == Provider::Bookingtime {
            T::organization(&user, "org-alpha")
        } else {
            user
        };
        let first = T::token(&user).unwrap();
        for _ in 0..5 {
            assert_eq!(secret(&T::token(&user).unwrap()), secret(&first));
        }
        assert_eq!(sim.code_exchanges(provider), 1, "{provider:?}");
        let expected = if provider == Provider::Bookingtime {
            2
        } else {
            1
        };
        assert_eq!(
            sim.token_requests(provider),
            expected,
            "{provider:?}: the code exchange (then bookingtime's organization token)"
        );
        // The same redirect again is refused: its state was used.
        let err = T::complete_authorization(&handle, &redirect).unwrap_err();
        assert!(err.is_authorization_required(), "{err:?}");
    }
}

pub fn a_denied_or_forged_authorization_is_a_typed_error<T: Transport>() {
    let (sim, client, _clock) = setup::<T>();
    let handle = client.register(
        sim.public_preset(Provider::Generic)
            .unwrap()
            .build()
            .unwrap(),
    );
    sim.set_user_denies(Provider::Generic, true);
    let start = T::core(&handle)
        .start_authorization("bob", REDIRECT_URI)
        .unwrap();
    let err = T::complete_authorization(&handle, &browse(&start.url)).unwrap_err();
    assert!(
        matches!(&err, Error::Authorization(token_core::AuthorizationError::Refused { code, .. }) if code.as_str() == "access_denied"),
        "{err:?}"
    );
    sim.set_user_denies(Provider::Generic, false);
    let start = T::core(&handle)
        .start_authorization("bob", REDIRECT_URI)
        .unwrap();
    let forged = browse(&start.url).replace("state=", "state=x");
    let err = T::complete_authorization(&handle, &forged).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Authorization(token_core::AuthorizationError::StateMismatch)
        ),
        "{err:?}"
    );
    assert_eq!(sim.code_exchanges(Provider::Generic), 0);
}

/// Issue "What operators see and pay": Auth0's quota headers reach the token.
pub fn auth0_quota_reaches_the_token<T: Transport>() {
    let (sim, client, _clock) = setup::<T>();
    sim.set_client_quota(Provider::Bookable, provider_sim::Quota::new(10, 50));
    let handle = register(&sim, &client, Preset::Bookable);
    let token = T::token(&handle).unwrap();
    let quota = token.quota().expect("Bookable sends quota headers");
    let hour = quota.client.as_ref().unwrap().per_hour.unwrap();
    assert_eq!((hour.quota, hour.remaining), (Some(10), Some(9)));
    assert!(quota.rate_limit.is_some());
}
