//! Metrics through the `metrics` facade (feature `metrics`; without it every call here is
//! empty and compiles away). Names, all prefixed `booking_tokens_`:
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `token_requests_total` | counter | `provider`, `target` (`access`/`refresh`) | requests sent to token endpoints |
//! | `token_responses_total` | counter | `provider`, `outcome` (`token`, `error`) | fetches finished |
//! | `refreshes_total` | counter | `provider` | requests for a key that still had a token |
//! | `failures_total` | counter | `provider`, `retryable` (`true`/`false`) | fetches that failed (the key backs off) |
//! | `cache_hits_total` | counter | `provider` | tokens served from the cache |
//! | `cache_misses_total` | counter | `provider` | calls that had to ask the lifecycle |
//! | `token_seconds_left` | gauge | `provider`, `organization` | seconds left on a key's cached token, set whenever it changes |
//! | `quota_remaining` | gauge | `provider`, `bucket` (`client.per_hour`, ...) | Auth0 quota left, from the last response |
//! | `store_operations_total` | counter | `outcome` (`ok`, `failed`) | shared-store operations |

#[cfg(feature = "metrics")]
mod imp {
    use token_core::Quota;

    pub(crate) fn token_request(provider: &'static str, target: &'static str) {
        metrics::counter!("booking_tokens_token_requests_total", "provider" => provider, "target" => target)
            .increment(1);
    }

    pub(crate) fn response(provider: &'static str, ok: bool) {
        let outcome = if ok { "token" } else { "error" };
        metrics::counter!("booking_tokens_token_responses_total", "provider" => provider, "outcome" => outcome)
            .increment(1);
    }

    pub(crate) fn refresh(provider: &'static str) {
        metrics::counter!("booking_tokens_refreshes_total", "provider" => provider).increment(1);
    }

    pub(crate) fn failure(provider: &'static str, retryable: bool) {
        let retryable = if retryable { "true" } else { "false" };
        metrics::counter!("booking_tokens_failures_total", "provider" => provider, "retryable" => retryable)
            .increment(1);
    }

    pub(crate) fn miss(provider: &'static str) {
        metrics::counter!("booking_tokens_cache_misses_total", "provider" => provider).increment(1);
    }

    pub(crate) fn seconds_left(provider: &'static str, organization: Option<&str>, secs: f64) {
        let organization = organization.unwrap_or("").to_owned();
        metrics::gauge!("booking_tokens_token_seconds_left", "provider" => provider, "organization" => organization)
            .set(secs);
    }

    pub(crate) fn quota(provider: &'static str, quota: Option<&Quota>) {
        for (bucket, b) in quota.into_iter().flat_map(Quota::buckets) {
            if let Some(remaining) = b.remaining {
                metrics::gauge!("booking_tokens_quota_remaining", "provider" => provider, "bucket" => bucket)
                    .set(remaining as f64);
            }
        }
    }

    pub(crate) fn store_operation(ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        metrics::counter!("booking_tokens_store_operations_total", "outcome" => outcome)
            .increment(1);
    }

    /// A key's cache-hit counter, registered once (a hit only increments it).
    pub(crate) struct HitCounter(metrics::Counter);

    impl HitCounter {
        pub(crate) fn new(provider: &'static str) -> Self {
            Self(metrics::counter!("booking_tokens_cache_hits_total", "provider" => provider))
        }

        #[inline]
        pub(crate) fn bump(&self) {
            self.0.increment(1);
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod imp {
    use token_core::Quota;

    #[inline]
    pub(crate) fn token_request(_: &'static str, _: &'static str) {}
    #[inline]
    pub(crate) fn response(_: &'static str, _: bool) {}
    #[inline]
    pub(crate) fn refresh(_: &'static str) {}
    #[inline]
    pub(crate) fn failure(_: &'static str, _: bool) {}
    #[inline]
    pub(crate) fn miss(_: &'static str) {}
    #[inline]
    pub(crate) fn seconds_left(_: &'static str, _: Option<&str>, _: f64) {}
    #[inline]
    pub(crate) fn quota(_: &'static str, _: Option<&Quota>) {}
    #[inline]
    pub(crate) fn store_operation(_: bool) {}

    pub(crate) struct HitCounter;

    impl HitCounter {
        pub(crate) fn new(_: &'static str) -> Self {
            Self
        }

        #[inline]
        pub(crate) fn bump(&self) {}
    }
}

pub(crate) use imp::*;
