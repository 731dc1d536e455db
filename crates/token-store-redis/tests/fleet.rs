//! The fleet for real: several operating-system processes (this test binary, re-run as a
//! child), each a `TokenClient` with a `RedisStore`, on one real `redis-server` and one token
//! endpoint (the provider simulator, in the parent). They make one token request per key per
//! lifetime between them; a lease holder killed mid-fetch costs one extra fetch; 401s across
//! processes renew once.

use std::process::Child;
use std::time::Duration;

use provider_sim::{CLIENT_ID, CLIENT_SECRET, Provider, Simulator};
use token_core::{ClientSecret, Credentials, presets};
use token_store_redis::RedisStore;
use token_testkit::processes::{outputs, spawn_child};
use token_testkit::redis::RedisServer;

const CHILD: &str = "TOKEN_FLEET_CHILD";

/// The child's side: env `TOKEN_FLEET_CHILD=ureq|reqwest`, `REDIS_URL`, `TOKEN_URL`, `API_URL`,
/// `CALLS`, `INTERVAL_MS`, `LEASE_MS` (the store lease's TTL). Prints `READY`, then one
/// `TOKEN <hash>` line per call, or `STATUS <code>` lines when `API_URL` is set.
#[test]
fn fleet_child() {
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
    let api = var("API_URL");
    let mut manager = token_core::ManagerConfig::default();
    if let Ok(ms) = var("LEASE_MS").parse() {
        let mut settings = token_core::StoreSettings::default();
        settings.lease_ttl = Some(Duration::from_millis(ms));
        manager.store = Some(settings);
    }
    // The manager's store timeout above the store's own.
    let mut settings = manager.store.take().unwrap_or_default();
    settings.op_timeout = Duration::from_secs(8);
    manager.store = Some(settings);
    println!("READY");
    match transport.as_str() {
        "ureq" => {
            // Generous timeouts: dozens of processes share two cores here.
            let store = RedisStore::builder(&var("REDIS_URL"))
                .connect_timeout(Duration::from_secs(3))
                .response_timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            let client = transport_ureq::TokenClient::builder()
                .manager_config(manager)
                .store(store)
                .build();
            let handle = client.register(config);
            for _ in 0..calls {
                if api.is_empty() {
                    println!("TOKEN {}", hash(&handle.token().unwrap()));
                } else {
                    let request = http::Request::get(&api).body(Vec::new()).unwrap();
                    println!("STATUS {}", handle.call(request).unwrap().status().as_u16());
                }
                std::thread::sleep(interval);
            }
        }
        _ => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let store = token_store_redis::AsyncRedisStore::builder(&var("REDIS_URL"))
                    .connect_timeout(Duration::from_secs(3))
                    .response_timeout(Duration::from_secs(2))
                    .build()
                    .unwrap();
                let client = transport_reqwest::TokenClient::builder()
                    .manager_config(manager)
                    .store(store)
                    .build()
                    .unwrap();
                let handle = client.register(config);
                for _ in 0..calls {
                    println!("TOKEN {}", hash(&handle.token().await.unwrap()));
                    tokio::time::sleep(interval).await;
                }
                // About to exit: let the store hear the rest (the runtime goes with us).
                client.flush(Duration::from_secs(5)).await;
            });
        }
    }
}

struct Fleet {
    children: Vec<Child>,
}

fn spawn(transport: &str, envs: &[(&str, String)]) -> Child {
    let mut envs = envs.to_vec();
    envs.push((CHILD, transport.to_owned()));
    spawn_child("fleet_child", &envs)
}

impl Fleet {
    /// Waits for every child and returns the lines each printed (after `READY`).
    fn outputs(self) -> Vec<Vec<String>> {
        outputs(self.children, &["TOKEN ", "STATUS "])
    }
}

fn envs(
    redis: &RedisServer,
    sim: &Simulator,
    calls: usize,
    interval_ms: u64,
) -> Vec<(&'static str, String)> {
    vec![
        ("REDIS_URL", redis.url()),
        ("TOKEN_URL", sim.token_url(Provider::Generic)),
        ("CALLS", calls.to_string()),
        ("INTERVAL_MS", interval_ms.to_string()),
    ]
}

/// The fleet scenarios, one after the other (each runs several processes: run together they
/// would overload a small machine).
#[test]
fn the_fleet() {
    eight_processes_make_one_token_request_per_lifetime();
    a_fleet_refreshes_once_per_lifetime_over_several_lifetimes();
    a_lease_holder_killed_mid_fetch_costs_one_extra_fetch();
    rejected_tokens_across_processes_renew_once();
}

/// Issue "fleet store", done-when: eight processes sharing a Redis make one token request per
/// key per lifetime.
fn eight_processes_make_one_token_request_per_lifetime() {
    let redis = RedisServer::start();
    let sim = Simulator::start().unwrap();
    // Eight processes start at once and ask for the same token.
    let fleet = Fleet {
        children: (0..8)
            .map(|i| {
                spawn(
                    if i % 2 == 0 { "ureq" } else { "reqwest" },
                    &envs(&redis, &sim, 3, 0),
                )
            })
            .collect(),
    };
    let outputs = fleet.outputs();
    let tokens: std::collections::BTreeSet<&String> = outputs.iter().flatten().collect();
    assert_eq!(tokens.len(), 1, "every process served the same token");
    assert_eq!(
        sim.token_requests(Provider::Generic),
        1,
        "one request for the fleet"
    );
    // Restarted processes find it in Redis: still one request.
    let fleet = Fleet {
        children: (0..4)
            .map(|_| spawn("ureq", &envs(&redis, &sim, 1, 0)))
            .collect(),
    };
    let again: Vec<String> = fleet.outputs().into_iter().flatten().collect();
    assert!(again.iter().all(|t| tokens.contains(t)));
    assert_eq!(sim.token_requests(Provider::Generic), 1);
}

fn a_fleet_refreshes_once_per_lifetime_over_several_lifetimes() {
    let redis = RedisServer::start();
    let sim = Simulator::start().unwrap();
    // 6 s tokens (refreshed 3 s in, the window clamped to half); 8 processes calling every
    // 100 ms for about 4 lifetimes.
    sim.set_token_lifetime(Provider::Generic, 6);
    let fleet = Fleet {
        children: (0..8)
            .map(|_| spawn("ureq", &envs(&redis, &sim, 240, 100)))
            .collect(),
    };
    let outputs = fleet.outputs();
    let requests = sim.token_requests(Provider::Generic);
    let distinct: std::collections::BTreeSet<&String> = outputs.iter().flatten().collect();
    // Eight independent processes would have made about 8 × 8 = 64 requests (a refresh every
    // 3 s over 24 s); the fleet makes about one per refresh point.
    // (Short tokens make the refresh window half their life and the store's safety margin a
    // sixth of it: about one fleet-wide refresh every 2 s here.)
    assert!(
        (4..=20).contains(&requests),
        "{requests} token requests for a fleet of 8 over ~24 s of 6 s tokens (8 alone: ~64)"
    );
    // Every process moved on with the fleet: the tokens served are the ones fetched (a token
    // may have been fetched and replaced before anyone asked for it again).
    assert!(
        (4..=requests).contains(&distinct.len()),
        "{} tokens served, {requests} fetched",
        distinct.len()
    );
}

fn a_lease_holder_killed_mid_fetch_costs_one_extra_fetch() {
    let redis = RedisServer::start();
    let sim = Simulator::start().unwrap();
    // The first request is held: its process holds the lease when it is killed.
    sim.hold_token_requests(Provider::Generic, 2);
    let mut first = envs(&redis, &sim, 1, 0);
    first.push(("LEASE_MS", "2000".into()));
    let mut holder = spawn("ureq", &first);
    assert!(
        sim.wait_for_token_requests_in_flight(Provider::Generic, 1, Duration::from_secs(30)),
        "the holder sent its request"
    );
    holder.kill().unwrap();
    let _ = holder.wait();
    sim.release_token_requests(Provider::Generic);
    // The lease lives on in Redis for its TTL (2 s here; by default the request timeout plus
    // 5 s); the next process waits for it at most that long, then fetches.
    let mut next = envs(&redis, &sim, 1, 0);
    next.push(("LEASE_MS", "2000".into()));
    let fleet = Fleet {
        children: vec![spawn("ureq", &next)],
    };
    assert_eq!(fleet.outputs()[0].len(), 1, "the next process got a token");
    assert_eq!(sim.token_requests(Provider::Generic), 2, "one extra fetch");
}

fn rejected_tokens_across_processes_renew_once() {
    let redis = RedisServer::start();
    let sim = Simulator::start().unwrap();
    let api = sim.api_url(Provider::Generic);
    let with_api = |calls| {
        let mut e = envs(&redis, &sim, calls, 200);
        e.push(("API_URL", api.clone()));
        e
    };
    // Four processes share a token; the API then refuses it (revoked) for all of them.
    let warm = Fleet {
        children: (0..4).map(|_| spawn("ureq", &with_api(1))).collect(),
    };
    assert!(warm.outputs().iter().flatten().all(|l| l == "STATUS 200"));
    assert_eq!(sim.token_requests(Provider::Generic), 1);
    sim.revoke_tokens(Provider::Generic);
    let fleet = Fleet {
        children: (0..4).map(|_| spawn("ureq", &with_api(2))).collect(),
    };
    let statuses: Vec<String> = fleet.outputs().into_iter().flatten().collect();
    assert!(statuses.iter().all(|l| l == "STATUS 200"), "{statuses:?}");
    let renewals = sim.token_requests(Provider::Generic) - 1;
    assert!(
        (1..=2).contains(&renewals),
        "{renewals} renewals for four processes' 401s"
    );
}
