//! Injected faults: each kind, FIFO consumption, counting, isolation between providers.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;
use provider_sim::{CLIENT_SECRET, Fault, Provider, Simulator};

#[test]
fn internal_error() {
    let sim = Simulator::start().unwrap();
    sim.inject(Provider::Octorate, Fault::InternalError, 1);
    let resp = good_token_request(&sim, Provider::Octorate).unwrap();
    assert_eq!(resp.status, 500);
    assert_eq!(resp.error(), "server_error");
    // Consumed: the next request is processed normally.
    assert_eq!(
        good_token_request(&sim, Provider::Octorate).unwrap().status,
        200
    );
    assert_eq!(sim.token_requests(Provider::Octorate), 2);
}

#[test]
fn html_service_unavailable() {
    let sim = Simulator::start().unwrap();
    sim.inject(Provider::Bookable, Fault::HtmlServiceUnavailable, 1);
    let resp = good_token_request(&sim, Provider::Bookable).unwrap();
    assert_eq!(resp.status, 503);
    assert!(
        resp.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(resp.text().contains("<html>"));
    assert!(serde_json::from_slice::<serde_json::Value>(&resp.body).is_err());
}

#[test]
fn too_many_requests() {
    let sim = Simulator::start().unwrap();
    sim.inject(
        Provider::Generic,
        Fault::TooManyRequests {
            retry_after_secs: 7,
        },
        1,
    );
    let resp = good_token_request(&sim, Provider::Generic).unwrap();
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("7"));
    resp.error();
}

#[test]
fn malformed_json() {
    let sim = Simulator::start().unwrap();
    sim.inject(Provider::BookyFlow, Fault::MalformedJson, 1);
    let resp = good_token_request(&sim, Provider::BookyFlow).unwrap();
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert!(!resp.body.is_empty());
    assert!(serde_json::from_slice::<serde_json::Value>(&resp.body).is_err());
}

#[test]
fn oversized_body() {
    let sim = Simulator::start().unwrap();
    let bytes = 3 * 1024 * 1024;
    sim.inject(Provider::Bookingtime, Fault::OversizedBody { bytes }, 1);
    let resp = good_token_request(&sim, Provider::Bookingtime).unwrap();
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(resp.body.len(), bytes);
    let body = resp.json();
    assert!(body["access_token"].is_string());

    // Smaller than the unpadded object: the object is sent unpadded.
    sim.inject(Provider::Bookingtime, Fault::OversizedBody { bytes: 1 }, 1);
    let resp = good_token_request(&sim, Provider::Bookingtime).unwrap();
    assert!(resp.json().is_object());
}

#[test]
fn slow_body_sends_headers_first_then_a_usable_token() {
    let sim = Simulator::start().unwrap();
    // Headers arrive although the body is held back (for far longer than this test runs).
    sim.inject(Provider::Octorate, Fault::SlowBody { delay_ms: 600_000 }, 1);
    let mut stream = TcpStream::connect(sim.addr()).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let body = octorate_body().to_string();
    write!(
        stream,
        "POST /octorate/oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream
            .read_exact(&mut byte)
            .expect("the head arrives before the body");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length:"),
        "{head}"
    );
    drop(stream);

    // With a short delay the client gets a real token.
    sim.inject(Provider::Octorate, Fault::SlowBody { delay_ms: 50 }, 1);
    let resp = good_token_request(&sim, Provider::Octorate).unwrap();
    assert_eq!(resp.status, 200);
    let token = token_of(&resp);
    assert_eq!(
        get_with_token(&sim, &sim.api_url(Provider::Octorate), &token).status,
        200
    );
    assert_eq!(sim.token_requests(Provider::Octorate), 2);
}

#[test]
fn redirect_points_at_the_recording_target() {
    let sim = Simulator::start().unwrap();
    sim.inject(Provider::Generic, Fault::Redirect, 1);
    let resp = good_token_request(&sim, Provider::Generic).unwrap();
    assert_eq!(resp.status, 307);
    assert_eq!(
        resp.header("location"),
        Some(sim.redirect_target_url().as_str())
    );
    assert_eq!(sim.redirect_target_hits(), 0);
    assert!(!sim.redirect_target_saw_secret());

    // A client that follows it (keeping method and body, as 307 demands) leaks the secret.
    let rec = sim.last_token_request(Provider::Generic).unwrap();
    let resp = request(
        &sim,
        "POST",
        resp.header("location").unwrap(),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &rec.body,
    )
    .unwrap();
    assert_eq!(resp.status, 200);
    assert!(
        resp.json()["access_token"].is_string(),
        "looks like success"
    );
    assert_eq!(sim.redirect_target_hits(), 1);
    assert!(sim.redirect_target_saw_secret());
}

#[test]
fn connection_reset() {
    let sim = Simulator::start().unwrap();
    sim.inject(Provider::Bookable, Fault::ConnectionReset, 1);
    let result = good_token_request(&sim, Provider::Bookable);
    assert!(result.is_err(), "no complete response: {result:?}");
    assert_eq!(
        good_token_request(&sim, Provider::Bookable).unwrap().status,
        200
    );
    assert_eq!(sim.token_requests(Provider::Bookable), 2);
}

#[test]
fn connection_reset_seen_by_ureq() {
    let sim = Simulator::start().unwrap();
    sim.inject(Provider::Generic, Fault::ConnectionReset, 1);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let result = agent
        .post(sim.token_url(Provider::Generic))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(form(GENERIC_FORM))
        .and_then(|mut r| r.body_mut().read_to_string());
    assert!(result.is_err(), "{result:?}");
}

#[test]
fn invalid_client_and_invalid_grant() {
    let sim = Simulator::start().unwrap();
    sim.inject(Provider::BookableSandbox, Fault::InvalidClient, 1);
    sim.inject(Provider::BookableSandbox, Fault::InvalidGrant, 1);
    let resp = good_token_request(&sim, Provider::BookableSandbox).unwrap();
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error(), "invalid_client");
    assert_eq!(
        resp.json()["error_description"],
        "Client authentication failed"
    );
    assert!(resp.header("www-authenticate").is_some());
    let resp = good_token_request(&sim, Provider::BookableSandbox).unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), "invalid_grant");
}

#[test]
fn faults_are_consumed_in_order_and_per_provider() {
    let sim = Simulator::start().unwrap();
    sim.inject(Provider::Bookable, Fault::InternalError, 2);
    sim.inject(
        Provider::Bookable,
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
        1,
    );
    assert_eq!(sim.pending_faults(Provider::Bookable), 3);
    // Other mounts are separate providers.
    assert_eq!(
        good_token_request(&sim, Provider::BookableAuth0)
            .unwrap()
            .status,
        200
    );
    let statuses: Vec<u16> = (0..4)
        .map(|_| good_token_request(&sim, Provider::Bookable).unwrap().status)
        .collect();
    assert_eq!(statuses, [500, 500, 429, 200]);
    assert_eq!(sim.pending_faults(Provider::Bookable), 0);
    assert_eq!(sim.token_requests(Provider::Bookable), 4);
    assert_eq!(sim.token_requests(Provider::BookableAuth0), 1);

    sim.inject(Provider::Bookable, Fault::InternalError, 5);
    sim.clear_faults(Provider::Bookable);
    assert_eq!(
        good_token_request(&sim, Provider::Bookable).unwrap().status,
        200
    );
}

#[test]
fn faults_apply_before_validation() {
    let sim = Simulator::start().unwrap();
    sim.inject(Provider::Generic, Fault::InternalError, 1);
    // Even a malformed request gets the fault.
    let resp = request(
        &sim,
        "POST",
        &sim.token_url(Provider::Generic),
        &[],
        b"garbage",
    )
    .unwrap();
    assert_eq!(resp.status, 500);
    // The fault did not leak the secret anywhere.
    assert!(!resp.text().contains(CLIENT_SECRET));
}

#[test]
fn connection_reset_leaves_no_complete_response_on_the_wire() {
    let sim = Simulator::start().unwrap();
    sim.inject(Provider::Bookable, Fault::ConnectionReset, 1);
    let mut stream = TcpStream::connect(sim.addr()).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let body = bookable_body().to_string();
    // Keep-alive (no `Connection: close`): the server closes the connection on its own.
    write!(
        stream,
        "POST /bookable/oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => assert!(
            parse_response(&raw).is_err(),
            "incomplete: {:?}",
            String::from_utf8_lossy(&raw)
        ),
        Err(e) => assert_ne!(
            e.kind(),
            std::io::ErrorKind::WouldBlock,
            "closed, not hanging"
        ),
    }
}
