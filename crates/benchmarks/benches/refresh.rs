//! The background refresh under continuous load: K callers (threads for ureq, tasks for
//! reqwest) call `token()` in a loop for several seconds on the system clock, while the
//! simulator's tokens live `LIFETIME` seconds (so the token is refreshed at half of that, several
//! times during the run) and every token request is answered after `DELAY` (the simulator's
//! slow-body fault on every request).
//!
//! Reported per row: the refreshes seen (and how long each took from the refresh point until the
//! new token was served), the token requests made (and per token lifetime), `Stats::waits` and
//! `Stats::cache_misses` counted from after the first fetch (for the `oauth2` cache: callers
//! that waited for a fetch), tokens returned that had expired before the call began, and the
//! latency percentiles (p50, p99, p99.9, p99.99, max) of calls with **no refresh happening** and, as a
//! ratio to them, of calls **during a refresh** in the same run. "During a refresh" is from 1 ms before the token's
//! refresh point until 2 ms after a monitor thread (polling the cache every 200 µs) sees the new
//! token, so it errs on the side of counting quiet calls as refresh calls, never the reverse.
//!
//! The comparison is `oauth2` as its docs show (`exchange_client_credentials().request(..)` /
//! `.request_async(..)`) inside the cache a caller would write around it: the token behind a
//! mutex, fetched by the caller that finds it due while it holds the lock, with the same refresh
//! point as ours.
//!
//! `cargo bench --bench refresh` (about 80 s); `cargo test --benches` runs a smoke version.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use benchmarks::clients;
use benchmarks::fmt_duration;
use benchmarks::hist::Histogram;
use benchmarks::oauth2_compat::{AsyncCachedOauth2, CachedOauth2, Watch};
use provider_sim::{Fault, Preset, Provider, Simulator};

const GUARD: Duration = Duration::from_millis(2);
const POLL: Duration = Duration::from_micros(200);

struct Settings {
    lifetime_secs: i64,
    delay: Duration,
    run: Duration,
    threads: Vec<usize>,
    tasks: Vec<usize>,
}

/// Where the refresh windows are, shared by the monitor and the callers.
struct Window {
    origin: Instant,
    start: AtomicU64,
    end: AtomicU64,
    stop: AtomicBool,
}

impl Window {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            start: AtomicU64::new(u64::MAX),
            end: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
        })
    }

    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_nanos() as u64
    }

    /// Whether a call that started at `t0` overlapped a refresh window.
    #[inline]
    fn during(&self, t0: Instant) -> bool {
        let t = self.ns(t0);
        let (start, end) = (
            self.start.load(Ordering::Acquire),
            self.end.load(Ordering::Acquire),
        );
        t >= start && t <= end.saturating_add(GUARD.as_nanos() as u64)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// What each caller brings back.
#[derive(Default)]
struct Calls {
    quiet: Histogram,
    during: Histogram,
    expired: u64,
}

impl Calls {
    #[inline]
    fn record(&mut self, window: &Window, t0: Instant, t1: Instant) {
        if window.during(t0) {
            self.during.record(t1 - t0);
        } else {
            self.quiet.record(t1 - t0);
        }
    }

    fn merge(&mut self, other: &Calls) {
        self.quiet.merge(&other.quiet);
        self.during.merge(&other.during);
        self.expired += other.expired;
    }
}

/// Watches the cache until `run` is over, marking each refresh window; returns the windows'
/// lengths (refresh point to new token seen). `current` gives the current token's identity and
/// refresh point, if one is served.
fn monitor<K: PartialEq>(
    window: &Window,
    run: Duration,
    mut current: impl FnMut() -> Option<(K, Instant)>,
) -> Vec<Duration> {
    let deadline = Instant::now() + run;
    let mut lengths = Vec::new();
    let (mut key, mut refresh_at) = loop {
        if let Some(c) = current() {
            break c;
        }
        std::thread::sleep(POLL);
    };
    loop {
        let start = refresh_at - Duration::from_millis(1);
        window.end.store(u64::MAX, Ordering::Release);
        window.start.store(window.ns(start), Ordering::Release);
        let now = Instant::now();
        if start.min(deadline) > now {
            std::thread::sleep(start.min(deadline) - now);
        }
        let next = loop {
            if Instant::now() >= deadline {
                break None;
            }
            match current() {
                Some((k, at)) if k != key => break Some((k, at)),
                _ => std::thread::sleep(POLL),
            }
        };
        let Some((k, at)) = next else { break };
        let seen = Instant::now();
        window.end.store(window.ns(seen), Ordering::Release);
        lengths.push(seen.saturating_duration_since(refresh_at));
        std::thread::sleep(GUARD);
        (key, refresh_at) = (k, at);
    }
    window.stop.store(true, Ordering::Relaxed);
    lengths
}

struct Row {
    client: &'static str,
    k: usize,
    run: Duration,
    windows: Vec<Duration>,
    requests: usize,
    waits: Option<u64>,
    misses: Option<u64>,
    calls: Calls,
}

fn slow_endpoint(sim: &Simulator, s: &Settings) {
    sim.clear_faults(Provider::Generic);
    sim.set_token_lifetime(Provider::Generic, s.lifetime_secs);
    sim.inject(
        Provider::Generic,
        Fault::SlowBody {
            delay_ms: s.delay.as_millis() as u64,
        },
        100_000,
    );
}

fn ours_ureq(sim: &Simulator, s: &Settings, k: usize) -> Row {
    slow_endpoint(sim, s);
    let client = clients::ureq_client(None);
    let handle = client.register(clients::config(sim, Preset::Generic));
    handle.token().expect("first fetch");
    let (before, requests) = (client.stats(), sim.token_requests(Provider::Generic));
    let window = Window::new();
    let callers: Vec<_> = (0..k)
        .map(|_| {
            let (handle, window) = (handle.clone(), Arc::clone(&window));
            std::thread::spawn(move || {
                let mut calls = Calls::default();
                while !window.stopped() {
                    let t0 = Instant::now();
                    let token = handle.token().expect("a token");
                    let t1 = Instant::now();
                    calls.expired += u64::from(token.is_expired(t0));
                    calls.record(&window, t0, t1);
                }
                calls
            })
        })
        .collect();
    let started = Instant::now();
    let windows = monitor(&window, s.run, || {
        handle
            .cached()
            .map(|t| (t.access_token().secret().to_owned(), t.refresh_at()))
    });
    let mut calls = Calls::default();
    for caller in callers {
        calls.merge(&caller.join().expect("a caller"));
    }
    let after = client.stats();
    Row {
        client: "transport-ureq",
        k,
        run: started.elapsed(),
        windows,
        requests: sim.token_requests(Provider::Generic) - requests,
        waits: Some(after.waits - before.waits),
        misses: Some(after.cache_misses - before.cache_misses),
        calls,
    }
}

fn ours_reqwest(sim: &Simulator, s: &Settings, k: usize) -> Row {
    slow_endpoint(sim, s);
    let rt = clients::multi_thread(2);
    let client = clients::reqwest_client(None);
    let handle = client.register(clients::config(sim, Preset::Generic));
    rt.block_on(handle.token()).expect("first fetch");
    let (before, requests) = (client.stats(), sim.token_requests(Provider::Generic));
    let window = Window::new();
    let callers: Vec<_> = (0..k)
        .map(|_| {
            let (handle, window) = (handle.clone(), Arc::clone(&window));
            rt.spawn(async move {
                let mut calls = Calls::default();
                while !window.stopped() {
                    let t0 = Instant::now();
                    let token = handle.token().await.expect("a token");
                    let t1 = Instant::now();
                    calls.expired += u64::from(token.is_expired(t0));
                    calls.record(&window, t0, t1);
                    // A caller does something between calls; and a task that never yields
                    // would starve the runtime (the timer task and the refresh included).
                    tokio::task::yield_now().await;
                }
                calls
            })
        })
        .collect();
    let started = Instant::now();
    let windows = monitor(&window, s.run, || {
        handle
            .cached()
            .map(|t| (t.access_token().secret().to_owned(), t.refresh_at()))
    });
    let calls = rt.block_on(async {
        let mut calls = Calls::default();
        for caller in callers {
            calls.merge(&caller.await.expect("a caller"));
        }
        calls
    });
    let after = client.stats();
    Row {
        client: "transport-reqwest",
        k,
        run: started.elapsed(),
        windows,
        requests: sim.token_requests(Provider::Generic) - requests,
        waits: Some(after.waits - before.waits),
        misses: Some(after.cache_misses - before.cache_misses),
        calls,
    }
}

fn watched(watch: &Watch) -> Option<(u64, Instant)> {
    Some((watch.generation(), watch.refresh_at()))
}

fn oauth2_threads(sim: &Simulator, s: &Settings, k: usize) -> Row {
    slow_endpoint(sim, s);
    let cache = Arc::new(CachedOauth2::new(&clients::config(sim, Preset::Generic)));
    drop(cache.token());
    let (requests, waits) = (sim.token_requests(Provider::Generic), cache.watch().waits());
    let window = Window::new();
    let callers: Vec<_> = (0..k)
        .map(|_| {
            let (cache, window) = (Arc::clone(&cache), Arc::clone(&window));
            std::thread::spawn(move || {
                let mut calls = Calls::default();
                while !window.stopped() {
                    let t0 = Instant::now();
                    drop(std::hint::black_box(cache.token()));
                    calls.record(&window, t0, Instant::now());
                }
                calls
            })
        })
        .collect();
    let started = Instant::now();
    let windows = monitor(&window, s.run, || watched(cache.watch()));
    let mut calls = Calls::default();
    for caller in callers {
        calls.merge(&caller.join().expect("a caller"));
    }
    Row {
        client: "oauth2 + Mutex cache",
        k,
        run: started.elapsed(),
        windows,
        requests: sim.token_requests(Provider::Generic) - requests,
        waits: Some(cache.watch().waits() - waits),
        misses: None,
        calls,
    }
}

fn oauth2_tasks(sim: &Simulator, s: &Settings, k: usize) -> Row {
    slow_endpoint(sim, s);
    let rt = clients::multi_thread(2);
    let cache = Arc::new(AsyncCachedOauth2::new(&clients::config(
        sim,
        Preset::Generic,
    )));
    drop(rt.block_on(cache.token()));
    let (requests, waits) = (sim.token_requests(Provider::Generic), cache.watch().waits());
    let window = Window::new();
    let callers: Vec<_> = (0..k)
        .map(|_| {
            let (cache, window) = (Arc::clone(&cache), Arc::clone(&window));
            rt.spawn(async move {
                let mut calls = Calls::default();
                while !window.stopped() {
                    let t0 = Instant::now();
                    drop(std::hint::black_box(cache.token().await));
                    calls.record(&window, t0, Instant::now());
                    tokio::task::yield_now().await;
                }
                calls
            })
        })
        .collect();
    let started = Instant::now();
    let windows = monitor(&window, s.run, || watched(cache.watch()));
    let calls = rt.block_on(async {
        let mut calls = Calls::default();
        for caller in callers {
            calls.merge(&caller.await.expect("a caller"));
        }
        calls
    });
    Row {
        client: "oauth2 + tokio Mutex cache",
        k,
        run: started.elapsed(),
        windows,
        requests: sim.token_requests(Provider::Generic) - requests,
        waits: Some(cache.watch().waits() - waits),
        misses: None,
        calls,
    }
}

fn ratio(during: Duration, quiet: Duration) -> String {
    if quiet.is_zero() {
        return "–".to_owned();
    }
    let r = during.as_secs_f64() / quiet.as_secs_f64();
    if r >= 100.0 {
        format!("{r:.0}×")
    } else {
        format!("{r:.2}×")
    }
}

fn print(s: &Settings, row: &Row, ours: bool) {
    let opt = |v: Option<u64>| v.map_or("–".to_owned(), |v| v.to_string());
    let c = &row.calls;
    let (q, d) = (&c.quiet, &c.during);
    let mean_window = if row.windows.is_empty() {
        Duration::ZERO
    } else {
        row.windows.iter().sum::<Duration>() / row.windows.len() as u32
    };
    let lifetimes = row.run.as_secs_f64() / s.lifetime_secs as f64;
    let pct = |p: f64| {
        format!(
            "{} {}",
            fmt_duration(q.percentile(p)),
            ratio(d.percentile(p), q.percentile(p))
        )
    };
    println!(
        "  {:<26} {:>4} {:>4} {:>9} {:>4} {:>5.2} {:>5} {:>6} {:>7} {:>9} {:>9} {:>16} {:>16} {:>18} {:>18} {:>20}",
        row.client,
        row.k,
        row.windows.len(),
        fmt_duration(mean_window),
        row.requests,
        row.requests as f64 / lifetimes,
        opt(row.waits),
        opt(row.misses),
        if ours {
            c.expired.to_string()
        } else {
            "–".to_owned()
        },
        q.len(),
        d.len(),
        pct(50.0),
        pct(99.0),
        pct(99.9),
        pct(99.99),
        pct(100.0),
    );
}

fn main() {
    let s = if benchmarks::bench_mode() {
        Settings {
            lifetime_secs: 2,
            delay: Duration::from_millis(200),
            run: Duration::from_secs(6),
            threads: vec![1, 16, 64],
            tasks: vec![1, 64, 200],
        }
    } else {
        Settings {
            lifetime_secs: 1,
            delay: Duration::from_millis(10),
            run: Duration::from_millis(800),
            threads: vec![4],
            tasks: vec![8],
        }
    };
    let sim = clients::simulator();
    println!(
        "refresh: K callers calling token() continuously for {:?}; tokens live {} s (refreshed at half); every token request answered after {} ms",
        s.run,
        s.lifetime_secs,
        s.delay.as_millis()
    );
    println!(
        "  (each percentile: calls with no refresh happening, then the ratio of calls during a refresh to it)"
    );
    println!(
        "  {:<26} {:>4} {:>4} {:>9} {:>4} {:>5} {:>5} {:>6} {:>7} {:>9} {:>9} {:>16} {:>16} {:>18} {:>18} {:>20}",
        "client",
        "K",
        "refr",
        "window",
        "reqs",
        "/life",
        "waits",
        "misses",
        "expired",
        "n quiet",
        "n during",
        "p50",
        "p99",
        "p99.9",
        "p99.99",
        "max",
    );
    let mut timelines = Vec::new();
    for &k in &s.threads {
        let (row, timeline) = sampled(&sim, || ours_ureq(&sim, &s, k));
        print(&s, &row, true);
        timelines.push((format!("transport-ureq, K = {k}"), timeline));
        let (row, timeline) = sampled(&sim, || oauth2_threads(&sim, &s, k));
        print(&s, &row, false);
        timelines.push((format!("oauth2 + Mutex, K = {k}"), timeline));
    }
    for &k in &s.tasks {
        let (row, timeline) = sampled(&sim, || ours_reqwest(&sim, &s, k));
        print(&s, &row, true);
        timelines.push((format!("transport-reqwest, K = {k}"), timeline));
        let (row, timeline) = sampled(&sim, || oauth2_tasks(&sim, &s, k));
        print(&s, &row, false);
        timelines.push((format!("oauth2 + tokio Mutex, K = {k}"), timeline));
    }
    sim.clear_faults(Provider::Generic);
    if benchmarks::bench_mode() {
        plot(&s, &timelines);
    }
}

/// Runs `row`, sampling the token requests the simulator has seen every 10 ms meanwhile:
/// `(seconds since the start, requests since the start)`.
fn sampled(sim: &Simulator, row: impl FnOnce() -> Row) -> (Row, Vec<(f64, f64)>) {
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let base = sim.token_requests(Provider::Generic);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut points = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let n = sim.token_requests(Provider::Generic) - base;
                points.push((start.elapsed().as_secs_f64(), n as f64));
                std::thread::sleep(Duration::from_millis(10));
            }
            points
        });
        let row = row();
        stop.store(true, Ordering::Relaxed);
        (row, sampler.join().expect("the sampler"))
    })
}

/// `docs/bench/refresh_requests.svg`: token requests over time, the largest K of each client.
fn plot(s: &Settings, timelines: &[(String, Vec<(f64, f64)>)]) {
    use benchmarks::plot::{Axis, Series, line_chart};
    let largest = [
        format!("K = {}", s.threads.iter().max().copied().unwrap_or(0)),
        format!("K = {}", s.tasks.iter().max().copied().unwrap_or(0)),
    ];
    let series: Vec<Series> = timelines
        .iter()
        .filter(|(name, _)| largest.iter().any(|k| name.ends_with(k.as_str())))
        .enumerate()
        .map(|(color, (name, points))| Series {
            name: name.clone(),
            points: points.clone(),
            dashed: name.starts_with("oauth2"),
            color,
        })
        .collect();
    let title = format!(
        "Token requests over time: {} s tokens refreshed at half, endpoint answering in {} ms",
        s.lifetime_secs,
        s.delay.as_millis()
    );
    match line_chart(
        "refresh_requests.svg",
        &title,
        (
            "seconds since the row started (its client's first fetch included)",
            Axis::Linear,
        ),
        ("token requests", Axis::Linear),
        &series,
    ) {
        Ok(path) => println!("refresh: wrote {}", path.display()),
        Err(e) => println!("refresh: no plot ({e})"),
    }
}
