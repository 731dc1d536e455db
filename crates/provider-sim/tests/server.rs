//! The server as a whole: routing, counters, the redirect target, concurrency, runtimes and
//! shutdown.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use provider_sim::{CLIENT_ID, CLIENT_SECRET, Fault, Provider, Simulator};

#[test]
fn simulator_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Simulator>();
}

#[test]
fn provider_names() {
    let names: Vec<&str> = Provider::ALL.iter().map(|p| p.name()).collect();
    assert_eq!(
        names,
        [
            "bookable",
            "bookable-sandbox",
            "bookable-auth0",
            "bookingtime",
            "octorate",
            "bookyflow",
            "generic"
        ]
    );
    for p in Provider::ALL {
        assert_eq!(Provider::from_name(p.name()), Some(p));
        assert_eq!(p.to_string(), p.name());
    }
}

#[test]
fn unknown_routes_are_404_and_wrong_methods_405() {
    let sim = Simulator::start().unwrap();
    let resp = request(&sim, "GET", "/nowhere", &[], b"").unwrap();
    assert_eq!(resp.status, 404);
    resp.error();
    for p in Provider::ALL {
        let resp = request(&sim, "GET", &sim.token_url(p), &[], b"").unwrap();
        assert_eq!(resp.status, 405, "{p}");
        assert_eq!(resp.header("allow"), Some("POST"));
        resp.error();
        let resp = request(&sim, "PUT", &sim.token_url(p), &[], b"x").unwrap();
        assert_eq!(resp.status, 405, "{p}");
    }
    let resp = request(&sim, "POST", &sim.api_url(Provider::Generic), &[], b"").unwrap();
    assert_eq!(resp.status, 405);
    // Rejected requests count as token requests.
    for p in Provider::ALL {
        assert_eq!(sim.token_requests(p), 2, "{p}");
    }
}

#[test]
fn counters_and_reset() {
    let sim = Simulator::start().unwrap();
    let token = token_of(&good_token_request(&sim, Provider::Generic).unwrap());
    good_token_request(&sim, Provider::Octorate).unwrap();
    // A rejected request is counted too.
    post_form(
        &sim,
        &sim.token_url(Provider::Generic),
        &[("grant_type", "password")],
    );
    sim.inject(Provider::Generic, Fault::InternalError, 1);
    good_token_request(&sim, Provider::Generic).unwrap();
    assert_eq!(sim.token_requests(Provider::Generic), 3);
    assert_eq!(sim.token_requests(Provider::Octorate), 1);
    assert_eq!(sim.total_token_requests(), 4);

    for _ in 0..3 {
        assert_eq!(
            get_with_token(&sim, &sim.api_url(Provider::Generic), &token).status,
            200
        );
    }
    assert_eq!(
        get_with_token(&sim, &sim.api_url(Provider::Generic), "x").status,
        401
    );
    assert_eq!(sim.api_calls(Provider::Generic), 3);
    assert_eq!(sim.api_rejections(Provider::Generic), 1);
    request(
        &sim,
        "POST",
        &sim.redirect_target_url(),
        &[],
        CLIENT_SECRET.as_bytes(),
    )
    .unwrap();
    assert_eq!(sim.redirect_target_hits(), 1);
    assert!(sim.redirect_target_saw_secret());

    sim.reset_counters();
    assert_eq!(sim.total_token_requests(), 0);
    for p in Provider::ALL {
        assert_eq!(sim.api_calls(p), 0);
        assert_eq!(sim.api_rejections(p), 0);
    }
    assert_eq!(sim.redirect_target_hits(), 0);
    assert!(!sim.redirect_target_saw_secret());
    // Tokens survive a counter reset.
    assert_eq!(
        get_with_token(&sim, &sim.api_url(Provider::Generic), &token).status,
        200
    );
    assert_eq!(sim.api_calls(Provider::Generic), 1);
}

/// What a case is called, its headers, body and URL.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a [u8], &'a str);

#[test]
fn redirect_target_detects_the_secret_everywhere() {
    let sim = Simulator::start().unwrap();
    let target = sim.redirect_target_url();
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let form_body = form(&[("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)]);
    let json_body = octorate_body().to_string();
    let with_query = format!("{target}?client_secret={CLIENT_SECRET}");
    let encoded_query = format!("{target}?s=sim%2Dsecret%2D7f3a9c");
    let custom = ("X-Client-Secret", CLIENT_SECRET);
    let cases: Vec<Case<'_>> = vec![
        ("form body", vec![], form_body.as_bytes(), target.as_str()),
        ("json body", vec![], json_body.as_bytes(), target.as_str()),
        (
            "basic auth",
            vec![("Authorization", basic.as_str())],
            b"",
            target.as_str(),
        ),
        ("custom header", vec![custom], b"", target.as_str()),
        ("query", vec![], b"", with_query.as_str()),
        ("encoded query", vec![], b"", encoded_query.as_str()),
    ];
    for (what, headers, body, url) in cases {
        sim.reset_counters();
        let resp = request(&sim, "POST", url, &headers, body).unwrap();
        assert_eq!(resp.status, 200, "{what}");
        assert_eq!(sim.redirect_target_hits(), 1, "{what}");
        assert!(sim.redirect_target_saw_secret(), "{what}");
    }

    sim.reset_counters();
    let clean = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
    ]);
    request(&sim, "POST", &target, &[], clean.as_bytes()).unwrap();
    request(
        &sim,
        "GET",
        &target,
        &[("Authorization", "Bearer abc")],
        b"",
    )
    .unwrap();
    assert_eq!(sim.redirect_target_hits(), 2);
    assert!(!sim.redirect_target_saw_secret());
}

#[test]
fn two_hundred_concurrent_token_requests() {
    let sim = Arc::new(Simulator::start().unwrap());
    let n = 200;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let sim = Arc::clone(&sim);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let p = Provider::ALL[i % Provider::ALL.len()];
                barrier.wait();
                let resp = good_token_request(&sim, p).expect("a complete response");
                assert_eq!(resp.status, 200, "{p}: {}", resp.text());
                token_of(&resp)
            })
        })
        .collect();
    let tokens: HashSet<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(tokens.len(), n, "every token is unique");
    assert_eq!(sim.total_token_requests(), n);
    for (i, p) in Provider::ALL.into_iter().enumerate() {
        let expected = (0..n).filter(|k| k % Provider::ALL.len() == i).count();
        assert_eq!(sim.token_requests(p), expected, "{p}");
    }
}

#[test]
fn concurrent_keep_alive_clients_with_ureq() {
    let sim = Arc::new(Simulator::start().unwrap());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let threads = 8;
    let per_thread = 25;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let sim = Arc::clone(&sim);
            let agent = agent.clone();
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    let mut resp = agent
                        .post(sim.token_url(Provider::Generic))
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .send(form(GENERIC_FORM))
                        .unwrap();
                    assert_eq!(resp.status(), 200);
                    let body: serde_json::Value =
                        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
                    let token = body["access_token"].as_str().unwrap().to_owned();
                    let resp = agent
                        .get(sim.api_url(Provider::Generic))
                        .header("Authorization", &format!("Bearer {token}"))
                        .call()
                        .unwrap();
                    assert_eq!(resp.status(), 200);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(sim.token_requests(Provider::Generic), threads * per_thread);
    assert_eq!(sim.api_calls(Provider::Generic), threads * per_thread);
}

fn smoke(sim: &Simulator) {
    let resp = good_token_request(sim, Provider::Octorate).unwrap();
    assert_eq!(resp.status, 200);
}

#[tokio::test(flavor = "current_thread")]
async fn works_inside_a_current_thread_runtime() {
    let sim = Arc::new(Simulator::start().unwrap());
    let s = Arc::clone(&sim);
    tokio::task::spawn_blocking(move || smoke(&s))
        .await
        .unwrap();
    assert_eq!(sim.token_requests(Provider::Octorate), 1);
    // Dropping inside the runtime is fine too.
    drop(sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_inside_a_multi_thread_runtime() {
    let sim = Simulator::start().unwrap();
    let addr = sim.addr();
    let sim = tokio::task::spawn_blocking(move || {
        smoke(&sim);
        sim
    })
    .await
    .unwrap();
    assert_eq!(sim.token_requests(Provider::Octorate), 1);
    drop(sim);
    assert!(TcpStream::connect(addr).is_err(), "shut down on drop");
}

#[test]
fn drop_shuts_the_server_down() {
    let sim = Simulator::start().unwrap();
    let addr = sim.addr();
    // An idle connection and a response whose body is held back do not delay shutdown.
    let _idle = TcpStream::connect(addr).unwrap();
    sim.inject(Provider::Generic, Fault::SlowBody { delay_ms: 600_000 }, 1);
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let body = form(GENERIC_FORM);
    write!(
        slow,
        "POST /generic/token HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut first = [0u8; 12];
    slow.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    drop(sim);
    // The held-back response is never completed.
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(!String::from_utf8_lossy(&rest).contains("access_token"));
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn start_on_a_given_address() {
    let sim = Simulator::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    assert_eq!(sim.base_url(), format!("http://{}", sim.addr()));
    smoke(&sim);
    // The port is taken while the simulator runs.
    assert!(Simulator::start_on(sim.addr()).is_err());
}

#[test]
fn many_simulators_side_by_side() {
    let a = Simulator::start().unwrap();
    let b = Simulator::start().unwrap();
    assert_ne!(a.base_url(), b.base_url());
    smoke(&a);
    assert_eq!(a.total_token_requests(), 1);
    assert_eq!(b.total_token_requests(), 0);
    // Tokens of one simulator mean nothing to the other.
    let token = token_of(&good_token_request(&a, Provider::Generic).unwrap());
    assert_eq!(
        get_with_token(&b, &b.api_url(Provider::Generic), &token).status,
        401
    );
}

#[test]
fn a_thousand_concurrent_connections() {
    let sim = Arc::new(Simulator::start().unwrap());
    let n = 1000;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let sim = Arc::clone(&sim);
            let barrier = Arc::clone(&barrier);
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    barrier.wait();
                    if i % 2 == 0 {
                        let resp = good_token_request(&sim, Provider::Generic).unwrap();
                        assert_eq!(resp.status, 200, "{}", resp.text());
                    } else {
                        let resp = request(&sim, "GET", &sim.api_url(Provider::Generic), &[], b"")
                            .unwrap();
                        assert_eq!(resp.status, 401);
                    }
                })
                .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(sim.token_requests(Provider::Generic), n / 2);
    assert_eq!(sim.api_rejections(Provider::Generic), n / 2);
}
