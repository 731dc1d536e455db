//! `tokenctl`: check booking-platform OAuth 2.0 client credentials from the command line.
//!
//! The first thing an integrator does with new credentials is check them:
//!
//! - `tokenctl token --provider NAME` fetches a token and prints a readable summary (endpoint,
//!   token type, scopes, lifetime, expiry, where the lifetime came from, and the JWT claims,
//!   decoded but not verified); `--json` prints one JSON object, `--raw` the bare token.
//! - `tokenctl get URL --provider NAME` calls a protected API with the token (and the
//!   provider's extra headers) attached and prints the response body; `--repeat N` makes N calls
//!   through one client (`--interval-ms` apart) and reports how many token requests they
//!   needed.
//! - `tokenctl login --provider generic|bookingtime --authorize-url URL ...` signs a user in
//!   with the Authorization Code flow and PKCE (a browser and a one-shot loopback listener) and
//!   prints the user's token like `token`.
//! - `tokenctl sim` runs the provider simulator, so all of the above can be tried without
//!   credentials.
//!
//! `token` and `get` cache tokens between runs in `$XDG_CACHE_HOME/tokenctl` (else
//! `~/.cache/tokenctl`), encrypted with a key derived from the client secret, so runs in a row
//! share one token; `--store redis://...` shares them through Redis instead, `--no-cache` keeps
//! them in memory. The summary and `--json` (`"source"`) say whether the token came from the
//! cache. A cache that cannot be used is a warning, never a failure.
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

mod cache;
mod cli;
mod counters;
mod failure;
mod login;
mod providers;
mod report;
mod sim;
mod time;

use std::io::{self, BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser as _;
use transport_ureq::{ClientHandle, TokenClient};

use crate::cache::Cache;
use crate::cli::{CacheArgs, Cli, Command, Connection, GetArgs, OutputArgs, TokenArgs};
use crate::counters::Counters;
use crate::failure::{Exit, Fail};
use crate::report::Source;

/// How long a run waits at its end for the cache to hear what it fetched.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Token(args) => run_token(args),
        Command::Get(args) => run_get(args),
        Command::Login(args) => login::run(args),
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
///
/// Dropping it (the last clone of the client) stops the client's threads after publishing
/// what is still pending to the store: runs return from `main` rather than exit the process,
/// so this always happens.
struct Session {
    client: TokenClient,
    handle: ClientHandle,
    counters: Counters,
    /// Strings that must never be printed (the client secret).
    redact: Vec<String>,
    endpoint: String,
    /// The token cache of this run (the store, or why there is none).
    cache: CacheUse,
}

/// What the run's client caches in.
enum CacheUse {
    /// A store, named for people.
    Store(String),
    /// Memory only, and why.
    Memory(String),
}

impl Session {
    /// Where a token fetched with `requests` token requests came from.
    fn source(&self, requests: u64) -> Source {
        match &self.cache {
            CacheUse::Store(place) if requests == 0 => Source::Cache {
                place: place.clone(),
            },
            CacheUse::Store(_) => Source::Fetched {
                requests,
                not_cached: None,
            },
            CacheUse::Memory(why) => Source::Fetched {
                requests,
                not_cached: Some(why.clone()),
            },
        }
    }

    /// Ends the run's use of the cache: waits (briefly) until the store has heard what was
    /// fetched, and warns once if the store failed along the way.
    fn finish(&self) {
        let CacheUse::Store(place) = &self.cache else {
            return;
        };
        let flushed = self.client.driver().flush_store(FLUSH_TIMEOUT);
        let failures = self.client.stats().store_failures;
        if failures > 0 || !flushed {
            cache::warn(&format!(
                "the token cache {place} could not be used ({failures} failed {}); the token                  was kept in memory",
                plural(
                    usize::try_from(failures).unwrap_or(usize::MAX),
                    "operation",
                    "operations"
                )
            ));
        }
    }
}

/// Builds the client configuration from the options and registers it with a fresh client:
/// with the token cache `cache` picks for `token` and `get`, in memory only for `login`.
fn session(
    conn: &Connection,
    cache: Option<&CacheArgs>,
    login: Option<providers::Login<'_>>,
) -> Result<Session, Fail> {
    let secret_from_stdin = if conn.client_secret_stdin {
        Some(read_secret_from_stdin()?)
    } else {
        None
    };
    let config = providers::client_config(conn, secret_from_stdin, login)?;
    let redact = config
        .credentials()
        .client_secret()
        .map(|s| s.expose_secret().to_owned())
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    let endpoint = config.token_url().to_string();
    let counters = Counters::default();
    let timeout = if login.is_some() {
        login::request_timeout(conn.timeout)
    } else {
        conn.request_timeout()
    };
    let chosen = match cache {
        Some(args) => Cache::choose(args, &config)?,
        None => Cache::Memory {
            why: "a user's tokens are kept in memory only".to_owned(),
        },
    };
    let mut builder = TokenClient::builder()
        .timeout(timeout)
        .api_agent(counters.api_agent(timeout));
    let cache = match chosen {
        Cache::Store { store, place } => {
            builder = builder.store(store);
            CacheUse::Store(place)
        }
        Cache::Memory { why } => CacheUse::Memory(why),
    };
    let client = builder.build();
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
        cache,
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
    let session = session(&args.conn, Some(&args.cache), None)?;
    let before = session.client.stats().token_requests;
    let token = session.handle.token();
    let requests = session.client.stats().token_requests - before;
    session.finish();
    let token = token.map_err(|e| failure::token_error(&e, &session.endpoint))?;
    let (now, wall) = (Instant::now(), SystemTime::now());
    let info = report::TokenInfo {
        provider: args.conn.provider.name(),
        endpoint: &session.endpoint,
        organization: args.conn.org.as_deref(),
        requested_scopes: session.handle.config().scopes(),
        token: &token,
        now,
        wall,
        source: session.source(requests),
    };
    print_token(&info, &args.output)
}

/// Prints a token as `--raw`, `--json` or the summary.
fn print_token(info: &report::TokenInfo<'_>, output: &OutputArgs) -> Result<(), Fail> {
    let text = if output.raw {
        format!("{}\n", info.token.access_token().secret())
    } else if output.json {
        format!("{}\n", report::json(info))
    } else {
        report::summary(info)
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
    let session = session(&args.conn, Some(&args.cache), None)?;
    // The library's rule for where tokens may go (https, or http to loopback, or
    // --allow-insecure-http), checked before any token is fetched.
    session
        .handle
        .config()
        .check_api_uri(&url)
        .map_err(|e| failure::config_error(&e, args.conn.provider))?;
    let calls = args.repeat.unwrap_or(1);
    let interval = Duration::from_millis(args.interval_ms);
    let mut made = 0u32;
    let outcome = (|| {
        for i in 0..calls {
            if i > 0 && !interval.is_zero() {
                // The point of --interval-ms: a client that lives a while, like a service.
                std::thread::sleep(interval);
            }
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
    session.finish();
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
