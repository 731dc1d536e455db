//! Identifiers: clients, subjects, cache keys, request and store-operation ids.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT_MANAGER: AtomicU32 = AtomicU32::new(1);

/// A fresh manager id, so ids from one manager are never mistaken for another's.
pub(crate) fn next_manager_id() -> u32 {
    NEXT_MANAGER.fetch_add(1, Ordering::Relaxed)
}

/// A client registered with a [`TokenManager`](crate::TokenManager).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId {
    pub(crate) manager: u32,
    pub(crate) index: u32,
}

/// Whose grant a token comes from: the application's own (client credentials) or a user's
/// (the Authorization Code flow), named by the application's own id for that user.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Subject {
    /// The application itself: client credentials.
    App,
    /// A user who granted the application access (Authorization Code flow). The id is the
    /// application's name for that user; it takes part in store keys, so keep it stable.
    User(Arc<str>),
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::App => f.write_str("App"),
            Self::User(user) => write!(f, "User({user:?})"),
        }
    }
}

impl Subject {
    /// The user id, for a user's grant.
    pub fn user(&self) -> Option<&str> {
        match self {
            Self::App => None,
            Self::User(user) => Some(user),
        }
    }
}

/// A grant that yields refresh tokens: bookingtime's client-credentials chain, or a user's
/// grant. Its refresh token feeds the access tokens of every [`TokenKey`] with the same client
/// and subject.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GrantKey {
    pub(crate) client: ClientId,
    pub(crate) subject: Subject,
}

impl GrantKey {
    /// The client.
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// Whose grant it is.
    pub fn subject(&self) -> &Subject {
        &self.subject
    }
}

/// What a cached access token is for: a client, whose grant (the application's or a user's),
/// and for bookingtime an organization. Equal keys share one cache entry and one in-flight
/// request; the client part stands for its whole [`ClientConfig`](crate::ClientConfig), so the
/// cache and the single flight are keyed by exactly the same thing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenKey {
    pub(crate) client: ClientId,
    pub(crate) subject: Subject,
    pub(crate) organization: Option<Arc<str>>,
}

impl TokenKey {
    /// The key of a client's own token (client credentials, no organization).
    pub fn new(client: ClientId) -> Self {
        Self {
            client,
            subject: Subject::App,
            organization: None,
        }
    }

    /// The key of a bookingtime organization's access token (the application's grant).
    pub fn with_organization(client: ClientId, organization: impl Into<Arc<str>>) -> Self {
        Self::new(client).for_organization(organization)
    }

    /// The key of a user's access token (their Authorization Code grant).
    pub fn for_user(client: ClientId, user: impl Into<Arc<str>>) -> Self {
        Self {
            client,
            subject: Subject::User(user.into()),
            organization: None,
        }
    }

    /// The same grant, for one organization.
    pub fn for_organization(mut self, organization: impl Into<Arc<str>>) -> Self {
        self.organization = Some(organization.into());
        self
    }

    /// The client.
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// Whose grant the token comes from.
    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    /// The organization, if any.
    pub fn organization(&self) -> Option<&str> {
        self.organization.as_deref()
    }

    /// The grant whose refresh token feeds this key (for bookingtime and users' keys).
    pub fn grant(&self) -> GrantKey {
        GrantKey {
            client: self.client,
            subject: self.subject.clone(),
        }
    }
}

/// Identifies one token request; hand it back with the response or failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId {
    pub(crate) manager: u32,
    pub(crate) seq: u64,
}

/// Identifies one store operation; hand it back with the store's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreOpId {
    pub(crate) manager: u32,
    pub(crate) seq: u64,
}
