//! The transports' error type.

use token_core::{ApiMisuse, TransportFailure};

/// A transport's error: typed, `Send + Sync`, `Clone`, and free of secrets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token endpoint (or API) could not be reached, timed out or broke the connection.
    #[error("transport: {0}")]
    Transport(TransportFailure),
    /// The token endpoint answered without a usable token, or the configuration cannot work.
    #[error(transparent)]
    Token(token_core::Error),
    /// The API was misused (e.g. an organization for a provider without organizations).
    #[error(transparent)]
    Misuse(#[from] ApiMisuse),
    /// An authorization (the Authorization Code flow) could not be started or completed.
    #[error(transparent)]
    Authorization(#[from] token_core::AuthorizationError),
}

impl From<token_core::Error> for Error {
    fn from(e: token_core::Error) -> Self {
        match e {
            token_core::Error::Transport(t) => Self::Transport(t),
            other => Self::Token(other),
        }
    }
}

impl From<token_core::StartAuthorizationError> for Error {
    fn from(e: token_core::StartAuthorizationError) -> Self {
        match e {
            token_core::StartAuthorizationError::Misuse(m) => Self::Misuse(m),
            token_core::StartAuthorizationError::Authorization(a) => Self::Authorization(a),
            _ => Self::Token(token_core::Error::AuthorizationRequired),
        }
    }
}

impl From<token_core::ConfigError> for Error {
    fn from(e: token_core::ConfigError) -> Self {
        Self::Token(token_core::Error::Config(e))
    }
}

impl Error {
    /// Whether retrying later can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(t) => token_core::Error::Transport(t.clone()).is_retryable(),
            Self::Token(e) => e.is_retryable(),
            Self::Misuse(_) | Self::Authorization(_) => false,
        }
    }

    /// Whether the endpoint rejected the credentials or permissions.
    pub fn is_credentials_rejected(&self) -> bool {
        matches!(self, Self::Token(e) if e.is_credentials_rejected())
    }

    /// Whether only the user can fix this, by authorizing the application (again).
    pub fn is_authorization_required(&self) -> bool {
        matches!(
            self,
            Self::Token(token_core::Error::AuthorizationRequired) | Self::Authorization(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_map_to_the_transport_variant() {
        let f = TransportFailure::new(token_core::TransportErrorKind::Connect, "refused");
        assert_eq!(
            Error::from(token_core::Error::Transport(f.clone())),
            Error::Transport(f)
        );
    }
}
