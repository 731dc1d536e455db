//! The store's typed error, and the URL and message sanitizing it relies on.

use std::time::Duration;

use token_store::SealError;

/// Why a store operation failed. Every variant names the Redis endpoint **without** its
/// user-info (no user name, no password, no query string); messages from Redis are included with
/// the password scrubbed out. None of them carries a token.
///
/// A caller treats every variant as "the shared store is unavailable": fall back to in-process
/// single flight (behind a circuit breaker), never as "someone else holds the lease".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL given to the builder is not a usable `redis://` or `rediss://` URL.
    #[error("invalid Redis URL {url}: {reason}")]
    InvalidUrl {
        /// The URL, user-info removed.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Connecting failed or the connection broke: refused, reset, closed, TLS or
    /// authentication failure.
    #[error("Redis at {endpoint} is unreachable: {detail}")]
    Connection {
        /// The endpoint, user-info removed.
        endpoint: String,
        /// What went wrong (password scrubbed).
        detail: String,
    },
    /// Redis did not answer in time (connecting, or waiting for a reply).
    #[error("Redis at {endpoint} did not answer within {after:?} ({stage})")]
    Timeout {
        /// The endpoint, user-info removed.
        endpoint: String,
        /// The timeout that ran out.
        after: Duration,
        /// `"connecting"` or `"waiting for a reply"`.
        stage: &'static str,
    },
    /// Redis answered with an error (a script error, a missing permission, a key of the wrong
    /// type) or with a reply this store does not understand.
    #[error("Redis at {endpoint} answered with an error: {detail}")]
    Protocol {
        /// The endpoint, user-info removed.
        endpoint: String,
        /// The error (password scrubbed).
        detail: String,
    },
    /// The token record could not be encrypted (no randomness from the OS).
    #[error("could not encrypt the token record: {0}")]
    Seal(#[from] SealError),
}

impl StoreError {
    /// Whether this is a [`StoreError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, StoreError::Timeout { .. })
    }

    /// Whether this is a [`StoreError::Connection`].
    pub fn is_connection(&self) -> bool {
        matches!(self, StoreError::Connection { .. })
    }
}

/// `url` with its user-info, query and fragment removed: `rediss://user:pw@host:6380/0?x=y` →
/// `rediss://host:6380/0`. Safe on any input: everything up to the last `@` before the query is
/// user-info (an `@` cannot appear in a host or a path of a valid URL, and a badly encoded
/// password may contain `/`); a string without `://` is not shown at all (it may be a secret
/// pasted in the wrong place).
pub fn redact_url(url: &str) -> String {
    let url = url.trim();
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    let Some(i) = url.find("://") else {
        return "[not a URL]".to_owned();
    };
    let (scheme, rest) = (&url[..i + 3], &url[i + 3..]);
    let rest = match rest.rfind('@') {
        Some(i) => &rest[i + 1..],
        None => rest,
    };
    format!("{scheme}{rest}")
}

/// Where a store's errors come from, and what to scrub out of Redis's messages.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) display: String,
    password: Option<String>,
}

impl Endpoint {
    pub(crate) fn new(url: &str, info: &redis::ConnectionInfo) -> Self {
        Self {
            display: redact_url(url),
            password: info
                .redis_settings()
                .password()
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
        }
    }

    pub(crate) fn scrub(&self, text: &str) -> String {
        match &self.password {
            Some(password) => text.replace(password.as_str(), "[redacted]"),
            None => text.to_owned(),
        }
    }

    pub(crate) fn timeout(&self, after: Duration, stage: &'static str) -> StoreError {
        StoreError::Timeout {
            endpoint: self.display.clone(),
            after,
            stage,
        }
    }

    pub(crate) fn protocol(&self, detail: impl AsRef<str>) -> StoreError {
        StoreError::Protocol {
            endpoint: self.display.clone(),
            detail: self.scrub(detail.as_ref()),
        }
    }

    /// Maps a redis error; `after`/`stage` describe the timeout that applied to the call.
    pub(crate) fn map(
        &self,
        e: &redis::RedisError,
        after: Duration,
        stage: &'static str,
    ) -> StoreError {
        if e.is_timeout() {
            return self.timeout(after, stage);
        }
        if breaks_connection(e) {
            StoreError::Connection {
                endpoint: self.display.clone(),
                detail: self.scrub(&e.to_string()),
            }
        } else {
            self.protocol(e.to_string())
        }
    }
}

/// Whether the connection `e` came from must be thrown away (anything but an error reply from
/// a healthy server).
pub(crate) fn breaks_connection(e: &redis::RedisError) -> bool {
    use redis::ErrorKind;
    if e.is_timeout() || e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        return true;
    }
    matches!(
        e.kind(),
        ErrorKind::Io
            | ErrorKind::AuthenticationFailed
            | ErrorKind::InvalidClientConfig
            | ErrorKind::Parse
            | ErrorKind::RESP3NotSupported
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        let cases = [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "redis://:hunter2@127.0.0.1:6379/0",
                "redis://127.0.0.1:6379/0",
            ),
            (
                "rediss://user:p%40ss@cache.internal:6380",
                "rediss://cache.internal:6380",
            ),
            (
                "rediss://user:p@ss/w@rd@host:1/2?password=x#y",
                "rediss://host:1/2",
            ),
            ("  redis://u:pw@h  ", "redis://h"),
            ("not a url u:pw@h", "[not a URL]"),
            ("hunter2", "[not a URL]"),
            ("", "[not a URL]"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input), want, "{input}");
        }
    }

    #[test]
    fn display_has_no_password() {
        let url = "redis://tokens:hunter2@127.0.0.1:1/0";
        let info = redis::IntoConnectionInfo::into_connection_info(url).unwrap();
        let endpoint = Endpoint::new(url, &info);
        let e = StoreError::Connection {
            endpoint: endpoint.display.clone(),
            detail: endpoint.scrub("WRONGPASS hunter2 nope"),
        };
        let shown = e.to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("tokens"), "{shown}");
        assert_eq!(
            shown,
            "Redis at redis://127.0.0.1:1/0 is unreachable: WRONGPASS [redacted] nope"
        );
    }
}
