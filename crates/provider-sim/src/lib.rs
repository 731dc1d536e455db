//! A loopback HTTP/1.1 server that impersonates the OAuth 2.0 token endpoints and one
//! protected API route of each booking provider, for tests, examples and the
//! `provider-sim` command-line tool.
//!
//! Every provider speaks its own dialect, as its public documentation describes it:
//!
//! | provider | token endpoint | request | response |
//! |---|---|---|---|
//! | [`Provider::Bookable`] (+ sandbox, Auth0 mounts) | `POST /bookable/oauth/token` | JSON: `grant_type`, `client_id`, `client_secret`, `audience=api.bookabletech.com` | `access_token`, `scope`, `expires_in`, `token_type` |
//! | [`Provider::Bookingtime`] | `POST /bookingtime/oauth/token` | JSON or form; leg 1 `client_credentials` → refresh token, leg 2 `refresh_token` + `organization_id` → access token | `refresh_token` / `access_token`, `token_type`, `expires_in` |
//! | [`Provider::Octorate`] | `POST /octorate/oauth2/token` | JSON + `Accept: application/json` | `access_token`, `expires_in`, `type` |
//! | [`Provider::BookyFlow`] | `POST /bookyflow/api/oauth/token` | form, `scope` required | `access_token`, `token_type`, `expires_in` |
//! | [`Provider::Generic`] | `POST /generic/token` | form, HTTP Basic or body credentials | RFC 6749 §5.1 |
//!
//! Every error body is RFC 6749 §5.2 JSON (`{"error": ..., "error_description": ...}`) with
//! `Content-Type: application/json`. Tokens are JWT-shaped, unique per issuance, and judged
//! against wall-clock time ([`std::time::SystemTime`]).
//!
//! ```no_run
//! use provider_sim::{Fault, Provider, Simulator};
//!
//! let sim = Simulator::start()?;
//! println!("POST {}", sim.token_url(Provider::Octorate));
//! sim.inject(Provider::Octorate, Fault::InternalError, 1);
//! // ... drive a client against sim.token_url(..) and sim.api_url(..) ...
//! println!("{} token requests so far", sim.token_requests(Provider::Octorate));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The server runs on a background thread that owns its own tokio runtime, so a
//! [`Simulator`] can be started from plain threads and from inside any tokio runtime alike.
//! Dropping it shuts the server down.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod presets;
mod server;
mod state;
mod wire;

pub use presets::Preset;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use state::Shared;

/// The client id accepted by every provider.
pub const CLIENT_ID: &str = "sim-client";

/// The client secret of [`CLIENT_ID`], for every provider that uses one.
pub const CLIENT_SECRET: &str = "sim-secret-7f3a9c";

/// The bookingtime Module API client: it has no secret (the secret must be absent or empty).
pub const MODULE_CLIENT_ID: &str = "sim-module";

/// The bookingtime organizations the clients may access.
pub const ORGANIZATIONS: &[&str] = &["org-alpha", "org-beta", "org-gamma"];

/// The audience Bookable requires in its token requests.
pub const BOOKABLE_AUDIENCE: &str = "api.bookabletech.com";

/// The scope Bookable grants.
pub const BOOKABLE_SCOPE: &str = "venue:read venue-booking:create";

/// The scopes BookyFlow knows.
pub const BOOKYFLOW_SCOPES: &[&str] = &["read", "write", "delete"];

/// The simulated providers. The three Bookable mounts are distinct providers for counters,
/// token lifetimes and faults, but share one dialect and one protected route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provider {
    /// Bookable production (`auth.bookabletech.com`).
    Bookable,
    /// Bookable sandbox (`auth-sandbox.bookabletech.com`).
    BookableSandbox,
    /// Bookable's older Auth0 tenant (`bookabletech.uk.auth0.com`).
    BookableAuth0,
    /// bookingtime: refresh token first, then organization-specific access tokens.
    Bookingtime,
    /// Octorate octotable: JSON request, `type` instead of `token_type` in the response.
    Octorate,
    /// BookyFlow: form request with required scopes.
    BookyFlow,
    /// A plain RFC 6749 client-credentials server.
    Generic,
}

impl Provider {
    /// Every provider, in declaration order.
    pub const ALL: [Provider; 7] = [
        Provider::Bookable,
        Provider::BookableSandbox,
        Provider::BookableAuth0,
        Provider::Bookingtime,
        Provider::Octorate,
        Provider::BookyFlow,
        Provider::Generic,
    ];

    /// A short, stable, lowercase name: `"bookable"`, `"bookable-sandbox"`,
    /// `"bookable-auth0"`, `"bookingtime"`, `"octorate"`, `"bookyflow"` or `"generic"`.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Bookable => "bookable",
            Provider::BookableSandbox => "bookable-sandbox",
            Provider::BookableAuth0 => "bookable-auth0",
            Provider::Bookingtime => "bookingtime",
            Provider::Octorate => "octorate",
            Provider::BookyFlow => "bookyflow",
            Provider::Generic => "generic",
        }
    }

    /// The provider whose [`name`](Provider::name) is `name`.
    pub fn from_name(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The path of the provider's token endpoint on the simulator.
    pub fn token_path(self) -> &'static str {
        match self {
            Provider::Bookable => "/bookable/oauth/token",
            Provider::BookableSandbox => "/bookable-sandbox/oauth/token",
            Provider::BookableAuth0 => "/bookable-auth0/oauth/token",
            Provider::Bookingtime => "/bookingtime/oauth/token",
            Provider::Octorate => "/octorate/oauth2/token",
            Provider::BookyFlow => "/bookyflow/api/oauth/token",
            Provider::Generic => "/generic/token",
        }
    }

    /// The path of the provider's protected route on the simulator. The three Bookable
    /// mounts share `/bookable/venues`; for bookingtime this is the route of the first
    /// organization in [`ORGANIZATIONS`] (see [`Simulator::org_api_url`]).
    pub fn api_path(self) -> String {
        match self {
            Provider::Bookable | Provider::BookableSandbox | Provider::BookableAuth0 => {
                "/bookable/venues".to_owned()
            }
            Provider::Bookingtime => bookingtime_org_path(ORGANIZATIONS[0]),
            Provider::Octorate => "/octorate/reservations".to_owned(),
            Provider::BookyFlow => "/bookyflow/api/properties".to_owned(),
            Provider::Generic => "/generic/api".to_owned(),
        }
    }

    /// The `expires_in` of access tokens issued when no lifetime was set: 3600 for Bookable
    /// and BookyFlow and Generic, 300 for bookingtime's organization access tokens, 1440 for
    /// Octorate.
    pub fn default_token_lifetime(self) -> i64 {
        match self {
            Provider::Bookable
            | Provider::BookableSandbox
            | Provider::BookableAuth0
            | Provider::BookyFlow
            | Provider::Generic => 3600,
            Provider::Bookingtime => 300,
            Provider::Octorate => 1440,
        }
    }

    /// Whether this is one of the three Bookable mounts.
    pub fn is_bookable(self) -> bool {
        matches!(
            self,
            Provider::Bookable | Provider::BookableSandbox | Provider::BookableAuth0
        )
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Provider::Bookable => 0,
            Provider::BookableSandbox => 1,
            Provider::BookableAuth0 => 2,
            Provider::Bookingtime => 3,
            Provider::Octorate => 4,
            Provider::BookyFlow => 5,
            Provider::Generic => 6,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The default lifetime of bookingtime refresh tokens (30 days).
pub const DEFAULT_REFRESH_TOKEN_LIFETIME: i64 = 2_592_000;

fn bookingtime_org_path(org: &str) -> String {
    format!("/bookingtime/app/v3/de/organization/{org}/show")
}

/// A failure the simulator answers a token request with instead of processing it
/// (see [`Simulator::inject`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Fault {
    /// 500 with the JSON body `{"error":"server_error",...}`.
    InternalError,
    /// 503 with `Content-Type: text/html` and an HTML page, like a load balancer's.
    HtmlServiceUnavailable,
    /// 429 with a `Retry-After` header of `retry_after_secs` and a JSON error body.
    TooManyRequests {
        /// The value of the `Retry-After` header, in seconds.
        retry_after_secs: u64,
    },
    /// 200, `application/json`, with truncated, invalid JSON.
    MalformedJson,
    /// 200, `application/json`, a valid-looking JSON token object padded to `bytes` bytes
    /// (or its unpadded length, if that is longer).
    OversizedBody {
        /// The size of the body in bytes.
        bytes: usize,
    },
    /// The request is processed normally (a well-formed request gets a real, usable token),
    /// the status line and headers are sent at once, and the body only after `delay_ms`.
    SlowBody {
        /// How long the body is held back, in milliseconds.
        delay_ms: u64,
    },
    /// 307 Temporary Redirect (which keeps method and body) to the simulator's own
    /// `/redirect-target`, which records hits (see [`Simulator::redirect_target_hits`]).
    Redirect,
    /// The connection is dropped without a complete HTTP response.
    ConnectionReset,
    /// 401 `{"error":"invalid_client",...}` with a `WWW-Authenticate` header.
    InvalidClient,
    /// 400 `{"error":"invalid_grant",...}`.
    InvalidGrant,
}

/// A request as the simulator received it (see [`Simulator::last_token_request`]).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The request method, e.g. `"POST"`.
    pub method: String,
    /// The request path, without the query.
    pub path: String,
    /// The headers in arrival order, names in lowercase, values decoded lossily as UTF-8.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of the header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body decoded lossily as UTF-8.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as `application/x-www-form-urlencoded` pairs.
    pub fn form_pairs(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A running simulator. It serves until dropped; dropping it shuts the server down and
/// joins its thread.
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The listen backlog: large enough for a thousand clients connecting at once.
const BACKLOG: u32 = 1024;

impl Simulator {
    /// Binds `127.0.0.1:0` and serves on a background thread that owns its own tokio
    /// runtime. The socket is bound and listening when this returns, so the address is known
    /// and connections are accepted (queued) at once.
    ///
    /// Works from plain threads and from inside a tokio runtime (current-thread or
    /// multi-thread): it never blocks on the caller's runtime.
    pub fn start() -> io::Result<Simulator> {
        Simulator::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Like [`start`](Simulator::start), on the given address (port 0 picks a free port).
    pub fn start_on(addr: SocketAddr) -> io::Result<Simulator> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("provider-sim-worker")
            .enable_all()
            .build()?;
        let listener = {
            // Registering the listener needs a runtime context; entering one is allowed
            // even inside the caller's runtime (only `block_on` is not).
            let _guard = runtime.enter();
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            #[cfg(unix)]
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(BACKLOG)?
        };
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared::new(format!("http://{local}")));
        let router = server::router(Arc::clone(&shared));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("provider-sim-{}", local.port()))
            .spawn(move || {
                let server = runtime.spawn(server::serve(listener, router));
                runtime.block_on(async {
                    // Either an explicit shutdown or the Simulator was dropped.
                    let _ = rx.await;
                });
                server.abort();
                runtime.shutdown_timeout(Duration::from_secs(5));
            })?;
        Ok(Simulator {
            shared,
            addr: local,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The full URL of `p`'s token endpoint.
    pub fn token_url(&self, p: Provider) -> String {
        format!("{}{}", self.shared.base_url, p.token_path())
    }

    /// The full URL of `p`'s protected route. The Bookable mounts share one route; for
    /// bookingtime this is the route of the first organization in [`ORGANIZATIONS`] — use
    /// [`org_api_url`](Simulator::org_api_url) for the others.
    pub fn api_url(&self, p: Provider) -> String {
        format!("{}{}", self.shared.base_url, p.api_path())
    }

    /// The bookingtime "show organization" route for `org`
    /// (`/bookingtime/app/v3/de/organization/{org}/show`).
    pub fn org_api_url(&self, org: &str) -> String {
        format!("{}{}", self.shared.base_url, bookingtime_org_path(org))
    }

    /// The BookyFlow site root (equal to [`base_url`](Simulator::base_url)); the token
    /// endpoint is `{site}/bookyflow/api/oauth/token`.
    pub fn bookyflow_site(&self) -> String {
        self.base_url()
    }

    /// The URL of the redirect target that [`Fault::Redirect`] points to.
    pub fn redirect_target_url(&self) -> String {
        format!("{}/redirect-target", self.shared.base_url)
    }

    /// How many requests reached `p`'s token endpoint, including rejected and faulted ones
    /// and ones with the wrong method.
    pub fn token_requests(&self, p: Provider) -> usize {
        self.shared.provider(p).token_requests()
    }

    /// The sum of [`token_requests`](Simulator::token_requests) over all providers.
    pub fn total_token_requests(&self) -> usize {
        Provider::ALL
            .into_iter()
            .map(|p| self.token_requests(p))
            .sum()
    }

    /// How many protected-route requests were answered 200 with a token issued by `p`.
    pub fn api_calls(&self, p: Provider) -> usize {
        self.shared.provider(p).api_calls()
    }

    /// How many protected-route requests were answered 401 or 403. A rejected token that
    /// the simulator issued counts under its issuer; any other rejection counts under the
    /// route's provider (Bookable for `/bookable/venues`).
    pub fn api_rejections(&self, p: Provider) -> usize {
        self.shared.provider(p).api_rejections()
    }

    /// Sets `expires_in` (seconds) of the access tokens `p` issues from now on; for
    /// bookingtime this is the organization access token (default 300). Zero and negative
    /// values are served as given; such tokens are already expired on the server.
    pub fn set_token_lifetime(&self, p: Provider, secs: i64) {
        self.shared.provider(p).set_lifetime(secs);
    }

    /// Sets `expires_in` (seconds) of the bookingtime refresh tokens issued from now on
    /// (default 2592000). Zero and negative values are served as given.
    pub fn set_refresh_token_lifetime(&self, secs: i64) {
        self.shared.set_refresh_lifetime(secs);
    }

    /// Queues `fault` for the next `times` token requests to `p`. Queued faults are
    /// consumed in order, one per request (the request is still counted).
    pub fn inject(&self, p: Provider, fault: Fault, times: usize) {
        self.shared.provider(p).inject(fault, times);
    }

    /// How many injected faults are still queued for `p`.
    pub fn pending_faults(&self, p: Provider) -> usize {
        self.shared.provider(p).pending_faults()
    }

    /// Drops every queued fault for `p`.
    pub fn clear_faults(&self, p: Provider) {
        self.shared.provider(p).clear_faults();
    }

    /// Revokes every access token issued so far by `p`: they now get 401 on the protected
    /// route. Tokens issued afterwards are valid.
    pub fn revoke_tokens(&self, p: Provider) {
        self.shared.revoke_access_tokens(p);
    }

    /// Revokes every bookingtime refresh token issued so far: exchanging one now gets
    /// `invalid_grant`.
    pub fn revoke_refresh_tokens(&self) {
        self.shared.revoke_refresh_tokens();
    }

    /// How many requests arrived at the redirect target.
    pub fn redirect_target_hits(&self) -> usize {
        self.shared.redirect_hits()
    }

    /// Whether any request to the redirect target carried [`CLIENT_SECRET`] anywhere: in
    /// the body (raw or form-decoded), in any header (Basic credentials decoded too) or in
    /// the query.
    pub fn redirect_target_saw_secret(&self) -> bool {
        self.shared.redirect_saw_secret()
    }

    /// The last request to `p`'s token endpoint.
    pub fn last_token_request(&self, p: Provider) -> Option<RecordedRequest> {
        self.shared.provider(p).last_request()
    }

    /// Resets every counter to zero: token requests, API calls and rejections, and the
    /// redirect target's hits and secret flag. Issued tokens, lifetimes, queued faults and
    /// recorded requests are kept.
    pub fn reset_counters(&self) {
        self.shared.reset_counters();
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
