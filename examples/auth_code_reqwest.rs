//! A user's tokens: the Authorization Code flow with PKCE, through the async (reqwest) transport.
//!
//! `cargo run --example auth_code_reqwest` plays it on the embedded simulator, whose authorization
//! endpoint approves at once (no credentials, loopback only).
//!
//! Against your authorization server, set `AUTHORIZE_URL`, `TOKEN_URL`, `CLIENT_ID` (a public
//! client: no secret) and `REDIRECT_URI`, optionally `SCOPE` (space separated), `ISSUER` (the
//! RFC 9207 `iss` to expect; default: the authorization endpoint's origin) and
//! `AUTHORIZE_PARAMS` (more parameters for the authorization URL, space-separated `name=value`
//! pairs, e.g. `prompt=consent resource=urn:example:api`). The example prints the
//! authorization URL alone on one line, reads the URL the browser landed on from stdin, and
//! prints
//! `ACCESS_TOKEN_OK <length>` and `REFRESH_TOKEN_OK <length>` (or `REFRESH_TOKEN_NONE`): never a
//! token.

mod auth_code_common;

use std::env;
use std::error::Error;
use std::io::{self, BufRead as _};

use auth_code_common::{Settings, without_query};
use examples::human;
use provider_sim::Simulator;
use transport_reqwest::TokenClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let sim = match env::var_os("AUTHORIZE_URL") {
        Some(_) => None,
        None => Some(Simulator::start()?),
    };
    let settings = Settings::new(sim.as_ref())?;

    let client = TokenClient::new()?;
    // A public client (no secret) of that server: see `Settings::config` in auth_code_common.rs.
    let app = client.register(settings.config()?);

    // 1. The URL to send the user's browser to: state and the PKCE challenge are in it; the
    //    verifier stays in this process.
    let url = app
        .start_authorization("demo-user", &settings.redirect_uri)?
        .url;

    // 2. The user logs in; the browser lands on the redirect URI with a code.
    let redirect = match &sim {
        Some(_) => {
            println!("authorize at {}?…", without_query(&url));
            let redirect =
                tokio::task::spawn_blocking(move || auth_code_common::redirect_of(&url)).await??;
            println!("redirected to {}?…", without_query(&redirect));
            redirect
        }
        None => {
            println!("{url}");
            let line = tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                io::stdin().lock().read_line(&mut line).map(|_| line)
            });
            line.await??
        }
    };

    // 3. Checks the redirect (state, redirect URI, iss) and exchanges the code: the handle of
    //    this user's tokens.
    let user = app.complete_authorization(redirect.trim())?;
    let token = user.token().await?;
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
    match user.token().await {
        Ok(renewed) => println!("REFRESH_TOKEN_OK {}", renewed.access_token().secret().len()),
        Err(e) if e.is_authorization_required() => {
            println!("REFRESH_TOKEN_NONE (the user must authorize again once a token expires)")
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
