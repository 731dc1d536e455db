//! The async store against a real redis-server: the shared scenarios (each call driven on a
//! tokio runtime), plus races between many tasks and cancellation.

#![cfg(feature = "tokio")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, Ops};
use token_store_redis::{Acquire, AsyncRedisStore, StoreError, StoreKey};
use token_testkit::proxy::{FaultProxy, Mode};
use token_testkit::redis::RedisServer;

/// Stores whose every call runs on one shared multi-threaded runtime (the connection's I/O
/// task lives there), called from plain test threads.
struct Async {
    runtime: Arc<tokio::runtime::Runtime>,
}

fn runtime() -> Arc<tokio::runtime::Runtime> {
    Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    )
}

fn backend() -> Async {
    Async { runtime: runtime() }
}

struct OnRuntime {
    runtime: Arc<tokio::runtime::Runtime>,
    store: AsyncRedisStore,
}

impl Backend for Async {
    type Store = OnRuntime;
    fn store_with(&self, url: &str, connect: Duration, response: Duration) -> OnRuntime {
        let store = AsyncRedisStore::builder(url)
            .connect_timeout(connect)
            .response_timeout(response)
            .build()
            .unwrap();
        OnRuntime {
            runtime: Arc::clone(&self.runtime),
            store,
        }
    }
    fn store_tls(&self, url: &str, ca: Option<&[u8]>) -> OnRuntime {
        let builder = AsyncRedisStore::builder(url).connect_timeout(Duration::from_secs(5));
        let store = match ca {
            Some(pem) => builder.tls_root_certificates(pem),
            None => builder,
        }
        .build()
        .unwrap();
        OnRuntime {
            runtime: Arc::clone(&self.runtime),
            store,
        }
    }
}

impl Ops for OnRuntime {
    fn acquire(
        &self,
        key: &StoreKey,
        ahead: Duration,
        lease: Duration,
    ) -> Result<Acquire, StoreError> {
        self.runtime.block_on(self.store.acquire(key, ahead, lease))
    }
    fn publish(
        &self,
        key: &StoreKey,
        generation: u64,
        plaintext: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.runtime
            .block_on(self.store.publish(key, generation, plaintext, ttl))
    }
    fn release(&self, key: &StoreKey, generation: u64) -> Result<bool, StoreError> {
        self.runtime.block_on(self.store.release(key, generation))
    }
    fn invalidate(&self, key: &StoreKey, generation: u64) -> Result<bool, StoreError> {
        self.runtime
            .block_on(self.store.invalidate(key, generation))
    }
    fn ping(&self) -> Result<(), StoreError> {
        self.runtime.block_on(self.store.ping())
    }
    fn owner(&self) -> String {
        self.store.owner().to_owned()
    }
}

scenarios!(backend());

/// Hundreds of tasks over a few stores (processes), all at once: one lease in total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lease_among_many_tasks() {
    let server = RedisServer::start();
    let stores: Vec<AsyncRedisStore> = (0..4)
        .map(|_| {
            AsyncRedisStore::builder(&server.url())
                .response_timeout(Duration::from_secs(5))
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap()
        })
        .collect();
    for store in &stores {
        store.ping().await.unwrap();
    }
    let key = Arc::new(common::key("tasks"));
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (store, key, barrier) = (
                stores[i % stores.len()].clone(),
                Arc::clone(&key),
                Arc::clone(&barrier),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .acquire(&key, Duration::ZERO, Duration::from_secs(30))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut leases = 0;
    for task in tasks {
        match task.await.unwrap() {
            Acquire::Leased {
                generation,
                stale: None,
            } => {
                assert_eq!(generation, 1);
                leases += 1;
            }
            Acquire::Busy { value: None, .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(leases, 1);
}

/// A call given up half-way (its future dropped) leaves the store usable: the connection it
/// was on is dead (the proxy lost its bytes), the next call times out on it and drops it, and
/// the call after that reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_calls_leave_the_store_usable() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let store = AsyncRedisStore::builder(&proxy.redis_url())
        .connect_timeout(Duration::from_secs(5))
        .response_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let key = common::key("cancel");
    store.ping().await.unwrap();
    proxy.set_mode(Mode::Blackhole);
    // The caller gives up long before the store's own timeout.
    let call = store.acquire(&key, Duration::ZERO, Duration::from_secs(30));
    let given_up = tokio::time::timeout(Duration::from_millis(20), call).await;
    assert!(
        given_up.is_err(),
        "blackholed: the call cannot have finished"
    );
    proxy.set_mode(Mode::PassThrough);
    let err = store.ping().await.expect_err("the old connection is dead");
    assert!(err.is_timeout(), "{err:?}");
    let found = store
        .acquire(&key, Duration::ZERO, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        matches!(found, Acquire::Leased { generation: 1, .. }),
        "{found:?}"
    );
}

/// Clones share the owner and the connection.
#[tokio::test]
async fn clones_share_an_owner() {
    let server = RedisServer::start();
    let store = AsyncRedisStore::open(&server.url()).unwrap();
    let clone = store.clone();
    assert_eq!(store.owner(), clone.owner());
    let key = common::key("clones");
    let found = store
        .acquire(&key, Duration::ZERO, Duration::from_secs(30))
        .await
        .unwrap();
    let Acquire::Leased { generation, .. } = found else {
        panic!("{found:?}")
    };
    assert!(clone.release(&key, generation).await.unwrap());
}
