//! The quickstart: tokens for every provider, through both transports, against the embedded
//! provider simulator. No credentials, no network beyond loopback:
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! If `BOOKABLE_CLIENT_ID` and `BOOKABLE_CLIENT_SECRET` are set, Bookable's real sandbox is used
//! for the Bookable rows instead of the simulator.

use std::error::Error;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use examples::human;
use provider_sim::{Fault, ORGANIZATIONS, Preset, Provider, Simulator};
use token_core::{ClientConfig, Credentials, LifetimeSource, Token, presets};

const BOOKABLE_SANDBOX_API: &str = "https://api.bookabletech.com/venues";
const CALLS: usize = 5;

/// Where a preset's tokens and API calls go: the simulator, or for Bookable the real sandbox
/// when credentials are in the environment.
struct Target {
    label: String,
    config: ClientConfig,
    organization: Option<&'static str>,
    api_url: String,
    provider: Provider,
    real: bool,
}

fn targets(sim: &Simulator) -> Result<Vec<Target>, Box<dyn Error>> {
    let real_bookable = Credentials::from_env("BOOKABLE").ok();
    let mut out = Vec::new();
    for preset in Preset::ALL {
        let provider = Provider::from(preset);
        let organization = preset.has_organizations().then_some(ORGANIZATIONS[0]);
        let label = match preset {
            Preset::BookingtimeApp => format!("bookingtime app ({})", ORGANIZATIONS[0]),
            Preset::BookingtimeModule => format!("bookingtime module ({})", ORGANIZATIONS[0]),
            _ => provider.name().to_owned(),
        };
        let target = match (&real_bookable, preset) {
            (Some(creds), Preset::BookableSandbox) => Target {
                label: "bookable-sandbox (REAL)".into(),
                config: presets::bookable_sandbox(creds.clone()).build()?,
                organization: None,
                api_url: BOOKABLE_SANDBOX_API.into(),
                provider,
                real: true,
            },
            _ => Target {
                label,
                config: sim.preset(preset).build()?,
                organization,
                api_url: match organization {
                    Some(org) => sim.org_api_url(org),
                    None => sim.api_url(provider),
                },
                provider,
                real: false,
            },
        };
        out.push(target);
    }
    Ok(out)
}

struct Row {
    label: String,
    transport: &'static str,
    token_requests: String,
    api_ok: usize,
    token: Token,
    now: Instant,
}

fn print_rows(rows: &[Row]) {
    println!(
        "  {:<30} {:<8} {:>14} {:>10}   token",
        "provider", "via", "token requests", "API calls"
    );
    for r in rows {
        let source = match r.token.lifetime_source() {
            LifetimeSource::ExpiresIn => "expires_in",
            LifetimeSource::JwtExp => "JWT exp",
            _ => "default",
        };
        println!(
            "  {:<30} {:<8} {:>14} {:>10}   lives {} ({}), refreshes in {}",
            r.label,
            r.transport,
            r.token_requests,
            format!("{}/{CALLS}", r.api_ok),
            human(r.token.lifetime()),
            source,
            human(r.token.refresh_at().saturating_duration_since(r.now)),
        );
    }
}

fn token_requests(sim: &Simulator, t: &Target, before: usize) -> String {
    if t.real {
        "(real)".into()
    } else {
        (sim.token_requests(t.provider) - before).to_string()
    }
}

fn sync_rows(sim: &Simulator) -> Result<Vec<Row>, Box<dyn Error>> {
    let client = transport_ureq::TokenClient::new();
    let mut rows = Vec::new();
    for t in targets(sim)? {
        let before = sim.token_requests(t.provider);
        let mut handle = client.register(t.config.clone());
        if let Some(org) = t.organization {
            handle = handle.organization(org);
        }
        let mut api_ok = 0;
        for _ in 0..CALLS {
            let request = http::Request::get(&t.api_url).body(Vec::new())?;
            if handle.call(request)?.status().is_success() {
                api_ok += 1;
            }
        }
        rows.push(Row {
            token_requests: token_requests(sim, &t, before),
            label: t.label,
            transport: "ureq",
            api_ok,
            token: handle.token()?,
            now: Instant::now(),
        });
    }
    Ok(rows)
}

async fn async_rows(sim: &Simulator) -> Result<Vec<Row>, Box<dyn Error>> {
    let client = transport_reqwest::TokenClient::new()?;
    let http = transport_reqwest::http_client_builder().build()?;
    let mut rows = Vec::new();
    for t in targets(sim)? {
        let before = sim.token_requests(t.provider);
        let mut handle = client.register(t.config.clone());
        if let Some(org) = t.organization {
            handle = handle.organization(org);
        }
        // All calls at once: one token request between them.
        let calls: Vec<_> = (0..CALLS)
            .map(|_| {
                let (handle, request) = (handle.clone(), http.get(&t.api_url));
                tokio::spawn(async move { handle.send(request).await })
            })
            .collect();
        let mut api_ok = 0;
        for call in calls {
            if call.await??.status().is_success() {
                api_ok += 1;
            }
        }
        rows.push(Row {
            token_requests: token_requests(sim, &t, before),
            label: t.label,
            transport: "reqwest",
            api_ok,
            token: handle.token().await?,
            now: Instant::now(),
        });
    }
    Ok(rows)
}

/// 64 threads ask at once; the endpoint sees one request.
fn stampede(sim: &Simulator) -> Result<(), Box<dyn Error>> {
    let client = transport_ureq::TokenClient::new();
    let handle = client.register(sim.preset(Preset::Generic).build()?);
    let before = sim.token_requests(Provider::Generic);
    let barrier = Arc::new(Barrier::new(64));
    std::thread::scope(|s| {
        for _ in 0..64 {
            let (handle, barrier) = (handle.clone(), Arc::clone(&barrier));
            s.spawn(move || {
                barrier.wait();
                handle.token().map(|_| ())
            });
        }
    });
    println!(
        "  64 threads asked for a token at the same moment: {} token request.",
        sim.token_requests(Provider::Generic) - before
    );
    Ok(())
}

/// bookingtime: every organization's 5-minute token comes from one shared 30-day refresh token.
fn organizations(sim: &Simulator) -> Result<(), Box<dyn Error>> {
    let client = transport_ureq::TokenClient::new();
    let bookingtime = client.register(sim.preset(Preset::BookingtimeApp).build()?);
    let before = sim.token_requests(Provider::Bookingtime);
    for org in ORGANIZATIONS {
        let request = http::Request::get(sim.org_api_url(org)).body(Vec::new())?;
        bookingtime.organization(org).call(request)?;
    }
    println!(
        "  bookingtime, {} organizations: {} token requests (1 refresh token, shared, + 1 access token each).",
        ORGANIZATIONS.len(),
        sim.token_requests(Provider::Bookingtime) - before
    );
    Ok(())
}

/// The token endpoint fails during a refresh; the still-valid token keeps flowing. Time is
/// injected, so "an hour later" takes no time at all.
fn hiccup(sim: &Simulator) -> Result<(), Box<dyn Error>> {
    let clock = transport_ureq::ManualClock::starting_now();
    let client = transport_ureq::TokenClient::builder()
        .clock(clock.clone())
        .build();
    let handle = client.register(sim.preset(Preset::Octorate).build()?);
    let first = handle.token()?;
    sim.inject(Provider::Octorate, Fault::HtmlServiceUnavailable, 50);
    // 40 s before expiry, inside the refresh window: the client's timer tries to refresh in the
    // background and gets 503s (a manual clock moves in no time; let the timer catch up).
    clock.advance(Duration::from_secs(1400));
    client.driver().wait_settled(Duration::from_secs(10));
    let served = (0..10)
        .filter(|_| {
            handle
                .token()
                .is_ok_and(|t| t.access_token() == first.access_token())
        })
        .count();
    println!(
        "  Token endpoint answering 503 during a refresh: {served}/10 calls still got the valid token."
    );
    clock.advance(Duration::from_secs(60)); // now past expiry
    client.driver().wait_settled(Duration::from_secs(10));
    match handle.token() {
        Ok(_) => println!("  ...and after expiry a token again (the endpoint recovered)."),
        Err(e) => println!("  ...and after expiry, the error instead of an expired token: {e}"),
    }
    sim.clear_faults(Provider::Octorate);
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let sim = Simulator::start()?;
    println!("booking-tokens quickstart");
    println!(
        "Provider simulator on {} (loopback; no credentials needed).\n",
        sim.base_url()
    );

    println!("Blocking (transport-ureq): {CALLS} API calls per provider, one after another");
    print_rows(&sync_rows(&sim)?);

    println!("\nAsync (transport-reqwest): {CALLS} concurrent API calls per provider");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    print_rows(&runtime.block_on(async_rows(&sim))?);

    println!("\nWhat the cache buys you");
    stampede(&sim)?;
    organizations(&sim)?;
    hiccup(&sim)?;

    println!(
        "\nTotal: {} token requests for {} API calls.",
        sim.total_token_requests(),
        Provider::ALL
            .iter()
            .map(|p| sim.api_calls(*p))
            .sum::<usize>()
    );
    Ok(())
}
