//! The tracing span of one token request, the same for both transports.

use token_core::TokenRequest;

/// A span for `send`: provider, what it fetches, the organization; `status` is recorded when
/// the response arrives. Never a secret: no body, no header, no query string.
pub fn request_span(send: &TokenRequest) -> tracing::Span {
    tracing::info_span!(
        "token_request",
        provider = %send.provider,
        target = send.target.kind(),
        organization = send.target.organization(),
        status = tracing::field::Empty,
    )
}
