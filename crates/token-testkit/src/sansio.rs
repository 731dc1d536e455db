//! A sans-IO fake token server, a fake shared store and a virtual-time harness around the
//! manager, for token-core's tests.
//! Nothing here sleeps: time is an `Instant` the test moves by hand.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use token_core::{
    ClientId, ClientSecret, Credentials, Event, Lookup, ManagerConfig, Output, RequestId, Target,
    TokenKey, TokenManager, TokenRequest, TransportErrorKind, TransportFailure, presets,
};

/// What the fake server answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A token with this `expires_in` (seconds).
    Token(u64),
    /// bookingtime's first leg: a refresh token with this lifetime.
    Refresh(u64),
    /// An HTTP error with an RFC 6749 body.
    OAuthError(u16, &'static str),
    /// 429 with Retry-After seconds.
    RetryAfter(u64),
    /// 503 with an HTML body.
    Html503,
    /// The transport failed.
    TransportFailure,
}

/// A fake token endpoint: answers per the next queued reply or a default, numbering tokens.
pub struct FakeServer {
    pub default_lifetime: u64,
    pub refresh_lifetime: u64,
    pub queue: VecDeque<Reply>,
    pub requests: usize,
    pub issued: usize,
    /// Valid bookingtime refresh tokens.
    pub valid_refresh: Vec<String>,
    /// Organizations whose access-token requests always get `invalid_grant`.
    pub reject_orgs: Vec<String>,
    /// Requests for a grant's refresh token (bookingtime's client-credentials leg).
    pub refresh_token_requests: usize,
    /// The next this many refresh-token requests get a 503.
    pub fail_refresh_token_requests: usize,
    /// Every refresh-token grant returns a new refresh token and revokes the one it used.
    pub rotate_refresh: bool,
    /// A code exchange returns an access token with the refresh token (RFC 6749 servers);
    /// otherwise the refresh token alone (bookingtime).
    pub code_returns_access: bool,
}

/// A string field of a request body, JSON or form.
pub fn body_field(body: &[u8], name: &str) -> Option<String> {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body) {
        return map.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    }
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl FakeServer {
    pub fn new(default_lifetime: u64) -> Self {
        Self {
            default_lifetime,
            refresh_lifetime: 2_592_000,
            queue: VecDeque::new(),
            requests: 0,
            issued: 0,
            valid_refresh: Vec::new(),
            reject_orgs: Vec::new(),
            refresh_token_requests: 0,
            fail_refresh_token_requests: 0,
            rotate_refresh: false,
            code_returns_access: false,
        }
    }

    pub fn then(&mut self, reply: Reply) -> &mut Self {
        self.queue.push_back(reply);
        self
    }

    /// The reply for a request (bookingtime-aware: a client-credentials request of a chain
    /// client gets a refresh token, a refresh-token request with an unknown token gets
    /// invalid_grant).
    pub fn answer(
        &mut self,
        send: &TokenRequest,
    ) -> Result<http::Response<Vec<u8>>, TransportFailure> {
        self.requests += 1;
        if matches!(send.target, Target::RefreshToken(_)) {
            self.refresh_token_requests += 1;
            if self.fail_refresh_token_requests > 0 {
                self.fail_refresh_token_requests -= 1;
                return Ok(json(503, r#"{"error":"temporarily_unavailable"}"#));
            }
        }
        if let Target::Access(key) = &send.target
            && key
                .organization()
                .is_some_and(|o| self.reject_orgs.iter().any(|r| r == o))
        {
            return Ok(json(400, r#"{"error":"invalid_grant"}"#));
        }
        let reply = self.queue.pop_front().unwrap_or(match &send.target {
            Target::RefreshToken(_) => Reply::Refresh(self.refresh_lifetime),
            _ => Reply::Token(self.default_lifetime),
        });
        // A refresh-token grant (bookingtime's second leg, a user's refresh): check the refresh
        // token it carries.
        if let (Target::Access(_), Reply::Token(_)) = (&send.target, &reply)
            && let Some(rt) = body_field(send.request.body(), "refresh_token")
        {
            if !self.valid_refresh.contains(&rt) {
                return Ok(json(400, r#"{"error":"invalid_grant"}"#));
            }
            if self.rotate_refresh {
                self.valid_refresh.retain(|v| *v != rt);
                self.issued += 1;
                let rotated = format!("rt-{}", self.issued);
                self.valid_refresh.push(rotated.clone());
                self.issued += 1;
                return Ok(json(
                    200,
                    &format!(
                        r#"{{"access_token":"at-{}","token_type":"Bearer","expires_in":{},"refresh_token":"{rotated}"}}"#,
                        self.issued, self.default_lifetime
                    ),
                ));
            }
        }
        // A user's code exchange, RFC 6749 style (access and refresh token at once).
        if let (Target::RefreshToken(grant), true) = (&send.target, self.code_returns_access)
            && grant.subject().user().is_some()
            && matches!(reply, Reply::Refresh(_))
            && body_field(send.request.body(), "code").is_some()
        {
            self.issued += 1;
            let rt = format!("rt-{}", self.issued);
            self.valid_refresh.push(rt.clone());
            self.issued += 1;
            return Ok(json(
                200,
                &format!(
                    r#"{{"access_token":"at-{}","token_type":"Bearer","expires_in":{},"refresh_token":"{rt}"}}"#,
                    self.issued, self.default_lifetime
                ),
            ));
        }
        Ok(match reply {
            Reply::Token(secs) => {
                self.issued += 1;
                json(
                    200,
                    &format!(
                        r#"{{"access_token":"at-{}","token_type":"Bearer","expires_in":{secs}}}"#,
                        self.issued
                    ),
                )
            }
            Reply::Refresh(secs) => {
                self.issued += 1;
                let rt = format!("rt-{}", self.issued);
                self.valid_refresh.push(rt.clone());
                json(
                    200,
                    &format!(
                        r#"{{"refresh_token":"{rt}","token_type":"Bearer","expires_in":{secs}}}"#
                    ),
                )
            }
            Reply::OAuthError(status, code) => json(status, &format!(r#"{{"error":"{code}"}}"#)),
            Reply::RetryAfter(secs) => {
                let mut r = json(429, r#"{"error":"temporarily_unavailable"}"#);
                r.headers_mut()
                    .insert("retry-after", secs.to_string().parse().unwrap());
                r
            }
            Reply::Html503 => {
                let mut r = http::Response::new(b"<html><h1>503</h1></html>".to_vec());
                *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                r
            }
            Reply::TransportFailure => {
                return Err(TransportFailure::new(
                    TransportErrorKind::Connect,
                    "refused",
                ));
            }
        })
    }
}

pub fn json(status: u16, body: &str) -> http::Response<Vec<u8>> {
    let mut r = http::Response::new(body.as_bytes().to_vec());
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// An arbitrary origin for virtual time: the clock read once per process (here, so that
/// token-core's own tests never read it); nothing depends on its value.
pub fn origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// The manager, virtual time, and what came out of it.
pub struct Harness {
    pub mgr: TokenManager,
    pub start: Instant,
    pub now: Instant,
    pub wall0: SystemTime,
    /// Requests sent and not yet answered.
    pub pending: Vec<TokenRequest>,
    pub events: Vec<Event>,
    pub next_timeout: Option<Instant>,
    /// Store operations emitted and not yet answered.
    pub store_ops: Vec<token_core::StoreRequest>,
    /// Total requests the manager emitted.
    pub sent: usize,
}

impl Harness {
    pub fn new(config: ManagerConfig) -> Self {
        let start = origin();
        Self {
            mgr: TokenManager::new(config),
            start,
            now: start,
            wall0: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            pending: Vec::new(),
            events: Vec::new(),
            next_timeout: None,
            store_ops: Vec::new(),
            sent: 0,
        }
    }

    pub fn at(&self, secs: f64) -> Instant {
        self.start + Duration::from_secs_f64(secs)
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    pub fn wall(&self) -> SystemTime {
        self.wall0 + self.elapsed()
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    pub fn advance_secs(&mut self, secs: u64) {
        self.advance(Duration::from_secs(secs));
    }

    /// Registers a generic client (distinct per `name`).
    pub fn generic_client(&mut self, name: &str) -> ClientId {
        let config = presets::generic(
            "https://idp.example/token",
            Credentials::new(name, ClientSecret::new("secret")),
        )
        .build()
        .unwrap();
        self.mgr.register(config)
    }

    pub fn bookingtime_client(&mut self) -> ClientId {
        let config = presets::bookingtime_app(Credentials::new("bt", ClientSecret::new("secret")))
            .build()
            .unwrap();
        self.mgr.register(config)
    }

    /// Drains output until the timeout: queues sends, records events.
    pub fn drain(&mut self) {
        loop {
            match self.mgr.poll_output(self.now) {
                Output::Send(send) => {
                    self.sent += 1;
                    self.pending.push(send);
                }
                Output::Store(op) => self.store_ops.push(op),
                Output::Event(e) => self.events.push(e),
                Output::Timeout(t) => {
                    assert!(t > self.now, "timeout {t:?} not after now {:?}", self.now);
                    self.next_timeout = Some(t);
                    return;
                }
            }
        }
    }

    pub fn request(&mut self, key: &TokenKey) -> Lookup {
        let lookup = self.mgr.request(self.now, key).expect("valid key");
        self.drain();
        lookup
    }

    /// Answers every pending request from `server` at the current time, repeatedly, until
    /// nothing is pending.
    pub fn serve(&mut self, server: &mut FakeServer) {
        while !self.pending.is_empty() {
            self.serve_once(server);
        }
    }

    /// Answers the requests pending now (not the ones their answers cause).
    pub fn serve_once(&mut self, server: &mut FakeServer) {
        let batch: Vec<TokenRequest> = std::mem::take(&mut self.pending);
        for send in batch {
            let id = send.id;
            match server.answer(&send) {
                Ok(response) => self
                    .mgr
                    .handle_response(self.now, self.wall(), id, response)
                    .unwrap(),
                Err(failure) => self.mgr.handle_send_failed(self.now, id, failure).unwrap(),
            }
        }
        self.drain();
    }

    /// Requests `key`, serving any fetch at once, and returns the final lookup.
    pub fn get(&mut self, key: &TokenKey, server: &mut FakeServer) -> Lookup {
        match self.request(key) {
            Lookup::Pending => {
                self.serve(server);
                let lookup = self.request(key);
                assert!(
                    !matches!(lookup, Lookup::Pending),
                    "still pending after serving"
                );
                lookup
            }
            other => {
                // A refresh may have started: serve it too.
                self.serve(server);
                other
            }
        }
    }

    pub fn get_token(&mut self, key: &TokenKey, server: &mut FakeServer) -> String {
        match self.get(key, server) {
            Lookup::Ready(t) => t.access_token().secret().to_owned(),
            other => panic!("expected a token, got {other:?}"),
        }
    }

    /// Jumps virtual time to each timeout until `until`, handling it and serving requests.
    pub fn run_until(&mut self, until: Instant, server: &mut FakeServer) {
        loop {
            self.drain();
            let next = self.next_timeout.expect("drained");
            if next > until {
                self.now = until;
                self.mgr.handle_timeout(self.now);
                self.drain();
                self.serve(server);
                return;
            }
            self.now = next;
            self.mgr.handle_timeout(self.now);
            self.drain();
            self.serve(server);
        }
    }

    pub fn take_pending(&mut self) -> Vec<TokenRequest> {
        std::mem::take(&mut self.pending)
    }

    pub fn respond(&mut self, id: RequestId, response: http::Response<Vec<u8>>) {
        self.mgr
            .handle_response(self.now, self.wall(), id, response)
            .unwrap();
        self.drain();
    }
}

/// A token's text, for comparisons.
pub fn text(lookup: &Lookup) -> Option<String> {
    match lookup {
        Lookup::Ready(t) => Some(t.access_token().secret().to_owned()),
        _ => None,
    }
}

/// A shared store in virtual time that implements the store protocol of
/// `token_core::lifecycle::store` exactly: values with a generation and a TTL, leases with an
/// owner, a generation counter per key. Several managers (the "processes" of a fleet) can share
/// one; each names itself with an owner number.
#[derive(Default)]
pub struct FakeStore {
    values: std::collections::HashMap<String, (token_core::StoreRecord, u64, Instant)>,
    leases: std::collections::HashMap<String, (u32, u64, Instant)>,
    gens: std::collections::HashMap<String, u64>,
    /// Operations answered.
    pub ops: usize,
    /// When set, every operation fails.
    pub down: bool,
    /// When set, operations get no reply at all (a hung store).
    pub silent: bool,
    /// Replace every value's record with garbage on read (a wrong key or a foreign format).
    pub corrupt: bool,
}

impl FakeStore {
    /// Forgets everything (a restarted, empty store).
    pub fn flush(&mut self) {
        self.values.clear();
        self.leases.clear();
        self.gens.clear();
    }

    /// Number of values held at `now`.
    pub fn values(&self, now: Instant) -> usize {
        self.values
            .values()
            .filter(|(_, _, exp)| *exp > now)
            .count()
    }

    /// Runs one operation for `owner` at `now`; `None` when the store is silent.
    pub fn execute(
        &mut self,
        now: Instant,
        owner: u32,
        request: &token_core::StoreRequest,
    ) -> Option<token_core::StoreReply> {
        use token_core::{StoreFailure, StoreOp, StoreReply, StoredValue};
        if self.silent {
            return None;
        }
        self.ops += 1;
        if self.down {
            return Some(StoreReply::Failed(StoreFailure::new("connection refused")));
        }
        let key = request.key.fingerprint().to_owned();
        self.values.retain(|_, (_, _, exp)| *exp > now);
        self.leases.retain(|_, (_, _, exp)| *exp > now);
        let corrupt = self.corrupt;
        let value = |values: &std::collections::HashMap<
            String,
            (token_core::StoreRecord, u64, Instant),
        >| {
            values.get(&key).map(|(record, generation, exp)| {
                let record = if corrupt {
                    token_core::StoreRecord::from_bytes(b"\x00garbage".to_vec())
                } else {
                    record.clone()
                };
                StoredValue::new(record, *generation, *exp - now)
            })
        };
        Some(match &request.op {
            StoreOp::Acquire {
                refresh_ahead,
                lease_ttl,
            } => {
                let current = value(&self.values);
                if let Some(v) = current.as_ref().filter(|v| v.ttl > *refresh_ahead) {
                    StoreReply::Value(StoredValue::new(v.record.clone(), v.generation, v.ttl))
                } else if let Some((_, _, exp)) = self.leases.get(&key) {
                    StoreReply::Busy {
                        value: current,
                        lease_ttl: *exp - now,
                    }
                } else {
                    let generation = self.gens.entry(key.clone()).or_insert(0);
                    *generation += 1;
                    let generation = *generation;
                    self.leases
                        .insert(key.clone(), (owner, generation, now + *lease_ttl));
                    StoreReply::Leased {
                        generation,
                        stale: current,
                    }
                }
            }
            StoreOp::Publish {
                generation,
                record,
                ttl,
            } => {
                let generation = match generation {
                    Some(g) => *g,
                    None => {
                        let g = self.gens.entry(key.clone()).or_insert(0);
                        *g += 1;
                        *g
                    }
                };
                let newer = self
                    .values
                    .get(&key)
                    .is_none_or(|(_, stored, _)| generation > *stored);
                if newer {
                    self.values
                        .insert(key.clone(), (record.clone(), generation, now + *ttl));
                }
                if self
                    .leases
                    .get(&key)
                    .is_some_and(|(o, g, _)| *o == owner && *g == generation)
                {
                    self.leases.remove(&key);
                }
                StoreReply::Done
            }
            StoreOp::Release { generation } => {
                if self
                    .leases
                    .get(&key)
                    .is_some_and(|(o, g, _)| *o == owner && g == generation)
                {
                    self.leases.remove(&key);
                }
                StoreReply::Done
            }
            StoreOp::Invalidate { generation } => {
                if self
                    .values
                    .get(&key)
                    .is_some_and(|(_, g, _)| g == generation)
                {
                    self.values.remove(&key);
                }
                StoreReply::Done
            }
            _ => StoreReply::Failed(StoreFailure::new("unknown operation")),
        })
    }
}

impl Harness {
    /// Answers every pending store operation from `store` as process `owner`, repeatedly, until
    /// none is pending; returns how many went unanswered (a silent store).
    pub fn serve_store(&mut self, store: &mut FakeStore, owner: u32) -> usize {
        let mut unanswered = Vec::new();
        while !self.store_ops.is_empty() {
            for op in std::mem::take(&mut self.store_ops) {
                match store.execute(self.now, owner, &op) {
                    Some(reply) => self
                        .mgr
                        .handle_store(self.now, self.wall(), op.id, reply)
                        .unwrap(),
                    None => unanswered.push(op),
                }
            }
            self.drain();
        }
        let n = unanswered.len();
        self.store_ops = unanswered;
        n
    }

    /// Answers every pending store operation with a real store (blocking), repeatedly, until
    /// none is pending.
    pub fn serve_real_store(&mut self, store: &dyn token_driver::BlockingStore) {
        while !self.store_ops.is_empty() {
            for op in std::mem::take(&mut self.store_ops) {
                let reply = store.execute(&op);
                self.mgr
                    .handle_store(self.now, self.wall(), op.id, reply)
                    .unwrap();
            }
            self.drain();
        }
    }

    /// Serves a real store and token requests until neither is pending.
    pub fn serve_all_real(
        &mut self,
        server: &mut FakeServer,
        store: &dyn token_driver::BlockingStore,
    ) {
        loop {
            self.serve_real_store(store);
            if self.pending.is_empty() {
                return;
            }
            self.serve(server);
        }
    }

    /// Serves store operations and token requests until neither is pending.
    pub fn serve_all(&mut self, server: &mut FakeServer, store: &mut FakeStore, owner: u32) {
        loop {
            let silent = self.serve_store(store, owner);
            if self.pending.is_empty() {
                if silent == self.store_ops.len() {
                    return;
                }
                continue;
            }
            self.serve(server);
        }
    }
}
