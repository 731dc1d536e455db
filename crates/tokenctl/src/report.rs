//! What `tokenctl token` prints: a readable summary, or one JSON object.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use serde_json::{Map, Value, json};
use token_core::{LifetimeSource, Scopes, Token};

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
    object.insert(
        "jwt_claims".into(),
        jwt_claims(info.token.access_token().secret()).map_or(Value::Null, Value::Object),
    );
    Value::Object(object)
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
    fn decodes_jwt_payloads_and_refuses_the_rest() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!("{}.{}.sig", b64(r#"{"alg":"none"}"#), b64(r#"{"exp":5}"#));
        assert_eq!(jwt_claims(&jwt).unwrap()["exp"], 5);
        assert!(jwt_claims("opaque").is_none());
        assert!(jwt_claims("a.b.c.d.e").is_none());
        assert!(jwt_claims(&format!("h.{}.s", b64("[1]"))).is_none());
    }
}
