//! The stores as the token lifecycle's shared store: `token_driver::BlockingStore` for
//! [`RedisStore`] (`transport-ureq`) and `token_driver::AsyncStore` for [`AsyncRedisStore`]
//! (`transport-reqwest`), mapping the lifecycle's store operations onto the protocol.

use token_core::{StoreFailure, StoreOp, StoreRecord, StoreReply, StoreRequest, StoredValue};
use token_driver::BlockingStore;

use crate::protocol::{Acquire, StoreKey, Stored};
use crate::{EncryptionKey, RedisStore, StoreError};

/// The protocol key of a lifecycle credential: its fingerprint, sealed with the store's key or
/// one derived from the client's secret.
fn key_of(
    explicit: Option<&EncryptionKey>,
    request: &StoreRequest,
) -> Result<StoreKey, StoreFailure> {
    let encryption = match (explicit, request.key.client_secret()) {
        (Some(key), _) => key.clone(),
        (None, Some(secret)) => EncryptionKey::from_client_secret(secret.expose_secret()),
        (None, None) => {
            return Err(StoreFailure::new(
                "no encryption key: the client has no secret; build the store with encryption_key()",
            ));
        }
    };
    Ok(StoreKey::new(
        request.key.fingerprint().as_bytes(),
        &encryption,
    ))
}

fn value(stored: Stored) -> StoredValue {
    StoredValue::new(
        StoreRecord::from_bytes(stored.plaintext),
        stored.generation,
        stored.ttl,
    )
}

fn reply(acquired: Acquire) -> StoreReply {
    match acquired {
        Acquire::Value(stored) => StoreReply::Value(value(stored)),
        Acquire::Leased { generation, stale } => StoreReply::Leased {
            generation,
            stale: stale.map(value),
        },
        Acquire::Busy {
            value: current,
            lease_ttl,
        } => StoreReply::Busy {
            value: current.map(value),
            lease_ttl,
        },
    }
}

fn failed(error: &StoreError) -> StoreReply {
    tracing::warn!(%error, "redis token store failed");
    StoreReply::Failed(StoreFailure::new(error.to_string()))
}

impl BlockingStore for RedisStore {
    fn execute(&self, request: &StoreRequest) -> StoreReply {
        let key = match key_of(self.encryption_key(), request) {
            Ok(key) => key,
            Err(failure) => return StoreReply::Failed(failure),
        };
        let done = |r: Result<bool, StoreError>| r.map(|_| StoreReply::Done);
        let result = match &request.op {
            StoreOp::Acquire {
                refresh_ahead,
                lease_ttl,
            } => self.acquire(&key, *refresh_ahead, *lease_ttl).map(reply),
            StoreOp::Publish {
                generation,
                record,
                ttl,
            } => {
                let generation = match generation {
                    Some(g) => Ok(*g),
                    None => self.next_generation(&key),
                };
                done(generation.and_then(|g| self.publish(&key, g, record.expose_bytes(), *ttl)))
            }
            StoreOp::Release { generation } => done(self.release(&key, *generation)),
            StoreOp::Invalidate { generation } => done(self.invalidate(&key, *generation)),
            _ => return StoreReply::Failed(StoreFailure::new("operation not supported")),
        };
        result.unwrap_or_else(|e| failed(&e))
    }
}

#[cfg(feature = "tokio")]
impl token_driver::AsyncStore for crate::AsyncRedisStore {
    fn execute<'a>(&'a self, request: &'a StoreRequest) -> token_driver::StoreFuture<'a> {
        Box::pin(async move {
            let key = match key_of(self.encryption_key(), request) {
                Ok(key) => key,
                Err(failure) => return StoreReply::Failed(failure),
            };
            let result = match &request.op {
                StoreOp::Acquire {
                    refresh_ahead,
                    lease_ttl,
                } => self
                    .acquire(&key, *refresh_ahead, *lease_ttl)
                    .await
                    .map(reply),
                StoreOp::Publish {
                    generation,
                    record,
                    ttl,
                } => {
                    let generation = match generation {
                        Some(g) => Ok(*g),
                        None => self.next_generation(&key).await,
                    };
                    match generation {
                        Ok(g) => self
                            .publish(&key, g, record.expose_bytes(), *ttl)
                            .await
                            .map(|_| StoreReply::Done),
                        Err(e) => Err(e),
                    }
                }
                StoreOp::Release { generation } => self
                    .release(&key, *generation)
                    .await
                    .map(|_| StoreReply::Done),
                StoreOp::Invalidate { generation } => self
                    .invalidate(&key, *generation)
                    .await
                    .map(|_| StoreReply::Done),
                _ => return StoreReply::Failed(StoreFailure::new("operation not supported")),
            };
            result.unwrap_or_else(|e| failed(&e))
        })
    }
}
