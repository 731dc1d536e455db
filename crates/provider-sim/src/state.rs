//! The simulator's bookkeeping: counters, lifetimes, fault queues and issued tokens.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::gate::Gate;
use crate::quota::{QuotaOutcome, QuotaState};
use crate::{
    DEFAULT_AUTHORIZATION_CODE_LIFETIME, DEFAULT_REDIRECT_URI, DEFAULT_REFRESH_TOKEN_LIFETIME,
    Fault, Provider, Quota, RecordedRequest,
};

/// Locks a mutex, ignoring poisoning: the protected data stays consistent because every
/// critical section is a single insert, lookup or push.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Milliseconds since the Unix epoch, by wall-clock time.
pub(crate) fn now_ms() -> i128 {
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
    /// Refresh tokens (the app's and users') with a serial below this are revoked.
    refresh_revoked_below: AtomicU64,
    /// Users' refresh tokens with a serial below this are revoked.
    user_refresh_revoked_below: AtomicU64,
    rotation: AtomicBool,
    // The authorization endpoint.
    authorization_requests: AtomicUsize,
    authorizations: AtomicUsize,
    code_exchanges: AtomicUsize,
    user_denies: AtomicBool,
    code_lifetime: AtomicI64,
    /// Registered redirect URIs by client id; a client without an entry has
    /// [`DEFAULT_REDIRECT_URI`].
    redirect_uris: Mutex<HashMap<String, Vec<String>>>,
    // Auth0 quotas (announced and enforced on the Bookable mounts).
    quota: Mutex<QuotaState>,
    quota_rejections: AtomicUsize,
    // Concurrency.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Pairs with `in_flight_changed`; held only to check or signal, never across an await.
    in_flight_lock: Mutex<()>,
    in_flight_changed: Condvar,
    pub(crate) gate: Gate,
    latency: Mutex<Duration>,
    // The protected route.
    rejects_all: AtomicBool,
    forced_rejections: AtomicUsize,
}

/// Counts a token request as in flight until dropped (also when the request is cancelled).
pub(crate) struct InFlight<'a>(&'a ProviderState);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, SeqCst);
        self.0.signal_in_flight();
    }
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
            refresh_revoked_below: AtomicU64::new(0),
            user_refresh_revoked_below: AtomicU64::new(0),
            rotation: AtomicBool::new(false),
            authorization_requests: AtomicUsize::new(0),
            authorizations: AtomicUsize::new(0),
            code_exchanges: AtomicUsize::new(0),
            user_denies: AtomicBool::new(false),
            code_lifetime: AtomicI64::new(DEFAULT_AUTHORIZATION_CODE_LIFETIME),
            redirect_uris: Mutex::new(HashMap::new()),
            quota: Mutex::new(QuotaState::new(Quota::DEFAULT, now_ms())),
            quota_rejections: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            in_flight_lock: Mutex::new(()),
            in_flight_changed: Condvar::new(),
            gate: Gate::new(),
            latency: Mutex::new(Duration::ZERO),
            rejects_all: AtomicBool::new(false),
            forced_rejections: AtomicUsize::new(0),
        }
    }

    /// Marks a token request as in flight; it stays so until the guard is dropped.
    pub(crate) fn enter(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.max_in_flight.fetch_max(now, SeqCst);
        self.signal_in_flight();
        InFlight(self)
    }

    fn signal_in_flight(&self) {
        // Taking the lock orders this signal after a waiter's check (no lost wake-up).
        let _guard = lock(&self.in_flight_lock);
        self.in_flight_changed.notify_all();
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(SeqCst)
    }

    pub(crate) fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(SeqCst)
    }

    /// Blocks until at least `n` token requests are in flight, or `timeout` has passed.
    pub(crate) fn wait_for_in_flight(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut guard = lock(&self.in_flight_lock);
        loop {
            if self.in_flight() >= n {
                return true;
            }
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                // A timeout too large to represent: wait in long steps.
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return false;
            }
            guard = match self.in_flight_changed.wait_timeout(guard, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    pub(crate) fn latency(&self) -> Duration {
        *lock(&self.latency)
    }

    pub(crate) fn set_latency(&self, latency: Duration) {
        *lock(&self.latency) = latency;
    }

    pub(crate) fn set_rotation(&self, on: bool) {
        self.rotation.store(on, SeqCst);
    }

    pub(crate) fn rotation(&self) -> bool {
        self.rotation.load(SeqCst)
    }

    pub(crate) fn count_authorization_request(&self) {
        self.authorization_requests.fetch_add(1, SeqCst);
    }

    pub(crate) fn count_authorization(&self) {
        self.authorizations.fetch_add(1, SeqCst);
    }

    pub(crate) fn count_code_exchange(&self) {
        self.code_exchanges.fetch_add(1, SeqCst);
    }

    pub(crate) fn authorization_requests(&self) -> usize {
        self.authorization_requests.load(SeqCst)
    }

    pub(crate) fn authorizations(&self) -> usize {
        self.authorizations.load(SeqCst)
    }

    pub(crate) fn code_exchanges(&self) -> usize {
        self.code_exchanges.load(SeqCst)
    }

    pub(crate) fn set_user_denies(&self, deny: bool) {
        self.user_denies.store(deny, SeqCst);
    }

    pub(crate) fn user_denies(&self) -> bool {
        self.user_denies.load(SeqCst)
    }

    pub(crate) fn set_code_lifetime(&self, secs: i64) {
        self.code_lifetime.store(secs, SeqCst);
    }

    pub(crate) fn code_lifetime(&self) -> i64 {
        self.code_lifetime.load(SeqCst)
    }

    pub(crate) fn set_redirect_uris(&self, client_id: &str, uris: Vec<String>) {
        lock(&self.redirect_uris).insert(client_id.to_owned(), uris);
    }

    /// The redirect URIs registered for `client_id`.
    pub(crate) fn redirect_uris(&self, client_id: &str) -> Vec<String> {
        lock(&self.redirect_uris)
            .get(client_id)
            .cloned()
            .unwrap_or_else(|| vec![DEFAULT_REDIRECT_URI.to_owned()])
    }

    pub(crate) fn set_client_quota(&self, quota: Quota) {
        lock(&self.quota).set_client(quota, now_ms());
    }

    pub(crate) fn set_organization_quota(&self, quota: Option<Quota>) {
        lock(&self.quota).set_organization(quota, now_ms());
    }

    /// Spends one token of quota, if every bucket has one left.
    pub(crate) fn take_quota(&self) -> QuotaOutcome {
        let outcome = lock(&self.quota).take(now_ms());
        if matches!(outcome, QuotaOutcome::Exhausted(_)) {
            self.quota_rejections.fetch_add(1, SeqCst);
        }
        outcome
    }

    pub(crate) fn quota_rejections(&self) -> usize {
        self.quota_rejections.load(SeqCst)
    }

    pub(crate) fn set_rejects_all(&self, on: bool) {
        self.rejects_all.store(on, SeqCst);
    }

    pub(crate) fn rejects_all(&self) -> bool {
        self.rejects_all.load(SeqCst)
    }

    pub(crate) fn count_forced_rejection(&self) {
        self.forced_rejections.fetch_add(1, SeqCst);
    }

    pub(crate) fn forced_rejections(&self) -> usize {
        self.forced_rejections.load(SeqCst)
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
        self.authorization_requests.store(0, SeqCst);
        self.authorizations.store(0, SeqCst);
        self.code_exchanges.store(0, SeqCst);
        self.quota_rejections.store(0, SeqCst);
        self.forced_rejections.store(0, SeqCst);
        // The high-water mark restarts from what is in flight right now.
        self.max_in_flight.store(self.in_flight(), SeqCst);
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
    /// The user who authorized it (Authorization Code flow); `None` for the client itself.
    pub(crate) user: Option<String>,
    /// Revoked one by one (a reused authorization code revokes what it had issued).
    revoked: bool,
}

/// A refresh token the simulator issued: bookingtime's (the app's, from client
/// credentials, or a user's) or a Generic user's.
#[derive(Clone, Debug)]
pub(crate) struct RefreshToken {
    pub(crate) provider: Provider,
    serial: u64,
    /// The serial of the first token of its rotation chain.
    pub(crate) family: u64,
    expires_at_ms: i128,
    pub(crate) client_id: String,
    pub(crate) user: Option<String>,
    pub(crate) scopes: Vec<String>,
    revoked: bool,
    /// Replaced by a newer token of its family (refresh-token rotation).
    rotated: bool,
}

/// Why a presented token is not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Invalid {
    Expired,
    Revoked,
    /// A refresh token that rotation already replaced.
    Rotated,
}

/// What the holder of an access token asks for.
pub(crate) struct AccessGrant<'a> {
    pub(crate) provider: Provider,
    pub(crate) client_id: &'a str,
    pub(crate) audience: &'a str,
    pub(crate) scopes: Vec<String>,
    pub(crate) org: Option<&'a str>,
    pub(crate) user: Option<&'a str>,
}

/// What the holder of a refresh token asks for.
pub(crate) struct RefreshGrant<'a> {
    pub(crate) provider: Provider,
    pub(crate) client_id: &'a str,
    pub(crate) user: Option<&'a str>,
    pub(crate) scopes: Vec<String>,
    /// The family to continue (rotation), or `None` to start one.
    pub(crate) family: Option<u64>,
}

/// An authorization code the authorization endpoint issued.
#[derive(Clone, Debug)]
pub(crate) struct AuthCode {
    pub(crate) provider: Provider,
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) code_challenge: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) user: String,
    pub(crate) expires_at_ms: i128,
}

impl AuthCode {
    pub(crate) fn expired(&self) -> bool {
        now_ms() >= self.expires_at_ms
    }
}

/// An authorization code and what became of it.
struct CodeRecord {
    code: AuthCode,
    /// Whether a token request has presented it already.
    spent: bool,
    /// The refresh-token family and the access token its exchange issued.
    issued_family: Option<u64>,
    issued_access: Option<String>,
}

/// The outcome of presenting an authorization code at the token endpoint.
pub(crate) enum Redeemed {
    /// Never issued by this provider.
    Unknown,
    /// Presented before: whatever it had issued is revoked now.
    Reused,
    /// First presentation: the code is spent from now on, whatever the outcome.
    Fresh(AuthCode),
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
    codes: Mutex<HashMap<String, CodeRecord>>,
    refresh_lifetime: AtomicI64,
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
            codes: Mutex::new(HashMap::new()),
            refresh_lifetime: AtomicI64::new(DEFAULT_REFRESH_TOKEN_LIFETIME),
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

    /// Revokes every refresh token `p` issued so far (the app's and users').
    pub(crate) fn revoke_refresh_tokens(&self, p: Provider) {
        let next = self.next_serial.load(SeqCst);
        self.provider(p)
            .refresh_revoked_below
            .fetch_max(next, SeqCst);
    }

    /// Revokes every user refresh token `p` issued so far.
    pub(crate) fn revoke_user_refresh_tokens(&self, p: Provider) {
        let next = self.next_serial.load(SeqCst);
        self.provider(p)
            .user_refresh_revoked_below
            .fetch_max(next, SeqCst);
    }

    /// Revokes one refresh token; whether the simulator had issued it.
    pub(crate) fn revoke_refresh_token(&self, token: &str) -> bool {
        match lock(&self.refresh_tokens).get_mut(token) {
            Some(record) => {
                record.revoked = true;
                true
            }
            None => false,
        }
    }

    /// Revokes every refresh token of a rotation family.
    pub(crate) fn revoke_family(&self, family: u64) {
        for record in lock(&self.refresh_tokens).values_mut() {
            if record.family == family {
                record.revoked = true;
            }
        }
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
        match grant.user {
            Some(user) => {
                claims.insert("sub".into(), json!(user));
                claims.insert("client_id".into(), json!(grant.client_id));
            }
            None => {
                claims.insert("sub".into(), json!(grant.client_id));
            }
        }
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
            user: grant.user.map(str::to_owned),
            revoked: false,
        };
        lock(&self.access_tokens).insert(token.clone(), record);
        Issued {
            token,
            expires_in: lifetime,
        }
    }

    /// Issues a bookingtime app refresh token with the current refresh lifetime.
    pub(crate) fn issue_refresh(&self, client_id: &str) -> Issued {
        self.issue_refresh_token(RefreshGrant {
            provider: Provider::Bookingtime,
            client_id,
            user: None,
            scopes: Vec::new(),
            family: None,
        })
        .0
    }

    /// Issues a refresh token with the current refresh lifetime; also returns its family.
    pub(crate) fn issue_refresh_token(&self, grant: RefreshGrant<'_>) -> (Issued, u64) {
        let lifetime = self.refresh_lifetime.load(SeqCst);
        let mut claims = Map::new();
        match grant.user {
            Some(user) => {
                claims.insert("sub".into(), json!(user));
                claims.insert("client_id".into(), json!(grant.client_id));
            }
            None => {
                claims.insert("sub".into(), json!(grant.client_id));
            }
        }
        let audience = match grant.provider {
            Provider::Bookingtime => "auth.bookingtime.com",
            _ => "generic",
        };
        claims.insert("aud".into(), json!(audience));
        claims.insert("typ".into(), json!("refresh"));
        let (token, serial, expires_at_ms) = self.mint(claims, lifetime);
        let family = grant.family.unwrap_or(serial);
        let record = RefreshToken {
            provider: grant.provider,
            serial,
            family,
            expires_at_ms,
            client_id: grant.client_id.to_owned(),
            user: grant.user.map(str::to_owned),
            scopes: grant.scopes,
            revoked: false,
            rotated: false,
        };
        lock(&self.refresh_tokens).insert(token.clone(), record);
        (
            Issued {
                token,
                expires_in: lifetime,
            },
            family,
        )
    }

    /// Stores a new authorization code for `code` (lifetime from `code.provider`'s setting)
    /// and returns its value.
    pub(crate) fn issue_code(&self, mut code: AuthCode) -> String {
        let lifetime = self.provider(code.provider).code_lifetime();
        code.expires_at_ms = now_ms().saturating_add(i128::from(lifetime) * 1000);
        let mut raw = [0u8; 32];
        fastrand::fill(&mut raw);
        let value = URL_SAFE_NO_PAD.encode(raw);
        lock(&self.codes).insert(
            value.clone(),
            CodeRecord {
                code,
                spent: false,
                issued_family: None,
                issued_access: None,
            },
        );
        value
    }

    /// Presents an authorization code to `p`'s token endpoint. The first presentation
    /// spends it; a later one revokes whatever the first one issued.
    pub(crate) fn redeem_code(&self, p: Provider, code: &str) -> Redeemed {
        let (family, access) = {
            let mut codes = lock(&self.codes);
            let Some(record) = codes.get_mut(code).filter(|r| r.code.provider == p) else {
                return Redeemed::Unknown;
            };
            if !record.spent {
                record.spent = true;
                return Redeemed::Fresh(record.code.clone());
            }
            (record.issued_family, record.issued_access.clone())
        };
        // RFC 6749 §4.1.2: a code used twice revokes the tokens it had issued.
        if let Some(family) = family {
            self.revoke_family(family);
        }
        if let Some(access) = access
            && let Some(record) = lock(&self.access_tokens).get_mut(&access)
        {
            record.revoked = true;
        }
        Redeemed::Reused
    }

    /// Remembers what a code's exchange issued, for revocation on reuse.
    pub(crate) fn record_code_tokens(&self, code: &str, family: u64, access: Option<String>) {
        if let Some(record) = lock(&self.codes).get_mut(code) {
            record.issued_family = Some(family);
            record.issued_access = access;
        }
    }

    /// Looks an access token up: `None` if the simulator never issued it, else the token
    /// and whether it is still valid.
    pub(crate) fn access_token(&self, token: &str) -> Option<(AccessToken, Result<(), Invalid>)> {
        let record = lock(&self.access_tokens).get(token).cloned()?;
        let validity = if record.revoked
            || record.serial < self.provider(record.provider).revoked_below.load(SeqCst)
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
        let validity = self.refresh_validity(&record);
        Some((record, validity))
    }

    fn refresh_validity(&self, record: &RefreshToken) -> Result<(), Invalid> {
        let state = self.provider(record.provider);
        if record.revoked
            || record.serial < state.refresh_revoked_below.load(SeqCst)
            || (record.user.is_some()
                && record.serial < state.user_refresh_revoked_below.load(SeqCst))
        {
            Err(Invalid::Revoked)
        } else if record.rotated {
            Err(Invalid::Rotated)
        } else if now_ms() >= record.expires_at_ms {
            Err(Invalid::Expired)
        } else {
            Ok(())
        }
    }

    /// Marks a refresh token as replaced by rotation, if it is still valid: of two
    /// concurrent refreshes with one token, exactly one wins.
    pub(crate) fn rotate_refresh_token(&self, token: &str) -> bool {
        let mut tokens = lock(&self.refresh_tokens);
        let Some(record) = tokens.get(token) else {
            return false;
        };
        if self.refresh_validity(record).is_err() {
            return false;
        }
        if let Some(record) = tokens.get_mut(token) {
            record.rotated = true;
        }
        true
    }
}
