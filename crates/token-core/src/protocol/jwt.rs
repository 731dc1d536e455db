//! Reading the time claims of a JWT access token, without verifying it.
//!
//! When a token response omits `expires_in`, the `exp` claim of a JWT access token is the next
//! best source of its lifetime. The signature is **not** checked, on purpose: to an OAuth client
//! the access token is opaque (RFC 6749 §1.4) and meant for the resource server, which does
//! verify it; the client holds none of the issuer's keys; and the token arrived over the TLS
//! connection to the token endpoint, which is what the client trusts. The claims are used only as
//! a hint for when to fetch a new token, and that hint is bounded: the manager caps every
//! lifetime and never serves a token past the earliest expiry it knows of.

use base64::Engine as _;
use serde::Deserialize;

/// Tokens longer than this are not decoded (a payload this large is not a sane JWT).
const MAX_JWT_LEN: usize = 16 * 1024;

/// The time claims of a JWT (RFC 7519 §4.1.4, §4.1.6), in seconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JwtTimes {
    /// `exp`: expiration time.
    pub exp: Option<u64>,
    /// `iat`: issued-at time.
    pub iat: Option<u64>,
}

/// Decodes the payload of a compact JWS (`header.payload.signature`) and returns its `exp` and
/// `iat` claims. `None` when the token is not a JWT or has neither claim. Never panics.
pub fn jwt_times(token: &str) -> Option<JwtTimes> {
    if token.len() > MAX_JWT_LEN {
        return None;
    }
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None; // JWE (five parts) or garbage
    }
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;

    #[derive(Deserialize)]
    struct Claims {
        #[serde(default, deserialize_with = "numeric_date")]
        exp: Option<u64>,
        #[serde(default, deserialize_with = "numeric_date")]
        iat: Option<u64>,
    }
    let claims: Claims = serde_json::from_slice(&payload).ok()?;
    let times = JwtTimes {
        exp: claims.exp,
        iat: claims.iat,
    };
    (times.exp.is_some() || times.iat.is_some()).then_some(times)
}

/// A NumericDate: a JSON number of seconds, possibly fractional. Negative, non-finite or
/// non-numeric values read as absent (the claim is then simply not used).
fn numeric_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(match value {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                // Saturating float-to-int conversion; floor keeps `exp` conservative.
                .map(|f| f.floor() as u64)
        }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b64(r#"{"alg":"none"}"#), b64(payload))
    }

    #[test]
    fn reads_exp_and_iat() {
        assert_eq!(
            jwt_times(&jwt(r#"{"exp":1750241616,"iat":1747649616}"#)),
            Some(JwtTimes {
                exp: Some(1_750_241_616),
                iat: Some(1_747_649_616)
            })
        );
        assert_eq!(
            jwt_times(&jwt(r#"{"exp":1.5e9}"#)).unwrap().exp,
            Some(1_500_000_000)
        );
    }

    #[test]
    fn the_older_bookable_sample_token_decodes() {
        // The access token printed in 004_c62cf91e1ad07f56.txt (payload only matters).
        let payload = "eyJodHRwczovL2FwaS5ib29rYWJsZXRlY2guY29tL2FwcF9tZXRhZGF0YSI6eyJzbHVnIjoiYm90dG9tbGVzc2JydW5jaCJ9LCJpc3MiOiJodHRwczovL2Jvb2thYmxldGVjaC51ay5hdXRoMC5jb20vIiwic3ViIjoiVWVjYnVoQ3Z5TnA1Vk5uNWNkajJodVhiSUJ2Z0RMNlpAY2xpZW50cyIsImF1ZCI6ImFwaS5ib29rYWJsZXRlY2guY29tIiwiaWF0IjoxNzQ3NjQ5NjE2LCJleHAiOjE3NTAyNDE2MTYsInNjb3BlIjoidmVudWU6cmVhZCB2ZW51ZS1ib29raW5nOmNyZWF0ZSIsImd0eSI6ImNsaWVudC1jcmVkZW50aWFscyIsImF6cCI6IlVlY2J1aEN2eU5wNVZObjVjZGoyaHVYYklCdmdETDZaIiwicGVybWlzc2lvbnMiOlsidmVudWU6cmVhZCIsInZlbnVlLWJvb2tpbmc6Y3JlYXRlIl19";
        let token = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.sig");
        assert_eq!(
            jwt_times(&token),
            Some(JwtTimes {
                exp: Some(1_750_241_616),
                iat: Some(1_747_649_616)
            })
        );
    }

    #[test]
    fn non_jwts_and_odd_claims_are_none_not_panics() {
        for t in [
            "",
            "opaque-token",
            "a.b",
            "a.b.c.d.e",
            "a.!!!.c",
            "a..c",
            &jwt("[]"),
            &jwt("not json"),
            &jwt(r#"{"sub":"x"}"#),
            &jwt(r#"{"exp":-5}"#),
            &jwt(r#"{"exp":"soon"}"#),
        ] {
            assert_eq!(jwt_times(t), None, "{t}");
        }
        assert_eq!(
            jwt_times(&jwt(r#"{"exp":1e300}"#)).unwrap().exp,
            Some(u64::MAX)
        );
    }
}
