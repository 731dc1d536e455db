//! Auth0's client (and organization) quotas, as the Bookable mounts announce them:
//! `Auth0-Client-Quota-Limit: b=per_hour;q=..;r=..;t=..,b=per_day;q=..;r=..;t=..`, the
//! `X-RateLimit-*` headers, and 429 once a bucket is empty.
//!
//! Auth0 resets its buckets at the UTC hour and day. The simulator anchors each window at
//! the moment the quota was configured (or the simulator started) instead, so a test that
//! counts tokens down never sees a bucket refill mid-test because it happened to cross an
//! hour boundary.

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::Quota;

const HOUR_MS: i128 = 3_600_000;
const DAY_MS: i128 = 86_400_000;

static CLIENT_QUOTA: HeaderName = HeaderName::from_static("auth0-client-quota-limit");
static ORGANIZATION_QUOTA: HeaderName = HeaderName::from_static("auth0-organization-quota-limit");
static RATE_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static RATE_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static RATE_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// One bucket: a quota per fixed window.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    quota: u64,
    used: u64,
    window_start_ms: i128,
    window_ms: i128,
}

impl Bucket {
    fn new(quota: u64, window_ms: i128, now_ms: i128) -> Bucket {
        Bucket {
            quota,
            used: 0,
            window_start_ms: now_ms,
            window_ms,
        }
    }

    /// Starts a new window (and forgets the usage) once the current one has passed.
    fn roll(&mut self, now_ms: i128) {
        let elapsed = now_ms - self.window_start_ms;
        if elapsed >= self.window_ms {
            self.window_start_ms += elapsed / self.window_ms * self.window_ms;
            self.used = 0;
        } else if elapsed < 0 {
            // The wall clock went back: the window restarts, the usage stays.
            self.window_start_ms = now_ms;
        }
    }

    fn remaining(&self) -> u64 {
        self.quota.saturating_sub(self.used)
    }

    fn view(&self, now_ms: i128) -> BucketView {
        let left_ms = (self.window_start_ms + self.window_ms - now_ms).max(0);
        BucketView {
            quota: self.quota,
            remaining: self.remaining(),
            // Rounded up: "0 seconds until reset" only once it has reset.
            reset_secs: u64::try_from((left_ms + 999) / 1000).unwrap_or(u64::MAX),
        }
    }
}

/// A per-hour and a per-day bucket.
#[derive(Clone, Copy, Debug)]
struct Buckets {
    hour: Bucket,
    day: Bucket,
}

impl Buckets {
    fn new(quota: Quota, now_ms: i128) -> Buckets {
        Buckets {
            hour: Bucket::new(quota.per_hour, HOUR_MS, now_ms),
            day: Bucket::new(quota.per_day, DAY_MS, now_ms),
        }
    }

    fn roll(&mut self, now_ms: i128) {
        self.hour.roll(now_ms);
        self.day.roll(now_ms);
    }

    fn exhausted(&self) -> bool {
        self.hour.remaining() == 0 || self.day.remaining() == 0
    }

    fn spend(&mut self) {
        self.hour.used = self.hour.used.saturating_add(1);
        self.day.used = self.day.used.saturating_add(1);
    }

    fn view(&self, now_ms: i128) -> [BucketView; 2] {
        [self.hour.view(now_ms), self.day.view(now_ms)]
    }
}

/// A bucket as announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BucketView {
    quota: u64,
    remaining: u64,
    reset_secs: u64,
}

/// The quota of one provider.
#[derive(Debug)]
pub(crate) struct QuotaState {
    client: Buckets,
    organization: Option<Buckets>,
}

/// What the buckets said when a token was asked for.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    now_ms: i128,
    client: [BucketView; 2],
    organization: Option<[BucketView; 2]>,
}

/// The outcome of asking for one token of quota.
pub(crate) enum QuotaOutcome {
    /// Spent; the snapshot is taken after spending.
    Granted(Snapshot),
    /// A bucket is empty; nothing was spent.
    Exhausted(Snapshot),
}

impl QuotaState {
    pub(crate) fn new(client: Quota, now_ms: i128) -> QuotaState {
        QuotaState {
            client: Buckets::new(client, now_ms),
            organization: None,
        }
    }

    pub(crate) fn set_client(&mut self, quota: Quota, now_ms: i128) {
        self.client = Buckets::new(quota, now_ms);
    }

    pub(crate) fn set_organization(&mut self, quota: Option<Quota>, now_ms: i128) {
        self.organization = quota.map(|q| Buckets::new(q, now_ms));
    }

    pub(crate) fn take(&mut self, now_ms: i128) -> QuotaOutcome {
        self.client.roll(now_ms);
        if let Some(org) = &mut self.organization {
            org.roll(now_ms);
        }
        let exhausted = self.client.exhausted() || self.organization.is_some_and(|o| o.exhausted());
        if !exhausted {
            self.client.spend();
            if let Some(org) = &mut self.organization {
                org.spend();
            }
        }
        let snapshot = Snapshot {
            now_ms,
            client: self.client.view(now_ms),
            organization: self.organization.map(|o| o.view(now_ms)),
        };
        if exhausted {
            QuotaOutcome::Exhausted(snapshot)
        } else {
            QuotaOutcome::Granted(snapshot)
        }
    }
}

/// `b=per_hour;q=..;r=..;t=..,b=per_day;q=..;r=..;t=..`
fn quota_header(buckets: &[BucketView; 2]) -> String {
    let [hour, day] = buckets;
    format!(
        "b=per_hour;q={};r={};t={},b=per_day;q={};r={};t={}",
        hour.quota, hour.remaining, hour.reset_secs, day.quota, day.remaining, day.reset_secs
    )
}

impl Snapshot {
    /// The client bucket that binds: the one with the fewest tokens left (the hourly one
    /// on a tie, as it resets sooner).
    fn binding(&self) -> BucketView {
        let [hour, day] = self.client;
        if day.remaining < hour.remaining {
            day
        } else {
            hour
        }
    }

    /// Seconds until a token can be issued again: the latest reset among the empty
    /// buckets (at least 1).
    pub(crate) fn retry_after_secs(&self) -> u64 {
        self.client
            .iter()
            .chain(self.organization.iter().flatten())
            .filter(|b| b.remaining == 0)
            .map(|b| b.reset_secs)
            .max()
            .unwrap_or(0)
            .max(1)
    }

    /// Adds the quota and rate-limit headers (and `Retry-After` if `with_retry_after`).
    pub(crate) fn apply(&self, headers: &mut HeaderMap, with_retry_after: bool) {
        let mut put = |name: &HeaderName, value: String| {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name.clone(), value);
            }
        };
        put(&CLIENT_QUOTA, quota_header(&self.client));
        if let Some(org) = &self.organization {
            put(&ORGANIZATION_QUOTA, quota_header(org));
        }
        let binding = self.binding();
        let now_secs = u64::try_from(self.now_ms.div_euclid(1000)).unwrap_or(0);
        put(&RATE_LIMIT, binding.quota.to_string());
        put(&RATE_REMAINING, binding.remaining.to_string());
        put(
            &RATE_RESET,
            now_secs.saturating_add(binding.reset_secs).to_string(),
        );
        if with_retry_after {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(self.retry_after_secs()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i128 = 1_700_000_000_000;

    fn granted(outcome: QuotaOutcome) -> Snapshot {
        match outcome {
            QuotaOutcome::Granted(s) => s,
            QuotaOutcome::Exhausted(s) => panic!("exhausted: {s:?}"),
        }
    }

    #[test]
    fn counts_down_then_refuses_then_refills() {
        let mut q = QuotaState::new(Quota::new(2, 5), T0);
        let s = granted(q.take(T0));
        assert_eq!(s.client[0].remaining, 1);
        assert_eq!(s.client[1].remaining, 4);
        assert_eq!(s.client[0].reset_secs, 3600);
        let s = granted(q.take(T0 + 1500));
        assert_eq!(s.client[0].remaining, 0);
        assert_eq!(s.client[0].reset_secs, 3599);
        let QuotaOutcome::Exhausted(s) = q.take(T0 + 2000) else {
            panic!("a third token within the hour")
        };
        assert_eq!(s.retry_after_secs(), 3598);
        // The next hour: the hourly bucket refills, the daily one keeps counting.
        let s = granted(q.take(T0 + HOUR_MS));
        assert_eq!(s.client[0].remaining, 1);
        assert_eq!(s.client[1].remaining, 2);
        assert_eq!(s.client[1].reset_secs, 82_800);
    }

    #[test]
    fn the_day_bucket_binds_when_it_has_less_left() {
        let mut q = QuotaState::new(Quota::new(10, 1), T0);
        let s = granted(q.take(T0));
        assert_eq!(s.binding().quota, 1);
        let QuotaOutcome::Exhausted(s) = q.take(T0) else {
            panic!("daily quota is 1")
        };
        assert_eq!(s.retry_after_secs(), 86_400);
        let mut headers = HeaderMap::new();
        s.apply(&mut headers, true);
        assert_eq!(
            headers[&CLIENT_QUOTA],
            "b=per_hour;q=10;r=9;t=3600,b=per_day;q=1;r=0;t=86400"
        );
        assert_eq!(headers[&RATE_LIMIT], "1");
        assert_eq!(headers[&RATE_REMAINING], "0");
        assert_eq!(
            headers[&RATE_RESET],
            (1_700_000_000u64 + 86_400).to_string()
        );
        assert_eq!(headers[header::RETRY_AFTER], "86400");
    }

    #[test]
    fn organization_buckets_count_too() {
        let mut q = QuotaState::new(Quota::new(10, 10), T0);
        q.set_organization(Some(Quota::new(1, 10)), T0);
        let s = granted(q.take(T0));
        assert_eq!(s.organization.unwrap()[0].remaining, 0);
        assert!(matches!(q.take(T0), QuotaOutcome::Exhausted(_)));
        let mut headers = HeaderMap::new();
        s.apply(&mut headers, false);
        assert!(headers.contains_key(&ORGANIZATION_QUOTA));
        assert!(!headers.contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn a_clock_going_back_refills_nothing() {
        let mut q = QuotaState::new(Quota::new(1, 1), T0);
        granted(q.take(T0));
        let QuotaOutcome::Exhausted(s) = q.take(T0 - 10_000) else {
            panic!("no refill from a clock going back")
        };
        assert_eq!(s.client[0].reset_secs, 3600);
    }
}
