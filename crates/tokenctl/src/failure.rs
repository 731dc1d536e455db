//! Exit codes, and turning the libraries' errors into one line a person understands.

use std::io::Read as _;

use crate::cli::ProviderName;
use http::StatusCode;
use token_core::{ConfigError, ErrorCode, TransportErrorKind};

/// The process exit codes (also listed in `--help`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success (also used to end quietly when stdout is a closed pipe).
    Success = 0,
    /// Anything not covered below, e.g. a non-2xx API answer other than 401/403/5xx.
    Failure = 1,
    /// Usage or configuration error (clap's own usage errors exit 2 as well).
    Usage = 2,
    /// Credentials, scope, grant or request rejected by the token endpoint; or the API
    /// answered 401/403.
    Rejected = 3,
    /// Endpoint unreachable, timed out, or answering 5xx / 429 / 408.
    Unavailable = 4,
    /// The token endpoint answered, but not with a usable token response.
    Malformed = 5,
}

/// A failed run: the exit code and the message (printed as `tokenctl: {message}`).
#[derive(Debug)]
pub struct Fail {
    /// The exit code.
    pub exit: Exit,
    /// One line, free of secrets; empty for a quiet exit.
    pub message: String,
}

impl Fail {
    /// A failure with `exit` and `message`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    /// A usage or configuration error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }
}

/// A configuration error (exit 2), with a hint for the common ones.
pub fn config_error(error: &ConfigError, provider: ProviderName) -> Fail {
    let prefix = provider.env_prefix();
    let hint = match error {
        ConfigError::MissingEnv(_) | ConfigError::InvalidEnv(_)
            if provider.0 == token_core::Provider::BookingtimeModule =>
        {
            format!(" (export {prefix}_CLIENT_ID, or pass --client-id)")
        }
        ConfigError::MissingEnv(_) | ConfigError::InvalidEnv(_) => format!(
            " (export {prefix}_CLIENT_ID and {prefix}_CLIENT_SECRET, \
             or pass --client-id and --client-secret-stdin)"
        ),
        ConfigError::InsecureUrl { url } => {
            // Said in this program's terms: the flag, and what would cross in clear text.
            return Fail::usage(format!(
                "`{url}` is plain http to a host that is not loopback: the client secret or the \
                 token would cross the network in clear text (use https, or pass \
                 --allow-insecure-http if you really mean it)"
            ));
        }
        _ => String::new(),
    };
    Fail::usage(format!("{}{hint}", one_line(&error.to_string())))
}

/// A failure to get a token from `endpoint`.
pub fn token_error(error: &transport_ureq::Error, endpoint: &str) -> Fail {
    use transport_ureq::Error as E;
    match error {
        E::Transport(failure) => transport_failure(failure.kind(), &failure.to_string(), endpoint),
        E::Token(error) => core_error(error, endpoint),
        E::Misuse(misuse) => Fail::new(Exit::Failure, format!("internal error: {misuse}")),
        other => Fail::new(
            Exit::Failure,
            format!(
                "getting a token from {endpoint} failed: {}",
                one_line(&other.to_string())
            ),
        ),
    }
}

/// A failure of `ClientHandle::call`: the API request itself, or renewing the token after a 401.
pub fn call_error(error: &transport_ureq::Error, url: &http::Uri, endpoint: &str) -> Fail {
    match error {
        transport_ureq::Error::Transport(failure) => {
            let exit = match failure.kind() {
                TransportErrorKind::BodyTooLarge => Exit::Failure,
                _ => Exit::Unavailable,
            };
            Fail::new(
                exit,
                format!("calling {url} failed: {}", one_line(&failure.to_string())),
            )
        }
        other => token_error(other, endpoint),
    }
}

fn transport_failure(kind: TransportErrorKind, text: &str, endpoint: &str) -> Fail {
    let exit = match kind {
        TransportErrorKind::BodyTooLarge => Exit::Malformed,
        _ => Exit::Unavailable,
    };
    Fail::new(
        exit,
        format!("token endpoint {endpoint} unreachable: {}", one_line(text)),
    )
}

/// Classifies a token-core error (see [`Exit`]). Its text is already sanitized by token-core
/// (server text trimmed, the client secret redacted).
fn core_error(error: &token_core::Error, endpoint: &str) -> Fail {
    use token_core::Error as E;
    let text = one_line(&error.to_string());
    match error {
        E::Config(config) => Fail::usage(one_line(&config.to_string())),
        E::Transport(failure) => transport_failure(failure.kind(), &failure.to_string(), endpoint),
        E::Malformed { .. } | E::BodyTooLarge { .. } => {
            Fail::new(Exit::Malformed, format!("{text} (from {endpoint})"))
        }
        E::OAuth(oauth) => {
            let exit = if error.is_credentials_rejected() || error.is_grant_rejected() {
                Exit::Rejected
            } else if error.is_retryable() {
                Exit::Unavailable
            } else if matches!(
                oauth.code,
                ErrorCode::InvalidRequest | ErrorCode::UnsupportedGrantType
            ) || matches!(
                oauth.status,
                StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ) {
                Exit::Rejected
            } else {
                // An error body with, say, a 404: this URL is not a token endpoint.
                Exit::Malformed
            };
            let mut message = format!(
                "{endpoint} refused: HTTP {}, error `{}`",
                oauth.status.as_u16(),
                oauth.code
            );
            if let Some(description) = &oauth.description {
                message.push_str(&format!(", error_description `{description}`"));
            }
            match exit {
                Exit::Unavailable => message.push_str(" (try again later)"),
                Exit::Malformed => message.push_str(" (is this URL the token endpoint?)"),
                _ => {}
            }
            Fail::new(exit, one_line(&message))
        }
        E::Http(http) => {
            let exit = if error.is_credentials_rejected() {
                Exit::Rejected
            } else if error.is_retryable() {
                Exit::Unavailable
            } else {
                Exit::Malformed
            };
            let redirect = if http.status.is_redirection() {
                " (redirects are not followed: the request carries the client secret)"
            } else {
                ""
            };
            Fail::new(exit, format!("{text} (from {endpoint}){redirect}"))
        }
        _ => Fail::new(Exit::Failure, format!("{text} (from {endpoint})")),
    }
}

/// The exit code and message for an API answer that is not 2xx.
pub fn api_status(status: StatusCode, url: &http::Uri, excerpt: &str) -> Fail {
    let exit = match status.as_u16() {
        401 | 403 => Exit::Rejected,
        408 | 429 | 500..=599 => Exit::Unavailable,
        _ => Exit::Failure,
    };
    let mut message = format!("{url} answered HTTP {}", status.as_u16());
    if let Some(reason) = status.canonical_reason() {
        message.push_str(&format!(" {reason}"));
    }
    if status == StatusCode::UNAUTHORIZED {
        message.push_str(" even after a new token was fetched and the call retried");
    }
    if !excerpt.is_empty() {
        message.push_str(&format!(": {excerpt}"));
    }
    Fail::new(exit, message)
}

/// The start of an error response body, on one line, secrets redacted.
pub fn body_excerpt(body: ureq::Body, redact: &[String]) -> String {
    let mut bytes = Vec::new();
    let _ = body
        .into_with_config()
        .limit(4096)
        .reader()
        .take(4096)
        .read_to_end(&mut bytes);
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    for secret in redact.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret.as_str(), "[redacted]");
    }
    let text = one_line(&text);
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Collapses whitespace and drops control characters, so a message stays on one line.
pub fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_collapses_whitespace_and_controls() {
        assert_eq!(one_line(" a\n\tb\u{7}c  "), "a b c");
    }

    #[test]
    fn api_statuses_map_to_exit_codes() {
        let url: http::Uri = "https://api.example.com/x".parse().unwrap();
        let exit = |s: u16| api_status(StatusCode::from_u16(s).unwrap(), &url, "").exit;
        assert_eq!(exit(401), Exit::Rejected);
        assert_eq!(exit(403), Exit::Rejected);
        assert_eq!(exit(503), Exit::Unavailable);
        assert_eq!(exit(429), Exit::Unavailable);
        assert_eq!(exit(404), Exit::Failure);
    }
}
