//! The blocking store, on redis's synchronous connections.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::Value;

use crate::error::{Endpoint, StoreError, breaks_connection};
use crate::protocol::{self, Acquire, Call, Next, RawAcquire, StoreKey};
use crate::{Options, Settings, owner_id};

/// How many idle connections a [`RedisStore`] keeps.
const MAX_IDLE: usize = 8;

/// Builds a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    settings: Settings,
}

impl RedisStoreBuilder {
    /// How long connecting (TCP, TLS, `AUTH`/`HELLO`) may take. Default 1 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.options.connect_timeout = timeout;
        self
    }

    /// How long each reply may take to arrive (a socket read or write timeout). Default 500 ms.
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

    /// Checks the URL and builds the store. Does not connect: the first operation does (so a
    /// process starts while Redis is down, and each operation reports its own error).
    pub fn build(self) -> Result<RedisStore, StoreError> {
        let (client, endpoint) = self.settings.client()?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client,
                endpoint,
                options: self.settings.options,
                encryption_key: self.settings.encryption_key,
                owner: owner_id()?,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }
}

/// The fleet-wide token store, blocking. See the [crate docs](crate) for the protocol.
///
/// `Clone + Send + Sync`; clones share one owner id and one small pool of connections (a
/// broken or timed-out connection is dropped and the next call reconnects). Every call is
/// bounded by the connect timeout plus a few response timeouts: it never hangs.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    endpoint: Endpoint,
    options: Options,
    pub(crate) encryption_key: Option<crate::EncryptionKey>,
    owner: String,
    idle: Mutex<Vec<redis::Connection>>,
}

impl RedisStore {
    /// A builder for a store at `url` (`redis://[user:password@]host[:port][/db]` or
    /// `rediss://...` for TLS).
    pub fn builder(url: &str) -> RedisStoreBuilder {
        RedisStoreBuilder {
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
    pub fn ping(&self) -> Result<(), StoreError> {
        self.with_connection(|conn| redis::cmd("PING").query::<Value>(conn))
            .map(|_| ())
    }

    /// Reads the value of `key`, or takes the lease to refresh it. See [`Acquire`].
    ///
    /// A value with more than `refresh_ahead` left is returned as it is; otherwise, if nobody
    /// holds the lease, this store takes it for `lease_ttl` (the token request's timeout plus a
    /// few seconds) under a new generation.
    pub fn acquire(
        &self,
        key: &StoreKey,
        refresh_ahead: Duration,
        lease_ttl: Duration,
    ) -> Result<Acquire, StoreError> {
        let owner = &self.inner.owner;
        let call = protocol::acquire_call(key, owner, refresh_ahead, lease_ttl, false);
        match self.acquire_once(&call, key)? {
            Next::Done(found) => Ok(found),
            Next::AskAgainSkippingFresh => {
                let call = protocol::acquire_call(key, owner, refresh_ahead, lease_ttl, true);
                match self.acquire_once(&call, key)? {
                    Next::Done(found) => Ok(found),
                    Next::AskAgainSkippingFresh => Err(self
                        .inner
                        .endpoint
                        .protocol("acquire: fresh value despite skip")),
                }
            }
        }
    }

    /// Publishes `plaintext` (encrypted) as `generation`'s value for `ttl` (at least 1 ms), if
    /// `generation` is newer than the stored one; frees the lease if it is still this store's
    /// (never another's); announces `generation` on [`StoreKey::channel`] if it wrote. Returns
    /// whether it wrote (false: this or a newer generation is already there).
    ///
    /// `ttl` should be the token's remaining lifetime minus a safety margin (about 10 %, at
    /// least a few seconds): Redis expires the value, so no reader is ever handed an expired
    /// token because of another host's clock.
    pub fn publish(
        &self,
        key: &StoreKey,
        generation: u64,
        plaintext: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let blob = key.sealer().seal(generation, plaintext)?;
        let call = protocol::publish_call(key, &self.inner.owner, generation, blob, ttl);
        self.flag(&call, "publish")
    }

    /// Frees this store's lease on `generation` (after a failed fetch), if it still holds it.
    /// Returns whether it did.
    pub fn release(&self, key: &StoreKey, generation: u64) -> Result<bool, StoreError> {
        let call = protocol::release_call(key, &self.inner.owner, generation);
        self.flag(&call, "release")
    }

    /// Deletes the value if it is still `generation`'s (after that token got a 401). Returns
    /// whether it did; a newer value is never deleted.
    pub fn invalidate(&self, key: &StoreKey, generation: u64) -> Result<bool, StoreError> {
        let call = protocol::invalidate_call(key, generation);
        self.flag(&call, "invalidate")
    }

    /// A new generation for `key` (`INCR` of its counter), for a value published without a
    /// lease (a rotated refresh token is the newest by definition).
    pub fn next_generation(&self, key: &StoreKey) -> Result<u64, StoreError> {
        self.with_connection(|conn| {
            redis::cmd("INCR")
                .arg(key.generation_key())
                .query::<u64>(conn)
        })
    }

    pub(crate) fn encryption_key(&self) -> Option<&crate::EncryptionKey> {
        self.inner.encryption_key.as_ref()
    }

    fn acquire_once(&self, call: &Call, key: &StoreKey) -> Result<Next, StoreError> {
        let reply = self.eval(call)?;
        let raw = RawAcquire::parse(reply).map_err(|e| self.inner.endpoint.protocol(e))?;
        Ok(raw.decide(key))
    }

    fn flag(&self, call: &Call, what: &str) -> Result<bool, StoreError> {
        let reply = self.eval(call)?;
        protocol::parse_flag(&reply, what).map_err(|e| self.inner.endpoint.protocol(e))
    }

    fn eval(&self, call: &Call) -> Result<Value, StoreError> {
        let invocation = call.invocation();
        self.with_connection(|conn| invocation.invoke::<Value>(conn))
    }

    /// Runs `f` on a pooled or new connection. A pooled connection that turns out broken (the
    /// server restarted, say) is replaced once by a new one; a timeout is never retried.
    fn with_connection<T>(
        &self,
        f: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let inner = &*self.inner;
        let stage = "waiting for a reply";
        if let Some(mut conn) = self.pop_idle() {
            match f(&mut conn) {
                Ok(v) => {
                    self.push_idle(conn);
                    return Ok(v);
                }
                Err(e) if e.is_timeout() || !breaks_connection(&e) => {
                    if !breaks_connection(&e) {
                        self.push_idle(conn);
                    }
                    return Err(inner
                        .endpoint
                        .map(&e, inner.options.response_timeout, stage));
                }
                // Broken: drop it, and try once on a new connection.
                Err(_) => {}
            }
        }
        let mut conn = self.connect()?;
        match f(&mut conn) {
            Ok(v) => {
                self.push_idle(conn);
                Ok(v)
            }
            Err(e) => {
                if !breaks_connection(&e) {
                    self.push_idle(conn);
                }
                Err(inner
                    .endpoint
                    .map(&e, inner.options.response_timeout, stage))
            }
        }
    }

    fn connect(&self) -> Result<redis::Connection, StoreError> {
        let inner = &*self.inner;
        let timeout = inner.options.connect_timeout;
        let map = |e: redis::RedisError| inner.endpoint.map(&e, timeout, "connecting");
        let conn = inner
            .client
            .get_connection_with_timeout(nonzero(timeout))
            .map_err(map)?;
        let response = Some(nonzero(inner.options.response_timeout));
        conn.set_read_timeout(response).map_err(map)?;
        conn.set_write_timeout(response).map_err(map)?;
        Ok(conn)
    }

    fn idle(&self) -> MutexGuard<'_, Vec<redis::Connection>> {
        // A panic elsewhere while holding this lock leaves a valid Vec: keep using it.
        self.inner
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn pop_idle(&self) -> Option<redis::Connection> {
        self.idle().pop()
    }

    fn push_idle(&self, conn: redis::Connection) {
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

/// Socket timeouts of zero mean "no timeout" (or are refused): use a millisecond instead.
fn nonzero(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("endpoint", &self.inner.endpoint.display)
            .field("owner", &self.inner.owner)
            .field("options", &self.inner.options)
            .finish()
    }
}
