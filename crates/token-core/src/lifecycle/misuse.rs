//! Misuse of the lifecycle API: the caller broke the contract. Never a panic.

use crate::lifecycle::ids::{RequestId, StoreOpId};

/// The caller broke the API contract. Never a panic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiMisuse {
    /// A response or failure was reported for a request id that was never issued (or was
    /// already answered).
    #[error("request id {0:?} was never issued or is already answered")]
    UnknownRequest(RequestId),
    /// A store reply was reported for an operation id that was never issued.
    #[error("store operation id {0:?} was never issued")]
    UnknownStoreOp(StoreOpId),
    /// A [`TokenKey`](crate::TokenKey) names a client this manager never registered.
    #[error("token key names a client this manager never registered")]
    UnknownClient,
    /// The client's flow needs an organization (bookingtime) and the key has none.
    #[error("this client needs an organization id (bookingtime tokens are per organization)")]
    OrganizationRequired,
    /// The key has an organization but the client's flow has no organizations.
    #[error("this client has no organizations; use a key without one")]
    OrganizationNotSupported,
}
