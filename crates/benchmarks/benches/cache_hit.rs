//! A cache hit: a cached, fresh token through `transport-ureq` (`ClientHandle::token`),
//! `transport-reqwest` (`ClientHandle::token().await`) and the shared `Driver::cached` under
//! both, against a hand-written `Mutex<Option<(String, Instant)>>` cache; on one thread, and
//! on two threads hitting the same key at once. Then the same through the transports while the
//! token is inside its refresh window with the refresh in flight (the clock pushed into the
//! window, one call starting the refresh, the simulator holding its response back): callers are
//! still served the cached token at once.
//!
//! The in-window clients run on an `OffsetClock`, which does not wake their timer workers when
//! it moves (the workers sleep until the real refresh point, an hour away), so the refresh is
//! started by the first call in the window, as it is when a caller gets there before the
//! worker; it is sent on the transport's pool / a spawned task either way, so that call does
//! not wait for it.

use std::hint::black_box;
use std::time::Instant;

use benchmarks::baseline::HandCache;
use benchmarks::clients::OffsetClock;
use benchmarks::clients::{self, FRESH_FOR};
use benchmarks::{contended, contended_each};
use provider_sim::{Fault, Preset, Provider};

fn main() {
    let sim = clients::simulator();
    let config = clients::config(&sim, Preset::Bookable);

    let ureq = clients::ureq_client(None);
    let ureq_handle = ureq.register(config.clone());
    let token = ureq_handle.token().expect("first fetch");

    let rt1 = clients::current_thread();
    let rts = [clients::current_thread(), clients::current_thread()];
    let reqwest = clients::reqwest_client(None);
    let reqwest_handle = reqwest.register(config);
    rt1.block_on(reqwest_handle.token()).expect("first fetch");

    let hand = HandCache::new();
    hand.put(
        token.access_token().secret().to_owned(),
        Instant::now() + FRESH_FOR,
    );

    let driver = ureq.driver();
    let key = ureq_handle.slot();

    // Clients whose token is inside its refresh window with the refresh held open (long enough
    // for the in-window group, which runs first).
    let hold = if benchmarks::bench_mode() {
        20_000
    } else {
        1_000
    };
    let in_window = FRESH_FOR + std::time::Duration::from_secs(5);
    let ureq_clock = OffsetClock::default();
    let ureq_w = clients::ureq_client_on(ureq_clock.clone())
        .register(clients::config(&sim, Preset::Bookable));
    ureq_w.token().expect("first fetch");
    let rtw = clients::current_thread();
    let reqwest_clock = OffsetClock::default();
    let reqwest_w = clients::reqwest_client_on(reqwest_clock.clone())
        .register(clients::config(&sim, Preset::Bookable));
    rtw.block_on(reqwest_w.token()).expect("first fetch");
    sim.inject(Provider::Bookable, Fault::SlowBody { delay_ms: hold }, 2);
    ureq_clock.advance(in_window);
    reqwest_clock.advance(in_window);
    // Each first call in the window starts its refresh and returns the cached token.
    ureq_w.token().expect("served while the refresh starts");
    rtw.block_on(reqwest_w.token())
        .expect("served while the refresh starts");
    // The async refresh runs on `rtw`, which only makes progress inside `block_on`.
    rtw.block_on(async {
        while sim.pending_faults(Provider::Bookable) > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    });

    let mut c = benchmarks::criterion();

    let mut group = c.benchmark_group("cache_hit/in-window");
    group.bench_function("ureq", |b| b.iter(|| black_box(ureq_w.token())));
    group.bench_function("ureq-2-threads", |b| {
        b.iter_custom(|iters| contended(2, iters, || drop(black_box(ureq_w.token()))))
    });
    group.bench_function("reqwest", |b| {
        b.iter_custom(|iters| {
            rtw.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(reqwest_w.token().await.ok());
                }
                start.elapsed()
            })
        })
    });
    group.finish();

    let mut group = c.benchmark_group("cache_hit/1-thread");
    group.bench_function("hand-written", |b| b.iter(|| black_box(hand.get())));
    group.bench_function("driver", |b| b.iter(|| black_box(driver.cached(key))));
    group.bench_function("ureq", |b| b.iter(|| black_box(ureq_handle.token())));
    group.bench_function("reqwest", |b| {
        b.iter_custom(|iters| {
            rt1.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(reqwest_handle.token().await.ok());
                }
                start.elapsed()
            })
        })
    });
    group.finish();

    // The floor of any hit that checks expiry: one reading of the clock.
    let mut group = c.benchmark_group("cache_hit/floor");
    let len = |t: &token_core::Token| black_box(t.access_token().secret().len());
    group.bench_function("Instant::now", |b| b.iter(|| black_box(Instant::now())));
    group.bench_function("driver-with_cached", |b| {
        b.iter(|| black_box(driver.with_cached(key, len)))
    });
    group.bench_function("driver-cached", |b| {
        b.iter(|| black_box(driver.cached(key)))
    });
    group.bench_function("ureq-with_token", |b| {
        b.iter(|| black_box(ureq_handle.with_token(len)))
    });
    group.bench_function("ureq-token", |b| b.iter(|| black_box(ureq_handle.token())));
    group.bench_function("reqwest-with_token", |b| {
        b.iter_custom(|iters| {
            rt1.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(reqwest_handle.with_token(len).await.ok());
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("reqwest-token", |b| {
        b.iter_custom(|iters| {
            rt1.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(reqwest_handle.token().await.ok());
                }
                start.elapsed()
            })
        })
    });
    group.finish();

    let mut group = c.benchmark_group("cache_hit/2-threads");
    group.bench_function("hand-written", |b| {
        b.iter_custom(|iters| contended(2, iters, || drop(black_box(hand.get()))))
    });
    group.bench_function("driver", |b| {
        b.iter_custom(|iters| contended(2, iters, || drop(black_box(driver.cached(key)))))
    });
    group.bench_function("ureq", |b| {
        b.iter_custom(|iters| contended(2, iters, || drop(black_box(ureq_handle.token()))))
    });
    group.bench_function("reqwest", |b| {
        // Two threads, each awaiting in its own current-thread runtime (tasks on one
        // multi-thread runtime may all run on one worker, which is not contention).
        b.iter_custom(|iters| {
            contended_each(2, |i| {
                rts[i].block_on(async {
                    for _ in 0..iters {
                        black_box(reqwest_handle.token().await.ok());
                    }
                })
            })
        })
    });
    group.finish();

    c.final_summary();
    drop(rtw); // cancels the held-open async refresh
}
