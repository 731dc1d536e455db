//! The first fetch on loopback: a new client's first `token()` against the simulator (request
//! built, sent, read, parsed and cached), through `transport-ureq` and `transport-reqwest`,
//! against a raw ureq / reqwest POST of the same request (sent and read, nothing else). Each
//! iteration uses a new client (a new connection); building the client is not timed.
//!
//! Each raw POST is measured twice: with the HTTP client's defaults, and with the timeouts our
//! transports set on their token clients (30 s overall, 10 s connect, no redirects): ureq 3 takes
//! a slower connection path when timeouts are set. Since lifecycle v2, `transport-ureq` sends
//! requests from a pool thread it starts on demand, so a new client's first fetch also starts a
//! thread and waits for its answer: the third ureq baseline does the same by hand (the raw POST
//! with timeouts on a newly spawned thread, its result sent back over a channel).

use std::hint::black_box;
use std::time::{Duration, Instant};

use benchmarks::clients;
use provider_sim::Preset;
use token_core::Grant;

fn main() {
    let sim = clients::simulator();
    let config = clients::config(&sim, Preset::Bookable);
    let rt = clients::current_thread();
    let mut c = benchmarks::criterion();
    let mut group = c.benchmark_group("first_fetch");

    let ureq_defaults = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build();
    let ureq_timeouts = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(transport_ureq::DEFAULT_TIMEOUT))
        .timeout_connect(Some(transport_ureq::DEFAULT_CONNECT_TIMEOUT))
        .build();
    for (name, agent_config) in [
        ("ureq/raw-post", ureq_defaults),
        ("ureq/raw-post+timeouts", ureq_timeouts.clone()),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let agent = ureq::Agent::new_with_config(agent_config.clone());
                    let request = config.token_request(Grant::ClientCredentials);
                    let start = Instant::now();
                    let response = agent.run(request).expect("the simulator answers");
                    let body = response.into_body().read_to_vec().expect("a body");
                    total += start.elapsed();
                    black_box(body);
                }
                total
            })
        });
    }
    group.bench_function("ureq/raw-post+timeouts+new-thread", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let agent = ureq::Agent::new_with_config(ureq_timeouts.clone());
                let request = config.token_request(Grant::ClientCredentials);
                let (tx, rx) = std::sync::mpsc::channel();
                let start = Instant::now();
                let thread = std::thread::spawn(move || {
                    let response = agent.run(request).expect("the simulator answers");
                    let body = response.into_body().read_to_vec().expect("a body");
                    tx.send(body).expect("the caller waits");
                });
                let body = rx.recv().expect("a body");
                total += start.elapsed();
                black_box(body);
                thread.join().expect("the request thread");
            }
            total
        })
    });
    group.bench_function("ureq/transport-ureq", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let handle = clients::ureq_client(None).register(config.clone());
                let start = Instant::now();
                let token = handle.token().expect("a token");
                total += start.elapsed();
                black_box(token);
            }
            total
        })
    });
    let reqwest_defaults = || transport_reqwest::http_client_builder();
    let reqwest_timeouts = || {
        transport_reqwest::http_client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(transport_reqwest::DEFAULT_TIMEOUT)
            .connect_timeout(transport_reqwest::DEFAULT_CONNECT_TIMEOUT)
    };
    let raw_reqwest: [(&str, &dyn Fn() -> reqwest::ClientBuilder); 2] = [
        ("reqwest/raw-post", &reqwest_defaults),
        ("reqwest/raw-post+timeouts", &reqwest_timeouts),
    ];
    for (name, builder) in raw_reqwest {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let http = builder().build().expect("a reqwest client");
                    let request =
                        reqwest::Request::try_from(config.token_request(Grant::ClientCredentials))
                            .expect("a valid request");
                    let start = Instant::now();
                    let body = rt.block_on(async {
                        let response = http.execute(request).await.expect("the simulator answers");
                        response.bytes().await.expect("a body")
                    });
                    total += start.elapsed();
                    black_box(body);
                }
                total
            })
        });
    }
    group.bench_function("reqwest/transport-reqwest", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let handle = clients::reqwest_client(None).register(config.clone());
                let start = Instant::now();
                let token = rt.block_on(handle.token()).expect("a token");
                total += start.elapsed();
                black_box(token);
            }
            total
        })
    });
    group.finish();
    c.final_summary();
}
