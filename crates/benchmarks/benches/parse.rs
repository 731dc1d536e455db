//! Parsing token responses: token-core's `parse_token_response` against `oauth2` 5.x's
//! `BasicTokenResponse` (serde_json), on identical bytes. Samples either parser rejects are
//! benched on their error path and listed first.

use std::hint::black_box;

use benchmarks::fixtures::{SAMPLES, ok_response, parse_config};
use benchmarks::oauth2_compat;
use token_core::parse_token_response;

fn main() {
    let config = parse_config();
    println!("acceptance (same bytes):");
    println!(
        "  {:<22} {:<40} oauth2 BasicTokenResponse",
        "sample", "token-core"
    );
    for sample in SAMPLES {
        let ours = match parse_token_response(&config, &ok_response(sample.body)) {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("error: {e}"),
        };
        let theirs = match oauth2_compat::parse(sample.body) {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("error: {e}"),
        };
        println!("  {:<22} {:<40} {}", sample.name, ours, theirs);
    }

    let mut c = benchmarks::criterion();
    for sample in SAMPLES {
        let mut group = c.benchmark_group(format!("parse/{}", sample.name));
        group.throughput(criterion::Throughput::Bytes(sample.body.len() as u64));
        let response = ok_response(sample.body);
        group.bench_function("token-core", |b| {
            b.iter(|| black_box(parse_token_response(&config, black_box(&response))))
        });
        group.bench_function("oauth2", |b| {
            b.iter(|| black_box(oauth2_compat::parse(black_box(response.body()))))
        });
        group.finish();
    }
    c.final_summary();
}
