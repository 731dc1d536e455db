//! Instruction counts per operation under callgrind: repeatable where wall-clock time on a
//! shared machine is not. `cargo bench -p benchmarks --bench icount` re-runs this binary under
//! `valgrind --tool=callgrind`, once per operation, collecting only inside [`measured`], and
//! prints instructions per call with each figure's ratio to its baseline. Without valgrind it
//! says so and stops; under `cargo test --benches` it runs every operation once natively.
//!
//! Single-threaded by nature: contention is only visible in the wall-clock benches.

use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use benchmarks::baseline::HandCache;
use benchmarks::clients::{self, FRESH_FOR};
use benchmarks::fixtures::{SAMPLES, ok_response, parse_config, request_configs};
use benchmarks::oauth2_compat::{self, Setup, build_request};
use provider_sim::Preset;
use token_core::{Grant, parse_token_response};

/// Runs `f` `iters` times; callgrind collects only inside this function.
#[inline(never)]
fn measured(iters: u64, f: &mut dyn FnMut()) {
    for _ in 0..iters {
        f();
    }
}

/// Every operation, as (group, case, implementation): the baseline of a group/case is its
/// first implementation.
fn operations() -> Vec<(String, String, &'static str)> {
    let mut ops = Vec::new();
    for s in SAMPLES {
        for imp in ["oauth2", "token-core"] {
            ops.push(("parse".to_owned(), s.name.to_owned(), imp));
        }
    }
    for (name, _) in request_configs() {
        for imp in ["oauth2", "token-core"] {
            ops.push(("request".to_owned(), name.to_owned(), imp));
        }
    }
    for imp in ["hand-written", "driver", "ureq", "reqwest"] {
        ops.push(("cache_hit".to_owned(), "1-thread".to_owned(), imp));
    }
    for imp in ["hand-written", "ureq", "reqwest"] {
        ops.push(("cache_hit".to_owned(), "in-window".to_owned(), imp));
    }
    for imp in [
        "instant-now",
        "driver-with_cached",
        "driver",
        "ureq-with_token",
        "ureq",
        "reqwest-with_token",
        "reqwest",
    ] {
        ops.push(("cache_hit".to_owned(), "floor".to_owned(), imp));
    }
    ops
}

/// Runs one operation `iters` times (inside [`measured`]).
fn run(group: &str, case: &str, imp: &str, iters: u64) {
    match group {
        "parse" => {
            let sample = SAMPLES.iter().find(|s| s.name == case).expect("a sample");
            let config = parse_config();
            let response = ok_response(sample.body);
            match imp {
                "token-core" => measured(iters, &mut || {
                    drop(black_box(parse_token_response(
                        &config,
                        black_box(&response),
                    )));
                }),
                _ => measured(iters, &mut || {
                    drop(black_box(oauth2_compat::parse(black_box(response.body()))));
                }),
            }
        }
        "request" => {
            let (_, config) = request_configs()
                .into_iter()
                .find(|(n, _)| *n == case)
                .expect("a preset");
            let setup = Setup::equivalent(&config);
            match imp {
                "token-core" => measured(iters, &mut || {
                    drop(black_box(
                        black_box(&config).token_request(Grant::ClientCredentials),
                    ));
                }),
                _ => measured(iters, &mut || {
                    drop(black_box(build_request(black_box(&setup))))
                }),
            }
        }
        _ => {
            let sim = clients::simulator();
            let config = clients::config(&sim, Preset::Bookable);
            if case == "in-window" && imp != "hand-written" {
                return in_window(&sim, config, imp, iters);
            }
            let len = |t: &token_core::Token| black_box(t.access_token().secret().len());
            match imp {
                "instant-now" => measured(iters, &mut || {
                    black_box(Instant::now());
                }),
                "driver-with_cached" | "ureq-with_token" => {
                    let client = clients::ureq_client(None);
                    let handle = client.register(config);
                    handle.token().expect("first fetch");
                    if imp == "driver-with_cached" {
                        let key = handle.slot();
                        measured(iters, &mut || {
                            black_box(client.driver().with_cached(key, len));
                        });
                    } else {
                        measured(iters, &mut || drop(black_box(handle.with_token(len))));
                    }
                }
                "reqwest-with_token" => {
                    let rt = clients::current_thread();
                    let client = clients::reqwest_client(None);
                    let handle = client.register(config);
                    rt.block_on(handle.token()).expect("first fetch");
                    let waker = std::task::Waker::noop();
                    let mut cx = std::task::Context::from_waker(waker);
                    let _guard = rt.enter();
                    measured(iters, &mut || {
                        let mut fut = std::pin::pin!(handle.with_token(len));
                        match fut.as_mut().poll(&mut cx) {
                            std::task::Poll::Ready(r) => drop(black_box(r)),
                            std::task::Poll::Pending => panic!("a cache hit never waits"),
                        }
                    });
                }
                "hand-written" => {
                    let hand = HandCache::new();
                    let token = clients::ureq_client(None)
                        .register(config)
                        .token()
                        .expect("first fetch");
                    hand.put(
                        token.access_token().secret().to_owned(),
                        Instant::now() + FRESH_FOR,
                    );
                    measured(iters, &mut || drop(black_box(hand.get())));
                }
                "driver" | "ureq" => {
                    let client = clients::ureq_client(None);
                    let handle = client.register(config);
                    handle.token().expect("first fetch");
                    if imp == "driver" {
                        let key = handle.slot();
                        measured(iters, &mut || drop(black_box(client.driver().cached(key))));
                    } else {
                        measured(iters, &mut || drop(black_box(handle.token())));
                    }
                }
                _ => {
                    let rt = clients::current_thread();
                    let client = clients::reqwest_client(None);
                    let handle = client.register(config);
                    rt.block_on(handle.token()).expect("first fetch");
                    // One future polled to completion per call, as an `.await` in a loop.
                    let waker = std::task::Waker::noop();
                    let mut cx = std::task::Context::from_waker(waker);
                    let _guard = rt.enter();
                    measured(iters, &mut || {
                        let mut fut = std::pin::pin!(handle.token());
                        match fut.as_mut().poll(&mut cx) {
                            std::task::Poll::Ready(r) => drop(black_box(r)),
                            std::task::Poll::Pending => panic!("a cache hit never waits"),
                        }
                    });
                }
            }
        }
    }
}

/// A hit inside the refresh window with the refresh in flight (held open by the simulator).
fn in_window(
    sim: &provider_sim::Simulator,
    config: token_core::ClientConfig,
    imp: &str,
    iters: u64,
) {
    let clock = clients::OffsetClock::default();
    let advance = FRESH_FOR + std::time::Duration::from_secs(5);
    let slow = provider_sim::Fault::SlowBody { delay_ms: 3_000 };
    if imp == "ureq" {
        let handle = clients::ureq_client_on(clock.clone()).register(config);
        handle.token().expect("first fetch");
        clock.advance(advance);
        sim.inject(provider_sim::Provider::Bookable, slow, 1);
        // Starts the refresh on the pool and returns the cached token.
        handle.token().expect("served");
        while sim.pending_faults(provider_sim::Provider::Bookable) > 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        measured(iters, &mut || drop(black_box(handle.token())));
    } else {
        let rt = clients::current_thread();
        let handle = clients::reqwest_client_on(clock.clone()).register(config);
        rt.block_on(handle.token()).expect("first fetch");
        clock.advance(advance);
        // Starts the refresh: its task is spawned on `rt` and, outside `block_on`, stays in
        // flight for as long as this measurement runs.
        rt.block_on(handle.token()).expect("served");
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let _guard = rt.enter();
        measured(iters, &mut || {
            let mut fut = std::pin::pin!(handle.token());
            match fut.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(r) => drop(black_box(r)),
                std::task::Poll::Pending => panic!("an in-window hit never waits"),
            }
        });
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, group, case, imp, iters] = &args[..]
        && flag == "--op"
    {
        run(group, case, imp, iters.parse().expect("iterations"));
        return;
    }
    if !benchmarks::bench_mode() {
        for (group, case, imp) in operations() {
            run(&group, &case, imp, 1);
        }
        println!("icount: every operation ran once (run `cargo bench` for the counts)");
        return;
    }
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("icount: valgrind not found; skipped");
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    println!("instructions per call (callgrind, collected inside `measured` only):");
    println!(
        "  {:<34} {:<13} {:>12} {:>9}",
        "group/case", "impl", "Ir/call", "ratio"
    );
    let mut baseline = (String::new(), 0.0);
    for (group, case, imp) in operations() {
        let iters: u64 = if group == "cache_hit" { 20_000 } else { 2_000 };
        let output = Command::new("valgrind")
            .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
            .arg("--toggle-collect=*icount::measured*")
            .arg(&exe)
            .args(["--op", &group, &case, imp, &iters.to_string()])
            .output()
            .expect("valgrind runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let collected = stderr
            .lines()
            .find_map(|l| l.split("Collected :").nth(1))
            .and_then(|n| n.trim().parse::<f64>().ok());
        let Some(collected) = collected.filter(|_| output.status.success()) else {
            println!("  {group}/{case} {imp}: callgrind failed:\n{stderr}");
            continue;
        };
        let per_call = collected / iters as f64;
        let id = format!("{group}/{case}");
        if baseline.0 != id {
            baseline = (id.clone(), per_call);
        }
        println!(
            "  {id:<34} {imp:<13} {per_call:>12.0} {:>8.2}x",
            per_call / baseline.1
        );
    }
}
