//! A fleet: four replicas (real processes: this example re-run as children) share their tokens
//! through one Redis, and the token endpoint sees one request for all of them.
//!
//! ```text
//! cargo run --example fleet                           # starts a redis-server on loopback
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example fleet
//! ```
//!
//! Without `REDIS_URL` it starts a private `redis-server` (installed with
//! `apt-get install redis-server`) on a free loopback port, and stops it at the end. Tokens come
//! from the embedded provider simulator: no credentials needed.

use std::error::Error;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use provider_sim::{CLIENT_ID, CLIENT_SECRET, Provider, Simulator};
use token_core::{ClientSecret, Credentials, presets};
use token_store_redis::RedisStore;

const REPLICAS: usize = 4;

fn main() -> Result<(), Box<dyn Error>> {
    if let Ok(token_url) = std::env::var("FLEET_REPLICA_TOKEN_URL") {
        return replica(&token_url);
    }
    let (redis_url, _redis) = match std::env::var("REDIS_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let server = LocalRedis::start()?;
            (server.url(), Some(server))
        }
    };
    let sim = Simulator::start()?;
    let token_url = sim.token_url(Provider::Generic);
    println!("Redis at {redis_url}; {REPLICAS} replicas ask for the same token at once:");
    let replicas: Vec<Child> = (0..REPLICAS)
        .map(|_| {
            Command::new(std::env::current_exe()?)
                .env("FLEET_REPLICA_TOKEN_URL", &token_url)
                .env("REDIS_URL", &redis_url)
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for (i, mut child) in replicas.into_iter().enumerate() {
        let stdout = child.stdout.take().ok_or("no stdout")?;
        for line in BufReader::new(stdout).lines() {
            println!("  replica {i}: {}", line?);
        }
        if !child.wait()?.success() {
            return Err(format!("replica {i} failed").into());
        }
    }
    println!(
        "token requests the endpoint saw: {} (without the store: {REPLICAS})",
        sim.token_requests(Provider::Generic)
    );
    Ok(())
}

/// One replica: a `TokenClient` on the shared store; prints a fingerprint of its token (the
/// token itself is a secret) and its time left (a replica that loaded it from Redis counts a
/// safety margin off, as the store's TTL is all it trusts across hosts).
fn replica(token_url: &str) -> Result<(), Box<dyn Error>> {
    let store = RedisStore::builder(&std::env::var("REDIS_URL")?).build()?;
    let client = transport_ureq::TokenClient::builder().store(store).build();
    let handle = client.register(
        presets::generic(
            token_url,
            Credentials::new(CLIENT_ID, ClientSecret::new(CLIENT_SECRET)),
        )
        .build()?,
    );
    let token = handle.token()?;
    println!(
        "token #{:016x}, {} s left",
        fingerprint(token.access_token().secret()),
        token
            .expires_at()
            .saturating_duration_since(Instant::now())
            .as_secs()
    );
    Ok(())
}

fn fingerprint(secret: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    secret.hash(&mut h);
    h.finish()
}

/// A private `redis-server` on a free loopback port, stopped on drop.
struct LocalRedis {
    child: Child,
    port: u16,
}

impl LocalRedis {
    fn start() -> Result<Self, Box<dyn Error>> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start redis-server ({e}): install it (apt-get install redis-server) or set REDIS_URL")
            })?;
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if Instant::now() > deadline {
                return Err("redis-server did not start listening within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
