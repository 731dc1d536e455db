//! Auth0 quota and rate-limit headers on the Bookable mounts: the header format, the
//! countdown, 429 with `Retry-After` once a bucket is empty, organization quotas, and that
//! the other providers are unaffected.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use provider_sim::{CLIENT_ID, Fault, Provider, Quota, Simulator};
use serde_json::json;

const BOOKABLE_MOUNTS: [Provider; 3] = [
    Provider::Bookable,
    Provider::BookableSandbox,
    Provider::BookableAuth0,
];

/// One bucket of an `Auth0-*-Quota-Limit` header.
#[derive(Debug, PartialEq, Eq)]
struct Bucket {
    name: String,
    q: u64,
    r: u64,
    t: u64,
}

/// Parses `b=per_hour;q=..;r=..;t=..,b=per_day;q=..;r=..;t=..` strictly.
fn buckets(header: &str) -> Vec<Bucket> {
    header
        .split(',')
        .map(|bucket| {
            let fields: Vec<(&str, &str)> = bucket
                .split(';')
                .map(|kv| kv.split_once('=').expect("key=value"))
                .collect();
            let keys: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
            assert_eq!(keys, ["b", "q", "r", "t"], "{header}");
            let num = |i: usize| fields[i].1.parse::<u64>().expect("a number");
            Bucket {
                name: fields[0].1.to_owned(),
                q: num(1),
                r: num(2),
                t: num(3),
            }
        })
        .collect()
}

fn client_buckets(resp: &Resp) -> Vec<Bucket> {
    buckets(
        resp.header("auth0-client-quota-limit")
            .unwrap_or_else(|| panic!("no client quota header: {resp:?}")),
    )
}

fn num_header(resp: &Resp, name: &str) -> u64 {
    resp.header(name)
        .unwrap_or_else(|| panic!("no {name}: {resp:?}"))
        .parse()
        .unwrap()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn bookable_token(sim: &Simulator, p: Provider) -> Resp {
    good_token_request(sim, p).unwrap()
}

#[test]
fn every_bookable_success_carries_the_headers() {
    let sim = Simulator::start().unwrap();
    for p in BOOKABLE_MOUNTS {
        let before = unix_now();
        let resp = bookable_token(&sim, p);
        let after = unix_now();
        assert_eq!(resp.status, 200, "{p}");
        let b = client_buckets(&resp);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].name, "per_hour");
        assert_eq!(
            (b[0].q, b[0].r),
            (Quota::DEFAULT.per_hour, Quota::DEFAULT.per_hour - 1)
        );
        assert!((1..=3600).contains(&b[0].t), "{b:?}");
        assert_eq!(b[1].name, "per_day");
        assert_eq!(
            (b[1].q, b[1].r),
            (Quota::DEFAULT.per_day, Quota::DEFAULT.per_day - 1)
        );
        assert!((1..=86_400).contains(&b[1].t), "{b:?}");
        // The rate-limit headers describe the binding (hourly) bucket; reset is Unix time.
        assert_eq!(
            num_header(&resp, "x-ratelimit-limit"),
            Quota::DEFAULT.per_hour
        );
        assert_eq!(
            num_header(&resp, "x-ratelimit-remaining"),
            Quota::DEFAULT.per_hour - 1
        );
        let reset = num_header(&resp, "x-ratelimit-reset");
        assert!(before < reset && reset <= after + 3600, "{reset}");
        assert!(resp.header("auth0-organization-quota-limit").is_none());
        assert!(resp.header("retry-after").is_none());
    }
}

#[test]
fn remaining_counts_down_then_429() {
    let sim = Simulator::start().unwrap();
    let p = Provider::Bookable;
    sim.set_client_quota(p, Quota::new(3, 10));
    for left in (0..3).rev() {
        let resp = bookable_token(&sim, p);
        assert_eq!(resp.status, 200);
        let b = client_buckets(&resp);
        assert_eq!((b[0].q, b[0].r), (3, left));
        assert_eq!((b[1].q, b[1].r), (10, left + 7));
        assert_eq!(num_header(&resp, "x-ratelimit-limit"), 3);
        assert_eq!(num_header(&resp, "x-ratelimit-remaining"), left);
    }
    for _ in 0..2 {
        let resp = bookable_token(&sim, p);
        assert_eq!(resp.status, 429);
        assert_eq!(resp.error(), "too_many_requests");
        let b = client_buckets(&resp);
        assert_eq!((b[0].r, b[1].r), (0, 7));
        let retry_after = num_header(&resp, "retry-after");
        assert!((1..=3600).contains(&retry_after), "{retry_after}");
        assert_eq!(retry_after, b[0].t);
        assert_eq!(num_header(&resp, "x-ratelimit-remaining"), 0);
        assert!(num_header(&resp, "x-ratelimit-reset") >= unix_now());
    }
    assert_eq!(sim.quota_rejections(p), 2);
    // Every request counts as a token request; only issued tokens use quota.
    assert_eq!(sim.token_requests(p), 5);
    // Invalid requests are answered as such, quota or not.
    let resp = post_json(
        &sim,
        &sim.token_url(p),
        &json!({"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": "x", "audience": "api.bookabletech.com"}),
    );
    assert_eq!(resp.status, 401);
    // The other mounts count on their own.
    let resp = bookable_token(&sim, Provider::BookableSandbox);
    assert_eq!(resp.status, 200);
    assert_eq!(client_buckets(&resp)[0].q, Quota::DEFAULT.per_hour);
    // A new quota starts counting afresh.
    sim.set_client_quota(p, Quota::new(1, 1));
    let resp = bookable_token(&sim, p);
    assert_eq!(resp.status, 200);
    assert_eq!(client_buckets(&resp)[0].r, 0);
    sim.reset_counters();
    assert_eq!(sim.quota_rejections(p), 0);
    // Counters reset, quota usage kept.
    assert_eq!(bookable_token(&sim, p).status, 429);
}

#[test]
fn only_issued_tokens_count_down() {
    let sim = Simulator::start().unwrap();
    let p = Provider::BookableAuth0;
    sim.set_client_quota(p, Quota::new(2, 2));
    let resp = post_json(
        &sim,
        &sim.token_url(p),
        &json!({"grant_type": "client_credentials", "client_id": CLIENT_ID}),
    );
    assert_eq!(resp.status, 400);
    sim.inject(p, Fault::InternalError, 1);
    assert_eq!(bookable_token(&sim, p).status, 500);
    let resp = bookable_token(&sim, p);
    assert_eq!(client_buckets(&resp)[0].r, 1);
    // A slow body is a real token: it counts and carries the headers.
    sim.inject(p, Fault::SlowBody { delay_ms: 1 }, 1);
    let resp = bookable_token(&sim, p);
    assert_eq!(resp.status, 200);
    assert_eq!(client_buckets(&resp)[0].r, 0);
    assert_eq!(bookable_token(&sim, p).status, 429);
}

#[test]
fn the_daily_bucket_binds_when_it_has_fewer_left() {
    let sim = Simulator::start().unwrap();
    let p = Provider::BookableSandbox;
    sim.set_client_quota(p, Quota::new(100, 2));
    let resp = bookable_token(&sim, p);
    assert_eq!(num_header(&resp, "x-ratelimit-limit"), 2);
    assert_eq!(num_header(&resp, "x-ratelimit-remaining"), 1);
    assert!(num_header(&resp, "x-ratelimit-reset") > unix_now() + 3600);
    assert_eq!(bookable_token(&sim, p).status, 200);
    let resp = bookable_token(&sim, p);
    assert_eq!(resp.status, 429);
    let b = client_buckets(&resp);
    assert_eq!((b[0].r, b[1].r), (98, 0));
    // Retry when the day resets, not the hour.
    assert_eq!(num_header(&resp, "retry-after"), b[1].t);
    assert!(b[1].t > 3600, "{b:?}");
}

#[test]
fn organization_quota() {
    let sim = Simulator::start().unwrap();
    let p = Provider::Bookable;
    sim.set_organization_quota(p, Some(Quota::new(1, 5)));
    let resp = bookable_token(&sim, p);
    assert_eq!(resp.status, 200);
    let org = buckets(resp.header("auth0-organization-quota-limit").unwrap());
    assert_eq!((org[0].q, org[0].r, org[1].q, org[1].r), (1, 0, 5, 4));
    let resp = bookable_token(&sim, p);
    assert_eq!(resp.status, 429);
    assert_eq!(resp.error(), "too_many_requests");
    assert!(resp.header("auth0-organization-quota-limit").is_some());
    assert!(resp.header("retry-after").is_some());
    // The client buckets were not spent by the refused request.
    assert_eq!(client_buckets(&resp)[0].r, Quota::DEFAULT.per_hour - 1);
    sim.set_organization_quota(p, None);
    let resp = bookable_token(&sim, p);
    assert_eq!(resp.status, 200);
    assert!(resp.header("auth0-organization-quota-limit").is_none());
    assert_eq!(client_buckets(&resp)[0].r, Quota::DEFAULT.per_hour - 2);
}

#[test]
fn other_providers_have_no_quota() {
    let sim = Simulator::start().unwrap();
    for p in [
        Provider::Bookingtime,
        Provider::Octorate,
        Provider::BookyFlow,
        Provider::Generic,
    ] {
        sim.set_client_quota(p, Quota::new(0, 0));
        let resp = good_token_request(&sim, p).unwrap();
        assert_eq!(resp.status, 200, "{p}");
        assert!(resp.header("auth0-client-quota-limit").is_none(), "{p}");
        assert!(resp.header("x-ratelimit-limit").is_none(), "{p}");
    }
    assert_eq!(Quota::default(), Quota::DEFAULT);
}
