//! Shared pieces of the benchmarks in `benches/`: the response samples, the `oauth2` 5.x
//! equivalents of our requests and its HTTP adapters (ureq 3 / reqwest 0.13, since its own
//! clients would pull reqwest 0.12), the hand-written cache baselines (alone, and around
//! `oauth2`), a counting global allocator, a latency histogram and small reporting helpers. See
//! `BENCHMARKS.md` at the repository root.

pub mod alloc;
pub mod baseline;
pub mod clients;
pub mod fixtures;
pub mod hist;
pub mod oauth2_compat;
pub mod plot;

use std::time::Duration;

/// True under `cargo bench` (which passes `--bench`), false under `cargo test --benches`,
/// where the custom-harness benches run a tiny smoke version of themselves.
pub fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The `p`-th percentile (0..=100) of `samples` (sorted in place), nearest-rank.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// A duration for tables: µs with one decimal below 10 ms, else ms.
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 10_000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.1} ms", us / 1000.0)
    }
}

/// Runs `f` on `threads` scoped threads released together, each calling it `iters` times, and
/// returns the wall time from the release to the last thread's end (for criterion's
/// `iter_custom`: the per-iteration time is then the time per call with `threads` callers
/// contending).
pub fn contended<F: Fn() + Sync>(threads: usize, iters: u64, f: F) -> Duration {
    contended_each(threads, |_| {
        for _ in 0..iters {
            f();
        }
    })
}

/// Runs `work(i)` once on each of `threads` scoped threads (`i` = 0..threads) released together;
/// returns the wall time from the release to the last thread's end.
pub fn contended_each<F: Fn(usize) + Sync>(threads: usize, work: F) -> Duration {
    let barrier = std::sync::Barrier::new(threads + 1);
    let mut start = std::time::Instant::now();
    std::thread::scope(|s| {
        for i in 0..threads {
            let (barrier, work) = (&barrier, &work);
            s.spawn(move || {
                barrier.wait();
                work(i);
            });
        }
        barrier.wait();
        start = std::time::Instant::now();
        // The scope joins every thread before it returns.
    });
    start.elapsed()
}

/// Criterion settings that keep `cargo bench` to a few minutes on two shared cores: 30 samples,
/// 0.5 s warm-up, 2 s of measurement per benchmark. Command-line options still override.
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}
