//! `tokenctl`: check booking-platform OAuth 2.0 client credentials from the command line.
//!
//! The first thing an integrator does with new credentials is check them:
//!
//! - `tokenctl token --provider NAME` fetches a token and prints a readable summary (endpoint,
//!   token type, scopes, lifetime, expiry, where the lifetime came from, and the JWT claims,
//!   decoded but not verified); `--json` prints one JSON object, `--raw` the bare token.
//! - `tokenctl get URL --provider NAME` calls a protected API with the token (and the
//!   provider's extra headers) attached and prints the response body; `--repeat N` makes N calls
//!   through one client and reports how many token requests they needed.
//! - `tokenctl sim` runs the provider simulator, so all of the above can be tried without
//!   credentials.
//!
//! Credentials come from the environment (`BOOKABLE_CLIENT_ID` / `BOOKABLE_CLIENT_SECRET`,
//! `BOOKINGTIME_…`, `OCTORATE_…`, `BOOKYFLOW_…`, `TOKEN_…` for `generic`), or from
//! `--client-id` plus `--client-secret-stdin`. A client secret is never accepted as a plain
//! argument: the argument list is visible to every user of the machine.
//!
//! Exit codes: 0 success; 2 usage or configuration error; 3 credentials, scope or token
//! rejected; 4 endpoint unreachable, timed out or 5xx; 5 malformed or unexpected response;
//! 1 anything else (see [`Exit`]).

#![forbid(unsafe_code)]

mod cli;
mod counters;
mod failure;
mod providers;
mod report;
mod sim;
mod time;

use std::io::{self, BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use clap::Parser as _;
use transport_ureq::{ClientHandle, TokenClient};

use crate::cli::{Cli, Command, Connection, GetArgs, TokenArgs};
use crate::counters::Counters;
use crate::failure::{Exit, Fail};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Token(args) => run_token(args),
        Command::Get(args) => run_get(args),
        Command::Sim(args) => sim::run(args.port),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(fail) => {
            if !fail.message.is_empty() {
                eprintln!("tokenctl: {}", fail.message);
            }
            ExitCode::from(fail.exit as u8)
        }
    }
}

/// A registered client ready to fetch tokens, with what the run needs to report on it.
struct Session {
    client: TokenClient,
    handle: ClientHandle,
    counters: Counters,
    /// Strings that must never be printed (the client secret).
    redact: Vec<String>,
    endpoint: String,
}

/// Builds the client configuration from the options and registers it with a fresh client.
fn session(conn: &Connection) -> Result<Session, Fail> {
    let secret_from_stdin = if conn.client_secret_stdin {
        Some(read_secret_from_stdin()?)
    } else {
        None
    };
    let config = providers::client_config(conn, secret_from_stdin)?;
    let redact = config
        .credentials()
        .client_secret()
        .map(|s| s.expose_secret().to_owned())
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    let endpoint = config.token_url().to_string();
    let counters = Counters::default();
    let client = TokenClient::builder()
        .timeout(conn.timeout)
        .api_agent(counters.api_agent(conn.timeout))
        .build();
    let handle = client.register(config);
    let handle = match &conn.org {
        Some(org) => handle.organization(org),
        None => handle,
    };
    Ok(Session {
        client,
        handle,
        counters,
        redact,
        endpoint,
    })
}

/// Reads one line from stdin as the client secret, without its line ending.
fn read_secret_from_stdin() -> Result<String, Fail> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        eprint!("client secret (input is visible; end with Enter): ");
        let _ = io::stderr().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| Fail::usage(format!("cannot read the client secret from stdin: {e}")))?;
    let secret = line
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&line);
    if secret.is_empty() {
        return Err(Fail::usage(
            "--client-secret-stdin: stdin is empty (pipe the secret in, e.g. `pass show x | tokenctl ...`)",
        ));
    }
    Ok(secret.to_owned())
}

fn run_token(args: TokenArgs) -> Result<(), Fail> {
    let session = session(&args.conn)?;
    let token = session
        .handle
        .token()
        .map_err(|e| failure::token_error(&e, &session.endpoint))?;
    let (now, wall) = (Instant::now(), SystemTime::now());
    let info = report::TokenInfo {
        provider: args.conn.provider.name(),
        endpoint: &session.endpoint,
        organization: args.conn.org.as_deref(),
        requested_scopes: session.handle.config().scopes(),
        token: &token,
        now,
        wall,
    };
    let text = if args.raw {
        format!("{}\n", token.access_token().secret())
    } else if args.json {
        format!("{}\n", report::json(&info))
    } else {
        report::summary(&info)
    };
    write_stdout(text.as_bytes())
}

fn run_get(args: GetArgs) -> Result<(), Fail> {
    let url = cli::api_url(&args.url)?;
    let headers = args
        .headers
        .iter()
        .map(|h| cli::parse_header(h))
        .collect::<Result<Vec<_>, _>>()?;
    let session = session(&args.conn)?;
    // The library's rule for where tokens may go (https, or http to loopback, or
    // --allow-insecure-http), checked before any token is fetched.
    session
        .handle
        .config()
        .check_api_uri(&url)
        .map_err(|e| failure::config_error(&e, args.conn.provider))?;
    let calls = args.repeat.unwrap_or(1);
    let mut made = 0u32;
    let outcome = (|| {
        for _ in 0..calls {
            // Fetch (or reuse) the token first, so a token failure is reported as one.
            session
                .handle
                .token()
                .map_err(|e| failure::token_error(&e, &session.endpoint))?;
            let mut request = http::Request::get(url.clone());
            for (name, value) in &headers {
                request = request.header(name, value);
            }
            let request = request
                .body(Vec::new())
                .map_err(|e| Fail::usage(format!("cannot build the request: {e}")))?;
            let response = session
                .handle
                .call(request)
                .map_err(|e| failure::call_error(&e, &url, &session.endpoint))?;
            made += 1;
            let status = response.status();
            if status.is_success() {
                copy_body(response.into_body(), &url)?;
            } else {
                let excerpt = failure::body_excerpt(response.into_body(), &session.redact);
                return Err(failure::api_status(status, &url, &excerpt));
            }
        }
        Ok(())
    })();
    if args.repeat.is_some() {
        let tokens =
            usize::try_from(session.client.driver().token_requests()).unwrap_or(usize::MAX);
        let http_requests = session.counters.api_requests();
        let retried = if http_requests as u64 > u64::from(made) {
            format!(" ({http_requests} HTTP requests: retried after 401)")
        } else {
            String::new()
        };
        eprintln!(
            "tokenctl: {made} API {}{retried}, {tokens} token {}",
            plural(made as usize, "call", "calls"),
            plural(tokens, "request", "requests")
        );
    }
    outcome
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// Streams an API response body to stdout, ending it with a newline if it has none.
fn copy_body(body: ureq::Body, url: &http::Uri) -> Result<(), Fail> {
    let mut reader = body.into_reader();
    let mut stdout = io::stdout().lock();
    let mut buffer = [0u8; 16 * 1024];
    let mut last = b'\n';
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Fail::new(
                    Exit::Unavailable,
                    format!("reading the response from {url} failed: {e}"),
                ));
            }
        };
        stdout.write_all(&buffer[..n]).map_err(stdout_error)?;
        last = buffer[n - 1];
    }
    if last != b'\n' {
        // One body per line, also with --repeat.
        stdout.write_all(b"\n").map_err(stdout_error)?;
    }
    stdout.flush().map_err(stdout_error)
}

fn write_stdout(bytes: &[u8]) -> Result<(), Fail> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(stdout_error)
}

/// A closed pipe (`tokenctl get ... | head`) ends the run quietly; other write errors are
/// reported.
fn stdout_error(e: io::Error) -> Fail {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Fail::new(Exit::Success, String::new())
    } else {
        Fail::new(Exit::Failure, format!("cannot write to stdout: {e}"))
    }
}
