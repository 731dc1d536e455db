//! Auth0's quota and rate-limit headers (Bookable runs on Auth0, which meters machine-to-machine
//! tokens): parsed from every token response and error, success or 429.
//!
//! ```text
//! Auth0-Client-Quota-Limit / Auth0-Organization-Quota-Limit = bucket *("," bucket)
//! bucket = "b=" ("per_hour" / "per_day") *(";" ("q" / "r" / "t") "=" 1*DIGIT)
//! X-RateLimit-Limit, X-RateLimit-Remaining: integers; X-RateLimit-Reset: Unix seconds
//! ```
//! `q` is the quota, `r` what remains, `t` the seconds until the bucket resets. The parser is
//! lenient where real servers and SDK tests differ (a missing `b=` prefix, unknown keys,
//! spaces, empty parts) and never panics: a bucket it cannot read is skipped.

use std::time::Duration;

use http::HeaderMap;

/// One quota bucket (`b=per_hour;q=10;r=7;t=3540`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Bucket {
    /// `q`: the quota.
    pub quota: Option<u64>,
    /// `r`: what remains of it.
    pub remaining: Option<u64>,
    /// `t`: seconds until the bucket resets.
    pub reset_secs: Option<u64>,
}

impl Bucket {
    /// Whether it is used up (`r=0`).
    pub fn exhausted(&self) -> bool {
        self.remaining == Some(0)
    }

    /// Whether less than a tenth of the quota remains (or none).
    pub fn low(&self) -> bool {
        match (self.quota, self.remaining) {
            (Some(q), Some(r)) => r.saturating_mul(10) < q,
            (None, Some(0)) => true,
            _ => false,
        }
    }
}

/// The buckets of one quota header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QuotaBuckets {
    /// `b=per_hour`.
    pub per_hour: Option<Bucket>,
    /// `b=per_day`.
    pub per_day: Option<Bucket>,
}

impl QuotaBuckets {
    /// Reads a header value. Buckets of other kinds are ignored; a repeated kind keeps the
    /// first.
    pub fn parse(value: &str) -> Self {
        let mut out = Self::default();
        for part in value.split(',') {
            let mut kind = None;
            let mut bucket = Bucket::default();
            let mut any = false;
            for (i, field) in part.split(';').map(str::trim).enumerate() {
                match field.split_once('=') {
                    Some((key, val)) => {
                        let (key, val) = (key.trim(), val.trim());
                        let slot = match key {
                            "b" => {
                                kind = Some(val);
                                continue;
                            }
                            "q" => &mut bucket.quota,
                            "r" => &mut bucket.remaining,
                            "t" => &mut bucket.reset_secs,
                            _ => continue, // unknown keys are ignored
                        };
                        *slot = val.parse().ok();
                        any = true;
                    }
                    // Without the `b=` prefix the kind comes first, bare (`per_hour;q=…`).
                    None if i == 0 && !field.is_empty() => kind = Some(field),
                    None => {}
                }
            }
            if !any {
                continue;
            }
            let slot = match kind {
                Some("per_hour") => &mut out.per_hour,
                Some("per_day") => &mut out.per_day,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(bucket);
            }
        }
        out
    }

    /// The buckets present.
    pub fn buckets(&self) -> impl Iterator<Item = (&'static str, &Bucket)> {
        [("per_hour", &self.per_hour), ("per_day", &self.per_day)]
            .into_iter()
            .filter_map(|(name, b)| b.as_ref().map(|b| (name, b)))
    }

    fn is_empty(&self) -> bool {
        self.per_hour.is_none() && self.per_day.is_none()
    }
}

/// `X-RateLimit-*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// `X-RateLimit-Limit`.
    pub limit: Option<u64>,
    /// `X-RateLimit-Remaining`.
    pub remaining: Option<u64>,
    /// `X-RateLimit-Reset`: when the window resets, in Unix seconds.
    pub reset_at: Option<u64>,
}

/// What a response said about the client's quota and rate limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Quota {
    /// `Auth0-Client-Quota-Limit`.
    pub client: Option<QuotaBuckets>,
    /// `Auth0-Organization-Quota-Limit`.
    pub organization: Option<QuotaBuckets>,
    /// `X-RateLimit-Limit` / `-Remaining` / `-Reset`.
    pub rate_limit: Option<RateLimit>,
}

impl Quota {
    /// Reads the headers; `None` when none of them is present (or readable).
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let buckets = |name: &str| {
            text(name)
                .map(QuotaBuckets::parse)
                .filter(|b| !b.is_empty())
        };
        let number = |name: &str| text(name).and_then(|v| v.trim().parse::<u64>().ok());
        let rate_limit = RateLimit {
            limit: number("x-ratelimit-limit"),
            remaining: number("x-ratelimit-remaining"),
            reset_at: number("x-ratelimit-reset"),
        };
        let quota = Self {
            client: buckets("auth0-client-quota-limit"),
            organization: buckets("auth0-organization-quota-limit"),
            rate_limit: (rate_limit != RateLimit::default()).then_some(rate_limit),
        };
        (quota != Self::default()).then_some(quota)
    }

    /// Every bucket, named `client.per_hour`, `organization.per_day`, ...
    pub fn buckets(&self) -> impl Iterator<Item = (String, &Bucket)> {
        let client = self
            .client
            .iter()
            .flat_map(|b| b.buckets().map(|(n, b)| (format!("client.{n}"), b)));
        let organization = self
            .organization
            .iter()
            .flat_map(|b| b.buckets().map(|(n, b)| (format!("organization.{n}"), b)));
        client.chain(organization)
    }

    /// How long until every exhausted bucket has reset (the longest `t` of a bucket with
    /// `r=0`), if any is exhausted: a 429 for quota must not be retried before.
    pub fn exhausted_for(&self) -> Option<Duration> {
        self.buckets()
            .filter(|(_, b)| b.exhausted())
            .filter_map(|(_, b)| b.reset_secs)
            .max()
            .map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn auth0_examples() {
        let b = QuotaBuckets::parse("b=per_hour;q=10;r=7;t=3540,b=per_day;q=50;r=47;t=43200");
        let hour = b.per_hour.unwrap();
        assert_eq!(
            (hour.quota, hour.remaining, hour.reset_secs),
            (Some(10), Some(7), Some(3540))
        );
        let day = b.per_day.unwrap();
        assert_eq!(
            (day.quota, day.remaining, day.reset_secs),
            (Some(50), Some(47), Some(43200))
        );
        let b = QuotaBuckets::parse("b=per_hour;q=2;r=1;t=924");
        assert_eq!(b.per_hour.unwrap().remaining, Some(1));
        assert!(b.per_day.is_none());
    }

    #[test]
    fn lenient_where_servers_differ() {
        // No `b=` prefix, spaces, unknown keys, empty parts, junk.
        let b = QuotaBuckets::parse(" per_hour; q=10 ;r=1;t=5;x=9 ,, per_day;q=nope;r=3 ");
        assert_eq!(b.per_hour.unwrap().quota, Some(10));
        assert_eq!(b.per_day.unwrap().quota, None);
        assert_eq!(b.per_day.unwrap().remaining, Some(3));
        for junk in ["", ",", ";;;", "b=", "b=per_week;q=1", "===", "b=per_hour"] {
            let b = QuotaBuckets::parse(junk);
            assert!(b.per_hour.is_none() && b.per_day.is_none(), "{junk}");
        }
        assert_eq!(
            QuotaBuckets::parse("b=per_hour;q=99999999999999999999999")
                .per_hour
                .unwrap()
                .quota,
            None
        );
    }

    #[test]
    fn headers_and_exhaustion() {
        let q = Quota::from_headers(&headers(&[
            (
                "Auth0-Client-Quota-Limit",
                "b=per_hour;q=10;r=0;t=924,b=per_day;q=50;r=40;t=43200",
            ),
            ("X-RateLimit-Limit", "30"),
            ("X-RateLimit-Remaining", "29"),
            ("X-RateLimit-Reset", "1700000000"),
        ]))
        .unwrap();
        assert_eq!(q.exhausted_for(), Some(Duration::from_secs(924)));
        assert!(q.client.as_ref().unwrap().per_hour.unwrap().low());
        assert!(!q.client.as_ref().unwrap().per_day.unwrap().low());
        assert_eq!(
            q.rate_limit,
            Some(RateLimit {
                limit: Some(30),
                remaining: Some(29),
                reset_at: Some(1_700_000_000)
            })
        );
        assert_eq!(q.organization, None);
        assert_eq!(Quota::from_headers(&HeaderMap::new()), None);
        assert_eq!(
            Quota::from_headers(&headers(&[("X-RateLimit-Limit", "many")])),
            None
        );
    }
}
