//! `tokenctl login`: the Authorization Code flow with PKCE for a native app (RFC 8252).
//!
//! 1. Listen on `127.0.0.1` (an IP literal, never `localhost`: RFC 8252 §8.3) on a free port.
//! 2. Start the authorization with `redirect_uri=http://127.0.0.1:{port}/callback` exactly
//!    (token-core makes the state and the PKCE verifier) and send the browser to its URL, or,
//!    with `--no-browser`, print the URL alone on one line of stderr.
//! 3. Wait (at most `--timeout`) for one request to `/callback`; every other path is answered
//!    404 and the wait goes on. Each connection is read on its own thread, so a browser's idle
//!    pre-connection never holds up the real redirect.
//! 4. Hand the redirect to token-core (which checks `state`, the redirect URI and `iss`, and
//!    exchanges the code), answer the browser with a small page, stop listening, print the
//!    token like `token` does.
//!
//! The listener is a plain [`TcpListener`]: one request line and headers are read (at most
//! 8 KiB), nothing else of HTTP is needed. Ctrl-C simply ends the process; the operating system
//! closes the socket.

use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::cli::{DEFAULT_TIMEOUT, LoginArgs};
use crate::failure::{self, Exit, Fail};
use crate::providers::Login;
use crate::report::{self, Source};
use crate::{Session, session};

/// How long `login` waits for the redirect unless `--timeout` says otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// The path of the redirect URI.
const CALLBACK_PATH: &str = "/callback";

/// The user id the grant is filed under (one user per run).
const USER: &str = "tokenctl-login";

/// The most of a request (line and headers) read from the browser.
const MAX_REQUEST: usize = 8 * 1024;

/// How long one connection may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `tokenctl login`.
pub fn run(args: LoginArgs) -> Result<(), Fail> {
    let wait = args.conn.timeout.unwrap_or(DEFAULT_WAIT);
    let login = Login {
        authorize_url: &args.authorize_url,
        issuer: args.issuer.as_deref(),
        params: &args.authorize_params,
    };
    let session = session(&args.conn, None, Some(login))?;
    let listener = Listener::bind()?;
    let redirect_uri = format!("http://127.0.0.1:{}{CALLBACK_PATH}", listener.port());
    let started = session
        .handle
        .start_authorization(USER, &redirect_uri)
        .map_err(|e| match e {
            transport_ureq::Error::Authorization(a) => Fail::usage(failure::one_line(&format!(
                "cannot start the authorization: {a}"
            ))),
            other => failure::token_error(&other, &session.endpoint),
        })?;
    let url = started.url;
    let waiting = format!(
        "waiting up to {} for the redirect to {redirect_uri}",
        crate::time::human_precise(wait)
    );
    if args.no_browser {
        eprintln!("tokenctl: open this URL in a browser to sign in ({waiting}):");
        eprintln!("{url}");
    } else {
        eprintln!("tokenctl: opening a browser to sign in ({waiting})");
        open_browser(&url);
    }
    let outcome = listener.wait(wait).and_then(|callback| {
        let result = complete(&session, &args, &redirect_uri, &callback.target);
        let page = match &result {
            Ok(_) => page(
                "Signed in",
                "tokenctl has the token. You can close this window.",
            ),
            Err(fail) => page("Sign-in failed", &fail.message),
        };
        let status = if result.is_ok() {
            "200 OK"
        } else {
            "400 Bad Request"
        };
        respond(callback.stream, status, &page);
        result
    });
    listener.stop();
    let token = outcome?;
    let requests = session.client.stats().token_requests;
    let (now, wall) = (Instant::now(), SystemTime::now());
    let info = report::TokenInfo {
        provider: args.conn.provider.name(),
        endpoint: &session.endpoint,
        organization: args.conn.org.as_deref(),
        requested_scopes: session.handle.config().scopes(),
        token: &token,
        now,
        wall,
        source: Source::Fetched {
            requests,
            not_cached: Some("a user's tokens are kept in memory only".to_owned()),
        },
    };
    crate::print_token(&info, &args.output)
}

/// Completes the authorization from the request target the browser asked for, and gets the
/// user's access token.
fn complete(
    session: &Session,
    args: &LoginArgs,
    redirect_uri: &str,
    target: &str,
) -> Result<token_core::Token, Fail> {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let redirect = format!("{redirect_uri}?{query}");
    let user = session
        .handle
        .complete_authorization(&redirect)
        .map_err(|e| match e {
            transport_ureq::Error::Authorization(a) => Fail::new(
                Exit::Rejected,
                failure::one_line(&format!("the sign-in was refused: {a}")),
            ),
            other => failure::token_error(&other, &session.endpoint),
        })?;
    let user = match &args.conn.org {
        Some(org) => user.organization(org),
        None => user,
    };
    user.token()
        .map_err(|e| failure::token_error(&e, &session.endpoint))
}

/// Starts the system's browser on `url` (`open` on macOS, `xdg-open` elsewhere); if that
/// cannot be started or fails, prints the URL instead.
fn open_browser(url: &str) {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let fallback = move |why: String, url: &str| {
        eprintln!("tokenctl: could not start a browser ({why}); open this URL:");
        eprintln!("{url}");
    };
    match Command::new(program)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            let url = url.to_owned();
            // The opener usually returns at once; if it fails, say so without holding up the
            // wait for the redirect.
            std::thread::spawn(move || match child.wait() {
                Ok(status) if status.success() => {}
                Ok(status) => fallback(format!("{program} exited with {status}"), &url),
                Err(e) => fallback(format!("{program}: {e}"), &url),
            });
        }
        Err(e) => fallback(format!("{program}: {e}"), url),
    }
}

/// One request to `/callback`.
struct Callback {
    stream: TcpStream,
    /// The request target (`/callback?code=...&state=...`).
    target: String,
}

/// The loopback listener and the thread accepting on it.
struct Listener {
    addr: SocketAddr,
    done: Arc<AtomicBool>,
    callbacks: mpsc::Receiver<Callback>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Listens on 127.0.0.1 on a free port.
    fn bind() -> Result<Self, Fail> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| {
            Fail::new(
                Exit::Failure,
                format!("cannot listen on 127.0.0.1 for the redirect: {e}"),
            )
        })?;
        let addr = listener.local_addr().map_err(|e| {
            Fail::new(
                Exit::Failure,
                format!("cannot read the listener's address: {e}"),
            )
        })?;
        let done = Arc::new(AtomicBool::new(false));
        let (sender, callbacks) = mpsc::channel();
        let thread = {
            let done = Arc::clone(&done);
            std::thread::Builder::new()
                .name("login-listener".into())
                .spawn(move || accept(&listener, &done, &sender))
                .map_err(|e| {
                    Fail::new(
                        Exit::Failure,
                        format!("cannot start the listener thread: {e}"),
                    )
                })?
        };
        Ok(Self {
            addr,
            done,
            callbacks,
            thread: Some(thread),
        })
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The first request to `/callback`, if one comes within `wait`.
    fn wait(&self, wait: Duration) -> Result<Callback, Fail> {
        self.callbacks.recv_timeout(wait).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => Fail::new(
                Exit::Unavailable,
                format!(
                    "timed out: no redirect to http://127.0.0.1:{}{CALLBACK_PATH} within {} \
                     (was the sign-in finished in the browser? --timeout waits longer)",
                    self.port(),
                    crate::time::human_precise(wait)
                ),
            ),
            mpsc::RecvTimeoutError::Disconnected => {
                Fail::new(Exit::Failure, "the redirect listener stopped")
            }
        })
    }

    /// Stops accepting and closes the listening socket (wakes the accept loop with one
    /// connection of its own, then waits for it to drop the listener).
    fn stop(mut self) {
        self.done.store(true, Ordering::SeqCst);
        if TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok()
            && let Some(thread) = self.thread.take()
        {
            let _ = thread.join();
        }
        // Otherwise the thread is stuck in accept() and the process exit closes the socket.
    }
}

/// The accept loop: each connection is read on its own thread; the first request to
/// `/callback` goes to the channel, everything else is answered there.
fn accept(listener: &TcpListener, done: &AtomicBool, sender: &mpsc::Sender<Callback>) {
    let forwarded = Arc::new(AtomicBool::new(false));
    for stream in listener.incoming() {
        if done.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let sender = sender.clone();
        let forwarded = Arc::clone(&forwarded);
        let _ = std::thread::Builder::new()
            .name("login-connection".into())
            .spawn(move || handle_connection(stream, &forwarded, &sender));
    }
}

fn handle_connection(
    mut stream: TcpStream,
    forwarded: &AtomicBool,
    sender: &mpsc::Sender<Callback>,
) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    let head = match read_head(&mut stream) {
        Ok(Some(head)) => head,
        // Closed without a request (a pre-connection, or the listener's own wake-up).
        Ok(None) => return,
        Err(_) => {
            respond(
                stream,
                "400 Bad Request",
                &page("Bad request", "Malformed request."),
            );
            return;
        }
    };
    let Some((method, target)) = request_line(&head) else {
        respond(
            stream,
            "400 Bad Request",
            &page("Bad request", "Malformed request."),
        );
        return;
    };
    let path = target.split(['?', '#']).next().unwrap_or("");
    if path != CALLBACK_PATH {
        respond(stream, "404 Not Found", &page("Not found", "Nothing here."));
        return;
    }
    if method != "GET" {
        respond(
            stream,
            "405 Method Not Allowed",
            &page("Method not allowed", "The redirect is a GET."),
        );
        return;
    }
    // Exactly one redirect is taken; any later one is told the sign-in is over.
    if forwarded.swap(true, Ordering::SeqCst) {
        respond(
            stream,
            "409 Conflict",
            &page(
                "Already done",
                "This sign-in has already received its redirect.",
            ),
        );
        return;
    }
    let _ = sender.send(Callback { stream, target });
}

/// Reads up to the end of the headers. `None` if the peer closed without sending anything.
fn read_head(stream: &mut TcpStream) -> io::Result<Option<String>> {
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    loop {
        let n = match stream.read(&mut buffer) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        head.extend_from_slice(&buffer[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(String::from_utf8_lossy(&head).into_owned()));
        }
        if head.len() > MAX_REQUEST {
            return Err(io::ErrorKind::InvalidData.into());
        }
    }
}

/// The method and the origin-form target (`/path?query`) of a request line. An absolute-form
/// target (`http://127.0.0.1:port/path?query`) is reduced to its path and query.
fn request_line(head: &str) -> Option<(String, String)> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/") {
        return None;
    }
    let target = match target.strip_prefix("http://") {
        Some(rest) => &rest[rest.find('/')?..],
        None => target,
    };
    target
        .starts_with('/')
        .then(|| (method.to_owned(), target.to_owned()))
}

/// Writes a small HTML response and closes the connection.
fn respond(mut stream: TcpStream, status: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nReferrer-Policy: no-referrer\r\n\
         Content-Security-Policy: default-src 'none'\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .and_then(|()| stream.flush());
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// A minimal HTML page.
fn page(title: &str, text: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>tokenctl: {t}</title></head>\
         <body><h1>{t}</h1><p>{x}</p></body></html>\n",
        t = escape(title),
        x = escape(text)
    )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The request timeout of `login`'s token requests: `--timeout`, at most the default.
pub fn request_timeout(timeout: Option<Duration>) -> Duration {
    timeout.map_or(DEFAULT_TIMEOUT, |t| t.min(DEFAULT_TIMEOUT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_parse() {
        let ok = |line: &str| request_line(line).map(|(m, t)| format!("{m} {t}"));
        assert_eq!(
            ok("GET /callback?code=a&state=b HTTP/1.1\r\nHost: x\r\n\r\n").as_deref(),
            Some("GET /callback?code=a&state=b")
        );
        assert_eq!(
            ok("GET http://127.0.0.1:5/callback?x=1 HTTP/1.1\r\n\r\n").as_deref(),
            Some("GET /callback?x=1")
        );
        assert_eq!(ok("GET * HTTP/1.1\r\n\r\n"), None);
        assert_eq!(ok("garbage\r\n\r\n"), None);
        assert_eq!(ok("GET /a b HTTP/1.1\r\n\r\n"), None);
        assert_eq!(ok(""), None);
        assert_eq!(ok("GET http://host HTTP/1.1\r\n\r\n"), None);
    }

    #[test]
    fn pages_escape_text() {
        assert!(page("<x>", "a & \"b\"").contains("&lt;x&gt;</h1><p>a &amp; &quot;b&quot;"));
    }
}
