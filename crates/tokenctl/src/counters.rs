//! Counting what actually went over the wire, so `--repeat` can show the cache at work.
//!
//! - **Token requests**: `transport-ureq` opens one `token_request` tracing span per token
//!   request it sends (access tokens, bookingtime's refresh-token leg, failed attempts alike).
//!   A minimal [`tracing::Subscriber`] counts those spans and ignores everything else, so
//!   nothing is logged.
//! - **API requests**: the API agent handed to the client carries a ureq middleware that counts
//!   every request it sends, including the retry after a 401.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tracing::subscriber::Interest;
use tracing::{Event, Metadata, span};

/// The name and target of the span `transport-ureq` opens around each token request.
const TOKEN_SPAN: &str = "token_request";
const TOKEN_SPAN_TARGET: &str = "transport_ureq";

/// Shared counters of one run.
#[derive(Clone, Debug)]
pub struct Counters {
    token_requests: Arc<AtomicUsize>,
    api_requests: Arc<AtomicUsize>,
}

impl Counters {
    /// Installs the counting subscriber as the process's global default. Call it once.
    pub fn install() -> Self {
        let counters = Self {
            token_requests: Arc::new(AtomicUsize::new(0)),
            api_requests: Arc::new(AtomicUsize::new(0)),
        };
        let subscriber = SpanCounter {
            count: Arc::clone(&counters.token_requests),
            next_id: AtomicU64::new(1),
        };
        // Fails only if a subscriber is already set, which this program never does twice.
        let _ = tracing::subscriber::set_global_default(subscriber);
        counters
    }

    /// How many token requests were sent.
    pub fn token_requests(&self) -> usize {
        self.token_requests.load(Ordering::SeqCst)
    }

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

/// Counts `transport-ureq`'s token request spans; records nothing else.
struct SpanCounter {
    count: Arc<AtomicUsize>,
    next_id: AtomicU64,
}

fn is_token_span(metadata: &Metadata<'_>) -> bool {
    metadata.is_span()
        && metadata.name() == TOKEN_SPAN
        && metadata.target().starts_with(TOKEN_SPAN_TARGET)
}

impl tracing::Subscriber for SpanCounter {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if is_token_span(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        is_token_span(metadata)
    }

    fn new_span(&self, attributes: &span::Attributes<'_>) -> span::Id {
        if is_token_span(attributes.metadata()) {
            self.count.fetch_add(1, Ordering::SeqCst);
        }
        // Ids must be non-zero; they are never looked up again.
        span::Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed).max(1))
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}
