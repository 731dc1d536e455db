//! Allocations per cache hit, counted by a counting global allocator (target: zero), for every
//! way a caller gets a cached token, next to the hand-written `Mutex<Option<(String, Instant)>>`
//! cache. "In the refresh window" means the token is past its refresh point with the refresh
//! still in flight (held open by the simulator's slow-body fault): callers are still served
//! the cached token at once.
//!
//! It fails (panics) if one of our cache-hit paths allocates on the calling thread, so
//! `cargo test -p benchmarks --benches` checks the zero-allocation property.

use std::hint::black_box;
use std::time::{Duration, Instant};

use benchmarks::alloc::{CountingAlloc, counts};
use benchmarks::baseline::HandCache;
use benchmarks::clients::{self, FRESH_FOR, OffsetClock};
use provider_sim::{Fault, Preset, Provider};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Allocations per call of `f` over `n` calls (after a warm-up): all threads, this thread.
fn per_call(n: u64, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..16 {
        f();
    }
    let before = counts();
    for _ in 0..n {
        f();
    }
    let d = counts() - before;
    (
        d.allocs as f64 / n as f64,
        d.thread_allocs as f64 / n as f64,
    )
}

fn row(name: &str, (all, this): (f64, f64)) {
    println!("  {name:<58} {this:>8.3} {all:>8.3}");
}

/// A row for one of our cache-hit paths, which must not allocate on the calling thread (other
/// threads, e.g. a runtime worker reading a refresh's response, may).
fn ours(name: &str, counts: (f64, f64)) {
    row(name, counts);
    assert!(counts.1 == 0.0, "a cache hit allocated: {name}");
}

fn main() {
    let n: u64 = if benchmarks::bench_mode() {
        100_000
    } else {
        1_000
    };
    let sim = clients::simulator();
    let config = clients::config(&sim, Preset::Bookable);

    println!("allocations per call ({n} calls; this thread / all threads):");
    println!("  {:<58} {:>8} {:>8}", "path", "thread", "all");

    // Fresh token, system clock.
    let hand = HandCache::new();
    hand.put("x".repeat(900), Instant::now() + FRESH_FOR);
    row(
        "hand-written Mutex<Option<(String, Instant)>>",
        per_call(n, || drop(black_box(hand.get()))),
    );

    let ureq = clients::ureq_client(None);
    let handle = ureq.register(config.clone());
    handle.token().expect("first fetch");
    ours(
        "Driver::cached (fresh)",
        per_call(n, || drop(black_box(ureq.driver().cached(handle.slot())))),
    );
    ours(
        "transport-ureq ClientHandle::token (fresh)",
        per_call(n, || drop(black_box(handle.token()))),
    );
    ours(
        "transport-ureq ClientHandle::with_token (fresh)",
        per_call(n, || {
            drop(black_box(
                handle.with_token(|t| black_box(t.access_token().secret().len())),
            ))
        }),
    );
    ours(
        "transport-ureq TokenClient::with_token (fresh)",
        per_call(n, || {
            drop(black_box(ureq.with_token(handle.key(), |t| {
                black_box(t.access_token().secret().len())
            })))
        }),
    );
    // The token and its header on a reused request, after checking the API URL (no bearer
    // token to plain HTTP off loopback): allocation-free since lifecycle v2.
    let mut request = http::Request::get("https://api.example.com/venues")
        .body(())
        .expect("request");
    handle.authorize(&mut request).expect("authorized");
    ours(
        "transport-ureq ClientHandle::authorize (fresh, reused request)",
        per_call(n, || drop(black_box(handle.authorize(&mut request)))),
    );

    let rt = clients::current_thread();
    let reqwest = clients::reqwest_client(None);
    let rhandle = reqwest.register(config.clone());
    rt.block_on(rhandle.token()).expect("first fetch");
    ours(
        "transport-reqwest ClientHandle::token().await (fresh)",
        rt.block_on(async {
            for _ in 0..16 {
                drop(black_box(rhandle.token().await));
            }
            let before = counts();
            for _ in 0..n {
                drop(black_box(rhandle.token().await));
            }
            let d = counts() - before;
            (
                d.allocs as f64 / n as f64,
                d.thread_allocs as f64 / n as f64,
            )
        }),
    );

    ours(
        "transport-reqwest ClientHandle::with_token().await (fresh)",
        rt.block_on(async {
            let f = |t: &token_core::Token| black_box(t.access_token().secret().len());
            for _ in 0..16 {
                drop(black_box(rhandle.with_token(f).await));
            }
            let before = counts();
            for _ in 0..n {
                drop(black_box(rhandle.with_token(f).await));
            }
            let d = counts() - before;
            (
                d.allocs as f64 / n as f64,
                d.thread_allocs as f64 / n as f64,
            )
        }),
    );

    // In the refresh window, with the refresh in flight (slow body), on an offset clock.
    let hold = Duration::from_millis(if benchmarks::bench_mode() { 3_000 } else { 500 });
    let in_window = FRESH_FOR + Duration::from_secs(5);

    let clock = OffsetClock::default();
    let ureq = clients::ureq_client_on(clock.clone());
    let handle = ureq.register(config.clone());
    handle.token().expect("first fetch");
    clock.advance(in_window);
    sim.inject(
        Provider::Bookable,
        Fault::SlowBody {
            delay_ms: hold.as_millis() as u64,
        },
        1,
    );
    // The first call in the window starts the refresh on the pool and returns at once (the
    // offset clock does not wake the timer thread, which sleeps until the real refresh point).
    handle.token().expect("served while the refresh starts");
    while ureq.driver().with_manager(|m| m.in_flight()) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let m = (n / 10).max(100);
    ours(
        "transport-ureq ClientHandle::token (in window, refresh in flight)",
        per_call(m, || drop(black_box(handle.token()))),
    );
    if ureq.driver().with_manager(|m| m.in_flight()) == 0 {
        println!("  (warning: the refresh finished during the measurement)");
    }

    let rt = clients::multi_thread(1);
    let clock = OffsetClock::default();
    let reqwest = clients::reqwest_client_on(clock.clone());
    let rhandle = reqwest.register(config);
    rt.block_on(rhandle.token()).expect("first fetch");
    clock.advance(in_window);
    sim.inject(
        Provider::Bookable,
        Fault::SlowBody {
            delay_ms: hold.as_millis() as u64,
        },
        1,
    );
    let result = rt.block_on(async {
        drop(rhandle.token().await); // starts the refresh on a spawned task
        while reqwest.driver().with_manager(|m| m.in_flight()) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let before = counts();
        for _ in 0..m {
            drop(black_box(rhandle.token().await));
        }
        let d = counts() - before;
        let still = reqwest.driver().with_manager(|m| m.in_flight());
        (
            (
                d.allocs as f64 / m as f64,
                d.thread_allocs as f64 / m as f64,
            ),
            still,
        )
    });
    ours(
        "transport-reqwest ClientHandle::token().await (in window, refresh in flight)",
        result.0,
    );
    if result.1 == 0 {
        println!("  (warning: the refresh finished during the measurement)");
    }
}
