//! A loopback HTTP/1.1 server that impersonates the OAuth 2.0 token endpoints and one
//! protected API route of each booking provider, for tests, examples and the
//! `provider-sim` command-line tool.
//!
//! Every provider speaks its own dialect, as its public documentation describes it:
//!
//! | provider | token endpoint | request | response |
//! |---|---|---|---|
//! | [`Provider::Bookable`] (+ sandbox, Auth0 mounts) | `POST /bookable/oauth/token` | JSON: `grant_type`, `client_id`, `client_secret`, `audience=api.bookabletech.com` | `access_token`, `scope`, `expires_in`, `token_type`; Auth0 quota headers (`Auth0-Client-Quota-Limit`, `X-RateLimit-*`), 429 `too_many_requests` once used up |
//! | [`Provider::Bookingtime`] | `POST /bookingtime/oauth/token` | JSON or form; leg 1 `client_credentials` or `authorization_code` → refresh token, leg 2 `refresh_token` + `organization_id` → access token | `refresh_token` / `access_token`, `token_type`, `expires_in` (+ `refresh_token` on leg 2 with rotation on) |
//! | [`Provider::Octorate`] | `POST /octorate/oauth2/token` | JSON + `Accept: application/json` | `access_token`, `expires_in`, `type` |
//! | [`Provider::BookyFlow`] | `POST /bookyflow/api/oauth/token` | form, `scope` required | `access_token`, `token_type`, `expires_in` |
//! | [`Provider::Generic`] | `POST /generic/token` | form, HTTP Basic or body credentials; `client_credentials`, `authorization_code`, `refresh_token` | RFC 6749 §5.1 (`refresh_token` for users' grants) |
//!
//! Two providers also have an authorization endpoint for the Authorization Code flow with
//! PKCE (RFC 6749 §4.1, RFC 7636 S256 only, RFC 9207 `iss`), which signs in and
//! auto-approves [`TEST_USER`] (see [`Simulator::authorize_url`]):
//!
//! | provider | authorization endpoint | code exchange answers |
//! |---|---|---|
//! | [`Provider::Generic`] | `GET /generic/authorize` | `access_token` + `refresh_token` (`grant_type=refresh_token` then gives new access tokens) |
//! | [`Provider::Bookingtime`] | `GET /bookingtime/oauth/authorize` | only a 30-day `refresh_token`, exchanged with `organization_id` like the app's |
//!
//! Clients: [`CLIENT_ID`] / [`CLIENT_SECRET`] (confidential) everywhere, [`MODULE_CLIENT_ID`]
//! (bookingtime, no secret), [`PUBLIC_CLIENT_ID`] (Authorization Code flow, no secret).
//! Redirect URIs must match a registered one exactly; by default that is
//! [`DEFAULT_REDIRECT_URI`], a loopback URI that accepts any port (RFC 8252 §7.3).
//!
//! Every error body is RFC 6749 §5.2 JSON (`{"error": ..., "error_description": ...}`) with
//! `Content-Type: application/json`. Tokens are JWT-shaped, unique per issuance, and judged
//! against wall-clock time ([`std::time::SystemTime`]).
//!
//! For tests of clients, beyond counters and [`Fault`] injection: token quotas
//! ([`Simulator::set_client_quota`]), a gate that holds token requests until `n` are in
//! flight at once ([`Simulator::hold_token_requests`],
//! [`Simulator::max_concurrent_token_requests`]), response latency
//! ([`Simulator::set_token_latency`]), refresh-token rotation
//! ([`Simulator::set_refresh_token_rotation`]), and a protected route that rejects every
//! token ([`Simulator::set_api_rejects_all`]).
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

mod auth;
mod gate;
mod presets;
mod quota;
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

/// A public client (RFC 6749 §2.1: no secret) for the Authorization Code flow: it
/// authenticates by PKCE alone and sends only `client_id` to the token endpoint.
/// [`CLIENT_ID`] may use the flow too, as a confidential client with [`CLIENT_SECRET`].
pub const PUBLIC_CLIENT_ID: &str = "sim-public";

/// The user the authorization endpoints sign in and auto-approve (see
/// [`Simulator::set_user_denies`]); the `sub` of the tokens issued for them.
pub const TEST_USER: &str = "sim-user";

/// The redirect URI every client has registered unless
/// [`Simulator::set_redirect_uris`] says otherwise. It is a loopback IP literal, so any port
/// is accepted with it (RFC 8252 §7.3): `http://127.0.0.1:{any port}/callback`.
pub const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1/callback";

/// How long authorization codes live unless set otherwise, in seconds.
pub const DEFAULT_AUTHORIZATION_CODE_LIFETIME: i64 = 60;

/// How long [`Simulator::hold_token_requests`] holds a request at most before it answers 503.
pub const DEFAULT_HOLD_TIMEOUT: Duration = Duration::from_secs(30);

/// Computes the PKCE S256 `code_challenge` of `code_verifier`: base64url without padding of
/// its SHA-256 (RFC 7636 §4.2).
///
/// ```
/// assert_eq!(
///     provider_sim::s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
///     "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
/// );
/// ```
pub fn s256_challenge(code_verifier: &str) -> String {
    auth::s256(code_verifier)
}

/// An Auth0-style token quota: how many tokens a client may get per hour and per day (see
/// [`Simulator::set_client_quota`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Tokens per hour.
    pub per_hour: u64,
    /// Tokens per day.
    pub per_day: u64,
}

impl Quota {
    /// The quota every Bookable mount starts with: far more than any test or benchmark
    /// asks for (a billion tokens an hour, ten billion a day).
    pub const DEFAULT: Quota = Quota {
        per_hour: 1_000_000_000,
        per_day: 10_000_000_000,
    };

    /// A quota of `per_hour` tokens per hour and `per_day` per day.
    pub const fn new(per_hour: u64, per_day: u64) -> Quota {
        Quota { per_hour, per_day }
    }
}

impl Default for Quota {
    fn default() -> Quota {
        Quota::DEFAULT
    }
}

/// The bookingtime organizations the clients may access by name. Besides these, any
/// `org-{number}` (e.g. `org-42`) is accepted too, for tests and benchmarks with many
/// organizations (see [`is_organization`]).
pub const ORGANIZATIONS: &[&str] = &["org-alpha", "org-beta", "org-gamma"];

/// Whether bookingtime's simulated token endpoint knows `organization`: one of
/// [`ORGANIZATIONS`], or `org-` followed by digits.
pub fn is_organization(organization: &str) -> bool {
    ORGANIZATIONS.contains(&organization)
        || organization
            .strip_prefix("org-")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

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

    /// The path of the provider's authorization endpoint (Authorization Code flow with
    /// PKCE), for the providers that have one: `/generic/authorize` and
    /// `/bookingtime/oauth/authorize`. The others are client-credentials only.
    pub fn authorize_path(self) -> Option<&'static str> {
        match self {
            Provider::Bookingtime => Some("/bookingtime/oauth/authorize"),
            Provider::Generic => Some("/generic/authorize"),
            _ => None,
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

    /// Sets `expires_in` (seconds) of the refresh tokens issued from now on (default
    /// 2592000): bookingtime's, and the Generic users' of the Authorization Code flow. Zero
    /// and negative values are served as given.
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

    /// Revokes every bookingtime refresh token issued so far (the app's and users'):
    /// exchanging one now gets `invalid_grant`.
    pub fn revoke_refresh_tokens(&self) {
        self.shared.revoke_refresh_tokens(Provider::Bookingtime);
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

    /// Resets every counter to zero: token requests, API calls and rejections (forced ones
    /// too), authorization requests, authorizations, code exchanges, quota rejections, and
    /// the redirect target's hits and secret flag; the high-water mark of
    /// [`max_concurrent_token_requests`](Simulator::max_concurrent_token_requests) restarts
    /// from the requests in flight. Issued tokens and codes, lifetimes, quotas (and what
    /// they have counted), settings, queued faults and recorded requests are kept.
    pub fn reset_counters(&self) {
        self.shared.reset_counters();
    }

    // ---- Authorization Code flow with PKCE ----

    /// The full URL of `p`'s authorization endpoint, if it has one (see
    /// [`Provider::authorize_path`]).
    ///
    /// `GET` it with `response_type=code`, `client_id` ([`PUBLIC_CLIENT_ID`] or
    /// [`CLIENT_ID`]), a registered `redirect_uri`, `code_challenge` with
    /// `code_challenge_method=S256`, and optionally `state` and `scope`. It signs
    /// [`TEST_USER`] in, approves, and answers `302 Found` with
    /// `Location: {redirect_uri}?code=…&state=…&iss=…` (`state` echoed verbatim, `iss` =
    /// [`issuer`](Simulator::issuer), RFC 9207). A missing or unknown client or a redirect URI
    /// that is not registered is a 400 JSON page and never a redirect; every other error
    /// is redirected as `error=…&error_description=…&state=…&iss=…` (`invalid_request`,
    /// `unsupported_response_type`, `access_denied`).
    pub fn authorize_url(&self, p: Provider) -> Option<String> {
        p.authorize_path()
            .map(|path| format!("{}{path}", self.shared.base_url))
    }

    /// `p`'s issuer identifier, sent as `iss` in authorization responses (RFC 9207):
    /// `{base_url}/{name}`, e.g. `http://127.0.0.1:PORT/generic`.
    pub fn issuer(&self, p: Provider) -> String {
        auth::issuer(&self.shared.base_url, p)
    }

    /// Makes [`TEST_USER`] deny (`true`) or approve (`false`, the default) `p`'s
    /// authorization requests; a denial redirects with `error=access_denied`.
    pub fn set_user_denies(&self, p: Provider, deny: bool) {
        self.shared.provider(p).set_user_denies(deny);
    }

    /// Replaces the redirect URIs `client_id` has registered with `p` (default: just
    /// [`DEFAULT_REDIRECT_URI`]). A requested `redirect_uri` must equal one of them exactly,
    /// except that a registered `http://127.0.0.1…` or `http://[::1]…` URI accepts any port
    /// (RFC 8252 §7.3). An empty list registers none, so every request is refused.
    pub fn set_redirect_uris<I, S>(&self, p: Provider, client_id: &str, uris: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let uris = uris.into_iter().map(Into::into).collect();
        self.shared.provider(p).set_redirect_uris(client_id, uris);
    }

    /// Sets the lifetime (seconds) of the authorization codes `p` issues from now on
    /// (default [`DEFAULT_AUTHORIZATION_CODE_LIFETIME`]); zero or less issues codes that are
    /// already expired.
    pub fn set_authorization_code_lifetime(&self, p: Provider, secs: i64) {
        self.shared.provider(p).set_code_lifetime(secs);
    }

    /// Turns refresh-token rotation on or off (the default) for `p` (Generic and
    /// bookingtime use refresh tokens): with it, every `refresh_token` grant also returns a
    /// new `refresh_token` and the one presented is no longer accepted. Presenting a
    /// replaced token again is `invalid_grant` and revokes its whole chain (RFC 9700
    /// §4.14.2).
    pub fn set_refresh_token_rotation(&self, p: Provider, on: bool) {
        self.shared.provider(p).set_rotation(on);
    }

    /// Revokes every refresh token issued so far by `p` to a user (Authorization Code
    /// flow): refreshing with one now gets `invalid_grant`. bookingtime's app refresh
    /// tokens are untouched (see [`revoke_refresh_tokens`](Simulator::revoke_refresh_tokens)).
    pub fn revoke_user_refresh_tokens(&self, p: Provider) {
        self.shared.revoke_user_refresh_tokens(p);
    }

    /// Revokes one refresh token, whoever it was issued to; whether the simulator knew it.
    pub fn revoke_refresh_token(&self, refresh_token: &str) -> bool {
        self.shared.revoke_refresh_token(refresh_token)
    }

    /// How many requests reached `p`'s authorization endpoint, rejected ones included.
    pub fn authorization_requests(&self, p: Provider) -> usize {
        self.shared.provider(p).authorization_requests()
    }

    /// How many authorization codes `p` issued.
    pub fn authorizations(&self, p: Provider) -> usize {
        self.shared.provider(p).authorizations()
    }

    /// How many authorization codes `p`'s token endpoint accepted (successful
    /// `authorization_code` grants).
    pub fn code_exchanges(&self, p: Provider) -> usize {
        self.shared.provider(p).code_exchanges()
    }

    // ---- Auth0 quotas (Bookable) ----

    /// Sets the client quota of a Bookable mount and starts counting afresh (default
    /// [`Quota::DEFAULT`]). Every token it issues counts down both buckets and its responses
    /// carry `Auth0-Client-Quota-Limit: b=per_hour;q=…;r=…;t=…,b=per_day;q=…;r=…;t=…` (`q`
    /// quota, `r` remaining, `t` seconds until the bucket resets) and `X-RateLimit-Limit`,
    /// `X-RateLimit-Remaining`, `X-RateLimit-Reset` (Unix seconds) of the bucket with the
    /// fewest tokens left. Once a bucket is empty, a valid token request gets
    /// `429 {"error":"too_many_requests",…}` with `Retry-After` and the same headers.
    ///
    /// The windows start when the quota is set (or the simulator starts) rather than at
    /// the UTC hour and day as Auth0's do, so tests never see a bucket refill mid-test.
    /// Other providers ignore the setting.
    pub fn set_client_quota(&self, p: Provider, quota: Quota) {
        self.shared.provider(p).set_client_quota(quota);
    }

    /// Sets (or with `None` removes, the default) an organization quota on a Bookable mount:
    /// it counts and limits like the client quota, announced as
    /// `Auth0-Organization-Quota-Limit`.
    pub fn set_organization_quota(&self, p: Provider, quota: Option<Quota>) {
        self.shared.provider(p).set_organization_quota(quota);
    }

    /// How many token requests to `p` were answered 429 because a quota was used up.
    pub fn quota_rejections(&self, p: Provider) -> usize {
        self.shared.provider(p).quota_rejections()
    }

    // ---- Concurrency ----

    /// The most requests that were in flight at `p`'s token endpoint at once (since the
    /// start or [`reset_counters`](Simulator::reset_counters)). A request is in flight from
    /// the moment it is counted in [`token_requests`](Simulator::token_requests) (its body
    /// read and recorded) until its response (headers) is ready, including any time spent
    /// held or delayed.
    pub fn max_concurrent_token_requests(&self, p: Provider) -> usize {
        self.shared.provider(p).max_in_flight()
    }

    /// How many requests are in flight at `p`'s token endpoint right now.
    pub fn token_requests_in_flight(&self, p: Provider) -> usize {
        self.shared.provider(p).in_flight()
    }

    /// Blocks the calling thread until at least `n` requests are in flight at `p`'s token
    /// endpoint, or `timeout` has passed; whether they were. For a test that must know its
    /// client's request has reached the server (no polling, no sleeping).
    pub fn wait_for_token_requests_in_flight(
        &self,
        p: Provider,
        n: usize,
        timeout: Duration,
    ) -> bool {
        self.shared.provider(p).wait_for_in_flight(n, timeout)
    }

    /// Holds `p`'s token requests until `n` of them are held at once, then lets them all
    /// proceed and opens (it is one-shot: arm it again for another round). A request held
    /// for [`DEFAULT_HOLD_TIMEOUT`] answers `503 {"error":"temporarily_unavailable",…}`, as
    /// do all held with it, and the gate opens: nothing hangs. `n` of 0 or 1 opens the gate.
    /// Held requests are counted, and in flight, while they wait.
    pub fn hold_token_requests(&self, p: Provider, n: usize) {
        self.hold_token_requests_for(p, n, DEFAULT_HOLD_TIMEOUT);
    }

    /// [`hold_token_requests`](Simulator::hold_token_requests) with a timeout of its own.
    pub fn hold_token_requests_for(&self, p: Provider, n: usize, timeout: Duration) {
        self.shared.provider(p).gate.arm(n, timeout);
    }

    /// Opens `p`'s gate, letting every held token request proceed.
    pub fn release_token_requests(&self, p: Provider) {
        self.shared.provider(p).gate.open();
    }

    /// How many token requests `p`'s gate holds right now.
    pub fn held_token_requests(&self, p: Provider) -> usize {
        self.shared.provider(p).gate.held()
    }

    /// Delays every response of `p`'s token endpoint by `latency` (default zero), after any
    /// hold: the request is in flight meanwhile. Applies to requests that arrive from now on.
    pub fn set_token_latency(&self, p: Provider, latency: Duration) {
        self.shared.provider(p).set_latency(latency);
    }

    // ---- The protected routes ----

    /// Makes the protected route reject (`true`) every token `p` issued, even valid ones,
    /// with 401 and `WWW-Authenticate: Bearer … error="invalid_token"`; `false` (the
    /// default) restores normal checking. Unlike [`revoke_tokens`](Simulator::revoke_tokens),
    /// it also rejects tokens issued later. Each such rejection counts in
    /// [`api_rejections`](Simulator::api_rejections) and in
    /// [`api_forced_rejections`](Simulator::api_forced_rejections).
    pub fn set_api_rejects_all(&self, p: Provider, on: bool) {
        self.shared.provider(p).set_rejects_all(on);
    }

    /// How many otherwise valid tokens of `p` the protected route rejected because of
    /// [`set_api_rejects_all`](Simulator::set_api_rejects_all).
    pub fn api_forced_rejections(&self, p: Provider) -> usize {
        self.shared.provider(p).forced_rejections()
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
