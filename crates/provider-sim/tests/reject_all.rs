//! A protected route that rejects every token of a provider, valid or not, issued before or
//! after the setting (unlike `revoke_tokens`), with its own counter.

mod common;

use common::*;
use provider_sim::{Provider, Simulator};

#[test]
fn every_provider_can_reject_every_token() {
    let sim = Simulator::start().unwrap();
    for p in Provider::ALL {
        let before = api_token(&sim, p);
        assert_eq!(
            get_with_token(&sim, &sim.api_url(p), &before).status,
            200,
            "{p}"
        );
        sim.set_api_rejects_all(p, true);
        let after = api_token(&sim, p);
        for token in [&before, &after] {
            let resp = get_with_token(&sim, &sim.api_url(p), token);
            assert_eq!(resp.status, 401, "{p}");
            assert_eq!(resp.error(), "unauthorized");
            assert!(
                resp.header("www-authenticate")
                    .is_some_and(|h| h.starts_with("Bearer") && h.contains("invalid_token")),
                "{resp:?}"
            );
        }
        assert_eq!(sim.api_forced_rejections(p), 2, "{p}");
        assert_eq!(sim.api_rejections(p), 2, "{p}");
        assert_eq!(sim.api_calls(p), 1, "{p}");
        sim.set_api_rejects_all(p, false);
        for token in [&before, &after] {
            assert_eq!(
                get_with_token(&sim, &sim.api_url(p), token).status,
                200,
                "{p}"
            );
        }
        assert_eq!(sim.api_forced_rejections(p), 2, "{p}");
    }
    sim.reset_counters();
    assert_eq!(sim.api_forced_rejections(Provider::Generic), 0);
}

#[test]
fn it_applies_to_the_issuer_and_leaves_other_rejections_alone() {
    let sim = Simulator::start().unwrap();
    // The Bookable mounts share a route: only the sandbox's tokens are rejected.
    sim.set_api_rejects_all(Provider::BookableSandbox, true);
    let sandbox = api_token(&sim, Provider::BookableSandbox);
    let production = api_token(&sim, Provider::Bookable);
    let url = sim.api_url(Provider::Bookable);
    assert_eq!(get_with_token(&sim, &url, &sandbox).status, 401);
    assert_eq!(get_with_token(&sim, &url, &production).status, 200);
    assert_eq!(sim.api_forced_rejections(Provider::BookableSandbox), 1);
    assert_eq!(sim.api_forced_rejections(Provider::Bookable), 0);
    // Tokens that are no good anyway are ordinary rejections.
    sim.set_api_rejects_all(Provider::BookyFlow, true);
    let resp = get_with_token(&sim, &sim.api_url(Provider::BookyFlow), "unknown-token");
    assert_eq!(resp.status, 401);
    let resp = get_with_token(&sim, &sim.api_url(Provider::BookyFlow), &production);
    assert_eq!(resp.status, 401);
    assert_eq!(sim.api_forced_rejections(Provider::BookyFlow), 0);
    assert_eq!(sim.api_rejections(Provider::BookyFlow), 2);
    // Token endpoints are unaffected.
    assert_eq!(
        good_token_request(&sim, Provider::BookableSandbox)
            .unwrap()
            .status,
        200
    );
}
