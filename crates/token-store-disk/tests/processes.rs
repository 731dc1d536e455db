//! The disk store for real: several operating-system processes (this test binary, re-run as a
//! child), each a `TokenClient` with a `DiskStore` on one cache directory, and one token
//! endpoint (the provider simulator, in the parent). Between them they make one token request
//! per lifetime; a lock holder killed mid-fetch loses its lock to the kernel and costs one
//! extra fetch.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use provider_sim::{CLIENT_ID, CLIENT_SECRET, Provider, Simulator};
use token_core::{ClientSecret, Credentials, presets};
use token_store_disk::DiskStore;
use token_testkit::processes::{self, spawn_child};

const CHILD: &str = "TOKEN_DISK_CHILD";

/// The child's side: env `TOKEN_DISK_CHILD=ureq|reqwest`, `CACHE_DIR`, `TOKEN_URL`, `CALLS`,
/// `INTERVAL_MS`. Prints one `TOKEN <hash>` line per call.
#[test]
fn disk_child() {
    let Ok(transport) = std::env::var(CHILD) else {
        return; // not a child: nothing to do
    };
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let calls: usize = var("CALLS").parse().unwrap_or(1);
    let interval = Duration::from_millis(var("INTERVAL_MS").parse().unwrap_or(0));
    let config = presets::generic(
        var("TOKEN_URL"),
        Credentials::new(CLIENT_ID, ClientSecret::new(CLIENT_SECRET)),
    )
    .build()
    .unwrap();
    let hash = |token: &token_core::Token| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        token.access_token().secret().hash(&mut h);
        h.finish()
    };
    let store = DiskStore::open(var("CACHE_DIR")).unwrap();
    println!("READY"); // ends the test harness's "test disk_child ... " line
    match transport.as_str() {
        "ureq" => {
            let client = transport_ureq::TokenClient::builder().store(store).build();
            let handle = client.register(config);
            for _ in 0..calls {
                println!("TOKEN {}", hash(&handle.token().unwrap()));
                std::thread::sleep(interval);
            }
        }
        _ => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let client = transport_reqwest::TokenClient::builder()
                    .store(store)
                    .build()
                    .unwrap();
                let handle = client.register(config);
                for _ in 0..calls {
                    println!("TOKEN {}", hash(&handle.token().await.unwrap()));
                    tokio::time::sleep(interval).await;
                }
                client.flush(Duration::from_secs(5)).await;
            });
        }
    }
}

fn cache_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "token-store-disk-procs-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn spawn(transport: &str, dir: &std::path::Path, sim: &Simulator, calls: usize, ms: u64) -> Child {
    let envs = [
        (CHILD, transport.to_owned()),
        ("CACHE_DIR", dir.display().to_string()),
        ("TOKEN_URL", sim.token_url(Provider::Generic)),
        ("CALLS", calls.to_string()),
        ("INTERVAL_MS", ms.to_string()),
    ];
    spawn_child("disk_child", &envs)
}

/// Waits for every child and returns the token hashes each printed.
fn outputs(children: Vec<Child>) -> Vec<Vec<String>> {
    processes::outputs(children, &["TOKEN "])
}

/// The scenarios one after the other (together they would overload a small machine).
#[test]
fn processes_on_one_cache_directory() {
    eight_processes_and_restarts_make_one_request();
    several_lifetimes_one_request_per_refresh();
    a_killed_lock_holder_costs_one_extra_fetch();
}

fn eight_processes_and_restarts_make_one_request() {
    let sim = Simulator::start().unwrap();
    let dir = cache_dir("eight");
    let children = (0..8)
        .map(|i| {
            spawn(
                if i % 2 == 0 { "ureq" } else { "reqwest" },
                &dir,
                &sim,
                2,
                0,
            )
        })
        .collect();
    let outputs = outputs(children);
    let tokens: BTreeSet<&String> = outputs.iter().flatten().collect();
    assert_eq!(tokens.len(), 1, "every process served the same token");
    assert_eq!(
        sim.token_requests(Provider::Generic),
        1,
        "one request for eight processes"
    );
    // Five runs in a row (a CLI in a shell loop): each finds the token on disk.
    for _ in 0..5 {
        let again = outputs_of(spawn("ureq", &dir, &sim, 1, 0));
        assert!(tokens.contains(&again[0]));
    }
    assert_eq!(
        sim.token_requests(Provider::Generic),
        1,
        "restarts reuse the file"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn outputs_of(child: Child) -> Vec<String> {
    outputs(vec![child]).remove(0)
}

fn several_lifetimes_one_request_per_refresh() {
    let sim = Simulator::start().unwrap();
    let dir = cache_dir("lifetimes");
    // 6 s tokens, six processes calling every 100 ms for about 4 lifetimes.
    sim.set_token_lifetime(Provider::Generic, 6);
    let children = (0..6)
        .map(|_| spawn("ureq", &dir, &sim, 240, 100))
        .collect();
    let outputs = outputs(children);
    let requests = sim.token_requests(Provider::Generic);
    let distinct: BTreeSet<&String> = outputs.iter().flatten().collect();
    // Six independent processes would make about 6 × 8 = 48 (a refresh every 3 s for 24 s).
    assert!(
        (4..=20).contains(&requests),
        "{requests} token requests for 6 processes over ~24 s of 6 s tokens (alone: ~48)"
    );
    assert!((4..=requests).contains(&distinct.len()));
    let _ = std::fs::remove_dir_all(&dir);
}

fn a_killed_lock_holder_costs_one_extra_fetch() {
    let sim = Simulator::start().unwrap();
    let dir = cache_dir("killed");
    // The first process's request is held: it holds the file lock when it is killed.
    sim.hold_token_requests(Provider::Generic, 2);
    let mut holder = spawn("ureq", &dir, &sim, 1, 0);
    assert!(
        sim.wait_for_token_requests_in_flight(Provider::Generic, 1, Duration::from_secs(30)),
        "the holder sent its request"
    );
    holder.kill().unwrap();
    let _ = holder.wait();
    sim.release_token_requests(Provider::Generic);
    // The kernel released the lock with the process: the next one takes it and fetches.
    let next = outputs_of(spawn("ureq", &dir, &sim, 1, 0));
    assert_eq!(next.len(), 1, "the next process got a token");
    assert_eq!(sim.token_requests(Provider::Generic), 2, "one extra fetch");
    let _ = std::fs::remove_dir_all(&dir);
}
