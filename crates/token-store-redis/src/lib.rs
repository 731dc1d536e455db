//! A fleet-wide OAuth token store on Redis: every process of a fleet that shares a provider
//! configuration shares its token, and one of them (not all) fetches the next one.
//!
//! Two stores with the same operations: [`RedisStore`] (blocking, on redis's synchronous
//! connections) and [`AsyncRedisStore`] (tokio, on a multiplexed connection; feature `tokio`,
//! on by default). Both take a `redis://` or `rediss://` URL: TLS is rustls (never native-tls)
//! with the webpki roots, or the root certificates you give the builder
//! ([`RedisStoreBuilder::tls_root_certificates`]) for a private CA. A [`StoreKey`] names one
//! configuration: built from the configuration's fingerprint and an [`EncryptionKey`]. This crate knows nothing of tokens beyond bytes: the caller (the
//! token lifecycle) decides what to store, how long, and when to refresh.
//!
//! # The protocol
//!
//! An **efficiency** lock, not a correctness lock: a duplicate fetch costs quota, nothing
//! else, so one Redis primary is enough (no Redlock), and a generation counter checked inside
//! the same atomic script that writes the value fences late writers. Per key, under one cluster
//! hash tag `{kid}` (so every script's keys are in one slot):
//!
//! | key | type | content | TTL |
//! |---|---|---|---|
//! | `tok:{kid}:v` | hash | `gen` (decimal), `blob` (the sealed record) | the caller's `ttl` (`PEXPIRE`) |
//! | `tok:{kid}:lease` | string | `owner:gen` | the caller's `lease_ttl` (`SET NX PX`) |
//! | `tok:{kid}:gen` | string | the generation counter (`INCR`) | none |
//! | `tok:{kid}:ch` | channel | each published `gen` (`PUBLISH`) | — |
//!
//! `kid` is [`token_store::derive_kid`] of the fingerprint: 64 hex digits, no secret in it,
//! and a configuration change moves to new keys. `owner` is a random id per store instance.
//! Each operation is one Lua script, atomic on the server:
//!
//! - **acquire**`(key, refresh_ahead, lease_ttl)`: a value with more than `refresh_ahead` left
//!   → [`Acquire::Value`]; else if nobody holds the lease → `INCR gen`, `SET lease owner:gen NX
//!   PX lease_ttl` → [`Acquire::Leased`] (with the old value as `stale`, if any): this process
//!   fetches; else → [`Acquire::Busy`] (with the value, if any, and the lease's `PTTL`):
//!   someone else fetches, serve the value or wait at most that long.
//! - **publish**`(key, gen, plaintext, ttl)`: write `gen` + `blob` and `PEXPIRE ttl` only if
//!   `gen` is newer than the stored value's (a late writer never overwrites a newer token);
//!   delete the lease only if it is still `owner:gen` (never the next holder's); `PUBLISH gen`
//!   on the channel if it wrote.
//! - **release**`(key, gen)`: compare-and-delete this store's lease (after a failed fetch).
//! - **invalidate**`(key, gen)`: delete the value only if its `gen` is `gen` (after that token
//!   got a 401): a burst of 401s removes it once, and never a newer token.
//!
//! The stores talk to one Redis primary (or a managed endpoint or proxy in front of one); they
//! are not Redis Cluster clients, but the keys are laid out so that the scripts are valid on
//! a cluster should one be added. Generations count up from 1 per key; Lua compares them as
//! doubles, exact below 2⁵³.
//!
//! A dead holder's lease expires after `lease_ttl` and the next caller gets `gen + 1`: at most
//! one extra fetch. The counter is kept ahead of the stored generation even if it is lost
//! (eviction), and a lease found without an expiry gets one, so no state a script can meet
//! blocks a key forever. Expiry is the value's Redis `PTTL` read on each acquire (returned as
//! [`Stored::ttl`]), counted on the reader's monotonic clock: no two hosts' wall clocks are ever
//! compared.
//!
//! # What a caller does
//!
//! ```no_run
//! use std::time::Duration;
//! use token_store_redis::{Acquire, EncryptionKey, RedisStore, StoreKey};
//!
//! # fn fetch_token() -> Result<(Vec<u8>, Duration), ()> { Err(()) }
//! # fn main() -> Result<(), token_store_redis::StoreError> {
//! let store = RedisStore::builder("rediss://tokens:PASSWORD@cache.internal:6380")
//!     .connect_timeout(Duration::from_millis(500))
//!     .response_timeout(Duration::from_millis(250))
//!     .build()?;
//! let key = StoreKey::new(b"canonical fingerprint", &EncryptionKey::from_client_secret("s3cret"));
//! match store.acquire(&key, Duration::from_secs(60), Duration::from_secs(15))? {
//!     Acquire::Value(stored) => { /* use stored.plaintext for stored.ttl */ }
//!     Acquire::Leased { generation, stale } => match fetch_token() {
//!         Ok((record, lifetime)) => {
//!             store.publish(&key, generation, &record, lifetime.mul_f64(0.9))?;
//!         }
//!         Err(_) => {
//!             store.release(&key, generation)?; // the next caller may try at once
//!         }
//!     },
//!     Acquire::Busy { value, lease_ttl } => {
//!         /* serve `value` if any; else poll (50 → 400 ms, jittered) for at most `lease_ttl` */
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Errors ([`StoreError`]: connection, timeout, protocol) mean "the shared store is
//! unavailable", never "someone else holds the lease": fall back to in-process single flight
//! behind a circuit breaker. Every operation is bounded by the configured timeouts
//! (default: connect 1 s, each reply 500 ms; an operation is at most a connect and three
//! replies, when Redis has lost the scripts and they are loaded again) and never hangs.
//!
//! # Secrets
//!
//! - Values are sealed with XChaCha20-Poly1305 ([`token_store::Sealer`]), bound to the kid and
//!   the generation; the key is explicit or derived from the client secret (HKDF-SHA256 salted
//!   with the kid). A value that does not decrypt (another key, garbage, a record copied from
//!   another key or generation) is a **miss**: [`RedisStore::acquire`] asks again ignoring it
//!   and takes the lease; never an error, never a panic.
//! - Key names hold only the kid. No token or secret appears in Redis in clear, nor in this
//!   crate's errors or `Debug` output: [`StoreError`]'s messages show the URL without its
//!   user-info and scrub the password out of Redis's messages; [`Stored`] prints its length.
//! - Use `rediss://` across any network you do not own, and a Redis user limited to these keys
//!   and channels, with only the commands the scripts run:
//!
//! ```text
//! ACL SETUSER tokens on >LONG-RANDOM-PASSWORD resetkeys ~tok:* resetchannels &tok:* -@all
//!     +ping +hello +select +evalsha +script|load +subscribe +unsubscribe
//!     +type +pttl +hmget +hget +hset +del +pexpire +get +set +incr +publish
//! ```
//!
//! (`+hello` is for `?protocol=resp3` URLs, `+select` for a database other than 0, `+subscribe
//! +unsubscribe` for waiters on the channel; the stores send no `CLIENT SETINFO`. The
//! integration tests run every operation as exactly this user.)

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// The crate docs link the async store, which exists with the `tokio` feature only.
#![cfg_attr(not(feature = "tokio"), allow(rustdoc::broken_intra_doc_links))]

use std::fmt;
use std::time::Duration;

mod blocking;
mod error;
mod lifecycle;
mod protocol;

#[cfg(feature = "tokio")]
mod asynchronous;

#[cfg(feature = "tokio")]
pub use asynchronous::{AsyncRedisStore, AsyncRedisStoreBuilder};
pub use blocking::{RedisStore, RedisStoreBuilder};
pub use error::{StoreError, redact_url};
pub use protocol::{Acquire, StoreKey, Stored};
pub use token_store::{EncryptionKey, SealError, Sealer, derive_kid};

/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default timeout for each reply.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Clone, Copy)]
pub(crate) struct Options {
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

/// What both builders collect. Prints the URL without its user-info.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) url: String,
    pub(crate) options: Options,
    pub(crate) root_certificates: Option<Vec<u8>>,
    /// As a token lifecycle's store: the key every record is sealed with (per key name), or
    /// `None` for keys derived from each client's secret.
    pub(crate) encryption_key: Option<EncryptionKey>,
}

impl Settings {
    pub(crate) fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            options: Options::default(),
            root_certificates: None,
            encryption_key: None,
        }
    }

    pub(crate) fn client(&self) -> Result<(redis::Client, error::Endpoint), StoreError> {
        client(&self.url, self.root_certificates.as_deref())
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("url", &redact_url(&self.url))
            .field("options", &self.options)
            .field(
                "root_certificates",
                &self.root_certificates.as_ref().map(Vec::len),
            )
            .field("encryption_key", &self.encryption_key)
            .finish()
    }
}

/// Parses `url` into a client, refusing anything but `redis://` and `rediss://`; with
/// `root_certificates` (PEM), a `rediss://` client trusts those instead of the webpki roots.
pub(crate) fn client(
    url: &str,
    root_certificates: Option<&[u8]>,
) -> Result<(redis::Client, error::Endpoint), StoreError> {
    let trimmed = url.trim();
    let invalid = |reason: String| StoreError::InvalidUrl {
        url: redact_url(trimmed),
        reason,
    };
    let has_scheme = |scheme: &str| {
        trimmed
            .get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
    };
    let tls = has_scheme("rediss://");
    if !tls && !has_scheme("redis://") {
        return Err(invalid("expected a redis:// or rediss:// URL".into()));
    }
    if tls {
        ensure_crypto_provider();
    }
    let invalid_redis = |e: redis::RedisError| {
        // The parser's message may quote the URL: never with its user-info.
        let mut reason = e.to_string();
        let userinfo = userinfo(trimmed);
        if !userinfo.is_empty() {
            reason = reason.replace(userinfo, "[redacted]");
        }
        invalid(reason)
    };
    let info = redis::IntoConnectionInfo::into_connection_info(trimmed).map_err(invalid_redis)?;
    // No `CLIENT SETINFO` on connect: two commands fewer, and none the ACL must allow.
    let settings = info.redis_settings().clone().set_skip_set_lib_name();
    let info = info.set_redis_settings(settings);
    let client = match root_certificates {
        None => redis::Client::open(info),
        Some(pem) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        ),
    }
    .map_err(invalid_redis)?;
    let endpoint = error::Endpoint::new(trimmed, client.get_connection_info());
    Ok((client, endpoint))
}

/// redis builds its TLS configuration with `rustls::ClientConfig::builder()`, which panics
/// when the process has no default crypto provider and more than one is compiled in (another
/// crate enabling `aws-lc-rs`, say). Installs `ring`'s if none is installed yet: what rustls
/// would pick anyway when `ring` is the only one.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing one is fine: there is one either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The user-info part of a URL (between `://` and the last `@` before the query), or "".
fn userinfo(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].rfind('@') {
        Some(at) => &url[start..start + at],
        None => "",
    }
}

/// A random owner id: 128 bits from the OS, in hex.
pub(crate) fn owner_id() -> Result<String, StoreError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| SealError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_never_echo_passwords() {
        for bad in [
            "http://u:hunter2@host",
            "unix:///tmp/redis.sock",
            "redis+unix:///tmp/x",
            "",
            "hunter2",
        ] {
            let err = RedisStore::open(bad).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidUrl { .. }),
                "{bad}: {err:?}"
            );
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        for bad in ["redis://u:hunter2@host:notaport", "redis://u:hunter2@[::1"] {
            if let Err(err) = RedisStore::open(bad) {
                assert!(!err.to_string().contains("hunter2"), "{err}");
                assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
            }
        }
        let builder = RedisStore::builder("rediss://u:hunter2@cache.internal:6380/2");
        assert!(!format!("{builder:?}").contains("hunter2"), "{builder:?}");
        let store = builder.build().unwrap();
        assert_eq!(store.endpoint(), "rediss://cache.internal:6380/2");
        assert!(!format!("{store:?}").contains("hunter2"));
        let plain = RedisStore::builder("redis://h").tls_root_certificates(b"x".to_vec());
        assert!(matches!(plain.build(), Err(StoreError::InvalidUrl { .. })));
        assert!(RedisStore::open("REDIS://127.0.0.1").is_ok());
    }

    #[test]
    fn userinfo_is_found() {
        assert_eq!(userinfo("redis://u:p@h"), "u:p");
        assert_eq!(userinfo("redis://u:p@x@h/0?q=@"), "u:p@x");
        assert_eq!(userinfo("redis://h"), "");
    }

    #[test]
    fn owners_are_random() {
        let a = owner_id().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, owner_id().unwrap());
    }
}
