//! The async store, on tokio and redis's multiplexed connection.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};
use tokio::sync::Mutex;

use crate::error::{Endpoint, StoreError, breaks_connection};
use crate::protocol::{self, Acquire, Call, Next, RawAcquire, StoreKey};
use crate::{Options, Settings, owner_id};

/// Builds an [`AsyncRedisStore`].
#[derive(Debug, Clone)]
pub struct AsyncRedisStoreBuilder {
    settings: Settings,
}

impl AsyncRedisStoreBuilder {
    /// How long connecting (TCP, TLS, `AUTH`/`HELLO`) may take. Default 1 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.options.connect_timeout = timeout;
        self
    }

    /// How long each reply may take to arrive. Default 500 ms.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.settings.options.response_timeout = timeout;
        self
    }

    /// As a token lifecycle's store (`transport-ureq` / `transport-reqwest`): seal every record
    /// with this key (HKDF per key name) instead of keys derived from each client's secret.
    /// Needed for clients without a secret (public clients of the Authorization Code flow,
    /// bookingtime's Module API); a fleet must share it.
    pub fn encryption_key(mut self, key: crate::EncryptionKey) -> Self {
        self.settings.encryption_key = Some(key);
        self
    }

    /// For `rediss://` URLs: trust these root certificates (PEM, one or more) instead of the
    /// webpki roots, e.g. a private CA. Building fails for a `redis://` URL.
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.settings.root_certificates = Some(pem.into());
        self
    }

    /// Checks the URL and builds the store. Does not connect: the first operation does.
    pub fn build(self) -> Result<AsyncRedisStore, StoreError> {
        let (client, endpoint) = self.settings.client()?;
        Ok(AsyncRedisStore {
            inner: Arc::new(Inner {
                client,
                endpoint,
                options: self.settings.options,
                encryption_key: self.settings.encryption_key,
                owner: owner_id()?,
                conn: Mutex::new(Slot::default()),
            }),
        })
    }
}

/// The fleet-wide token store, async (tokio). Same operations and protocol as
/// [`RedisStore`](crate::RedisStore); see the [crate docs](crate).
///
/// `Clone + Send + Sync`; clones share one owner id and one multiplexed connection, which
/// carries concurrent calls from many tasks. A connection that breaks or times out is dropped
/// and the next call reconnects. Every call is bounded by a deadline (connect timeout plus three
/// response timeouts) on top of redis's own timeouts: it never hangs, and dropping its future
/// cancels it cleanly.
///
/// The connection's I/O runs on a task spawned on the tokio runtime of the call that opened
/// it; if that runtime shuts down, the next call notices and reconnects on its own.
///
/// Why not redis's `ConnectionManager`: it reconnects with exponential backoff *inside* the
/// call that found the connection broken, so while Redis is down a call lasts for all its
/// retries rather than one connect timeout; this store fails that call at once and lets the
/// caller's circuit breaker decide when to try again.
#[derive(Clone)]
pub struct AsyncRedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    endpoint: Endpoint,
    options: Options,
    pub(crate) encryption_key: Option<crate::EncryptionKey>,
    owner: String,
    conn: Mutex<Slot>,
}

/// The current connection, numbered so that a call discards only the connection it used, not
/// a successor another call has opened since.
#[derive(Default)]
struct Slot {
    next: u64,
    current: Option<(u64, MultiplexedConnection)>,
}

impl AsyncRedisStore {
    /// A builder for a store at `url` (`redis://...` or `rediss://...`).
    pub fn builder(url: &str) -> AsyncRedisStoreBuilder {
        AsyncRedisStoreBuilder {
            settings: Settings::new(url),
        }
    }

    /// A store at `url` with the default timeouts.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).build()
    }

    /// This store's owner id (random, per store instance; shared by its clones). Not a secret.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// The endpoint, without user-info.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint.display
    }

    /// `PING`: whether Redis answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.with_connection(|mut conn| async move {
            redis::cmd("PING").query_async::<Value>(&mut conn).await
        })
        .await
        .map(|_| ())
    }

    /// See [`RedisStore::acquire`](crate::RedisStore::acquire).
    pub async fn acquire(
        &self,
        key: &StoreKey,
        refresh_ahead: Duration,
        lease_ttl: Duration,
    ) -> Result<Acquire, StoreError> {
        let owner = &self.inner.owner;
        let call = protocol::acquire_call(key, owner, refresh_ahead, lease_ttl, false);
        match self.acquire_once(call, key).await? {
            Next::Done(found) => Ok(found),
            Next::AskAgainSkippingFresh => {
                let call = protocol::acquire_call(key, owner, refresh_ahead, lease_ttl, true);
                match self.acquire_once(call, key).await? {
                    Next::Done(found) => Ok(found),
                    Next::AskAgainSkippingFresh => Err(self
                        .inner
                        .endpoint
                        .protocol("acquire: fresh value despite skip")),
                }
            }
        }
    }

    /// See [`RedisStore::publish`](crate::RedisStore::publish).
    pub async fn publish(
        &self,
        key: &StoreKey,
        generation: u64,
        plaintext: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let blob = key.sealer().seal(generation, plaintext)?;
        let call = protocol::publish_call(key, &self.inner.owner, generation, blob, ttl);
        self.flag(call, "publish").await
    }

    /// See [`RedisStore::release`](crate::RedisStore::release).
    pub async fn release(&self, key: &StoreKey, generation: u64) -> Result<bool, StoreError> {
        let call = protocol::release_call(key, &self.inner.owner, generation);
        self.flag(call, "release").await
    }

    /// See [`RedisStore::invalidate`](crate::RedisStore::invalidate).
    pub async fn invalidate(&self, key: &StoreKey, generation: u64) -> Result<bool, StoreError> {
        let call = protocol::invalidate_call(key, generation);
        self.flag(call, "invalidate").await
    }

    /// A new generation for `key` (`INCR` of its counter), for a value published without a
    /// lease (a rotated refresh token is the newest by definition).
    pub async fn next_generation(&self, key: &StoreKey) -> Result<u64, StoreError> {
        let counter = key.generation_key().to_owned();
        self.with_connection(move |mut conn| {
            let counter = counter.clone();
            async move {
                redis::cmd("INCR")
                    .arg(&counter)
                    .query_async::<u64>(&mut conn)
                    .await
            }
        })
        .await
    }

    pub(crate) fn encryption_key(&self) -> Option<&crate::EncryptionKey> {
        self.inner.encryption_key.as_ref()
    }

    async fn acquire_once(&self, call: Call, key: &StoreKey) -> Result<Next, StoreError> {
        let reply = self.eval(call).await?;
        let raw = RawAcquire::parse(reply).map_err(|e| self.inner.endpoint.protocol(e))?;
        Ok(raw.decide(key))
    }

    async fn flag(&self, call: Call, what: &str) -> Result<bool, StoreError> {
        let reply = self.eval(call).await?;
        protocol::parse_flag(&reply, what).map_err(|e| self.inner.endpoint.protocol(e))
    }

    async fn eval(&self, call: Call) -> Result<Value, StoreError> {
        let call = Arc::new(call);
        self.with_connection(move |mut conn| {
            let call = Arc::clone(&call);
            async move { call.invocation().invoke_async::<Value>(&mut conn).await }
        })
        .await
    }

    /// Runs `f` on the current connection (opening one if there is none), under the call's
    /// deadline. A connection found broken (not timed out) is replaced once by a new one.
    async fn with_connection<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let options = &self.inner.options;
        let deadline = options.connect_timeout + options.response_timeout.saturating_mul(3);
        match tokio::time::timeout(deadline, self.run(f)).await {
            Ok(result) => result,
            Err(_) => Err(self.inner.endpoint.timeout(deadline, "waiting for a reply")),
        }
    }

    async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let inner = &*self.inner;
        let after = inner.options.response_timeout;
        let stage = "waiting for a reply";
        let (epoch, conn, fresh) = self.connection().await?;
        let e = match f(conn).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !breaks_connection(&e) {
            return Err(inner.endpoint.map(&e, after, stage));
        }
        self.discard(epoch).await;
        if fresh || e.is_timeout() {
            return Err(inner.endpoint.map(&e, after, stage));
        }
        // The connection we had was broken before this call (the server restarted, say):
        // once more, on a new one.
        let (epoch, conn, _) = self.connection().await?;
        match f(conn).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if breaks_connection(&e) {
                    self.discard(epoch).await;
                }
                Err(inner.endpoint.map(&e, after, stage))
            }
        }
    }

    /// The current connection (a clone: multiplexed), or a new one; `true` if it is new.
    async fn connection(&self) -> Result<(u64, MultiplexedConnection, bool), StoreError> {
        let inner = &*self.inner;
        // Held while connecting, so that concurrent calls wait for one connection attempt
        // instead of each making their own.
        let mut slot = inner.conn.lock().await;
        if let Some((epoch, conn)) = &slot.current {
            return Ok((*epoch, conn.clone(), false));
        }
        let connect = inner.options.connect_timeout;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect))
            .set_response_timeout(Some(inner.options.response_timeout));
        let attempt = inner
            .client
            .get_multiplexed_async_connection_with_config(&config);
        let conn = match tokio::time::timeout(connect, attempt).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(inner.endpoint.map(&e, connect, "connecting")),
            Err(_) => return Err(inner.endpoint.timeout(connect, "connecting")),
        };
        let epoch = slot.next;
        slot.next = slot.next.wrapping_add(1);
        slot.current = Some((epoch, conn.clone()));
        Ok((epoch, conn, true))
    }

    async fn discard(&self, epoch: u64) {
        let mut slot = self.inner.conn.lock().await;
        if matches!(&slot.current, Some((current, _)) if *current == epoch) {
            slot.current = None;
        }
    }
}

impl fmt::Debug for AsyncRedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncRedisStore")
            .field("endpoint", &self.inner.endpoint.display)
            .field("owner", &self.inner.owner)
            .field("options", &self.inner.options)
            .finish()
    }
}
