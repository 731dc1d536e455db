//! The shared store: a second IO channel of the core, next to HTTP.
//!
//! With [`ManagerConfig::store`](crate::ManagerConfig::store) set, the manager asks a store
//! shared by every process of a fleet before it asks the token endpoint, and tells it what it
//! fetched. It does so the way it sends token requests: it emits a [`StoreRequest`] from
//! [`poll_output`](crate::TokenManager::poll_output) ([`Output::Store`](crate::Output::Store))
//! and takes the store's [`StoreReply`] back through
//! [`handle_store`](crate::TokenManager::handle_store). The core never calls a store, never
//! waits for one, and never trusts one: every reply is checked, a missing reply times out
//! ([`StoreSettings::op_timeout`]), and a failing store is bypassed by the in-process single
//! flight behind a circuit breaker until it answers again.
//!
//! # The protocol a store implements
//! Per [`StoreKey`] the store keeps a value (a [`StoreRecord`] with a generation and a TTL), a
//! lease (owner and generation, with a TTL) and a generation counter:
//! - [`StoreOp::Acquire`]: a value with more than `refresh_ahead` left → [`StoreReply::Value`];
//!   else, no lease held → take it with a new generation → [`StoreReply::Leased`] (with the old
//!   value as `stale`, if any); else → [`StoreReply::Busy`] (with the value, if any, and the
//!   lease's remaining TTL).
//! - [`StoreOp::Publish`]: write the value if its generation is newer than the stored one (or
//!   take a new generation when it has none: a rotated refresh token), set its TTL, release
//!   the lease if it is still ours.
//! - [`StoreOp::Release`]: release the lease if it is still ours (the fetch failed).
//! - [`StoreOp::Invalidate`]: delete the value if it is still that generation (a 401).
//!
//! Expiry never compares two hosts' clocks: a loaded value expires at the moment its load was
//! issued plus the store's own TTL for it, on this process's monotonic clock, and the TTL a
//! publisher sets is the token's remaining life minus a safety margin.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lifecycle::ids::StoreOpId;
use crate::protocol::config::{ClientConfig, Scopes};
use crate::protocol::error::sanitize;
use crate::protocol::secret::ClientSecret;

/// Tunables of the shared store. `Default` gives the documented values.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreSettings {
    /// A store operation without a reply after this long counts as a store failure. Default 1 s.
    pub op_timeout: Duration,
    /// How long a lease lasts in the store: how long another process waits for a holder that
    /// died before it fetches itself. Default: the manager's request timeout plus 5 s.
    pub lease_ttl: Option<Duration>,
    /// After a store failure the store is bypassed for this long, doubling per consecutive
    /// failure up to `breaker_max`. Default 1 s.
    pub breaker_initial: Duration,
    /// Longest bypass. Default 30 s.
    pub breaker_max: Duration,
    /// First wait before looking again while another process holds the lease, doubling to
    /// `poll_max` (with jitter). Default 50 ms.
    pub poll_initial: Duration,
    /// Longest wait between looks. Default 400 ms.
    pub poll_max: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            op_timeout: Duration::from_secs(1),
            lease_ttl: None,
            breaker_initial: Duration::from_secs(1),
            breaker_max: Duration::from_secs(30),
            poll_initial: Duration::from_millis(50),
            poll_max: Duration::from_millis(400),
        }
    }
}

/// Where one cached credential lives in a shared store: the same for every process with the
/// same configuration, and free of secrets.
#[derive(Clone)]
pub struct StoreKey {
    fingerprint: Arc<str>,
    config: Arc<ClientConfig>,
}

impl StoreKey {
    pub(crate) fn new(fingerprint: String, config: Arc<ClientConfig>) -> Self {
        Self {
            fingerprint: fingerprint.into(),
            config,
        }
    }

    /// A stable, canonical, secret-free description of what the credential is for: format
    /// version, kind, token URL, client id, audience, scopes, dialect parameters, subject and
    /// organization. Stores hash it into their key names.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The client's secret, for stores that derive their encryption key from it.
    pub fn client_secret(&self) -> Option<&ClientSecret> {
        self.config
            .credentials()
            .client_secret()
            .filter(|s| !s.is_empty())
    }

    /// The client's configuration.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreKey")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// An operation for the store to run, then report with
/// [`handle_store`](crate::TokenManager::handle_store).
#[derive(Debug)]
#[non_exhaustive]
pub struct StoreRequest {
    /// Hand this back with the reply.
    pub id: StoreOpId,
    /// The credential it is about.
    pub key: StoreKey,
    /// What to do.
    pub op: StoreOp,
}

/// What a store is asked to do (see the [module docs](self) for the protocol).
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreOp {
    /// Load the value, or take the lease to fetch it. Replies: [`StoreReply::Value`],
    /// [`StoreReply::Leased`], [`StoreReply::Busy`] or [`StoreReply::Failed`].
    Acquire {
        /// A value with this much TTL left or less counts as due for refresh.
        refresh_ahead: Duration,
        /// The lease's TTL.
        lease_ttl: Duration,
    },
    /// Save a freshly fetched credential. Replies: [`StoreReply::Done`] or
    /// [`StoreReply::Failed`].
    Publish {
        /// The generation the lease gave; `None`: take a new one (a rotated refresh token,
        /// fetched without a lease, is the newest by definition).
        generation: Option<u64>,
        /// The value.
        record: StoreRecord,
        /// The value's TTL.
        ttl: Duration,
    },
    /// Give the lease back: the fetch failed. Replies: [`StoreReply::Done`] or
    /// [`StoreReply::Failed`].
    Release {
        /// The lease's generation.
        generation: u64,
    },
    /// Delete the value if it is still this generation: the API rejected it. Replies:
    /// [`StoreReply::Done`] or [`StoreReply::Failed`].
    Invalidate {
        /// The rejected value's generation.
        generation: u64,
    },
}

/// A stored value as the store returns it.
#[derive(Debug)]
#[non_exhaustive]
pub struct StoredValue {
    /// The record.
    pub record: StoreRecord,
    /// Its generation.
    pub generation: u64,
    /// Its remaining TTL in the store.
    pub ttl: Duration,
}

impl StoredValue {
    /// A value as read from a store.
    pub fn new(record: StoreRecord, generation: u64, ttl: Duration) -> Self {
        Self {
            record,
            generation,
            ttl,
        }
    }
}

/// A store's answer to a [`StoreRequest`].
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreReply {
    /// `Acquire`: a value to use.
    Value(StoredValue),
    /// `Acquire`: the lease is ours under `generation`: fetch, then `Publish` or `Release`.
    Leased {
        /// The lease's generation.
        generation: u64,
        /// The value that is due for refresh, if any (still usable until it expires).
        stale: Option<StoredValue>,
    },
    /// `Acquire`: another process holds the lease.
    Busy {
        /// The current value, if any (still usable until it expires).
        value: Option<StoredValue>,
        /// The lease's remaining TTL.
        lease_ttl: Duration,
    },
    /// `Publish`, `Release`, `Invalidate`: done (or nothing to do).
    Done,
    /// The store could not be asked (unreachable, timed out, an error reply). The manager
    /// falls back to its own single flight and leaves the store alone for a while.
    Failed(StoreFailure),
}

/// Why a store operation failed. Its message is sanitized and capped; stores must not put
/// secrets in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreFailure(String);

impl StoreFailure {
    /// A failure described by `message`.
    pub fn new(message: impl AsRef<str>) -> Self {
        Self(sanitize(message.as_ref(), 200, &[]))
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store failed: {}", self.0)
    }
}

/// A credential in the form a store keeps it: plaintext bytes the store must encrypt at rest.
/// `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreRecord(Vec<u8>);

impl StoreRecord {
    /// A record read back from a store (after decryption).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The plaintext, for the store to encrypt.
    pub fn expose_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn encode(record: &Record) -> Self {
        Self(serde_json::to_vec(record).expect("invariant: a record always serializes"))
    }

    /// The record, if it is one this version understands.
    pub(crate) fn decode(&self) -> Option<Record> {
        let record: Record = serde_json::from_slice(&self.0).ok()?;
        (record.version == RECORD_VERSION && !record.token.is_empty()).then_some(record)
    }
}

impl fmt::Debug for StoreRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreRecord([redacted; {} bytes])", self.0.len())
    }
}

const RECORD_VERSION: u32 = 1;

/// What the core stores for a credential.
#[derive(Serialize, Deserialize)]
pub(crate) struct Record {
    #[serde(rename = "v")]
    pub(crate) version: u32,
    /// The token text (an access token, or a refresh token for a grant).
    #[serde(rename = "t")]
    pub(crate) token: String,
    /// The lifetime the token was given, in milliseconds (its remaining life is the store's
    /// TTL).
    #[serde(rename = "l")]
    pub(crate) lifetime_ms: u64,
    /// Granted scopes, space-separated.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub(crate) scope: Option<String>,
}

impl Record {
    pub(crate) fn new(token: &str, lifetime: Duration, scope: Option<&Scopes>) -> Self {
        Self {
            version: RECORD_VERSION,
            token: token.to_owned(),
            lifetime_ms: u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX),
            scope: scope.map(ToString::to_string),
        }
    }

    pub(crate) fn lifetime(&self) -> Duration {
        Duration::from_millis(self.lifetime_ms)
    }
}

/// The store's circuit breaker: after a failure the store is bypassed for a while (doubling per
/// consecutive failure, capped), then tried again; a success closes it.
#[derive(Debug, Default)]
pub(crate) struct Breaker {
    open_until: Option<std::time::Instant>,
    failures: u32,
}

impl Breaker {
    pub(crate) fn allows(&self, now: std::time::Instant) -> bool {
        self.open_until.is_none_or(|t| now >= t)
    }

    pub(crate) fn failed(&mut self, now: std::time::Instant, settings: &StoreSettings) {
        self.failures = self.failures.saturating_add(1);
        let delay = settings
            .breaker_initial
            .saturating_mul(1u32 << (self.failures - 1).min(16))
            .min(settings.breaker_max);
        self.open_until = Some(crate::lifecycle::schedule::later(now, delay));
    }

    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
        self.open_until = None;
    }
}
