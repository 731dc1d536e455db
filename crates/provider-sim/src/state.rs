//! The simulator's bookkeeping: counters, lifetimes, fault queues and issued tokens.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::{DEFAULT_REFRESH_TOKEN_LIFETIME, Fault, Provider, RecordedRequest};

/// Locks a mutex, ignoring poisoning: the protected data stays consistent because every
/// critical section is a single insert, lookup or push.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Milliseconds since the Unix epoch, by wall-clock time.
fn now_ms() -> i128 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_millis()).unwrap_or(i128::MAX),
        Err(e) => -i128::try_from(e.duration().as_millis()).unwrap_or(i128::MAX),
    }
}

/// Per-provider bookkeeping.
pub(crate) struct ProviderState {
    token_requests: AtomicUsize,
    api_calls: AtomicUsize,
    api_rejections: AtomicUsize,
    lifetime: AtomicI64,
    /// Access tokens with a serial below this are revoked.
    revoked_below: AtomicU64,
    faults: Mutex<VecDeque<Fault>>,
    last_request: Mutex<Option<RecordedRequest>>,
}

impl ProviderState {
    fn new(p: Provider) -> ProviderState {
        ProviderState {
            token_requests: AtomicUsize::new(0),
            api_calls: AtomicUsize::new(0),
            api_rejections: AtomicUsize::new(0),
            lifetime: AtomicI64::new(p.default_token_lifetime()),
            revoked_below: AtomicU64::new(0),
            faults: Mutex::new(VecDeque::new()),
            last_request: Mutex::new(None),
        }
    }

    pub(crate) fn token_requests(&self) -> usize {
        self.token_requests.load(SeqCst)
    }

    pub(crate) fn api_calls(&self) -> usize {
        self.api_calls.load(SeqCst)
    }

    pub(crate) fn api_rejections(&self) -> usize {
        self.api_rejections.load(SeqCst)
    }

    pub(crate) fn count_token_request(&self) {
        self.token_requests.fetch_add(1, SeqCst);
    }

    pub(crate) fn count_api_call(&self) {
        self.api_calls.fetch_add(1, SeqCst);
    }

    pub(crate) fn count_api_rejection(&self) {
        self.api_rejections.fetch_add(1, SeqCst);
    }

    pub(crate) fn lifetime(&self) -> i64 {
        self.lifetime.load(SeqCst)
    }

    pub(crate) fn set_lifetime(&self, secs: i64) {
        self.lifetime.store(secs, SeqCst);
    }

    pub(crate) fn inject(&self, fault: Fault, times: usize) {
        let mut q = lock(&self.faults);
        q.extend(std::iter::repeat_n(fault, times));
    }

    pub(crate) fn next_fault(&self) -> Option<Fault> {
        lock(&self.faults).pop_front()
    }

    pub(crate) fn pending_faults(&self) -> usize {
        lock(&self.faults).len()
    }

    pub(crate) fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    pub(crate) fn record(&self, req: RecordedRequest) {
        *lock(&self.last_request) = Some(req);
    }

    pub(crate) fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.last_request).clone()
    }

    fn reset_counters(&self) {
        self.token_requests.store(0, SeqCst);
        self.api_calls.store(0, SeqCst);
        self.api_rejections.store(0, SeqCst);
    }
}

/// An access token the simulator issued.
#[derive(Clone, Debug)]
pub(crate) struct AccessToken {
    pub(crate) provider: Provider,
    serial: u64,
    expires_at_ms: i128,
    pub(crate) client_id: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) org: Option<String>,
}

/// A bookingtime refresh token the simulator issued.
#[derive(Clone, Debug)]
pub(crate) struct RefreshToken {
    serial: u64,
    expires_at_ms: i128,
    pub(crate) client_id: String,
}

/// Why a presented token is not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Invalid {
    Expired,
    Revoked,
}

/// What the holder of an access token asks for.
pub(crate) struct AccessGrant<'a> {
    pub(crate) provider: Provider,
    pub(crate) client_id: &'a str,
    pub(crate) audience: &'a str,
    pub(crate) scopes: Vec<String>,
    pub(crate) org: Option<&'a str>,
}

/// A freshly minted token and the `expires_in` to announce.
pub(crate) struct Issued {
    pub(crate) token: String,
    pub(crate) expires_in: i64,
}

/// Everything the server shares between requests.
pub(crate) struct Shared {
    pub(crate) base_url: String,
    providers: [ProviderState; 7],
    next_serial: AtomicU64,
    access_tokens: Mutex<HashMap<String, AccessToken>>,
    refresh_tokens: Mutex<HashMap<String, RefreshToken>>,
    refresh_lifetime: AtomicI64,
    refresh_revoked_below: AtomicU64,
    redirect_hits: AtomicUsize,
    redirect_saw_secret: AtomicBool,
}

impl Shared {
    pub(crate) fn new(base_url: String) -> Shared {
        Shared {
            base_url,
            providers: Provider::ALL.map(ProviderState::new),
            // Serial 0 is never issued, so "revoked below 0" revokes nothing.
            next_serial: AtomicU64::new(1),
            access_tokens: Mutex::new(HashMap::new()),
            refresh_tokens: Mutex::new(HashMap::new()),
            refresh_lifetime: AtomicI64::new(DEFAULT_REFRESH_TOKEN_LIFETIME),
            refresh_revoked_below: AtomicU64::new(0),
            redirect_hits: AtomicUsize::new(0),
            redirect_saw_secret: AtomicBool::new(false),
        }
    }

    pub(crate) fn provider(&self, p: Provider) -> &ProviderState {
        &self.providers[p.index()]
    }

    pub(crate) fn set_refresh_lifetime(&self, secs: i64) {
        self.refresh_lifetime.store(secs, SeqCst);
    }

    pub(crate) fn revoke_access_tokens(&self, p: Provider) {
        let next = self.next_serial.load(SeqCst);
        self.provider(p).revoked_below.fetch_max(next, SeqCst);
    }

    pub(crate) fn revoke_refresh_tokens(&self) {
        let next = self.next_serial.load(SeqCst);
        self.refresh_revoked_below.fetch_max(next, SeqCst);
    }

    pub(crate) fn record_redirect_hit(&self, saw_secret: bool) {
        // The flag first, so whoever sees the hit also sees the flag.
        if saw_secret {
            self.redirect_saw_secret.store(true, SeqCst);
        }
        self.redirect_hits.fetch_add(1, SeqCst);
    }

    pub(crate) fn redirect_hits(&self) -> usize {
        self.redirect_hits.load(SeqCst)
    }

    pub(crate) fn redirect_saw_secret(&self) -> bool {
        self.redirect_saw_secret.load(SeqCst)
    }

    pub(crate) fn reset_counters(&self) {
        for p in &self.providers {
            p.reset_counters();
        }
        self.redirect_hits.store(0, SeqCst);
        self.redirect_saw_secret.store(false, SeqCst);
    }

    /// Mints a JWT-shaped token: `base64url(header).base64url(claims).base64url(32 random
    /// bytes)`. Returns the token and its serial.
    fn mint(&self, mut claims: Map<String, Value>, lifetime: i64) -> (String, u64, i128) {
        let serial = self.next_serial.fetch_add(1, SeqCst);
        let now = now_ms();
        let iat = i64::try_from(now.div_euclid(1000)).unwrap_or(i64::MAX);
        claims.insert("iss".into(), json!("provider-sim"));
        claims.insert("iat".into(), json!(iat));
        claims.insert("exp".into(), json!(iat.saturating_add(lifetime)));
        claims.insert(
            "jti".into(),
            json!(format!("{serial}-{:016x}", fastrand::u64(..))),
        );
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string());
        let mut sig = [0u8; 32];
        fastrand::fill(&mut sig);
        let sig = URL_SAFE_NO_PAD.encode(sig);
        let expires_at_ms = now.saturating_add(i128::from(lifetime) * 1000);
        (format!("{header}.{payload}.{sig}"), serial, expires_at_ms)
    }

    /// Issues an access token with the provider's current lifetime.
    pub(crate) fn issue_access(&self, grant: AccessGrant<'_>) -> Issued {
        let lifetime = self.provider(grant.provider).lifetime();
        let mut claims = Map::new();
        claims.insert("sub".into(), json!(grant.client_id));
        claims.insert("aud".into(), json!(grant.audience));
        if !grant.scopes.is_empty() {
            claims.insert("scope".into(), json!(grant.scopes.join(" ")));
        }
        if let Some(org) = grant.org {
            claims.insert("org".into(), json!(org));
        }
        let (token, serial, expires_at_ms) = self.mint(claims, lifetime);
        let record = AccessToken {
            provider: grant.provider,
            serial,
            expires_at_ms,
            client_id: grant.client_id.to_owned(),
            scopes: grant.scopes,
            org: grant.org.map(str::to_owned),
        };
        lock(&self.access_tokens).insert(token.clone(), record);
        Issued {
            token,
            expires_in: lifetime,
        }
    }

    /// Issues a bookingtime refresh token with the current refresh lifetime.
    pub(crate) fn issue_refresh(&self, client_id: &str) -> Issued {
        let lifetime = self.refresh_lifetime.load(SeqCst);
        let mut claims = Map::new();
        claims.insert("sub".into(), json!(client_id));
        claims.insert("aud".into(), json!("auth.bookingtime.com"));
        claims.insert("typ".into(), json!("refresh"));
        let (token, serial, expires_at_ms) = self.mint(claims, lifetime);
        let record = RefreshToken {
            serial,
            expires_at_ms,
            client_id: client_id.to_owned(),
        };
        lock(&self.refresh_tokens).insert(token.clone(), record);
        Issued {
            token,
            expires_in: lifetime,
        }
    }

    /// Looks an access token up: `None` if the simulator never issued it, else the token
    /// and whether it is still valid.
    pub(crate) fn access_token(&self, token: &str) -> Option<(AccessToken, Result<(), Invalid>)> {
        let record = lock(&self.access_tokens).get(token).cloned()?;
        let validity = if record.serial < self.provider(record.provider).revoked_below.load(SeqCst)
        {
            Err(Invalid::Revoked)
        } else if now_ms() >= record.expires_at_ms {
            Err(Invalid::Expired)
        } else {
            Ok(())
        };
        Some((record, validity))
    }

    /// Looks a refresh token up, like [`access_token`](Shared::access_token).
    pub(crate) fn refresh_token(&self, token: &str) -> Option<(RefreshToken, Result<(), Invalid>)> {
        let record = lock(&self.refresh_tokens).get(token).cloned()?;
        let validity = if record.serial < self.refresh_revoked_below.load(SeqCst) {
            Err(Invalid::Revoked)
        } else if now_ms() >= record.expires_at_ms {
            Err(Invalid::Expired)
        } else {
            Ok(())
        };
        Some((record, validity))
    }
}
