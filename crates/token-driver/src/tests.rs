//! The driver with a recording executor: what cache hits serve, what the manager hears, and
//! what reaches the transport.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use token_core::{
    ClientSecret, Credentials, Lookup, ManagerConfig, StoreRequest, TokenKey, TokenRequest,
    TransportFailure, presets,
};

use crate::{Clock, Driver, Executor, ManualClock, TransportConfig};

#[derive(Default)]
struct Recorder {
    sends: Mutex<Vec<TokenRequest>>,
    wakes: AtomicUsize,
}

#[derive(Clone, Default)]
struct RecordingExecutor(Arc<Recorder>);

impl Executor for RecordingExecutor {
    fn send(&self, driver: &Arc<Driver>, request: TokenRequest) {
        driver.sent(request.id);
        self.0.sends.lock().unwrap().push(request);
    }

    fn store(&self, _driver: &Arc<Driver>, _request: StoreRequest) {
        unreachable!("no store configured")
    }

    fn wake(&self) {
        self.0.wakes.fetch_add(1, Ordering::Relaxed);
    }
}

impl RecordingExecutor {
    fn take(&self) -> Vec<TokenRequest> {
        std::mem::take(&mut *self.0.sends.lock().unwrap())
    }
}

fn reply(body: &str) -> Result<http::Response<Vec<u8>>, TransportFailure> {
    let status = if body.starts_with('{') { 200 } else { 503 };
    Ok(http::Response::builder()
        .status(status)
        .body(body.as_bytes().to_vec())
        .unwrap())
}

fn token(secret: &str) -> String {
    format!(r#"{{"access_token":"{secret}","expires_in":3600,"token_type":"Bearer"}}"#)
}

struct Setup {
    driver: Arc<Driver>,
    exec: RecordingExecutor,
    clock: ManualClock,
    key: TokenKey,
}

fn setup() -> Setup {
    let clock = ManualClock::starting_now();
    let config = TransportConfig {
        clock: Arc::new(clock.clone()),
        ..TransportConfig::default()
    };
    let exec = RecordingExecutor::default();
    let driver = Driver::new(&config, exec.clone());
    let client = presets::generic(
        "https://auth.example.com/token",
        Credentials::new("id", ClientSecret::new("secret")),
    )
    .build()
    .unwrap();
    let (id, _) = driver.register(client);
    Setup {
        driver,
        exec,
        clock,
        key: TokenKey::new(id),
    }
}

impl Setup {
    /// Answers every request sent so far (and those their answers cause) with `body`.
    fn answer(&self, body: &str) {
        loop {
            let sends = self.exec.take();
            if sends.is_empty() {
                return;
            }
            for send in sends {
                self.driver.complete(send.id, reply(body));
            }
        }
    }

    fn cached_secret(&self) -> Option<String> {
        let slot = self.driver.slot(&self.key);
        self.driver
            .cached(&slot)
            .map(|t| t.access_token().secret().to_owned())
    }
}

#[test]
fn shared_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Driver>();
    check::<crate::Error>();
    check::<ManualClock>();
    check::<crate::HandleCore>();
}

#[test]
fn a_hit_reads_the_slot_and_the_first_hit_on_a_token_is_reported() {
    let s = setup();
    let slot = s.driver.slot(&s.key);
    assert!(s.driver.cached(&slot).is_none());
    assert!(matches!(s.driver.step(&slot).unwrap(), Lookup::Pending));
    s.answer(&token("one"));
    assert_eq!(s.cached_secret().as_deref(), Some("one"));
    let stats = s.driver.stats();
    assert_eq!(stats.cache_misses, 1);
    assert_eq!(stats.cache_hits, 1);
    assert_eq!(stats.token_requests, 1);
    // The first hit told the manager the key is in use; later hits do not lock anything.
    for _ in 0..100 {
        assert!(s.driver.cached(&slot).is_some());
    }
    assert_eq!(s.driver.stats().cache_hits, 101);
}

#[test]
fn a_token_in_use_is_refreshed_by_the_timers_with_no_caller() {
    let s = setup();
    let slot = s.driver.slot(&s.key);
    let _ = s.driver.step(&slot).unwrap();
    s.answer(&token("one"));
    assert!(s.driver.cached(&slot).is_some());
    // The worker plans to wake at the refresh point (3540 s) ...
    let next = s.driver.run_timers();
    assert_eq!(next - s.clock.now(), Duration::from_secs(3540));
    s.clock.advance(Duration::from_secs(3540));
    // ... and at it, sends the refresh while the old token is still served.
    assert_eq!(
        s.driver.run_timers() - s.clock.now(),
        Duration::from_secs(60)
    );
    let sends = s.exec.take();
    assert_eq!(sends.len(), 1, "the timer refreshed the token");
    assert_eq!(s.cached_secret().as_deref(), Some("one"));
    for send in sends {
        s.driver.complete(send.id, reply(&token("two")));
    }
    assert_eq!(s.cached_secret().as_deref(), Some("two"));
    assert_eq!(s.driver.stats().cache_misses, 1, "nobody asked the manager");
}

#[test]
fn an_unused_token_is_not_refreshed() {
    let s = setup();
    let slot = s.driver.slot(&s.key);
    let _ = s.driver.step(&slot).unwrap();
    s.answer(&token("one"));
    // Fetched by a request (so in use once) and refreshed; the new token is never hit.
    s.clock.advance(Duration::from_secs(3540));
    s.driver.run_timers();
    s.answer(&token("two"));
    s.clock.advance(Duration::from_secs(3540));
    s.driver.run_timers();
    assert!(s.exec.take().is_empty(), "nobody used token two");
}

#[test]
fn hits_stop_where_the_manager_would_start_something() {
    let s = setup();
    let slot = s.driver.slot(&s.key);
    let _ = s.driver.step(&slot).unwrap();
    s.answer(&token("one"));
    assert!(s.driver.cached(&slot).is_some());
    // The refresh fails: the token is still served during the backoff, and not after it.
    s.clock.advance(Duration::from_secs(3545));
    s.driver.run_timers();
    s.answer("<html>503</html>");
    assert_eq!(s.cached_secret().as_deref(), Some("one"));
    let retry_at = s
        .driver
        .with_manager(|m| m.servable(s.clock.now(), &s.key).map(|(_, until)| until))
        .unwrap();
    s.clock.advance(retry_at - s.clock.now());
    assert!(s.driver.cached(&slot).is_none());
    // At the end of the backoff the timer refreshes again; never served at or after expiry.
    s.driver.run_timers();
    assert_eq!(s.exec.take().len(), 1);
    assert_eq!(s.cached_secret().as_deref(), Some("one"));
    let expires_at = s
        .driver
        .with_manager(|m| m.token(s.clock.now(), &s.key).unwrap().expires_at());
    s.clock.advance(expires_at - s.clock.now());
    assert!(s.driver.cached(&slot).is_none());
}

#[test]
fn invalidation_reaches_the_slot() {
    let s = setup();
    let slot = s.driver.slot(&s.key);
    let _ = s.driver.step(&slot).unwrap();
    s.answer(&token("one"));
    let served = s.driver.cached(&slot).unwrap();
    assert!(s.driver.invalidate(&slot, served.access_token()).dropped());
    assert!(s.driver.cached(&slot).is_none());
}

/// Issue "Lifecycle v2", finding 8: on `ApiMisuse`, `Driver::step` left queued output
/// undrained (a due refresh found by the same step was never sent).
#[test]
fn a_misused_step_still_hands_on_what_the_manager_queued() {
    let s = setup();
    let slot = s.driver.slot(&s.key);
    let _ = s.driver.step(&slot).unwrap();
    s.answer(&token("one"));
    let _ = s.driver.cached(&slot);
    s.clock.advance(Duration::from_secs(3541));
    // A key the client cannot have (an organization of a client without organizations).
    let bad = s.driver.slot(&s.key.clone().for_organization("org"));
    assert!(s.driver.step(&bad).is_err());
    assert_eq!(s.exec.take().len(), 1, "the due refresh went out");
}

#[test]
fn organizations_are_published_separately() {
    let clock = ManualClock::starting_now();
    let config = TransportConfig {
        clock: Arc::new(clock.clone()),
        manager: ManagerConfig::default(),
        ..TransportConfig::default()
    };
    let exec = RecordingExecutor::default();
    let driver = Driver::new(&config, exec.clone());
    let client = presets::bookingtime_app(Credentials::new("id", ClientSecret::new("s")))
        .build()
        .unwrap();
    let (id, _) = driver.register(client);
    let (a, b) = (
        driver.slot(&TokenKey::with_organization(id, "org-a")),
        driver.slot(&TokenKey::with_organization(id, "org-b")),
    );
    let leg_one = r#"{"refresh_token":"rt","expires_in":2592000,"token_type":"Bearer"}"#;
    let leg_two = |t: &str| format!(r#"{{"access_token":"{t}","expires_in":300}}"#);
    let _ = driver.step(&a).unwrap();
    for (i, body) in [leg_one.to_owned(), leg_two("at-a")].iter().enumerate() {
        let sends = exec.take();
        assert_eq!(sends.len(), 1, "step {i}");
        driver.complete(sends[0].id, reply(body));
    }
    let secret = |slot| {
        driver
            .cached(slot)
            .map(|t| t.access_token().secret().to_owned())
    };
    assert_eq!(secret(&a).as_deref(), Some("at-a"));
    assert!(secret(&b).is_none());
    let _ = driver.step(&b).unwrap();
    let sends = exec.take();
    assert_eq!(sends.len(), 1, "org-b needs only its access token");
    driver.complete(sends[0].id, reply(&leg_two("at-b")));
    assert_eq!(secret(&b).as_deref(), Some("at-b"));
    assert_eq!(secret(&a).as_deref(), Some("at-a"));
}

#[test]
fn settled_means_nothing_in_progress_and_nothing_due() {
    let s = setup();
    assert!(s.driver.is_settled());
    let slot = s.driver.slot(&s.key);
    let _ = s.driver.step(&slot).unwrap();
    assert!(!s.driver.is_settled());
    assert!(!s.driver.wait_settled(Duration::from_millis(1)));
    s.answer(&token("one"));
    assert!(s.driver.wait_settled(Duration::from_secs(5)));
    let _ = s.driver.cached(&slot);
    s.clock.advance(Duration::from_secs(3540));
    assert!(!s.driver.is_settled(), "the refresh is due");
}

/// A thread remembers the publication it saw (so a hit takes no atomic read-modify-write);
/// a new publication is seen at once by every thread that saw the old one, and a withdrawn
/// one is never served from a thread's memory.
#[test]
fn what_a_thread_remembers_never_outlives_a_new_publication() {
    let s = setup();
    let slot = s.driver.slot(&s.key);
    let _ = s.driver.step(&slot).unwrap();
    s.answer(&token("one"));
    let on_thread = |driver: &Arc<Driver>| {
        let (driver, key) = (Arc::clone(driver), s.key.clone());
        std::thread::spawn(move || {
            let slot = driver.slot(&key);
            driver
                .cached(&slot)
                .map(|t| t.access_token().secret().to_owned())
        })
    };
    assert_eq!(s.cached_secret().as_deref(), Some("one"));
    assert_eq!(on_thread(&s.driver).join().unwrap().as_deref(), Some("one"));
    // Replaced: this thread (which remembers "one") and others see "two".
    let served = s.driver.cached(&slot).unwrap();
    assert!(s.driver.invalidate(&slot, served.access_token()).dropped());
    assert!(
        s.driver.cached(&slot).is_none(),
        "withdrawn, not remembered"
    );
    let _ = s.driver.step(&slot).unwrap();
    s.answer(&token("two"));
    assert_eq!(s.cached_secret().as_deref(), Some("two"));
    assert_eq!(on_thread(&s.driver).join().unwrap().as_deref(), Some("two"));
    // Expiry is checked on what is remembered too.
    s.clock.advance(Duration::from_secs(3601));
    assert!(s.driver.cached(&slot).is_none());
}

/// A hit may run code that hits again (the same key, or keys remembered in the same place).
#[test]
fn a_hit_inside_a_hit_is_served() {
    let s = setup();
    let slots: Vec<_> = (0..6)
        .map(|i| {
            s.driver
                .slot(&TokenKey::for_user(s.key.client(), format!("user-{i}")))
        })
        .collect();
    let plain = s.driver.slot(&s.key);
    let _ = s.driver.step(&plain).unwrap();
    s.answer(&token("app"));
    let inner = s.driver.with_cached(&plain, |outer| {
        let again = s
            .driver
            .with_cached(&plain, |t| t.access_token().secret().to_owned());
        // Keys that are not there yet are misses, whatever the thread remembers.
        assert!(slots.iter().all(|slot| s.driver.cached(slot).is_none()));
        (outer.access_token().secret().to_owned(), again)
    });
    assert_eq!(inner, Some(("app".to_owned(), Some("app".to_owned()))));
    assert_eq!(s.cached_secret().as_deref(), Some("app"));
}
