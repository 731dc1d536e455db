//! Counting what actually went over the wire, so `--repeat` can show the cache at work.
//!
//! - **Token requests**: the client's driver counts every token request it hands to the
//!   transport (access tokens, bookingtime's refresh-token leg, failed attempts alike):
//!   `TokenClient::driver().token_requests()`.
//! - **API requests**: the API agent handed to the client carries a ureq middleware that counts
//!   every request it sends, including the retry after a 401.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Counts the API requests of one run.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    api_requests: Arc<AtomicUsize>,
}

impl Counters {
    /// How many API requests were sent.
    pub fn api_requests(&self) -> usize {
        self.api_requests.load(Ordering::SeqCst)
    }

    /// The agent for API calls: like `transport-ureq`'s default (HTTP error statuses are
    /// answers, not errors), with `timeout` and the counting middleware.
    pub fn api_agent(&self, timeout: Duration) -> ureq::Agent {
        let count = Arc::clone(&self.api_requests);
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("tokenctl/", env!("CARGO_PKG_VERSION")))
            .middleware(
                move |request: http::Request<ureq::SendBody>,
                      next: ureq::middleware::MiddlewareNext| {
                    count.fetch_add(1, Ordering::SeqCst);
                    next.handle(request)
                },
            )
            .build();
        ureq::Agent::new_with_config(config)
    }
}
