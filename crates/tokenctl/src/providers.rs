//! From the command line to a validated [`ClientConfig`]: the provider's preset, its
//! credentials, and the overrides.

use token_core::{BodyEncoding, ClientAuth, ClientConfig, Credentials, presets};

use token_core::Provider;

use crate::cli::{AuthArg, BodyArg, Connection};
use crate::failure::{self, Fail};

/// What `login` adds to a configuration: the Authorization Code flow's endpoint and issuer.
#[derive(Clone, Copy, Debug)]
pub struct Login<'a> {
    /// The authorization endpoint.
    pub authorize_url: &'a str,
    /// The issuer the redirect's `iss` must name, if not the endpoint's origin.
    pub issuer: Option<&'a str>,
    /// Extra parameters for the authorization URL.
    pub params: &'a [(String, String)],
}

/// Builds the configuration for `conn`. `secret_from_stdin` is the secret read for
/// `--client-secret-stdin`; `login` is given for `tokenctl login` (whose client secret is
/// optional: without one it is a public client).
pub fn client_config(
    conn: &Connection,
    secret_from_stdin: Option<String>,
    login: Option<Login<'_>>,
) -> Result<ClientConfig, Fail> {
    let provider = conn.provider;
    check_options(conn)?;
    if login.is_some() {
        check_login_options(conn)?;
    }
    let credentials = credentials(conn, secret_from_stdin, login.is_some())?;
    let mut builder = match provider.0 {
        Provider::Bookable => presets::bookable(credentials),
        Provider::BookableSandbox => presets::bookable_sandbox(credentials),
        Provider::BookableAuth0 => presets::bookable_auth0(credentials),
        Provider::BookingtimeApp => presets::bookingtime_app(credentials),
        Provider::BookingtimeModule => {
            presets::bookingtime_module(credentials.client_id().to_owned())
        }
        Provider::Octorate => presets::octorate(credentials),
        Provider::BookyFlow => presets::bookyflow(
            // With only --token-url the site root does not matter: the URL is overridden below.
            conn.base_url.as_deref().unwrap_or("https://site.invalid"),
            credentials,
            &conn.scopes,
        ),
        _ => {
            let url = conn.token_url.clone().unwrap_or_default();
            presets::generic(url, credentials)
        }
    };
    if let Some(url) = &conn.token_url {
        builder = builder.token_url(url.clone());
    }
    if provider.0 != Provider::BookyFlow {
        builder = builder.scopes(&conn.scopes);
    }
    if let Some(audience) = &conn.audience {
        builder = builder.audience(audience.clone());
    }
    for (key, value) in &conn.params {
        builder = builder.param(key.clone(), value.clone());
    }
    if let Some(body) = conn.body {
        builder = builder.body_encoding(match body {
            BodyArg::Json => BodyEncoding::Json,
            BodyArg::Form => BodyEncoding::Form,
        });
    }
    if let Some(auth) = conn.auth {
        builder = builder.client_auth(match auth {
            AuthArg::Basic => ClientAuth::BasicAuth,
            AuthArg::Post => ClientAuth::RequestBody,
        });
    }
    if let Some(login) = login {
        builder = builder.authorization_endpoint(login.authorize_url.trim().to_owned());
        if let Some(issuer) = login.issuer {
            builder = builder.issuer(issuer.trim().to_owned());
        }
        // Servers ignore parameters they do not know (RFC 6749 §3.1); Auth0 wants `audience`
        // here, resource servers `resource`.
        if let Some(audience) = &conn.audience {
            builder = builder.authorization_param("audience", audience.clone());
        }
        for (key, value) in conn.params.iter().chain(login.params) {
            builder = builder.authorization_param(key.clone(), value.clone());
        }
    }
    builder
        .allow_insecure_http(conn.allow_insecure_http)
        .build()
        .map_err(|e| failure::config_error(&e, provider))
}

/// The combinations clap cannot check on its own.
fn check_options(conn: &Connection) -> Result<(), Fail> {
    let name = conn.provider.name();
    if conn.provider.needs_organization() {
        match conn.org.as_deref() {
            None => {
                return Err(Fail::usage(format!(
                    "{name} tokens are per organization: pass --org ORGANIZATION_ID"
                )));
            }
            Some(org) if org.trim().is_empty() => {
                return Err(Fail::usage("--org must not be empty"));
            }
            Some(_) => {}
        }
    } else if conn.org.is_some() {
        return Err(Fail::usage(format!(
            "--org applies to bookingtime and bookingtime-module only, not {name}"
        )));
    }
    match conn.provider.0 {
        Provider::BookyFlow => {
            if conn.base_url.is_none() && conn.token_url.is_none() {
                return Err(Fail::usage(
                    "bookyflow is self-hosted: pass --base-url https://yourdomain.com (the site root)",
                ));
            }
            if conn.scopes.iter().all(|s| s.trim().is_empty()) {
                return Err(Fail::usage(
                    "bookyflow requires scopes: pass --scope, e.g. --scope \"read write\"",
                ));
            }
        }
        _ if conn.base_url.is_some() => {
            return Err(Fail::usage(format!(
                "--base-url applies to bookyflow only; for {name} use --token-url to change the endpoint"
            )));
        }
        Provider::Generic if conn.token_url.is_none() => {
            return Err(Fail::usage(
                "generic needs --token-url https://auth.example.com/oauth/token",
            ));
        }
        _ => {}
    }
    if conn.provider.0 == Provider::BookingtimeModule && conn.client_secret_stdin {
        return Err(Fail::usage(
            "bookingtime-module clients have no secret: drop --client-secret-stdin",
        ));
    }
    if conn
        .client_id
        .as_deref()
        .is_some_and(|id| id.trim().is_empty())
    {
        return Err(Fail::usage("--client-id must not be empty"));
    }
    Ok(())
}

/// The providers `login` supports: the ones with a user flow (the Authorization Code grant).
fn check_login_options(conn: &Connection) -> Result<(), Fail> {
    match conn.provider.0 {
        Provider::Generic | Provider::BookingtimeApp => Ok(()),
        _ => Err(Fail::usage(format!(
            "login supports --provider generic and bookingtime, not {}",
            conn.provider.name()
        ))),
    }
}

/// The credentials: `--client-id` and the secret from stdin where given, the provider's
/// environment variables otherwise. A missing variable is named in the error. With
/// `secret_optional` (login), a missing secret variable makes a public client.
fn credentials(
    conn: &Connection,
    secret_from_stdin: Option<String>,
    secret_optional: bool,
) -> Result<Credentials, Fail> {
    let prefix = conn.provider.env_prefix();
    let id_var = format!("{prefix}_CLIENT_ID");
    let secret_var = format!("{prefix}_CLIENT_SECRET");
    let lookup = |name: &str| {
        if name == id_var
            && let Some(id) = &conn.client_id
        {
            return Some(id.into());
        }
        if name == secret_var
            && let Some(secret) = &secret_from_stdin
        {
            return Some(secret.into());
        }
        std::env::var_os(name)
    };
    let has_secret =
        secret_from_stdin.is_some() || std::env::var_os(&secret_var).is_some_and(|v| !v.is_empty());
    let result =
        if conn.provider.0 == Provider::BookingtimeModule || (secret_optional && !has_secret) {
            match &conn.client_id {
                Some(id) => Ok(Credentials::without_secret(id.clone())),
                None => Credentials::id_from_env(prefix),
            }
        } else {
            Credentials::from_lookup(prefix, lookup)
        };
    result.map_err(|e| failure::config_error(&e, conn.provider))
}
