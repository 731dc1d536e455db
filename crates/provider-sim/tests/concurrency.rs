//! Concurrency instrumentation: the in-flight high-water mark, the gate that holds token
//! requests until `n` are in flight (and its safety timeout), and response latency. No test
//! sleeps or measures time: threads meet at the simulator's gate, and waits are on events.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use provider_sim::{Provider, Simulator};

#[test]
fn sequential_requests_are_never_concurrent() {
    let sim = Simulator::start().unwrap();
    for p in Provider::ALL {
        assert_eq!(sim.max_concurrent_token_requests(p), 0);
        for _ in 0..3 {
            good_token_request(&sim, p).unwrap();
        }
        assert_eq!(sim.max_concurrent_token_requests(p), 1, "{p}");
        assert_eq!(sim.token_requests_in_flight(p), 0, "{p}");
    }
    sim.reset_counters();
    assert_eq!(sim.max_concurrent_token_requests(Provider::Generic), 0);
}

#[test]
fn the_gate_releases_n_requests_at_once_for_every_provider() {
    const N: usize = 6;
    let sim = Simulator::start().unwrap();
    for p in Provider::ALL {
        sim.hold_token_requests(p, N);
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..N)
                .map(|_| s.spawn(|| good_token_request(&sim, p).unwrap().status))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(statuses, [200; N], "{p}");
        assert_eq!(sim.max_concurrent_token_requests(p), N, "{p}");
        assert_eq!(sim.held_token_requests(p), 0);
        // One-shot: the gate is open now.
        assert_eq!(good_token_request(&sim, p).unwrap().status, 200);
    }
    // Each provider's gate is its own.
    assert_eq!(sim.max_concurrent_token_requests(Provider::Generic), N);
}

#[test]
fn nothing_is_answered_before_the_nth_request_arrives() {
    const N: usize = 5;
    let sim = Simulator::start().unwrap();
    let p = Provider::Octorate;
    sim.hold_token_requests(p, N);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..N - 1 {
            let tx = tx.clone();
            let sim = &sim;
            s.spawn(move || tx.send(good_token_request(sim, p).unwrap().status).unwrap());
        }
        assert!(sim.wait_for_token_requests_in_flight(p, N - 1, IO_TIMEOUT));
        assert_eq!(sim.token_requests_in_flight(p), N - 1);
        // Held: no response can exist before the last request arrives.
        assert!(rx.try_recv().is_err());
        assert_eq!(sim.token_requests(p), N - 1);
        let last = good_token_request(&sim, p).unwrap();
        assert_eq!(last.status, 200);
    });
    drop(tx);
    let statuses: Vec<u16> = rx.iter().collect();
    assert_eq!(statuses, [200; N - 1]);
    assert_eq!(sim.max_concurrent_token_requests(p), N);
}

#[test]
fn release_lets_held_requests_through() {
    let sim = Simulator::start().unwrap();
    let p = Provider::BookyFlow;
    sim.hold_token_requests(p, 10);
    std::thread::scope(|s| {
        let a = s.spawn(|| good_token_request(&sim, p).unwrap().status);
        let b = s.spawn(|| good_token_request(&sim, p).unwrap().status);
        assert!(sim.wait_for_token_requests_in_flight(p, 2, IO_TIMEOUT));
        sim.release_token_requests(p);
        assert_eq!(a.join().unwrap(), 200);
        assert_eq!(b.join().unwrap(), 200);
    });
    assert_eq!(sim.max_concurrent_token_requests(p), 2);
    // Re-arming lets a previous round through as well; n <= 1 is an open gate.
    sim.hold_token_requests(p, 1);
    assert_eq!(good_token_request(&sim, p).unwrap().status, 200);
    sim.hold_token_requests(p, 0);
    assert_eq!(good_token_request(&sim, p).unwrap().status, 200);
}

#[test]
fn a_held_request_times_out_with_503_and_the_gate_opens() {
    let sim = Simulator::start().unwrap();
    let p = Provider::Generic;
    // Two requests are awaited, one comes: the safety timeout answers it.
    sim.hold_token_requests_for(p, 2, Duration::from_millis(100));
    let resp = good_token_request(&sim, p).unwrap();
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.error(), "temporarily_unavailable");
    assert_eq!(sim.held_token_requests(p), 0);
    assert_eq!(sim.token_requests_in_flight(p), 0);
    // Nothing hangs afterwards.
    assert_eq!(good_token_request(&sim, p).unwrap().status, 200);
    assert_eq!(sim.token_requests(p), 2);
}

#[test]
fn all_requests_held_together_time_out_together() {
    let sim = Simulator::start().unwrap();
    let p = Provider::Octorate;
    // The window only has to cover the two requests' arrival: they are both held long
    // before it ends, and the first timeout answers both.
    sim.hold_token_requests_for(p, 3, Duration::from_secs(2));
    std::thread::scope(|s| {
        let a = s.spawn(|| good_token_request(&sim, p).unwrap());
        assert!(sim.wait_for_token_requests_in_flight(p, 1, IO_TIMEOUT));
        let b = s.spawn(|| good_token_request(&sim, p).unwrap());
        for resp in [a.join().unwrap(), b.join().unwrap()] {
            assert_eq!(resp.status, 503, "{}", resp.text());
            assert_eq!(resp.error(), "temporarily_unavailable");
        }
    });
    assert_eq!(sim.max_concurrent_token_requests(p), 2);
    assert_eq!(good_token_request(&sim, p).unwrap().status, 200);
}

#[test]
fn latency_holds_the_response_while_the_request_is_in_flight() {
    let sim = Simulator::start().unwrap();
    let p = Provider::Bookable;
    // Far longer than the test: the response cannot come while we look.
    sim.set_token_latency(p, Duration::from_secs(120));
    let (tx, rx) = mpsc::channel();
    // A raw client of its own, so that the simulator can be dropped while it waits.
    let addr = sim.addr();
    let path = path_of(&sim, &sim.token_url(p));
    let body = bookable_body().to_string();
    let client = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        let _ = tx.send(parse_response(&raw).map(|r| r.status));
    });
    assert!(sim.wait_for_token_requests_in_flight(p, 1, IO_TIMEOUT));
    assert!(rx.try_recv().is_err());
    assert_eq!(sim.token_requests(p), 1);
    // The setting applies per provider and to requests that arrive from now on.
    assert_eq!(
        good_token_request(&sim, Provider::BookableSandbox)
            .unwrap()
            .status,
        200
    );
    sim.set_token_latency(p, Duration::ZERO);
    assert_eq!(good_token_request(&sim, p).unwrap().status, 200);
    assert_eq!(sim.token_requests_in_flight(p), 1);
    assert_eq!(sim.max_concurrent_token_requests(p), 2);
    // Stopping the server ends the delayed request without a complete response.
    drop(sim);
    assert!(rx.recv().unwrap().is_err());
    client.join().unwrap();
}

#[test]
fn a_short_latency_still_answers() {
    let sim = Simulator::start().unwrap();
    for p in Provider::ALL {
        sim.set_token_latency(p, Duration::from_millis(5));
        let resp = good_token_request(&sim, p).unwrap();
        assert_eq!(resp.status, 200, "{p}");
    }
}

#[test]
fn gate_and_latency_together() {
    const N: usize = 4;
    let sim = Simulator::start().unwrap();
    let p = Provider::Bookingtime;
    sim.set_token_latency(p, Duration::from_millis(5));
    sim.hold_token_requests(p, N);
    let tokens: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..N)
            .map(|_| s.spawn(|| token_of(&good_token_request(&sim, p).unwrap())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let unique: std::collections::HashSet<&String> = tokens.iter().collect();
    assert_eq!(unique.len(), N);
    assert_eq!(sim.max_concurrent_token_requests(p), N);
}

#[test]
fn waiting_for_requests_that_never_come_times_out() {
    let sim = Simulator::start().unwrap();
    assert!(!sim.wait_for_token_requests_in_flight(
        Provider::Octorate,
        1,
        Duration::from_millis(20)
    ));
    assert!(sim.wait_for_token_requests_in_flight(Provider::Octorate, 0, Duration::ZERO));
}
