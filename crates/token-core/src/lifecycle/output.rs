//! What the manager hands its driver: requests to send, store operations to run, events for
//! waiting callers, and the next timeout; and what it answers a request for a token.

use std::fmt;
use std::time::Instant;

use crate::lifecycle::ids::{GrantKey, RequestId, TokenKey};
use crate::lifecycle::store::StoreRequest;
use crate::lifecycle::token::Token;
use crate::protocol::config::Provider;
use crate::protocol::error::Error;

/// What a token request fetches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// An access token for a key.
    Access(TokenKey),
    /// A grant's refresh token: bookingtime's (client credentials), or a user's (the
    /// authorization-code exchange).
    RefreshToken(GrantKey),
}

impl Target {
    /// The client the request is for.
    pub fn client(&self) -> crate::ClientId {
        match self {
            Self::Access(key) => key.client,
            Self::RefreshToken(grant) => grant.client,
        }
    }

    /// `"access"` or `"refresh"`, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Access(_) => "access",
            Self::RefreshToken(_) => "refresh",
        }
    }

    /// The organization an access-token request is for, if any.
    pub fn organization(&self) -> Option<&str> {
        match self {
            Self::Access(key) => key.organization(),
            Self::RefreshToken(_) => None,
        }
    }
}

/// A request for the transport to send.
#[non_exhaustive]
pub struct TokenRequest {
    /// Hand this back with the response or failure.
    pub id: RequestId,
    /// What it fetches.
    pub target: Target,
    /// The provider it goes to (for logs and metrics).
    pub provider: Provider,
    /// The request. Send it as is; never follow a redirect (the body holds the secret).
    pub request: http::Request<Vec<u8>>,
    /// Read at most this many bytes of the response body, plus one: a longer body is reported
    /// as [`Error::BodyTooLarge`] when the response is handled, so hand back what was read.
    pub max_body_bytes: usize,
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the request itself: its body and headers carry the secret.
        f.debug_struct("TokenRequest")
            .field("id", &self.id)
            .field("target", &self.target)
            .field("provider", &self.provider)
            .field("method", self.request.method())
            .field("uri", &crate::display_url(&self.request.uri().to_string()))
            .finish_non_exhaustive()
    }
}

/// Something happened that a driver or waiting callers care about.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// What [`servable`](crate::TokenManager::servable) says for `key` may have changed:
    /// republish it. Comes before the [`Token`](Event::Token) or [`Failed`](Event::Failed)
    /// event of the same change, if any.
    Changed {
        /// The key.
        key: TokenKey,
    },
    /// A new token is cached for `key`.
    Token {
        /// The key.
        key: TokenKey,
        /// The token.
        token: Token,
    },
    /// Fetching a token for `key` failed; no request for it starts before `retry_at`.
    Failed {
        /// The key.
        key: TokenKey,
        /// What went wrong.
        error: Error,
        /// The earliest instant of the next attempt.
        retry_at: Instant,
    },
    /// `key` was forgotten (unused, and holding no valid token).
    Evicted {
        /// The key.
        key: TokenKey,
    },
}

/// Output of [`TokenManager::poll_output`](crate::TokenManager::poll_output). Drain until
/// `Timeout`.
#[derive(Debug)]
#[must_use]
pub enum Output {
    /// Send this request, then report its response or failure.
    Send(TokenRequest),
    /// Run this store operation, then report its reply.
    Store(StoreRequest),
    /// Tell the driver and waiting callers.
    Event(Event),
    /// Nothing more to do now; call
    /// [`TokenManager::handle_timeout`](crate::TokenManager::handle_timeout) at this instant
    /// (always later than the `now` given).
    Timeout(Instant),
}

/// The answer to [`TokenManager::request`](crate::TokenManager::request).
#[derive(Clone, Debug)]
#[must_use]
pub enum Lookup {
    /// Use this token. If it was inside its refresh window, a refresh has been started; the
    /// token stays valid until it expires.
    Ready(Token),
    /// A fetch is in progress; wait for an [`Event`] for the key, then ask again.
    Pending,
    /// There is no valid token and the last attempt failed; nothing is sent before `retry_at`.
    Failed {
        /// The last error.
        error: Error,
        /// The earliest instant of the next attempt.
        retry_at: Instant,
    },
}
