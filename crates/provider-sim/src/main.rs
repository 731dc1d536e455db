//! `provider-sim [--port P]`: serves the provider simulator on `127.0.0.1:P` (default: a
//! free port), prints its URLs and runs until interrupted or killed.

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use provider_sim::{
    CLIENT_ID, CLIENT_SECRET, DEFAULT_REDIRECT_URI, MODULE_CLIENT_ID, ORGANIZATIONS,
    PUBLIC_CLIENT_ID, Provider, Simulator, TEST_USER,
};

const USAGE: &str = "usage: provider-sim [--port PORT]\n\n\
Serves the booking-provider OAuth simulator on 127.0.0.1:PORT (default 0: a free port)\n\
and runs until interrupted.";

/// Parses the command line: only `--port P` / `--port=P` and `--help`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<u16>, String> {
    let mut port = 0u16;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--port" => args
                .next()
                .ok_or_else(|| "--port needs a value".to_owned())?,
            other => match other.strip_prefix("--port=") {
                Some(value) => value.to_owned(),
                None => return Err(format!("unknown argument: {other}")),
            },
        };
        port = value
            .parse()
            .map_err(|_| format!("invalid port: {value}"))?;
    }
    Ok(Some(port))
}

fn main() -> ExitCode {
    let port = match parse_args(std::env::args().skip(1)) {
        Ok(Some(port)) => port,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("provider-sim: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let sim = match Simulator::start_on(SocketAddr::from(([127, 0, 0, 1], port))) {
        Ok(sim) => sim,
        Err(err) => {
            eprintln!("provider-sim: cannot listen on 127.0.0.1:{port}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "provider-sim listening on {}", sim.base_url());
    let _ = writeln!(
        out,
        "client_id={CLIENT_ID} client_secret={CLIENT_SECRET} module_client_id={MODULE_CLIENT_ID}"
    );
    let _ = writeln!(
        out,
        "bookingtime organizations: {}",
        ORGANIZATIONS.join(", ")
    );
    let _ = writeln!(
        out,
        "authorization code flow (PKCE S256): public_client_id={PUBLIC_CLIENT_ID} user={TEST_USER} \
         redirect_uri={DEFAULT_REDIRECT_URI} (any port)"
    );
    for p in Provider::ALL {
        let _ = writeln!(
            out,
            "{:<17} token {}  api {}",
            p.name(),
            sim.token_url(p),
            sim.api_url(p)
        );
        if let Some(url) = sim.authorize_url(p) {
            let _ = writeln!(out, "{:<17} authorize {url}", "");
        }
    }
    let _ = out.flush();
    drop(out);
    // Serve until the process is interrupted or killed.
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_args;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_port_forms() {
        assert_eq!(parse_args(args(&[])), Ok(Some(0)));
        assert_eq!(parse_args(args(&["--port", "8080"])), Ok(Some(8080)));
        assert_eq!(parse_args(args(&["--port=9"])), Ok(Some(9)));
        assert_eq!(parse_args(args(&["--help"])), Ok(None));
        assert!(parse_args(args(&["--port"])).is_err());
        assert!(parse_args(args(&["--port", "x"])).is_err());
        assert!(parse_args(args(&["--verbose"])).is_err());
    }
}
