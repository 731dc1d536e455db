//! A tiny HTTP/1.1 client over `std::net::TcpStream`, so tests control every header and
//! byte they send (no client adds headers of its own), plus token helpers.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use provider_sim::{BOOKABLE_AUDIENCE, CLIENT_ID, CLIENT_SECRET, Simulator};
use serde_json::{Value, json};

/// A generous safety net so a broken server fails the test instead of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// The `error` code of an RFC 6749 error body, after checking its content type.
    pub fn error(&self) -> String {
        assert!(
            self.header("content-type")
                .is_some_and(|ct| ct.starts_with("application/json")),
            "error bodies are JSON: {self:?}"
        );
        let body = self.json();
        assert!(
            body["error_description"].is_string() || body.get("error_description").is_none(),
            "{body}"
        );
        body["error"].as_str().expect("an error code").to_owned()
    }
}

fn connect(sim: &Simulator) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(sim.addr())?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// The path part of a full simulator URL.
pub fn path_of(sim: &Simulator, url: &str) -> String {
    url.strip_prefix(&sim.base_url())
        .unwrap_or_else(|| panic!("{url} is not on the simulator"))
        .to_owned()
}

/// Sends one request on a fresh connection (`Connection: close`) and reads the whole
/// response. `target` is a path (with query) or a full simulator URL. An incomplete
/// response is an error.
pub fn request(
    sim: &Simulator,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Resp> {
    let path = if target.starts_with("http://") {
        path_of(sim, target)
    } else {
        target.to_owned()
    };
    let mut stream = connect(sim)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        sim.addr()
    );
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn incomplete(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, what.to_owned())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn parse_response(raw: &[u8]) -> io::Result<Resp> {
    let end = find(raw, b"\r\n\r\n").ok_or_else(|| incomplete("no complete response head"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| incomplete("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(len) = get("content-length") {
        let len: usize = len.parse().map_err(|_| incomplete("bad content-length"))?;
        if rest.len() < len {
            return Err(incomplete("body shorter than content-length"));
        }
        rest[..len].to_vec()
    } else if get("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        decode_chunked(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn decode_chunked(mut rest: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or_else(|| incomplete("truncated chunk size"))?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| incomplete("bad chunk size"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 {
            return Err(incomplete("truncated chunk"));
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

pub fn post_json(sim: &Simulator, url: &str, body: &Value) -> Resp {
    request(
        sim,
        "POST",
        url,
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
    .expect("a complete response")
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

pub fn post_form(sim: &Simulator, url: &str, pairs: &[(&str, &str)]) -> Resp {
    post_form_with(sim, url, pairs, &[])
}

pub fn post_form_with(
    sim: &Simulator,
    url: &str,
    pairs: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Resp {
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    request(sim, "POST", url, &all, form(pairs).as_bytes()).expect("a complete response")
}

pub fn get_with_token(sim: &Simulator, url: &str, token: &str) -> Resp {
    let auth = format!("Bearer {token}");
    request(sim, "GET", url, &[("Authorization", &auth)], b"").expect("a complete response")
}

/// The claims of a JWT-shaped token, after checking its shape.
pub fn claims(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "three dot-separated parts: {token}");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header, json!({"alg": "HS256", "typ": "JWT"}));
    assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 32);
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

pub fn bookable_body() -> Value {
    json!({
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "audience": BOOKABLE_AUDIENCE,
    })
}

pub fn octorate_body() -> Value {
    json!({
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    })
}

pub const BOOKYFLOW_FORM: &[(&str, &str)] = &[
    ("grant_type", "client_credentials"),
    ("client_id", CLIENT_ID),
    ("client_secret", CLIENT_SECRET),
    ("scope", "read write"),
];

pub const GENERIC_FORM: &[(&str, &str)] = &[
    ("grant_type", "client_credentials"),
    ("client_id", CLIENT_ID),
    ("client_secret", CLIENT_SECRET),
];

/// A well-formed token request for any provider (bookingtime: leg 1, the App API client).
pub fn good_token_request(sim: &Simulator, p: provider_sim::Provider) -> io::Result<Resp> {
    use provider_sim::Provider;
    let url = sim.token_url(p);
    let json_headers = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
    ];
    let form_headers = [("Content-Type", "application/x-www-form-urlencoded")];
    match p {
        Provider::Bookable | Provider::BookableSandbox | Provider::BookableAuth0 => request(
            sim,
            "POST",
            &url,
            &json_headers,
            bookable_body().to_string().as_bytes(),
        ),
        Provider::Octorate => request(
            sim,
            "POST",
            &url,
            &json_headers,
            octorate_body().to_string().as_bytes(),
        ),
        Provider::Bookingtime => request(
            sim,
            "POST",
            &url,
            &json_headers,
            octorate_body().to_string().as_bytes(),
        ),
        Provider::BookyFlow => request(
            sim,
            "POST",
            &url,
            &form_headers,
            form(BOOKYFLOW_FORM).as_bytes(),
        ),
        _ => request(
            sim,
            "POST",
            &url,
            &form_headers,
            form(GENERIC_FORM).as_bytes(),
        ),
    }
}

/// The token a successful token response carries (bookingtime leg 1: the refresh token).
pub fn token_of(resp: &Resp) -> String {
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    body["access_token"]
        .as_str()
        .or_else(|| body["refresh_token"].as_str())
        .expect("a token")
        .to_owned()
}

/// RFC 7636 Appendix B: the code verifier of the worked example ...
pub const RFC7636_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// ... and its S256 code challenge.
pub const RFC7636_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A redirect URI the default registration accepts (loopback, any port).
pub const LOOPBACK_CALLBACK: &str = "http://127.0.0.1:53124/callback";

pub fn get(sim: &Simulator, target: &str) -> Resp {
    request(sim, "GET", target, &[], b"").expect("a complete response")
}

/// `GET {authorize_url}?{pairs}`.
pub fn authorize(sim: &Simulator, p: provider_sim::Provider, pairs: &[(&str, &str)]) -> Resp {
    let url = sim.authorize_url(p).expect("an authorization endpoint");
    get(sim, &format!("{url}?{}", form(pairs)))
}

/// A well-formed authorization request for `client_id` with the RFC 7636 challenge, plus
/// `extra` pairs.
pub fn authorize_ok(
    sim: &Simulator,
    p: provider_sim::Provider,
    client_id: &str,
    redirect_uri: &str,
    extra: &[(&str, &str)],
) -> Resp {
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("code_challenge", RFC7636_CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    pairs.extend_from_slice(extra);
    authorize(sim, p, &pairs)
}

/// The redirect of a 302: the URI before the appended query, and the decoded pairs.
pub fn redirect_of(resp: &Resp) -> (String, Vec<(String, String)>) {
    assert_eq!(resp.status, 302, "{}", resp.text());
    let location = resp.header("location").expect("a Location header");
    let (base, query) = location
        .rsplit_once('?')
        .unwrap_or_else(|| panic!("no query in {location}"));
    let pairs = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    (base.to_owned(), pairs)
}

/// The value of `name` among decoded pairs.
pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Runs an authorization request that must succeed and returns the code.
pub fn code_for(
    sim: &Simulator,
    p: provider_sim::Provider,
    client_id: &str,
    redirect_uri: &str,
) -> String {
    let resp = authorize_ok(sim, p, client_id, redirect_uri, &[]);
    let (_, pairs) = redirect_of(&resp);
    param(&pairs, "code").expect("a code").to_owned()
}

/// A 400 page: JSON, no redirect.
pub fn assert_error_page(resp: &Resp) {
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(resp.header("location").is_none(), "{resp:?}");
    assert_eq!(resp.error(), "invalid_request");
}

/// An access token the protected route of `p` accepts (bookingtime: for the first
/// organization).
pub fn api_token(sim: &Simulator, p: provider_sim::Provider) -> String {
    use provider_sim::{ORGANIZATIONS, Provider};
    let first = token_of(&good_token_request(sim, p).expect("a complete response"));
    if p != Provider::Bookingtime {
        return first;
    }
    let resp = post_form(
        sim,
        &sim.token_url(p),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("refresh_token", &first),
            ("organization_id", ORGANIZATIONS[0]),
        ],
    );
    token_of(&resp)
}
