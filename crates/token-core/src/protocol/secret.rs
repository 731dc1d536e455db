//! Secret-carrying newtypes.
//!
//! Every type here prints `[redacted]` from `Debug` and has no `Display`; the only way to the
//! text is an explicit, greppable method (`expose_secret` / `secret`).

use std::fmt;
use std::sync::Arc;

/// A client secret. `Debug` prints `ClientSecret([redacted])`; read it with
/// [`ClientSecret::expose_secret`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret text. Call it only where the secret goes on the wire.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string (bookingtime's Module API sends none).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret([redacted])")
    }
}

/// Defines a cheaply clonable (`Arc<str>`) redacted token newtype.
macro_rules! redacted_token {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Wraps token text.
            pub fn new(token: impl Into<Arc<str>>) -> Self {
                Self(token.into())
            }

            /// The token text. Call it only where the token goes on the wire.
            pub fn secret(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

redacted_token!(
    /// An OAuth 2.0 access token. Clones share one allocation. `Debug` prints
    /// `AccessToken([redacted])`; read it with [`AccessToken::secret`].
    AccessToken
);

redacted_token!(
    /// An OAuth 2.0 refresh token (bookingtime's 30-day token). `Debug` prints
    /// `RefreshToken([redacted])`; read it with [`RefreshToken::secret`].
    RefreshToken
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_secret() {
        let s = ClientSecret::new("hunter2");
        let a = AccessToken::new("eyJ.access");
        let r = RefreshToken::new("eyJ.refresh");
        let all = format!("{s:?} {a:?} {r:?} {:#?}", (&s, &a, &r));
        assert!(!all.contains("hunter2"));
        assert!(!all.contains("eyJ"));
        assert!(all.contains("[redacted]"));
        assert_eq!(s.expose_secret(), "hunter2");
        assert_eq!(a.secret(), "eyJ.access");
        assert_eq!(r.secret(), "eyJ.refresh");
    }
}
