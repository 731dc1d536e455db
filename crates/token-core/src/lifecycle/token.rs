//! A cached access token with its schedule.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::HeaderValue;

use crate::protocol::config::Scopes;
use crate::protocol::quota::Quota;
use crate::protocol::response::LifetimeSource;
use crate::protocol::secret::AccessToken;

/// A valid access token with its schedule. Cloning is a reference-count increment: no
/// allocation. `Debug` never prints the token.
#[derive(Clone)]
pub struct Token(Arc<Inner>);

struct Inner {
    access_token: AccessToken,
    authorization: HeaderValue,
    scopes: Option<Scopes>,
    sent_at: Instant,
    expires_at: Instant,
    refresh_at: Instant,
    expires_at_wall: SystemTime,
    lifetime: Duration,
    source: LifetimeSource,
    quota: Option<Quota>,
}

impl Token {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        access_token: AccessToken,
        authorization: HeaderValue,
        scopes: Option<Scopes>,
        sent_at: Instant,
        expires_at: Instant,
        refresh_at: Instant,
        expires_at_wall: SystemTime,
        lifetime: Duration,
        source: LifetimeSource,
        quota: Option<Quota>,
    ) -> Self {
        Self(Arc::new(Inner {
            access_token,
            authorization,
            scopes,
            sent_at,
            expires_at,
            refresh_at,
            expires_at_wall,
            lifetime,
            source,
            quota,
        }))
    }

    /// The access token.
    pub fn access_token(&self) -> &AccessToken {
        &self.0.access_token
    }

    /// `Bearer <token>`, ready for an `Authorization` header (marked sensitive). Cloning it
    /// does not allocate.
    pub fn authorization(&self) -> &HeaderValue {
        &self.0.authorization
    }

    /// The scopes the response granted, if it listed them.
    pub fn scopes(&self) -> Option<&Scopes> {
        self.0.scopes.as_ref()
    }

    /// When the request that fetched this token was sent (its lifetime counts from here).
    pub fn sent_at(&self) -> Instant {
        self.0.sent_at
    }

    /// The first instant at which this token is no longer served.
    pub fn expires_at(&self) -> Instant {
        self.0.expires_at
    }

    /// From this instant on, a request for this token's key starts a refresh (the token is still
    /// served until [`expires_at`](Token::expires_at)).
    pub fn refresh_at(&self) -> Instant {
        self.0.refresh_at
    }

    /// [`expires_at`](Token::expires_at) on the wall clock given when the response was handled:
    /// for display, and for sharing the token across processes.
    pub fn expires_at_wall(&self) -> SystemTime {
        self.0.expires_at_wall
    }

    /// The token type (always Bearer: other types are refused when parsing).
    pub fn token_type(&self) -> crate::TokenType {
        crate::TokenType::Bearer
    }

    /// The lifetime the token was given (after capping).
    pub fn lifetime(&self) -> Duration {
        self.0.lifetime
    }

    /// Where the lifetime came from.
    pub fn lifetime_source(&self) -> LifetimeSource {
        self.0.source
    }

    /// Auth0's quota and rate-limit headers of the response that brought this token, if any.
    pub fn quota(&self) -> Option<&Quota> {
        self.0.quota.as_ref()
    }

    /// True at and after [`expires_at`](Token::expires_at).
    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.0.expires_at
    }

    /// True when the token can be served without starting a refresh.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.0.refresh_at
    }

    /// True when both are the same fetched token (same allocation).
    pub fn same_as(&self, other: &Token) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &self.0.access_token)
            .field("scopes", &self.0.scopes)
            .field("lifetime", &self.0.lifetime)
            .field("source", &self.0.source)
            .finish_non_exhaustive()
    }
}
