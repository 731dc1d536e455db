//! A user's tokens: the Authorization Code flow with PKCE, through the blocking (ureq) transport.
//!
//! `cargo run --example auth_code_ureq` plays it on the embedded simulator, whose authorization
//! endpoint approves at once (no credentials, loopback only).
//!
//! Against your authorization server, set `AUTHORIZE_URL`, `TOKEN_URL`, `CLIENT_ID` (a public
//! client: no secret) and `REDIRECT_URI`, optionally `SCOPE` (space separated), `ISSUER` (the
//! RFC 9207 `iss` to expect; default: the authorization endpoint's origin) and
//! `AUTHORIZE_PARAMS` (more parameters for the authorization URL, space-separated `name=value`
//! pairs, e.g. `prompt=consent resource=urn:example:api`). The example prints the authorization URL alone
//! on one line, reads the URL the browser landed on from stdin, and prints
//! `ACCESS_TOKEN_OK <length>` and `REFRESH_TOKEN_OK <length>` (or `REFRESH_TOKEN_NONE`): never a
//! token.

mod sim_browser;

use std::env;
use std::error::Error;
use std::io::{self, BufRead as _};

use examples::human;
use provider_sim::{PUBLIC_CLIENT_ID, Provider, Simulator};
use token_core::{ConfigError, Credentials, presets};
use transport_ureq::TokenClient;

/// Where the authorization happens.
struct Settings {
    authorize_url: String,
    token_url: String,
    client_id: String,
    scope: String,
    redirect_uri: String,
    issuer: Option<String>,
    authorize_params: Vec<(String, String)>,
}

fn main() -> Result<(), Box<dyn Error>> {
    let sim = match env::var_os("AUTHORIZE_URL") {
        Some(_) => None,
        None => Some(Simulator::start()?),
    };
    let settings = match &sim {
        Some(sim) => simulated(sim),
        None => from_env()?,
    };

    let mut config = presets::generic(
        &settings.token_url,
        Credentials::without_secret(&settings.client_id),
    )
    .authorization_endpoint(&settings.authorize_url)
    .scopes(settings.scope.split_whitespace());
    if let Some(issuer) = &settings.issuer {
        config = config.issuer(issuer);
    }
    for (name, value) in &settings.authorize_params {
        config = config.authorization_param(name, value);
    }
    let client = TokenClient::new();
    let app = client.register(config.build()?);

    // 1. The URL to send the user's browser to: state and the PKCE challenge are in it; the
    //    verifier stays in this process.
    let url = app
        .start_authorization("demo-user", &settings.redirect_uri)?
        .url;

    // 2. The user logs in; the browser lands on the redirect URI with a code.
    let redirect = match &sim {
        Some(_) => {
            println!("authorize at {}?…", without_query(&url));
            let redirect = sim_browser::redirect_of(&url)?;
            println!("redirected to {}?…", without_query(&redirect));
            redirect
        }
        None => {
            println!("{url}");
            let mut line = String::new();
            io::stdin().lock().read_line(&mut line)?;
            line
        }
    };

    // 3. Checks the redirect (state, redirect URI, iss) and exchanges the code: the handle of
    //    this user's tokens.
    let user = app.complete_authorization(redirect.trim())?;
    let token = user.token()?;
    println!("ACCESS_TOKEN_OK {}", token.access_token().secret().len());
    if sim.is_some() {
        println!(
            "  lives {}, scopes {:?}",
            human(token.lifetime()),
            token.scopes().map(|s| s.to_string())
        );
    }

    // 4. The user's refresh token renews their access tokens. As if the API had refused this
    //    token (a 401): the next token comes through the refresh token.
    user.invalidate(&token);
    match user.token() {
        Ok(renewed) => println!("REFRESH_TOKEN_OK {}", renewed.access_token().secret().len()),
        Err(e) if e.is_authorization_required() => {
            println!("REFRESH_TOKEN_NONE (the user must authorize again once a token expires)")
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// The simulator's generic provider, its public client and one of its loopback redirect URIs.
fn simulated(sim: &Simulator) -> Settings {
    Settings {
        authorize_url: sim
            .authorize_url(Provider::Generic)
            .expect("the simulator's generic provider has an authorization endpoint"),
        token_url: sim.token_url(Provider::Generic),
        client_id: PUBLIC_CLIENT_ID.to_owned(),
        scope: "read".to_owned(),
        redirect_uri: "http://127.0.0.1:53682/callback".to_owned(),
        issuer: Some(sim.issuer(Provider::Generic)),
        authorize_params: Vec::new(),
    }
}

fn from_env() -> Result<Settings, ConfigError> {
    let var = |name: &str| env::var(name).map_err(|_| ConfigError::MissingEnv(name.into()));
    Ok(Settings {
        authorize_url: var("AUTHORIZE_URL")?,
        token_url: var("TOKEN_URL")?,
        client_id: var("CLIENT_ID")?,
        scope: env::var("SCOPE").unwrap_or_default(),
        redirect_uri: var("REDIRECT_URI")?,
        issuer: env::var("ISSUER").ok(),
        authorize_params: env::var("AUTHORIZE_PARAMS")
            .unwrap_or_default()
            .split_whitespace()
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (name.to_owned(), value.to_owned())
            })
            .collect(),
    })
}

/// A URL without its query (which carries the state, or the code).
fn without_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}
