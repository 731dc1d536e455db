//! What a shared Redis store buys and costs (issue "fleet store", point 9).
//!
//! ```text
//! cargo bench -p token-store-redis --bench fleet
//! ```
//!
//! 1. **A fleet over several lifetimes**: 8 processes (this binary, re-run as children) call
//!    `token()` every 50 ms for 20 s on one key with 4 s tokens, once sharing one real
//!    `redis-server`, once independent (no store). Token requests per lifetime, side by side.
//! 2. **A cache hit**: `token()` on a cached token with a store configured, as a ratio to the
//!    same client without one (a hit stays in memory: the store must add nothing).
//! 3. **A miss**: a new client's first `token()`: with no store (the baseline), with a store
//!    that has nothing (lease, fetch, publish), and with a store that has the token (a process
//!    starting next to a warm fleet: no token request at all).
//!
//! Every figure is printed with its baseline from the same run. A `redis-server` must be
//! installed (`apt-get install redis-server`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use provider_sim::{CLIENT_ID, CLIENT_SECRET, Provider, Simulator};
use token_core::{ClientConfig, ClientSecret, Credentials, presets};
use token_store_redis::RedisStore;
use token_testkit::redis::RedisServer;
use transport_ureq::TokenClient;

const CHILD: &str = "TOKEN_FLEET_BENCH_CHILD";
const PROCESSES: usize = 8;
const LIFETIME_S: i64 = 4;
const RUN: Duration = Duration::from_secs(20);
const INTERVAL: Duration = Duration::from_millis(50);

fn config(token_url: &str) -> ClientConfig {
    presets::generic(
        token_url,
        Credentials::new(CLIENT_ID, ClientSecret::new(CLIENT_SECRET)),
    )
    .build()
    .expect("a valid configuration")
}

fn client(redis_url: Option<&str>) -> TokenClient {
    match redis_url {
        Some(url) => TokenClient::builder()
            .store(RedisStore::builder(url).build().expect("a Redis URL"))
            .build(),
        None => TokenClient::new(),
    }
}

/// A child: calls `token()` every `INTERVAL` for `RUN`, then prints `DONE`.
fn child(token_url: &str) {
    let redis = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty());
    let client = client(redis.as_deref());
    let handle = client.register(config(token_url));
    let end = Instant::now() + RUN;
    while Instant::now() < end {
        handle.token().expect("a token");
        std::thread::sleep(INTERVAL);
    }
    println!("DONE");
}

fn fleet(sim: &Simulator, redis_url: Option<&str>) -> usize {
    let before = sim.token_requests(Provider::Generic);
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe().expect("this binary"))
                .env(CHILD, sim.token_url(Provider::Generic))
                .env("REDIS_URL", redis_url.unwrap_or(""))
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn a child")
        })
        .collect();
    for mut child in children {
        let out = child.stdout.take().expect("stdout");
        let done = BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .any(|l| l == "DONE");
        assert!(
            child.wait().expect("wait").success() && done,
            "a child failed"
        );
    }
    sim.token_requests(Provider::Generic) - before
}

/// Nanoseconds per `token()` hit, the median of `rounds` rounds of `n` calls.
fn hit_ns(handle: &transport_ureq::ClientHandle, rounds: usize, n: u32) -> f64 {
    handle.token().expect("a token");
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                std::hint::black_box(handle.token().expect("a token"));
            }
            start.elapsed().as_nanos() as f64 / f64::from(n)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[rounds / 2]
}

/// Microseconds for a new client's first `token()`, the median of `n`; `prepare` runs before
/// each (untimed).
fn first_token_us(
    n: usize,
    token_url: &str,
    redis_url: Option<&str>,
    mut prepare: impl FnMut(),
) -> f64 {
    let mut samples: Vec<f64> = (0..n)
        .map(|_| {
            prepare();
            let client = client(redis_url);
            let handle = client.register(config(token_url));
            let start = Instant::now();
            std::hint::black_box(handle.token().expect("a token"));
            let took = start.elapsed().as_secs_f64() * 1e6;
            drop(handle);
            client.driver(); // keep `client` alive to here
            took
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[n / 2]
}

fn main() {
    if let Ok(token_url) = std::env::var(CHILD) {
        child(&token_url);
        return;
    }
    // `cargo test --benches` runs benches with no work to do here: the figures take a minute.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let redis = RedisServer::start();
    let sim = Simulator::start().expect("the simulator");
    let token_url = sim.token_url(Provider::Generic);
    let lifetimes = RUN.as_secs_f64() / LIFETIME_S as f64;

    println!(
        "## 1. {PROCESSES} processes, {RUN:?} of {LIFETIME_S} s tokens ({lifetimes} lifetimes)"
    );
    sim.set_token_lifetime(Provider::Generic, LIFETIME_S);
    let independent = fleet(&sim, None);
    redis.cmd(&["FLUSHALL"]).expect("FLUSHALL");
    let shared = fleet(&sim, Some(&redis.url()));
    println!("| processes | token requests | per lifetime | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| {PROCESSES} independent (baseline) | {independent} | {:.1} | 1.00 |",
        independent as f64 / lifetimes
    );
    println!(
        "| {PROCESSES} sharing one Redis | {shared} | {:.1} | {:.3} |",
        shared as f64 / lifetimes,
        shared as f64 / independent as f64
    );

    println!("\n## 2. a cache hit: token() with a store / without");
    sim.set_token_lifetime(Provider::Generic, 3600);
    let plain = client(None);
    let with_store = client(Some(&redis.url()));
    let (h_plain, h_store) = (
        plain.register(config(&token_url)),
        with_store.register(config(&token_url)),
    );
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        a.push(hit_ns(&h_plain, 11, 200_000));
        b.push(hit_ns(&h_store, 11, 200_000));
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (a, b) = (a[2], b[2]);
    println!("| client | ns per hit | ratio |\n|---|---|---|");
    println!("| no store (baseline) | {a:.1} | 1.00 |");
    println!("| Redis store | {b:.1} | {:.2} |", b / a);

    println!("\n## 3. a miss: a new client's first token()");
    let n = 31;
    let none = first_token_us(n, &token_url, None, || {});
    let url = redis.url();
    let empty = first_token_us(n, &token_url, Some(&url), || {
        redis.cmd(&["FLUSHALL"]).expect("FLUSHALL");
    });
    // Warm: one client put the token there; every new client finds it.
    redis.cmd(&["FLUSHALL"]).expect("FLUSHALL");
    first_token_us(1, &token_url, Some(&url), || {});
    let before = sim.token_requests(Provider::Generic);
    let warm = first_token_us(n, &token_url, Some(&url), || {});
    let fetched = sim.token_requests(Provider::Generic) - before;
    println!("| first token() | µs (median of {n}) | ratio | token requests |\n|---|---|---|---|");
    println!("| no store: fetch (baseline) | {none:.0} | 1.00 | {n} |");
    println!(
        "| Redis, empty: lease + fetch + publish | {empty:.0} | {:.2} | {n} |",
        empty / none
    );
    println!(
        "| Redis, warm: load only | {warm:.0} | {:.2} | {fetched} |",
        warm / none
    );
}
