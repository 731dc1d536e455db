//! What the two Authorization Code examples share: where the authorization happens (the
//! embedded simulator, or a real server named in the environment), the client configuration
//! for it, and the simulated user's browser.
//!
//! The browser: the simulator's authorization endpoint approves at once, so "logging in" is one
//! GET whose redirect (the `Location` header) is where a real browser would land. Plain HTTP
//! to loopback only; in a real application the user's browser does this.

use std::env;
use std::io::{self, Read, Write};
use std::net::TcpStream;

use provider_sim::{PUBLIC_CLIENT_ID, Provider, Simulator};
use token_core::{ClientConfig, ConfigError, Credentials, presets};

/// Where the authorization happens.
pub struct Settings {
    pub authorize_url: String,
    pub token_url: String,
    pub client_id: String,
    pub scope: String,
    pub redirect_uri: String,
    pub issuer: Option<String>,
    pub authorize_params: Vec<(String, String)>,
}

impl Settings {
    /// The simulator's (`Some`) or the environment's settings.
    pub fn new(sim: Option<&Simulator>) -> Result<Self, ConfigError> {
        match sim {
            Some(sim) => Ok(simulated(sim)),
            None => from_env(),
        }
    }

    /// A public client (no secret) of that authorization server.
    pub fn config(&self) -> Result<ClientConfig, ConfigError> {
        let mut config = presets::generic(
            &self.token_url,
            Credentials::without_secret(&self.client_id),
        )
        .authorization_endpoint(&self.authorize_url)
        .scopes(self.scope.split_whitespace());
        if let Some(issuer) = &self.issuer {
            config = config.issuer(issuer);
        }
        for (name, value) in &self.authorize_params {
            config = config.authorization_param(name, value);
        }
        config.build()
    }
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
pub fn without_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

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
