//! The tokio store.

use std::fmt;
use std::sync::Mutex;

use redis::Value;
use redis::aio::MultiplexedConnection;
use token_core::{StoreFailure, StoreOp, StoreReply, StoreRequest};
use token_driver::{AsyncStore, StoreFuture};

use crate::{Acquired, Shared, failure, ms, parse_acquired, reply_of};

/// The async store (for `transport-reqwest`): one multiplexed connection shared by every
/// operation, re-established after an error. `Send + Sync`.
pub struct AsyncRedisStore {
    client: redis::Client,
    shared: Shared,
    connection: Mutex<Option<MultiplexedConnection>>,
}

impl fmt::Debug for AsyncRedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncRedisStore")
            .field("timeout", &self.shared.timeout)
            .finish_non_exhaustive()
    }
}

impl AsyncRedisStore {
    pub(crate) fn new(client: redis::Client, shared: Shared) -> Self {
        Self {
            client,
            shared,
            connection: Mutex::new(None),
        }
    }

    /// A builder for the store at `url` (see [`RedisStore::builder`](crate::RedisStore::builder)).
    pub fn builder(url: impl Into<String>) -> crate::RedisStoreBuilder {
        crate::RedisStore::builder(url)
    }

    async fn connection(&self) -> Result<MultiplexedConnection, StoreFailure> {
        let current = self
            .connection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(connection) = current {
            return Ok(connection);
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.shared.timeout))
            .set_response_timeout(Some(self.shared.timeout));
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| failure(&e))?;
        *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = Some(connection.clone());
        Ok(connection)
    }

    fn forget_connection(&self) {
        *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Runs one store operation.
    pub async fn run(&self, request: &StoreRequest) -> StoreReply {
        match self.try_run(request).await {
            Ok(reply) => reply,
            Err(failure) => {
                self.forget_connection();
                tracing::warn!(%failure, "redis token store failed");
                StoreReply::Failed(failure)
            }
        }
    }

    async fn try_run(&self, request: &StoreRequest) -> Result<StoreReply, StoreFailure> {
        let target = self.shared.target(&request.key)?;
        let s = &self.shared.scripts;
        let mut c = self.connection().await?;
        let fail = |e: redis::RedisError| failure(&e);
        match &request.op {
            StoreOp::Acquire {
                refresh_ahead,
                lease_ttl,
            } => {
                let mut acquired = None;
                for ignore_value in [false, true] {
                    let reply: Value = s
                        .acquire
                        .key(&target.value)
                        .key(&target.lease)
                        .key(&target.generation)
                        .arg(ms(*refresh_ahead))
                        .arg(ms(*lease_ttl))
                        .arg(&self.shared.owner)
                        .arg(if ignore_value { "1" } else { "0" })
                        .invoke_async(&mut c)
                        .await
                        .map_err(fail)?;
                    match parse_acquired(&reply)? {
                        Acquired::Value(raw) => match raw.open(&target.sealer) {
                            Some(value) => return Ok(StoreReply::Value(value)),
                            // It does not decrypt: a miss; take the lease as if it were absent.
                            None => continue,
                        },
                        other => {
                            acquired = Some(other);
                            break;
                        }
                    }
                }
                let acquired = acquired
                    .ok_or_else(|| StoreFailure::new("unexpected reply from the acquire script"))?;
                Ok(reply_of(acquired, &target.sealer))
            }
            StoreOp::Publish {
                generation,
                record,
                ttl,
            } => {
                let generation = match generation {
                    Some(g) => *g,
                    None => redis::cmd("INCR")
                        .arg(&target.generation)
                        .query_async::<u64>(&mut c)
                        .await
                        .map_err(fail)?,
                };
                let blob = target.sealer.seal(generation, record.expose_bytes());
                s.publish
                    .key(&target.value)
                    .key(&target.lease)
                    .key(&target.generation)
                    .key(&target.channel)
                    .arg(generation)
                    .arg(blob)
                    .arg(ms(*ttl))
                    .arg(&self.shared.owner)
                    .invoke_async::<i64>(&mut c)
                    .await
                    .map_err(fail)?;
                Ok(StoreReply::Done)
            }
            StoreOp::Release { generation } => {
                let lease = format!("{}:{generation}", self.shared.owner);
                s.release
                    .key(&target.lease)
                    .arg(lease)
                    .invoke_async::<i64>(&mut c)
                    .await
                    .map_err(fail)?;
                Ok(StoreReply::Done)
            }
            StoreOp::Invalidate { generation } => {
                s.invalidate
                    .key(&target.value)
                    .arg(*generation)
                    .invoke_async::<i64>(&mut c)
                    .await
                    .map_err(fail)?;
                Ok(StoreReply::Done)
            }
            _ => Err(StoreFailure::new("operation not supported")),
        }
    }
}

impl AsyncStore for AsyncRedisStore {
    fn execute<'a>(&'a self, request: &'a StoreRequest) -> StoreFuture<'a> {
        Box::pin(self.run(request))
    }
}
