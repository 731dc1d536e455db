//! The per-key fetch state, shared by access-token entries and refresh-token grants.
//!
//! ```text
//!            request / refresh due
//!   Idle ──────────────────────────────► Acquiring ──(value)──────────────► Idle
//!    ▲   (no store, or store failing)       │  │
//!    │  ────────────────────┐  (lease ours) │  └─(another process holds it)─► Following
//!    │                      ▼               ▼                                   │ (poll)
//!    │                   Fetching ◄─────────┘◄──────────── Acquiring ◄──────────┘
//!    │                      │   ▲
//!    └──(token / failure)───┘   └── AwaitingGrant (access keys fed by a refresh token)
//! ```

use std::time::Instant;

use crate::lifecycle::ids::{RequestId, StoreOpId};
use crate::protocol::error::Error;

/// Where a key's fetch is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Nothing in progress.
    #[default]
    Idle,
    /// A store load-or-lease is in flight.
    Acquiring { op: StoreOpId, issued_at: Instant },
    /// Another process holds the store lease; look again at `poll_at` (giving up on the store
    /// and fetching ourselves after `give_up_at`).
    Following {
        poll_at: Instant,
        attempt: u32,
        give_up_at: Instant,
    },
    /// A token request is in flight, under store lease `lease` if any.
    Fetching {
        request: RequestId,
        sent_at: Instant,
        lease: Option<u64>,
    },
    /// Waiting for the grant's refresh token (holding store lease `lease`, if any).
    AwaitingGrant { lease: Option<u64> },
}

/// Fetch bookkeeping: the phase, and the backoff after failures.
#[derive(Debug, Default)]
pub(crate) struct Fetch {
    pub(crate) phase: Phase,
    pub(crate) retry_at: Option<Instant>,
    pub(crate) failures: u32,
    pub(crate) last_error: Option<Error>,
    /// The newest store generation the API (or the token endpoint) rejected: a load may
    /// overtake the invalidation on its way to the store, and must not bring it back.
    pub(crate) rejected_gen: Option<u64>,
    /// Loads in a row that returned a rejected generation (bounded: see `handle_store`).
    pub(crate) overtaken: u32,
}

impl Fetch {
    /// Nothing in progress and not backing off.
    pub(crate) fn can_start(&self, now: Instant) -> bool {
        self.phase == Phase::Idle && !self.in_backoff(now)
    }

    pub(crate) fn in_backoff(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|t| now < t)
    }

    pub(crate) fn busy(&self) -> bool {
        self.phase != Phase::Idle
    }

    /// The store lease the fetch holds, if any.
    pub(crate) fn lease(&self) -> Option<u64> {
        match self.phase {
            Phase::Fetching { lease, .. } | Phase::AwaitingGrant { lease } => lease,
            _ => None,
        }
    }

    /// Remembers that the credential of store generation `generation` was rejected.
    pub(crate) fn reject_generation(&mut self, generation: u64) {
        self.rejected_gen = Some(self.rejected_gen.map_or(generation, |r| r.max(generation)));
    }

    pub(crate) fn succeeded(&mut self) {
        self.phase = Phase::Idle;
        self.retry_at = None;
        self.failures = 0;
        self.last_error = None;
        // A newer credential is in: any invalidation sent before it has had its turn (and the
        // store may since have restarted, counting generations from zero again).
        self.rejected_gen = None;
        self.overtaken = 0;
    }
}
