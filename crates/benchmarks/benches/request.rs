//! Building a client-credentials token request: token-core's `ClientConfig::token_request`
//! against the `oauth2` 5.x request for the same endpoint, credentials, client authentication,
//! audience and scopes (`exchange_client_credentials()`, captured before sending). `oauth2`
//! always sends a form; token-core sends JSON where the provider documents JSON.

use std::hint::black_box;

use benchmarks::fixtures::request_configs;
use benchmarks::oauth2_compat::{Setup, build_request};
use token_core::Grant;

fn main() {
    let cases: Vec<_> = request_configs()
        .into_iter()
        .map(|(name, config)| {
            let setup = Setup::equivalent(&config);
            (name, config, setup)
        })
        .collect();
    println!("request bodies:");
    for (name, config, setup) in &cases {
        let ours = config.token_request(Grant::ClientCredentials);
        let theirs = build_request(setup);
        println!(
            "  {name:<16} token-core {:<34} {}\n  {:<16} oauth2     {:<34} {}",
            ours.headers()["content-type"].to_str().unwrap_or("?"),
            String::from_utf8_lossy(ours.body()),
            "",
            theirs.headers()["content-type"].to_str().unwrap_or("?"),
            String::from_utf8_lossy(theirs.body()),
        );
    }

    let mut c = benchmarks::criterion();
    for (name, config, setup) in &cases {
        let mut group = c.benchmark_group(format!("request/{name}"));
        group.bench_function("token-core", |b| {
            b.iter(|| black_box(black_box(config).token_request(Grant::ClientCredentials)))
        });
        group.bench_function("oauth2", |b| {
            b.iter(|| black_box(build_request(black_box(setup))))
        });
        group.finish();
    }
    c.final_summary();
}
