//! The user's browser, for the auth code examples on the embedded simulator: its authorization
//! endpoint approves at once, so "logging in" is one GET whose redirect (the `Location` header)
//! is where a real browser would land. Plain HTTP to loopback only; in a real application the
//! user's browser does this.

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// GETs `url` (`http://127.0.0.1:PORT/...`) without following redirects and returns the
/// `Location` it redirects to.
pub fn redirect_of(url: &str) -> io::Result<String> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| invalid("not an http:// URL"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = TcpStream::connect(authority)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    if !head.starts_with("HTTP/1.1 302") && !head.starts_with("HTTP/1.1 303") {
        return Err(invalid("the authorization endpoint did not redirect"));
    }
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("location")
                .then(|| value.trim().to_owned())
        })
        .ok_or_else(|| invalid("a redirect without a Location header"))
}
