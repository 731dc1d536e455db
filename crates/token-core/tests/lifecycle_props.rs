//! Property tests of the lifecycle against a small reference model, over random sequences of
//! requests, responses, failures, lifetimes, windows and clock steps.
//!
//! Checked after every step:
//! (a) no token handed out is expired at `now`;
//! (b) never more than one request in flight per key;
//! (c) a token outside its refresh window is served without a request;
//! (d) no more requests than the policy allows: the manager sends exactly when the model says a
//!     fetch is due (no token or inside the window, nothing in flight, not in backoff);
//! (e) no panic, and after `handle_timeout(t)` the next timeout is later than `t`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use token_core::{
    AccessToken, Event, Lookup, ManagerConfig, Output, RequestId, Target, TokenKey, TokenRequest,
    TransportErrorKind, TransportFailure,
};
use token_testkit::sansio::{FakeServer, Harness, Reply, json};

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    StepBack(u64),
    Request(usize),
    Respond { pick: usize, reply: ReplyKind },
    Timeout,
    Invalidate { key: usize, stale: bool },
    Confirm(usize),
}

#[derive(Clone, Debug)]
enum ReplyKind {
    Token(u64),
    Retryable,
    Rejected,
    Transport,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..4_000_000).prop_map(Op::Advance),
        1 => (0u64..600_000).prop_map(Op::StepBack),
        4 => (0usize..3).prop_map(Op::Request),
        3 => (any::<usize>(), reply()).prop_map(|(pick, reply)| Op::Respond { pick, reply }),
        2 => Just(Op::Timeout),
        1 => (0usize..3, any::<bool>()).prop_map(|(key, stale)| Op::Invalidate { key, stale }),
        1 => (0usize..3).prop_map(Op::Confirm),
    ]
}

fn reply() -> impl Strategy<Value = ReplyKind> {
    prop_oneof![
        4 => (1u64..8000).prop_map(ReplyKind::Token),
        1 => Just(ReplyKind::Retryable),
        1 => Just(ReplyKind::Rejected),
        1 => Just(ReplyKind::Transport),
    ]
}

#[derive(Clone, Debug)]
struct ModelToken {
    text: String,
    sent_at: Instant,
    expires_at: Instant,
    refresh_at: Instant,
    original_refresh_at: Instant,
}

/// The reference model of one key.
#[derive(Clone, Debug, Default)]
struct ModelKey {
    token: Option<ModelToken>,
    flight: Option<(RequestId, Instant)>,
    retry_at: Option<Instant>,
    last_used: Option<Instant>,
    exists: bool,
    previous_tokens: Vec<String>,
    /// Rejections since the last confirmation.
    rejections: u32,
}

struct Model {
    keys: Vec<ModelKey>,
    window: Duration,
    max_lifetime: Duration,
    request_timeout: Duration,
    idle_timeout: Duration,
    rejected_backoff: Duration,
    max_backoff: Duration,
    now: Instant,
}

impl Model {
    fn due(&self, k: usize) -> bool {
        let m = &self.keys[k];
        let now = self.now;
        let wants = m.token.as_ref().is_none_or(|t| now >= t.refresh_at);
        wants && m.flight.is_none() && m.retry_at.is_none_or(|t| now >= t)
    }

    fn valid_token(&self, k: usize) -> Option<&ModelToken> {
        self.keys[k]
            .token
            .as_ref()
            .filter(|t| self.now < t.expires_at)
    }
}

struct Run {
    h: Harness,
    keys: Vec<TokenKey>,
    model: Model,
    pending: Vec<TokenRequest>,
    issued: usize,
}

impl Run {
    fn new(window: u64) -> Self {
        let mut cfg = ManagerConfig::default();
        cfg.refresh_window = Duration::from_secs(window);
        let model_cfg = cfg.clone();
        let mut h = Harness::new(cfg);
        let keys = (0..3)
            .map(|i| TokenKey::new(h.generic_client(&format!("client-{i}"))))
            .collect();
        let now = h.now;
        Self {
            h,
            keys,
            model: Model {
                keys: vec![ModelKey::default(); 3],
                window: model_cfg.refresh_window,
                max_lifetime: model_cfg.max_lifetime,
                request_timeout: model_cfg.request_timeout,
                idle_timeout: model_cfg.idle_timeout,
                rejected_backoff: model_cfg.rejected_backoff,
                max_backoff: model_cfg.max_backoff,
                now,
            },
            pending: Vec::new(),
            issued: 0,
        }
    }

    fn key_index(&self, key: &TokenKey) -> usize {
        self.keys.iter().position(|k| k == key).unwrap()
    }

    /// Drains output; returns the sends per key index, applies events to the model.
    fn drain(&mut self) -> Result<Vec<usize>, TestCaseError> {
        let mut sent = Vec::new();
        loop {
            match self.h.mgr.poll_output(self.h.now) {
                Output::Send(send) => {
                    let Target::Access(key) = &send.target else {
                        return Err(TestCaseError::fail("unexpected target"));
                    };
                    let k = self.key_index(key);
                    sent.push(k);
                    self.model.keys[k].flight = Some((send.id, self.model.now));
                    self.pending.push(send);
                }
                Output::Event(Event::Failed { key, retry_at, .. }) => {
                    let k = self.key_index(&key);
                    prop_assert!(retry_at > self.model.now, "(d) backoff in the past");
                    self.model.keys[k].retry_at = Some(retry_at);
                }
                Output::Event(_) => {}
                Output::Store(_) => return Err(TestCaseError::fail("no store is configured")),
                Output::Timeout(t) => {
                    prop_assert!(t > self.h.now, "(e) timeout {:?} not after now", t);
                    return Ok(sent);
                }
            }
        }
    }

    fn check_flights(&self) -> Result<(), TestCaseError> {
        let mut per_key: HashMap<usize, usize> = HashMap::new();
        for k in self
            .model
            .keys
            .iter()
            .enumerate()
            .filter(|(_, m)| m.flight.is_some())
        {
            *per_key.entry(k.0).or_default() += 1;
        }
        prop_assert!(
            self.h.mgr.in_flight() <= 3,
            "(b) {} in flight",
            self.h.mgr.in_flight()
        );
        prop_assert_eq!(self.h.mgr.in_flight(), per_key.values().sum::<usize>());
        // What a driver may serve without asking is a valid token at a time no fetch is due.
        for k in 0..3 {
            if let Some((token, until)) = self.h.mgr.servable(self.model.now, &self.keys[k]) {
                let want = self.model.valid_token(k);
                prop_assert!(want.is_some(), "servable token the model says is gone");
                let want = want.unwrap();
                prop_assert_eq!(token.access_token().secret(), want.text.as_str());
                prop_assert!(until > self.model.now && until <= want.expires_at);
                // A token in use is never servable once its refresh is due. One not in use may
                // be: the driver reports the hit with `touch`, which starts the refresh.
                let in_use = self.model.keys[k]
                    .last_used
                    .is_some_and(|u| u >= want.sent_at);
                prop_assert!(
                    !(self.model.due(k) && in_use),
                    "servable while a fetch is due"
                );
            }
        }
        Ok(())
    }

    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        // Steps that hand the manager the harness clock update the model's time: like the
        // manager, the model keeps the latest time the manager has been given.
        let calls_manager = match &op {
            Op::Advance(_) | Op::StepBack(_) => false,
            Op::Respond { .. } => !self.pending.is_empty(),
            Op::Request(_) | Op::Timeout | Op::Invalidate { .. } | Op::Confirm(_) => true,
        };
        if calls_manager {
            self.model.now = self.model.now.max(self.h.now);
        }
        match op {
            Op::Advance(ms) => self.h.now += Duration::from_millis(ms),
            Op::StepBack(ms) => {
                // The clock steps back; the manager (and the model) keep the latest `now`.
                self.h.now = self
                    .h
                    .now
                    .checked_sub(Duration::from_millis(ms))
                    .unwrap_or(self.h.now);
                self.h.now = self.h.now.max(self.h.start);
            }
            Op::Request(k) => {
                let due = self.model.due(k);
                let valid = self.model.valid_token(k).cloned();
                let key = self.keys[k].clone();
                let lookup = self.h.mgr.request(self.h.now, &key).unwrap();
                let m = &mut self.model.keys[k];
                m.exists = true;
                m.last_used = Some(self.model.now);
                if valid.is_none() {
                    m.token = None;
                }
                let sent = self.drain()?;
                prop_assert_eq!(sent.len(), usize::from(due), "(d) sends for a request");
                match (&lookup, &valid) {
                    (Lookup::Ready(t), Some(want)) => {
                        prop_assert!(!t.is_expired(self.model.now), "(a) expired token served");
                        prop_assert!(want.expires_at > self.model.now);
                        prop_assert_eq!(t.access_token().secret(), want.text.as_str());
                        prop_assert_eq!(t.expires_at(), want.expires_at);
                        prop_assert_eq!(t.refresh_at(), want.original_refresh_at);
                        if self.model.now < want.refresh_at {
                            prop_assert!(sent.is_empty(), "(c) fresh token caused a request");
                        }
                    }
                    (Lookup::Ready(_), None) => {
                        return Err(TestCaseError::fail(
                            "(a) served a token the model says is gone",
                        ));
                    }
                    (Lookup::Pending, None) => {
                        prop_assert!(
                            self.model.keys[k].flight.is_some(),
                            "pending with nothing in flight"
                        );
                    }
                    (Lookup::Failed { retry_at, .. }, None) => {
                        prop_assert!(self.model.keys[k].flight.is_none());
                        prop_assert!(*retry_at > self.model.now);
                    }
                    (other, Some(_)) => {
                        return Err(TestCaseError::fail(format!(
                            "valid token not served: {other:?}"
                        )));
                    }
                }
            }
            Op::Respond { pick, reply } => {
                if self.pending.is_empty() {
                    return Ok(());
                }
                let send = self.pending.remove(pick % self.pending.len());
                let Target::Access(key) = &send.target else {
                    unreachable!()
                };
                let k = self.key_index(key);
                let current = self.model.keys[k]
                    .flight
                    .is_some_and(|(id, _)| id == send.id);
                let sent_at = self.model.keys[k].flight.map(|(_, s)| s);
                let wall = self.h.wall();
                match reply {
                    ReplyKind::Transport => self
                        .h
                        .mgr
                        .handle_send_failed(
                            self.h.now,
                            send.id,
                            TransportFailure::new(TransportErrorKind::Io, "reset"),
                        )
                        .unwrap(),
                    ref other => {
                        let response = match other {
                            ReplyKind::Token(secs) => {
                                self.issued += 1;
                                json(
                                    200,
                                    &format!(
                                        r#"{{"access_token":"tok-{}","expires_in":{secs}}}"#,
                                        self.issued
                                    ),
                                )
                            }
                            ReplyKind::Retryable => {
                                json(503, r#"{"error":"temporarily_unavailable"}"#)
                            }
                            _ => json(401, r#"{"error":"invalid_client"}"#),
                        };
                        self.h
                            .mgr
                            .handle_response(self.h.now, wall, send.id, response)
                            .unwrap();
                    }
                }
                if current {
                    let m = &mut self.model.keys[k];
                    m.flight = None;
                    if let (ReplyKind::Token(secs), Some(sent_at)) = (&reply, sent_at) {
                        let lifetime = Duration::from_secs(*secs).min(self.model.max_lifetime);
                        let exp = sent_at + lifetime;
                        if exp > self.model.now {
                            let window = self.model.window.min(lifetime / 2);
                            if let Some(old) = m.token.take() {
                                m.previous_tokens.push(old.text);
                            }
                            m.token = Some(ModelToken {
                                text: format!("tok-{}", self.issued),
                                sent_at,
                                expires_at: exp,
                                refresh_at: sent_at + (lifetime - window),
                                original_refresh_at: sent_at + (lifetime - window),
                            });
                            m.retry_at = None;
                        }
                    }
                }
                let sent = self.drain()?;
                prop_assert!(sent.is_empty(), "(d) a response caused a request");
            }
            Op::Timeout => {
                self.h.mgr.handle_timeout(self.h.now);
                let now = self.model.now;
                // Abandoned flights.
                for m in &mut self.model.keys {
                    if m.flight
                        .is_some_and(|(_, sent)| now >= sent + self.model.request_timeout)
                    {
                        // Abandoned as timed out: a failure, so a backoff (its exact end comes
                        // with the Failed event).
                        m.flight = None;
                        m.retry_at = Some(now + Duration::from_nanos(1));
                    }
                }
                // Proactive refresh: tokens inside their window that were used since they were
                // fetched, with nothing in flight and no backoff.
                let expected: Vec<usize> = (0..3)
                    .filter(|&k| {
                        let m = &self.model.keys[k];
                        m.token.as_ref().is_some_and(|t| {
                            now < t.expires_at
                                && now >= t.refresh_at
                                && m.last_used.is_some_and(|u| u >= t.sent_at)
                        }) && m.flight.is_none()
                            && m.retry_at.is_none_or(|t| now >= t)
                    })
                    .collect();
                let mut sent = self.drain()?;
                sent.sort();
                prop_assert_eq!(sent, expected, "(d) proactive refreshes");
                for m in &mut self.model.keys {
                    if m.token.as_ref().is_some_and(|t| now >= t.expires_at) {
                        m.token = None;
                    }
                    let idle = m
                        .last_used
                        .is_none_or(|u| now >= u + self.model.idle_timeout);
                    if m.exists
                        && m.token.is_none()
                        && m.flight.is_none()
                        && m.retry_at.is_none_or(|t| now >= t)
                        && idle
                    {
                        // Forgotten by the manager: the model forgets too.
                        *m = ModelKey {
                            previous_tokens: std::mem::take(&mut m.previous_tokens),
                            ..ModelKey::default()
                        };
                    }
                }
            }
            Op::Confirm(key) => {
                let text = self.model.valid_token(key).map(|t| t.text.clone());
                // With no valid token, an unknown one: must change nothing.
                let shown = text.clone().unwrap_or_else(|| "never-issued".to_owned());
                self.h
                    .mgr
                    .confirm(self.h.now, &self.keys[key], &AccessToken::new(shown));
                if text.is_some() {
                    self.model.keys[key].rejections = 0;
                    // The renewal scheduled after a rejection is off: back to the token's own
                    // refresh point.
                    let t = self.model.keys[key].token.as_mut().unwrap();
                    t.refresh_at = t.original_refresh_at;
                }
                let sent = self.drain()?;
                prop_assert!(sent.is_empty(), "(d) a confirmation sends nothing");
            }
            Op::Invalidate { key, stale } => {
                let m = &self.model.keys[key];
                let target = if stale {
                    m.previous_tokens.last().cloned()
                } else {
                    self.model.valid_token(key).map(|t| t.text.clone())
                };
                // With nothing to invalidate, an unknown token: must change nothing.
                let text = target.unwrap_or_else(|| "never-issued".to_owned());
                let dropped = self
                    .h
                    .mgr
                    .invalidate(self.h.now, &self.keys[key], &AccessToken::new(text.clone()))
                    .dropped();
                let is_current = self.model.keys[key]
                    .token
                    .as_ref()
                    .is_some_and(|t| t.text == text);
                let rejections = self.model.keys[key].rejections;
                // Bounded renewal: only the first rejection since the API last accepted a token
                // drops it; later ones keep it and renew it after a backoff.
                prop_assert_eq!(
                    dropped,
                    is_current && rejections == 0,
                    "invalidation must be token-aware and bounded"
                );
                if is_current {
                    let now = self.model.now;
                    let m = &mut self.model.keys[key];
                    m.rejections += 1;
                    if dropped {
                        m.previous_tokens.push(text);
                        m.token = None;
                    } else {
                        let renew = self.h.mgr.refresh_due_at(&self.keys[key]).unwrap();
                        let t = m.token.as_mut().unwrap();
                        let base = self.model.rejected_backoff * (1 << (rejections - 1).min(20));
                        let base = base.min(self.model.max_backoff);
                        prop_assert!(
                            renew == t.refresh_at
                                || (renew >= now + base / 2 && renew <= now + base),
                            "renewal after {} rejections at {:?} from now",
                            rejections,
                            renew.checked_duration_since(now)
                        );
                        t.refresh_at = t.refresh_at.min(renew);
                    }
                }
                let sent = self.drain()?;
                prop_assert!(sent.is_empty(), "(d) invalidation alone sends nothing");
            }
        }
        self.check_flights()
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn lifecycle_matches_the_model(
        window in prop_oneof![Just(60u64), Just(300), 1u64..4000],
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut run = Run::new(window);
        for op in ops {
            run.step(op)?;
        }
    }

    /// bookingtime's chain under random faults: no expired token, one request per target, no
    /// busy loop, no panic.
    #[test]
    fn bookingtime_chain_invariants(
        ops in proptest::collection::vec(
            prop_oneof![
                (0u64..400_000).prop_map(|ms| (0u8, ms as usize)),
                (0usize..3).prop_map(|o| (1u8, o)),
                (0usize..5).prop_map(|r| (2u8, r)),
                Just((3u8, 0usize)),
                Just((4u8, 0usize)),
            ],
            1..80,
        ),
    ) {
        let mut h = Harness::new(ManagerConfig::default());
        let mut server = FakeServer::new(300);
        let client = h.bookingtime_client();
        let orgs: Vec<TokenKey> = ["o1", "o2", "o3"].iter().map(|o| TokenKey::with_organization(client, *o)).collect();
        for (kind, arg) in ops {
            match kind {
                0 => h.advance(Duration::from_millis(arg as u64)),
                1 => {
                    if let Lookup::Ready(t) = h.mgr.request(h.now, &orgs[arg]).unwrap() {
                        prop_assert!(!t.is_expired(h.now), "(a) expired token served");
                    }
                }
                2 => {
                    let reply = match arg {
                        0 => Some(Reply::OAuthError(400, "invalid_grant")),
                        1 => Some(Reply::Html503),
                        2 => Some(Reply::TransportFailure),
                        _ => None,
                    };
                    if let Some(r) = reply { server.then(r); }
                    h.drain();
                    if !h.pending.is_empty() {
                        // Answer the oldest request only.
                        let first = h.pending.remove(0);
                        let rest = std::mem::replace(&mut h.pending, vec![first]);
                        h.serve_once(&mut server);
                        h.pending.extend(rest);
                    }
                }
                3 => server.valid_refresh.clear(),
                _ => h.mgr.handle_timeout(h.now),
            }
            h.drain(); // asserts (e): the next timeout is later than now
            // Three organizations and one refresh-token chain: at most one request each.
            prop_assert!(h.mgr.in_flight() <= 4, "(b) {} in flight", h.mgr.in_flight());
        }
    }
}

#[test]
fn model_smoke() {
    // The model agrees with the manager on a plain fetch, a fresh hit and a refresh.
    let mut run = Run::new(60);
    run.step(Op::Request(0)).unwrap();
    run.step(Op::Respond {
        pick: 0,
        reply: ReplyKind::Token(3600),
    })
    .unwrap();
    run.step(Op::Request(0)).unwrap();
    run.step(Op::Advance(3_550_000)).unwrap();
    run.step(Op::Request(0)).unwrap();
    assert_eq!(run.pending.len(), 1);
}
