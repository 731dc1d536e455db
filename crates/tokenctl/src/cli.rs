//! The command line: subcommands, options, and the parsing of option values.

use std::time::Duration;

use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};
use token_core::Provider;

use crate::failure::Fail;

/// Shown at the end of `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  any other failure (e.g. the API answered 404 or another non-2xx status not listed below)
  2  usage or configuration error: bad option, missing environment variable, bad URL,
     plain http:// to a host that is not loopback without --allow-insecure-http
  3  rejected: the token endpoint refused the credentials, scope, grant or request
     (its `error` and `error_description` are shown), or the API answered 401/403
     (on a 401 the token is renewed and the call retried once before giving up), or
     login's redirect was refused (wrong state, another issuer, access denied)
  4  unavailable: connection refused or reset, timed out, or HTTP 5xx / 429 / 408;
     login: no redirect came within --timeout
  5  malformed: the token endpoint answered, but not with a usable token response
     (invalid JSON, missing fields, oversized body, or an unexpected status such as a
     404 or a redirect, which is never followed)

Credentials (environment, by provider):
  bookable, bookable-sandbox, bookable-auth0   BOOKABLE_CLIENT_ID, BOOKABLE_CLIENT_SECRET
  bookingtime                                  BOOKINGTIME_CLIENT_ID, BOOKINGTIME_CLIENT_SECRET
  bookingtime-module                           BOOKINGTIME_CLIENT_ID (no secret)
  octorate                                     OCTORATE_CLIENT_ID, OCTORATE_CLIENT_SECRET
  bookyflow                                    BOOKYFLOW_CLIENT_ID, BOOKYFLOW_CLIENT_SECRET
  generic                                      TOKEN_CLIENT_ID, TOKEN_CLIENT_SECRET
--client-id overrides the id; --client-secret-stdin reads the secret from stdin instead.
The secret is never accepted as an argument: other users can see the argument list.
(`login` needs no secret: without one it is a public client and PKCE alone proves it.)

Token cache (token and get): tokens are kept, encrypted with a key derived from the client
secret, in $XDG_CACHE_HOME/tokenctl (else ~/.cache/tokenctl), so runs in a row share one token.
--no-cache keeps them in memory only; --store redis://... shares them through Redis instead.
A cache that cannot be used is a warning, never a failure. Clients without a secret are not
cached.

Try it without credentials: run `tokenctl sim` and follow what it prints.";

/// Check booking-platform OAuth 2.0 client credentials: fetch a token, inspect it, call a
/// protected API with it.
#[derive(Debug, Parser)]
#[command(name = "tokenctl", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Get a token and print a summary of it (the token itself only with --json or --raw):
    /// from the token cache if it has a valid one, else from the token endpoint.
    #[command(after_help = EXIT_CODES)]
    Token(TokenArgs),
    /// Call a protected API with a token attached and print the response body (each body
    /// ends with a newline).
    #[command(after_help = EXIT_CODES)]
    Get(GetArgs),
    /// Sign a user in with the Authorization Code flow and PKCE (a browser, and a one-shot
    /// listener on http://127.0.0.1:{free port}/callback), then print the token like `token`.
    #[command(after_help = LOGIN_HELP)]
    Login(LoginArgs),
    /// Run the provider simulator in the foreground and print how to use it.
    Sim(SimArgs),
}

/// Shown at the end of `login --help`.
const LOGIN_HELP: &str = "\
How it works:
  tokenctl listens on 127.0.0.1 (never `localhost`) on a free port, sends the browser to the
  authorization URL with redirect_uri=http://127.0.0.1:{port}/callback (RFC 8252 §7.3: register
  http://127.0.0.1/callback; servers accept any port for a loopback IP), waits for exactly one
  redirect to /callback (other paths get 404 and do not end the wait), checks its `state` and
  `iss`, exchanges the code (with the PKCE verifier) and stops listening.

  With --no-browser, the authorization URL is printed alone on one line of stderr (the only
  stderr line that starts with `http`); other messages are on lines of their own.
  --timeout is how long to wait for the redirect (default 300 s) and each token request's
  timeout (at most 30 s). Ctrl-C ends the wait; nothing stays listening.

  Providers: generic (--authorize-url, --token-url, --client-id or TOKEN_CLIENT_ID, --scope;
  a secret from TOKEN_CLIENT_SECRET or --client-secret-stdin only if the client has one) and
  bookingtime (--authorize-url is required: it is not publicly documented, so never guessed;
  --org picks the organization). --audience and --param are sent on the authorization request
  too. The user's tokens are kept in memory only.

Exit codes: as for `token`; 3 also when the redirect is refused (wrong or missing state,
another issuer, the user denied access), 4 when no redirect came within --timeout.";

/// `tokenctl token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Which endpoint and credentials.
    #[command(flatten)]
    pub conn: Connection,
    /// Where tokens are cached between runs.
    #[command(flatten)]
    pub cache: CacheArgs,
    /// How to print the token.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `--json` / `--raw`, shared by `token` and `login`.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print one JSON object: access_token, token_type, expires_in, scope, provider, endpoint,
    /// expires_at, lifetime_source, source ("cache" or "fetched"), quota (null without quota
    /// headers), jwt_claims (and organization for bookingtime).
    #[arg(long, conflicts_with = "raw")]
    pub json: bool,
    /// Print the bare access token and a newline, for `$(tokenctl token --raw ...)`.
    #[arg(long)]
    pub raw: bool,
}

/// The token cache options of `token` and `get`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Keep tokens in memory only: no cache directory, no shared store.
    #[arg(long)]
    pub no_cache: bool,
    /// Share tokens through Redis (`redis://` or `rediss://` URL) instead of the cache
    /// directory, e.g. redis://127.0.0.1:6379/0 (a password in the URL is visible on the
    /// argument list; tokenctl's messages never show it).
    #[arg(long, value_name = "REDIS_URL", conflicts_with = "no_cache")]
    pub store: Option<String>,
}

/// `tokenctl login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Which endpoints and client.
    #[command(flatten)]
    pub conn: Connection,
    /// The authorization endpoint (required).
    #[arg(long, value_name = "URL")]
    pub authorize_url: String,
    /// The issuer the redirect's RFC 9207 `iss` must name (default: the authorization
    /// endpoint's origin, `scheme://host[:port]`).
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,
    /// An extra parameter for the authorization URL only, KEY=VALUE (repeatable): e.g.
    /// `prompt=consent` (some servers issue a refresh token only after it) or an RFC 8707
    /// `resource`. `--audience` and `--param` go to the authorization URL too.
    #[arg(long = "authorize-param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub authorize_params: Vec<(String, String)>,
    /// Do not start a browser: print the authorization URL alone on one line of stderr.
    #[arg(long)]
    pub no_browser: bool,
    /// How to print the token.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `tokenctl get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The API URL to GET (https, or http to loopback unless --allow-insecure-http).
    pub url: String,
    /// Which endpoint and credentials.
    #[command(flatten)]
    pub conn: Connection,
    /// Make N calls through one client (one cached token), then print on stderr how many API
    /// calls and token requests were made. Stops at the first failing call.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: Option<u32>,
    /// With --repeat: wait MS milliseconds between calls (a long-running client: run it in
    /// several shells with a shared cache or --store to watch a fleet share one token).
    #[arg(long, value_name = "MS", requires = "repeat", default_value_t = 0)]
    pub interval_ms: u64,
    /// An extra request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Where tokens are cached between runs.
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// `tokenctl sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Port to listen on, on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

/// Where to get a token, and as whom.
#[derive(Debug, Args)]
pub struct Connection {
    /// The provider (its token endpoint, request dialect and credential variables).
    #[arg(long, short = 'p', value_enum)]
    pub provider: ProviderName,
    /// The organization id (bookingtime and bookingtime-module only; required there).
    #[arg(long, value_name = "ID")]
    pub org: Option<String>,
    /// BookyFlow's site root, e.g. `https://yourdomain.com` (bookyflow only; the token endpoint
    /// is {site}/bookyflow/api/oauth/token).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// The token endpoint. Overrides any preset's; required for generic.
    #[arg(long, value_name = "URL")]
    pub token_url: Option<String>,
    /// A scope to request (repeatable, or several space-separated). Required for bookyflow.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// The `audience` parameter (Bookable's presets already send api.bookabletech.com).
    #[arg(long, value_name = "AUDIENCE")]
    pub audience: Option<String>,
    /// An extra token request parameter, `key=value` (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Token request body encoding (default: the provider's; form for generic).
    #[arg(long, value_enum)]
    pub body: Option<BodyArg>,
    /// Client authentication (default: the provider's; basic for generic).
    #[arg(long, value_enum)]
    pub auth: Option<AuthArg>,
    /// The client id (instead of the provider's *_CLIENT_ID variable).
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// Read the client secret from the first line of stdin (instead of *_CLIENT_SECRET).
    #[arg(long)]
    pub client_secret_stdin: bool,
    /// Allow plain http:// to hosts that are not loopback (the secret and token then cross
    /// the network in clear text).
    #[arg(long)]
    pub allow_insecure_http: bool,
    /// Timeout of each token request and API call, in seconds (default 30). For `login`: how
    /// long to wait for the browser's redirect (default 300).
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
}

/// The request timeout unless `--timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Connection {
    /// The timeout of each token request and API call.
    pub fn request_timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }
}

/// `--provider`: one of token-core's providers, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProviderName(pub Provider);

impl ValueEnum for ProviderName {
    fn value_variants<'a>() -> &'a [Self] {
        const ALL: [ProviderName; Provider::ALL.len()] = {
            let mut all = [ProviderName(Provider::Generic); Provider::ALL.len()];
            let mut i = 0;
            while i < all.len() {
                all[i] = ProviderName(Provider::ALL[i]);
                i += 1;
            }
            all
        };
        &ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self.0 {
            Provider::Bookable => "Bookable production",
            Provider::BookableSandbox => "Bookable sandbox",
            Provider::BookableAuth0 => "Bookable's older Auth0 tenant",
            Provider::BookingtimeApp => "bookingtime App API (needs --org)",
            Provider::BookingtimeModule => "bookingtime Module API: client id only (needs --org)",
            Provider::Octorate => "Octorate octotable",
            Provider::BookyFlow => "BookyFlow, self-hosted (needs --base-url and --scope)",
            _ => "any RFC 6749 server (needs --token-url; login also --authorize-url)",
        };
        Some(PossibleValue::new(self.0.name()).help(help))
    }
}

impl ProviderName {
    /// The name as typed on the command line.
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// The prefix of the credential variables (`{PREFIX}_CLIENT_ID`, `{PREFIX}_CLIENT_SECRET`).
    pub fn env_prefix(self) -> &'static str {
        match self.0 {
            Provider::Bookable | Provider::BookableSandbox | Provider::BookableAuth0 => "BOOKABLE",
            Provider::BookingtimeApp | Provider::BookingtimeModule => "BOOKINGTIME",
            Provider::Octorate => "OCTORATE",
            Provider::BookyFlow => "BOOKYFLOW",
            _ => "TOKEN",
        }
    }

    /// Whether tokens are per organization (`--org`).
    pub fn needs_organization(self) -> bool {
        self.0.has_organizations()
    }
}

/// `--body`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BodyArg {
    /// application/json.
    Json,
    /// application/x-www-form-urlencoded.
    Form,
}

/// `--auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthArg {
    /// HTTP Basic (client_secret_basic).
    Basic,
    /// client_id and client_secret in the body (client_secret_post).
    Post,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err("expected key=value".to_owned()),
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| "expected a number of seconds".to_owned())?;
    if secs.is_finite() && secs > 0.0 && secs <= 3600.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err("expected a number of seconds between 0 and 3600".to_owned())
    }
}

/// Parses `Name: value` for `-H`.
pub fn parse_header(s: &str) -> Result<(http::HeaderName, http::HeaderValue), Fail> {
    let invalid = || Fail::usage(format!("invalid header {s:?}: expected `Name: value`"));
    let (name, value) = s.split_once(':').ok_or_else(invalid)?;
    let name = http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| invalid())?;
    let value = http::HeaderValue::from_str(value.trim()).map_err(|_| invalid())?;
    Ok((name, value))
}

/// Validates the API URL of `get`: absolute http(s); plain http only to loopback unless
/// allowed, since the bearer token would otherwise cross the network in clear text.
pub fn api_url(url: &str) -> Result<http::Uri, Fail> {
    let invalid = |why: &str| Fail::usage(format!("invalid API URL `{url}`: {why}"));
    let uri: http::Uri = url.trim().parse().map_err(|_| invalid("does not parse"))?;
    let Some(authority) = uri.authority() else {
        return Err(invalid("expected http(s)://host/path"));
    };
    if authority.as_str().contains('@') {
        return Err(invalid("must not contain user info"));
    }
    match uri.scheme_str() {
        // Plain http is judged against the client's configuration (loopback, or
        // --allow-insecure-http) by `ClientConfig::check_api_uri`, before any token is fetched.
        Some("https" | "http") => Ok(uri),
        _ => Err(invalid("the scheme must be https (or http to loopback)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn option_values_parse() {
        assert_eq!(parse_param("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_param("=x").is_err());
        assert!(parse_param("novalue").is_err());
        assert_eq!(parse_timeout("2.5"), Ok(Duration::from_millis(2500)));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("NaN").is_err());
        assert!(parse_header("Accept: application/json").is_ok());
        assert!(parse_header("no colon").is_err());
        assert!(api_url("https://api.example.com/x").is_ok());
        assert!(api_url("http://127.0.0.1:9/x").is_ok());
        assert!(api_url("ftp://api.example.com/x").is_err());
        assert!(api_url("https://user:pw@api.example.com/x").is_err());
        assert!(api_url("/relative").is_err());
    }
}
