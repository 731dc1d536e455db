//! The blocking store against a real redis-server.

mod common;

use std::time::Duration;

use common::{Backend, Ops};
use token_store_redis::{Acquire, RedisStore, StoreError, StoreKey};

struct Blocking;

impl Backend for Blocking {
    type Store = RedisStore;
    fn store_with(&self, url: &str, connect: Duration, response: Duration) -> RedisStore {
        RedisStore::builder(url)
            .connect_timeout(connect)
            .response_timeout(response)
            .build()
            .unwrap()
    }
    fn store_tls(&self, url: &str, ca: Option<&[u8]>) -> RedisStore {
        let builder = RedisStore::builder(url).connect_timeout(Duration::from_secs(5));
        match ca {
            Some(pem) => builder.tls_root_certificates(pem),
            None => builder,
        }
        .build()
        .unwrap()
    }
}

impl Ops for RedisStore {
    fn acquire(
        &self,
        key: &StoreKey,
        ahead: Duration,
        lease: Duration,
    ) -> Result<Acquire, StoreError> {
        RedisStore::acquire(self, key, ahead, lease)
    }
    fn publish(
        &self,
        key: &StoreKey,
        generation: u64,
        plaintext: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        RedisStore::publish(self, key, generation, plaintext, ttl)
    }
    fn release(&self, key: &StoreKey, generation: u64) -> Result<bool, StoreError> {
        RedisStore::release(self, key, generation)
    }
    fn invalidate(&self, key: &StoreKey, generation: u64) -> Result<bool, StoreError> {
        RedisStore::invalidate(self, key, generation)
    }
    fn ping(&self) -> Result<(), StoreError> {
        RedisStore::ping(self)
    }
    fn owner(&self) -> String {
        RedisStore::owner(self).to_owned()
    }
}

scenarios!(Blocking);

/// Clones are the same process: same owner, shared connections, and they see each other's
/// lease as their own generation.
#[test]
fn clones_share_an_owner() {
    let server = token_testkit::redis::RedisServer::start();
    let store = Blocking.store(&server.url());
    let clone = store.clone();
    assert_eq!(store.owner(), clone.owner());
    let k = common::key("clones");
    let (generation, _) = common::expect_leased(
        store
            .acquire(&k, Duration::ZERO, Duration::from_secs(30))
            .unwrap(),
    );
    assert!(
        clone.release(&k, generation).unwrap(),
        "a clone may release the lease"
    );
}
