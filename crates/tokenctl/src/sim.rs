//! `tokenctl sim`: the provider simulator in the foreground, with copy-paste instructions.

use std::io::Write as _;
use std::net::SocketAddr;

use provider_sim::{
    CLIENT_ID, CLIENT_SECRET, MODULE_CLIENT_ID, ORGANIZATIONS, PUBLIC_CLIENT_ID, Provider,
    Simulator,
};

use crate::failure::{Exit, Fail};

/// The first line printed, followed by the base URL (tests wait for it).
pub const LISTENING: &str = "provider simulator listening on ";

/// Starts the simulator on `127.0.0.1:port`, prints how to use it, and serves until the
/// process is interrupted.
pub fn run(port: u16) -> Result<(), Fail> {
    let sim = Simulator::start_on(SocketAddr::from(([127, 0, 0, 1], port))).map_err(|e| {
        Fail::new(
            Exit::Failure,
            format!("cannot listen on 127.0.0.1:{port}: {e}"),
        )
    })?;
    let text = instructions(&sim);
    let mut stdout = std::io::stdout().lock();
    // Nothing useful to do if stdout is gone: keep serving.
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    drop(stdout);
    loop {
        std::thread::park();
    }
}

/// What `tokenctl sim` prints.
fn instructions(sim: &Simulator) -> String {
    let base = sim.base_url();
    let url = |p: Provider| sim.token_url(p);
    let api = |p: Provider| sim.api_url(p);
    let org = ORGANIZATIONS[0];
    let mut out = format!("{LISTENING}{base}   (Ctrl-C stops it)\n\n");
    out.push_str(
        "Simulated credentials, accepted by every provider (these are not real secrets):\n",
    );
    for prefix in ["BOOKABLE", "BOOKINGTIME", "OCTORATE", "BOOKYFLOW", "TOKEN"] {
        out.push_str(&format!(
            "  export {prefix}_CLIENT_ID={CLIENT_ID} {prefix}_CLIENT_SECRET={CLIENT_SECRET}\n"
        ));
    }
    out.push_str(&format!(
        "bookingtime-module's client has no secret: pass --client-id {MODULE_CLIENT_ID}\n\
         login's public client (no secret; the simulator signs in and approves a test user): \
         --client-id {PUBLIC_CLIENT_ID}\n\
         bookingtime organizations: {}\n\n",
        ORGANIZATIONS.join(", ")
    ));
    let rows: [(&str, Provider, String); 8] = [
        ("bookable", Provider::Bookable, api(Provider::Bookable)),
        (
            "bookable-sandbox",
            Provider::BookableSandbox,
            api(Provider::BookableSandbox),
        ),
        (
            "bookable-auth0",
            Provider::BookableAuth0,
            api(Provider::BookableAuth0),
        ),
        ("bookingtime", Provider::Bookingtime, sim.org_api_url(org)),
        (
            "bookingtime-module",
            Provider::Bookingtime,
            sim.org_api_url(org),
        ),
        ("octorate", Provider::Octorate, api(Provider::Octorate)),
        ("bookyflow", Provider::BookyFlow, api(Provider::BookyFlow)),
        ("generic", Provider::Generic, api(Provider::Generic)),
    ];
    out.push_str(&format!("{:<20}{:<56}API URL\n", "provider", "token URL"));
    for (name, provider, api_url) in &rows {
        out.push_str(&format!("{name:<20}{:<56}{api_url}\n", url(*provider)));
    }
    out.push_str("\nTry (after the exports above):\n");
    let examples = [
        format!(
            "tokenctl token --provider bookable --token-url {}",
            url(Provider::Bookable)
        ),
        format!(
            "tokenctl token --provider bookable-sandbox --token-url {} --json",
            url(Provider::BookableSandbox)
        ),
        format!(
            "tokenctl get {} --provider bookable-auth0 --token-url {} --repeat 3",
            api(Provider::BookableAuth0),
            url(Provider::BookableAuth0)
        ),
        format!(
            "tokenctl get {} --provider bookingtime --org {org} --token-url {}",
            sim.org_api_url(org),
            url(Provider::Bookingtime)
        ),
        format!(
            "tokenctl token --provider bookingtime-module --client-id {MODULE_CLIENT_ID} --org {org} --token-url {}",
            url(Provider::Bookingtime)
        ),
        format!(
            "tokenctl get {} --provider octorate --token-url {}",
            api(Provider::Octorate),
            url(Provider::Octorate)
        ),
        format!(
            "tokenctl get {} --provider bookyflow --base-url {} --scope \"read write\"",
            api(Provider::BookyFlow),
            sim.bookyflow_site()
        ),
        format!(
            "tokenctl get {} --provider generic --token-url {} --scope demo",
            api(Provider::Generic),
            url(Provider::Generic)
        ),
        format!(
            "tokenctl login --no-browser --provider generic --authorize-url {} --token-url {} --issuer {} --client-id {PUBLIC_CLIENT_ID} --scope \"read write\"",
            sim.authorize_url(Provider::Generic).unwrap_or_default(),
            url(Provider::Generic),
            sim.issuer(Provider::Generic)
        ),
        format!(
            "curl -H \"Authorization: Bearer $(tokenctl token --raw --provider octorate --token-url {})\" {}",
            url(Provider::Octorate),
            api(Provider::Octorate)
        ),
    ];
    for example in examples {
        out.push_str(&format!("  {example}\n"));
    }
    out
}
