//! Load: K concurrent callers (threads for ureq, tasks for reqwest) asking for one key through
//! one refresh cycle, against the simulator, with each token request answered after a delay
//! (the simulator's slow-body fault) so the refresh stays open while they ask.
//!
//! - **early refresh**: the clock (a `ManualClock`) is moved inside the token's refresh window;
//!   the callers are released together, each asks once. We report the token requests made
//!   and the callers' latency. Moving the clock wakes the client's timer worker, which starts
//!   the refresh (unless a caller gets there first); either way it runs on the transport's pool
//!   or a spawned task, and callers are served the cached token meanwhile.
//! - **past expiry**: the clock is moved past the token's expiry: every caller must wait for
//!   the new token.
//! - **oauth2**, used the way its docs show (no cache): every caller fetches its own token
//!   (`exchange_client_credentials().request(..)` / `.request_async(..)`), from the same
//!   endpoint with the same per-request delay.
//!
//! `cargo bench --bench load` runs K = 1, 64, 1000 for 5 rounds each; `cargo test --benches`
//! runs a smoke version (K = 1, 8, one round, a short delay).

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use benchmarks::clients::{self, FRESH_FOR};
use benchmarks::oauth2_compat::{ReqwestHttp, Setup, UreqHttp};
use benchmarks::{fmt_duration, percentile};
use provider_sim::{Fault, Preset, Provider, Simulator};
use transport_ureq::{Clock as _, ManualClock};

/// Where the clock is moved before the callers are released.
#[derive(Clone, Copy, PartialEq)]
enum Moment {
    EarlyRefresh,
    PastExpiry,
}

impl Moment {
    fn name(self) -> &'static str {
        match self {
            Moment::EarlyRefresh => "early refresh",
            Moment::PastExpiry => "past expiry",
        }
    }

    /// How far past the previous token's fetch the clock moves: inside the 60 s window before
    /// its 3600 s expiry, or past the expiry.
    fn advance(self) -> Duration {
        match self {
            Moment::EarlyRefresh => FRESH_FOR + Duration::from_secs(5),
            Moment::PastExpiry => Duration::from_secs(3600 + 5),
        }
    }
}

struct Settings {
    callers: Vec<usize>,
    rounds: usize,
    delay: Duration,
}

/// What one scenario measured over its rounds.
struct Outcome {
    requests_per_round: f64,
    latencies: Vec<Duration>,
}

fn inject_delay(sim: &Simulator, delay: Duration, times: usize) {
    sim.clear_faults(Provider::Generic);
    sim.inject(
        Provider::Generic,
        Fault::SlowBody {
            delay_ms: delay.as_millis() as u64,
        },
        times,
    );
}

/// Spawns `k` threads that each run `call` once after a common release; returns their
/// latencies.
fn threads(k: usize, call: impl Fn() + Send + Sync + 'static) -> Vec<Duration> {
    let call = Arc::new(call);
    let barrier = Arc::new(Barrier::new(k));
    let handles: Vec<_> = (0..k)
        .map(|_| {
            let (call, barrier) = (Arc::clone(&call), Arc::clone(&barrier));
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    call();
                    start.elapsed()
                })
                .expect("a thread")
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("a caller"))
        .collect()
}

/// Spawns `k` tasks on `rt` that each run `call` once after a common release.
fn tasks<F, Fut>(rt: &tokio::runtime::Runtime, k: usize, call: F) -> Vec<Duration>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    rt.block_on(async {
        let barrier = Arc::new(tokio::sync::Barrier::new(k));
        let handles: Vec<_> = (0..k)
            .map(|_| {
                let (call, barrier) = (Arc::clone(&call), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    let start = Instant::now();
                    call().await;
                    start.elapsed()
                })
            })
            .collect();
        let mut latencies = Vec::with_capacity(k);
        for handle in handles {
            latencies.push(handle.await.expect("a caller"));
        }
        latencies
    })
}

/// An early refresh runs in the background: waits for it to land before the next round.
fn wait_fresh(
    driver: &Arc<token_driver::Driver>,
    slot: &token_driver::KeySlot,
    clock: &ManualClock,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !driver.cached(slot).is_some_and(|t| t.is_fresh(clock.now())) {
        assert!(Instant::now() < deadline, "the refresh never landed");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn ours_ureq(sim: &Simulator, s: &Settings, k: usize, moment: Moment) -> Outcome {
    let clock = ManualClock::starting_now();
    let client = clients::ureq_client(Some(&clock));
    let handle = client.register(clients::config(sim, Preset::Generic));
    sim.clear_faults(Provider::Generic);
    handle.token().expect("first fetch");
    let before = sim.token_requests(Provider::Generic);
    let mut latencies = Vec::new();
    for _ in 0..s.rounds {
        // The delay first: moving the clock may start the refresh at once.
        inject_delay(sim, s.delay, 1);
        clock.advance(moment.advance());
        let h = handle.clone();
        latencies.extend(threads(k, move || {
            h.token().expect("a token");
        }));
        wait_fresh(client.driver(), handle.slot(), &clock);
    }
    Outcome {
        requests_per_round: (sim.token_requests(Provider::Generic) - before) as f64
            / s.rounds as f64,
        latencies,
    }
}

fn ours_reqwest(sim: &Simulator, s: &Settings, k: usize, moment: Moment) -> Outcome {
    let rt = clients::multi_thread(2);
    let clock = ManualClock::starting_now();
    let client = clients::reqwest_client(Some(&clock));
    let handle = client.register(clients::config(sim, Preset::Generic));
    sim.clear_faults(Provider::Generic);
    rt.block_on(handle.token()).expect("first fetch");
    let before = sim.token_requests(Provider::Generic);
    let mut latencies = Vec::new();
    for _ in 0..s.rounds {
        inject_delay(sim, s.delay, 1);
        clock.advance(moment.advance());
        let h = handle.clone();
        latencies.extend(tasks(&rt, k, move || {
            let h = h.clone();
            async move {
                h.token().await.expect("a token");
            }
        }));
        wait_fresh(client.driver(), handle.slot(), &clock);
    }
    Outcome {
        requests_per_round: (sim.token_requests(Provider::Generic) - before) as f64
            / s.rounds as f64,
        latencies,
    }
}

fn oauth2_threads(sim: &Simulator, s: &Settings, k: usize) -> Outcome {
    let setup = Arc::new(Setup::equivalent(&clients::config(sim, Preset::Generic)));
    let http = Arc::new(UreqHttp::default());
    let before = sim.token_requests(Provider::Generic);
    let mut latencies = Vec::new();
    for _ in 0..s.rounds {
        inject_delay(sim, s.delay, k);
        let (setup, http) = (Arc::clone(&setup), Arc::clone(&http));
        latencies.extend(threads(k, move || {
            setup.exchange().request(&*http).expect("a token");
        }));
    }
    Outcome {
        requests_per_round: (sim.token_requests(Provider::Generic) - before) as f64
            / s.rounds as f64,
        latencies,
    }
}

fn oauth2_tasks(sim: &Simulator, s: &Settings, k: usize) -> Outcome {
    let rt = clients::multi_thread(2);
    let setup = Arc::new(Setup::equivalent(&clients::config(sim, Preset::Generic)));
    let http = Arc::new(ReqwestHttp::new());
    let before = sim.token_requests(Provider::Generic);
    let mut latencies = Vec::new();
    for _ in 0..s.rounds {
        inject_delay(sim, s.delay, k);
        let (setup, http) = (Arc::clone(&setup), Arc::clone(&http));
        latencies.extend(tasks(&rt, k, move || {
            let (setup, http) = (Arc::clone(&setup), Arc::clone(&http));
            async move {
                setup
                    .exchange()
                    .request_async(&*http)
                    .await
                    .expect("a token");
            }
        }));
    }
    Outcome {
        requests_per_round: (sim.token_requests(Provider::Generic) - before) as f64
            / s.rounds as f64,
        latencies,
    }
}

/// A ratio for the table: two decimals, or scientific notation when tiny.
fn ratio(r: f64) -> String {
    if r >= 0.01 {
        format!("{r:.2}")
    } else {
        format!("{r:.1e}")
    }
}

fn main() {
    let s = if benchmarks::bench_mode() {
        Settings {
            callers: vec![1, 64, 1000],
            rounds: 5,
            delay: Duration::from_millis(50),
        }
    } else {
        Settings {
            callers: vec![1, 8],
            rounds: 1,
            delay: Duration::from_millis(5),
        }
    };
    let sim = clients::simulator();
    println!(
        "load: K callers, one key, {} round(s) each; every token request answered after {} ms",
        s.rounds,
        s.delay.as_millis()
    );
    println!(
        "  {:<14} {:<22} {:>5} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "moment", "client", "K", "requests", "p50", "p99", "max", "p50/oa2", "p99/oa2"
    );
    let mut plotted: Vec<(String, usize, f64, f64)> = Vec::new();
    for &k in &s.callers {
        let baselines = [
            ("oauth2 (ureq 3)", oauth2_threads(&sim, &s, k)),
            ("oauth2 (reqwest)", oauth2_tasks(&sim, &s, k)),
        ];
        let mut rows: Vec<(Moment, &str, Outcome, usize)> = Vec::new();
        for moment in [Moment::EarlyRefresh, Moment::PastExpiry] {
            rows.push((moment, "transport-ureq", ours_ureq(&sim, &s, k, moment), 0));
            rows.push((
                moment,
                "transport-reqwest",
                ours_reqwest(&sim, &s, k, moment),
                1,
            ));
        }
        let summary =
            |moment: &str, name: &str, outcome: &Outcome, base: Option<&Outcome>| -> (f64, f64) {
                let mut l = outcome.latencies.clone();
                let (p50, p99, max) = (
                    percentile(&mut l, 50.0),
                    percentile(&mut l, 99.0),
                    percentile(&mut l, 100.0),
                );
                let ratios = base.map(|b| {
                    let mut bl = b.latencies.clone();
                    (
                        p50.as_secs_f64() / percentile(&mut bl, 50.0).as_secs_f64(),
                        p99.as_secs_f64() / percentile(&mut bl, 99.0).as_secs_f64(),
                    )
                });
                println!(
                    "  {:<14} {:<22} {:>5} {:>10.1} {:>10} {:>10} {:>10} {:>9} {:>9}",
                    moment,
                    name,
                    k,
                    outcome.requests_per_round,
                    fmt_duration(p50),
                    fmt_duration(p99),
                    fmt_duration(max),
                    ratios.map_or("1".to_owned(), |r| ratio(r.0)),
                    ratios.map_or("1".to_owned(), |r| ratio(r.1)),
                );
                (p50.as_secs_f64() * 1e3, p99.as_secs_f64() * 1e3)
            };
        for (name, outcome) in &baselines {
            let (p50, p99) = summary("(no cache)", name, outcome, None);
            plotted.push((name.to_string(), k, p50, p99));
        }
        for (moment, name, outcome, base) in &rows {
            let (p50, p99) = summary(moment.name(), name, outcome, Some(&baselines[*base].1));
            plotted.push((format!("{name}, {}", moment.name()), k, p50, p99));
        }
    }
    if benchmarks::bench_mode() {
        plot(&plotted);
    }
}

/// `docs/bench/load_latency.svg`: p50 (solid) and p99 (dashed) per client against K.
fn plot(rows: &[(String, usize, f64, f64)]) {
    use benchmarks::plot::{Axis, Series, line_chart};
    let mut names: Vec<&str> = Vec::new();
    for (name, ..) in rows {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    let mut series = Vec::new();
    for (color, name) in names.into_iter().enumerate() {
        let of = |pick: fn(&(String, usize, f64, f64)) -> f64| {
            rows.iter()
                .filter(|r| r.0 == name)
                .map(|r| (r.1 as f64, pick(r)))
                .collect::<Vec<_>>()
        };
        series.push(Series {
            name: format!("{name}: p50"),
            points: of(|r| r.2),
            dashed: false,
            color,
        });
        series.push(Series {
            name: format!("{name}: p99"),
            points: of(|r| r.3),
            dashed: true,
            color,
        });
    }
    match line_chart(
        "load_latency.svg",
        "token() latency through one refresh: K callers, token endpoint answering in 50 ms",
        ("K callers", Axis::Log),
        ("latency (ms)", Axis::Log),
        &series,
    ) {
        Ok(path) => println!("load: wrote {}", path.display()),
        Err(e) => println!("load: no plot ({e})"),
    }
}
