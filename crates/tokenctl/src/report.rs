//! What `tokenctl token` prints: a readable summary, or one JSON object.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use serde_json::{Map, Value, json};
use token_core::{Bucket, LifetimeSource, Quota, QuotaBuckets, RateLimit, Scopes, Token};

use crate::time;

/// How many characters of the token the summary shows.
const SHOWN_CHARS: usize = 8;

/// Everything a report needs about one fetched token.
pub struct TokenInfo<'a> {
    /// The provider as named on the command line.
    pub provider: &'a str,
    /// The token endpoint.
    pub endpoint: &'a str,
    /// The bookingtime organization, if any.
    pub organization: Option<&'a str>,
    /// The scopes the request asked for.
    pub requested_scopes: &'a Scopes,
    /// The token.
    pub token: &'a Token,
    /// The monotonic time of the report.
    pub now: Instant,
    /// The wall-clock time of the report (taken with `now`).
    pub wall: SystemTime,
    /// Where the token came from.
    pub source: Source,
}

/// Where a reported token came from, judged by the client's token-request counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Loaded from the token cache (no token request): `where` names it.
    Cache {
        /// The cache directory or the Redis endpoint (without user-info).
        place: String,
    },
    /// Fetched with `requests` token requests.
    Fetched {
        /// How many token requests were made.
        requests: u64,
        /// Why it is not cached, if it is not (no cache, a client without a secret, ...).
        not_cached: Option<String>,
    },
}

impl Source {
    /// `cache` or `fetched`, for `--json`.
    pub fn name(&self) -> &'static str {
        match self {
            Source::Cache { .. } => "cache",
            Source::Fetched { .. } => "fetched",
        }
    }

    fn describe(&self) -> String {
        match self {
            Source::Cache { place } => format!("the cache ({place}; no token request)"),
            Source::Fetched {
                requests,
                not_cached,
            } => {
                let mut text = format!(
                    "fetched ({requests} token {})",
                    if *requests == 1 {
                        "request"
                    } else {
                        "requests"
                    }
                );
                if let Some(why) = not_cached {
                    text.push_str(&format!("; not cached: {why}"));
                }
                text
            }
        }
    }
}

impl TokenInfo<'_> {
    /// The time left, to the nearest second (a token fetched a moment ago reads as its full
    /// lifetime, not one second less).
    fn remaining(&self) -> Duration {
        let left = self.token.expires_at().saturating_duration_since(self.now);
        let secs = (left + Duration::from_millis(500)).as_secs();
        Duration::from_secs(secs.min(self.token.lifetime().as_secs()))
    }

    fn expires_at(&self) -> SystemTime {
        self.token.expires_at_wall()
    }

    fn token_type(&self) -> String {
        self.token.token_type().to_string()
    }

    /// The scopes the response granted, space-separated, if it listed them.
    fn granted_scope(&self) -> Option<String> {
        self.token.scopes().map(ToString::to_string)
    }
}

fn lifetime_source(source: LifetimeSource) -> (&'static str, &'static str) {
    match source {
        LifetimeSource::ExpiresIn => ("expires_in", "the response's expires_in"),
        LifetimeSource::JwtExp => (
            "jwt_exp",
            "the JWT's exp claim (the response had no expires_in)",
        ),
        LifetimeSource::Default => (
            "default",
            "the provider's documented default (the response had no expires_in and no JWT exp)",
        ),
        LifetimeSource::Store => (
            "store",
            "the token cache (what remained of it when it was stored)",
        ),
        _ => ("other", "an unknown source"),
    }
}

/// The human summary. Shows only the first characters of the token.
pub fn summary(info: &TokenInfo<'_>) -> String {
    let token = info.token.access_token().secret();
    let shown: String = token.chars().take(SHOWN_CHARS).collect();
    let mut out = String::new();
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(out, "{label:<14}{value}");
    };
    line("provider", info.provider);
    line("endpoint", info.endpoint);
    if let Some(org) = info.organization {
        line("organization", org);
    }
    line("token type", &info.token_type());
    line(
        "access token",
        &format!(
            "{shown}… ({} chars; --raw or --json print it)",
            token.chars().count()
        ),
    );
    let granted = info.granted_scope();
    let requested = if info.requested_scopes.is_empty()
        || granted.as_deref() == Some(info.requested_scopes.to_string().as_str())
    {
        String::new()
    } else {
        format!(" (requested: {})", info.requested_scopes)
    };
    let scopes = match granted {
        Some(granted) if !granted.is_empty() => format!("{granted}{requested}"),
        _ => format!("(none listed in the response){requested}"),
    };
    line("scopes", &scopes);
    let lifetime = info.token.lifetime();
    line(
        "lifetime",
        &format!("{} ({} s)", time::human(lifetime), lifetime.as_secs()),
    );
    line(
        "expires at",
        &format!(
            "{} (in {})",
            time::rfc3339(info.expires_at()),
            time::human(info.remaining())
        ),
    );
    let refresh_in = info.token.refresh_at().saturating_duration_since(info.now);
    line(
        "refresh at",
        &format!(
            "{} (a long-running client renews it from then on)",
            time::rfc3339(info.wall + refresh_in)
        ),
    );
    line(
        "lifetime from",
        lifetime_source(info.token.lifetime_source()).1,
    );
    line("source", &info.source.describe());
    if let Some(quota) = info.token.quota() {
        for (label, text) in quota_lines(quota, info.wall) {
            line(label, &text);
        }
    }
    match jwt_claims(token) {
        Some(claims) => {
            let _ = writeln!(
                out,
                "JWT claims (decoded only, NOT verified: the signature was not checked):"
            );
            for (name, value) in &claims {
                let _ = write!(out, "  {name}: {value}");
                if let (true, Some(secs)) = (is_time_claim(name), value.as_i64()) {
                    let _ = write!(out, "  ({})", time::rfc3339_from_unix(secs));
                }
                out.push('\n');
            }
        }
        None => {
            let _ = writeln!(out, "JWT claims    (not a JWT: the token is opaque)");
        }
    }
    out
}

/// One JSON object: the RFC 6749 §5.1 fields plus what the summary shows.
pub fn json(info: &TokenInfo<'_>) -> Value {
    let mut object = Map::new();
    object.insert("provider".into(), json!(info.provider));
    object.insert("endpoint".into(), json!(info.endpoint));
    if let Some(org) = info.organization {
        object.insert("organization".into(), json!(org));
    }
    object.insert(
        "access_token".into(),
        json!(info.token.access_token().secret()),
    );
    object.insert("token_type".into(), json!(info.token_type()));
    object.insert("expires_in".into(), json!(info.remaining().as_secs()));
    object.insert("scope".into(), json!(info.granted_scope()));
    object.insert("expires_at".into(), json!(time::rfc3339(info.expires_at())));
    object.insert(
        "lifetime_source".into(),
        json!(lifetime_source(info.token.lifetime_source()).0),
    );
    object.insert("source".into(), json!(info.source.name()));
    object.insert(
        "quota".into(),
        info.token.quota().map_or(Value::Null, quota_json),
    );
    object.insert(
        "jwt_claims".into(),
        jwt_claims(info.token.access_token().secret()).map_or(Value::Null, Value::Object),
    );
    Value::Object(object)
}

/// The summary's quota lines: `(label, text)`.
fn quota_lines(quota: &Quota, wall: SystemTime) -> Vec<(&'static str, String)> {
    let mut lines = Vec::new();
    let buckets = |b: &QuotaBuckets| {
        b.buckets()
            .map(|(name, bucket)| format!("{}: {}", name.replace('_', " "), bucket_text(bucket)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    if let Some(client) = &quota.client {
        lines.push(("client quota", buckets(client)));
    }
    if let Some(organization) = &quota.organization {
        lines.push(("org quota", buckets(organization)));
    }
    if let Some(rate) = &quota.rate_limit {
        lines.push(("rate limit", rate_limit_text(rate, wall)));
    }
    lines
}

fn bucket_text(bucket: &Bucket) -> String {
    let mut text = match (bucket.remaining, bucket.quota) {
        (Some(r), Some(q)) => format!("{r} of {q} left"),
        (Some(r), None) => format!("{r} left"),
        (None, Some(q)) => format!("quota {q}"),
        (None, None) => "(no numbers)".to_owned(),
    };
    if let Some(t) = bucket.reset_secs {
        text.push_str(&format!(
            " (resets in {})",
            time::human(Duration::from_secs(t))
        ));
    }
    text
}

fn rate_limit_text(rate: &RateLimit, wall: SystemTime) -> String {
    let mut text = match (rate.remaining, rate.limit) {
        (Some(r), Some(l)) => format!("{r} of {l} left"),
        (Some(r), None) => format!("{r} left"),
        (None, Some(l)) => format!("limit {l}"),
        (None, None) => "(no numbers)".to_owned(),
    };
    if let Some(at) = rate.reset_at {
        let at_secs = i64::try_from(at).unwrap_or(i64::MAX);
        let now = wall
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        text.push_str(&format!(
            " (resets at {}, in {})",
            time::rfc3339_from_unix(at_secs),
            time::human(Duration::from_secs(at.saturating_sub(now)))
        ));
    }
    text
}

/// `--json`'s `quota`: `{"client": {"per_hour": {..} | null, "per_day": ..} | null,
/// "organization": .. | null, "rate_limit": {"limit", "remaining", "reset_at"} | null}`.
pub fn quota_json(quota: &Quota) -> Value {
    let bucket = |b: &Option<Bucket>| {
        b.as_ref().map_or(
            Value::Null,
            |b| json!({"quota": b.quota, "remaining": b.remaining, "reset_secs": b.reset_secs}),
        )
    };
    let buckets = |b: &Option<QuotaBuckets>| {
        b.as_ref().map_or(
            Value::Null,
            |b| json!({"per_hour": bucket(&b.per_hour), "per_day": bucket(&b.per_day)}),
        )
    };
    json!({
        "client": buckets(&quota.client),
        "organization": buckets(&quota.organization),
        "rate_limit": quota.rate_limit.as_ref().map_or(Value::Null, |r| {
            json!({"limit": r.limit, "remaining": r.remaining, "reset_at": r.reset_at})
        }),
    })
}

fn is_time_claim(name: &str) -> bool {
    matches!(name, "exp" | "iat" | "nbf" | "auth_time")
}

/// The claims of a compact JWS (`header.payload.signature`), decoded and **not** verified:
/// the client holds none of the issuer's keys, and the claims are only shown.
pub fn jwt_claims(token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(claims) => Some(claims),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_json_has_every_field_and_nulls_where_absent() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "auth0-client-quota-limit",
            "b=per_hour;q=10;r=7;t=3540".parse().unwrap(),
        );
        headers.insert("x-ratelimit-limit", "30".parse().unwrap());
        let quota = Quota::from_headers(&headers).unwrap();
        assert_eq!(
            quota_json(&quota),
            json!({
                "client": {
                    "per_hour": {"quota": 10, "remaining": 7, "reset_secs": 3540},
                    "per_day": null,
                },
                "organization": null,
                "rate_limit": {"limit": 30, "remaining": null, "reset_at": null},
            })
        );
        let lines = quota_lines(&quota, std::time::UNIX_EPOCH);
        assert_eq!(
            lines,
            [
                (
                    "client quota",
                    "per hour: 7 of 10 left (resets in 59m)".to_owned()
                ),
                ("rate limit", "limit 30".to_owned()),
            ]
        );
    }

    #[test]
    fn decodes_jwt_payloads_and_refuses_the_rest() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!("{}.{}.sig", b64(r#"{"alg":"none"}"#), b64(r#"{"exp":5}"#));
        assert_eq!(jwt_claims(&jwt).unwrap()["exp"], 5);
        assert!(jwt_claims("opaque").is_none());
        assert!(jwt_claims("a.b.c.d.e").is_none());
        assert!(jwt_claims(&format!("h.{}.s", b64("[1]"))).is_none());
    }
}
