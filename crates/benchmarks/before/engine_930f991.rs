//! `benches/scale/engine.rs` for the engine before lifecycle v2 (commit 930f991): the same two
//! engines over its API. `run.sh` copies it over `benches/scale/engine.rs` in a checkout of
//! that commit. Differences forced by the old API, and nothing else:
//! - the old driver has no timer entry point of its own (timers ran only when a caller
//!   stepped), so its refresh is a caller's `step` at the refresh point, and it has no
//!   "timeout" row;
//! - the old driver's `complete` returns the requests it causes instead of handing them to an
//!   executor, and waiters watch a generation counter instead of per-key slots.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use token_core::{
    ClientId, ClientSecret, Credentials, Lookup, ManagerConfig, Output, Target, TokenKey,
    TokenManager, TokenRequest, presets,
};
use token_driver::{Clock as _, Driver, ManualClock};

use crate::{Engine, SPACING, answer, org};

fn bookingtime() -> token_core::ClientConfig {
    presets::bookingtime_app(Credentials::new(
        "bt-client",
        ClientSecret::new("bt-secret"),
    ))
    .build()
    .expect("a valid preset")
}

/// `TokenManager` driven by hand: virtual time, answers in-process.
pub struct SansIo {
    mgr: TokenManager,
    now: Instant,
    wall: SystemTime,
    client: Option<ClientId>,
    orgs: Vec<String>,
    keys: Vec<TokenKey>,
    pending: Vec<TokenRequest>,
    issued: u64,
    next_refresh: usize,
}

impl SansIo {
    fn drain(&mut self) {
        loop {
            match self.mgr.poll_output(self.now) {
                Output::Send(send) => self.pending.push(send),
                Output::Event(_) => {}
                Output::Timeout(_) => return,
            }
        }
    }

    fn serve(&mut self) -> usize {
        let mut served = 0;
        while !self.pending.is_empty() {
            for send in std::mem::take(&mut self.pending) {
                self.issued += 1;
                served += 1;
                let refresh_leg = matches!(send.target, Target::RefreshToken(_));
                self.mgr
                    .handle_response(
                        self.now,
                        self.wall,
                        send.id,
                        answer(refresh_leg, self.issued),
                    )
                    .expect("a request of this manager");
            }
            self.drain();
        }
        served
    }
}

impl Engine for SansIo {
    const NAME: &'static str = "sans-IO TokenManager";

    fn new(orgs: usize) -> Self {
        let now = Instant::now();
        Self {
            mgr: TokenManager::new(ManagerConfig::default()),
            now,
            wall: SystemTime::now(),
            client: None,
            orgs: (0..orgs).map(org).collect(),
            keys: Vec::with_capacity(orgs),
            pending: Vec::new(),
            issued: 0,
            next_refresh: 0,
        }
    }

    fn register(&mut self) {
        let client = self.mgr.register(bookingtime());
        self.client = Some(client);
        let orgs = std::mem::take(&mut self.orgs);
        self.keys = orgs
            .into_iter()
            .map(|o| TokenKey::with_organization(client, o))
            .collect();
    }

    fn first_fetch(&mut self, i: usize) {
        self.now += SPACING;
        self.mgr.handle_timeout(self.now);
        let lookup = self
            .mgr
            .request(self.now, &self.keys[i])
            .expect("a valid key");
        assert!(matches!(lookup, Lookup::Pending), "a first fetch");
        self.drain();
        self.serve();
        assert!(self.mgr.token(self.now, &self.keys[i]).is_some());
    }

    fn hit(&mut self, i: usize) {
        match self
            .mgr
            .request(self.now, &self.keys[i])
            .expect("a valid key")
        {
            Lookup::Ready(token) => drop(std::hint::black_box(token)),
            other => panic!("not a hit: {other:?}"),
        }
        self.drain();
    }

    fn refresh(&mut self) {
        let key = &self.keys[self.next_refresh];
        self.next_refresh += 1;
        let at = self.mgr.token(self.now, key).expect("cached").refresh_at();
        self.now = self.now.max(at);
        // The old handle_timeout also starts due refreshes of tokens in use (by a scan).
        self.mgr.handle_timeout(self.now);
        self.drain();
        assert_eq!(self.serve(), 1, "one refresh per refresh point");
    }

    fn timeout(&mut self) -> bool {
        self.mgr.handle_timeout(self.now);
        self.drain();
        true
    }
}

/// The old `token_driver::Driver`, answered in-process, on a `ManualClock`.
pub struct ViaDriver {
    driver: Driver,
    clock: ManualClock,
    orgs: Vec<String>,
    keys: Vec<TokenKey>,
    issued: u64,
    next_refresh: usize,
}

impl ViaDriver {
    fn serve(&mut self, mut sends: Vec<TokenRequest>) -> usize {
        let mut served = 0;
        while let Some(send) = sends.pop() {
            self.issued += 1;
            served += 1;
            let refresh_leg = matches!(send.target, Target::RefreshToken(_));
            sends.extend(
                self.driver
                    .complete(send.id, Ok(answer(refresh_leg, self.issued))),
            );
        }
        served
    }
}

impl Engine for ViaDriver {
    const NAME: &'static str = "token_driver::Driver";

    fn new(orgs: usize) -> Self {
        let clock = ManualClock::starting_now();
        Self {
            driver: Driver::new(ManagerConfig::default(), Arc::new(clock.clone())),
            clock,
            orgs: (0..orgs).map(org).collect(),
            keys: Vec::with_capacity(orgs),
            issued: 0,
            next_refresh: 0,
        }
    }

    fn register(&mut self) {
        let (client, _) = self.driver.register(bookingtime());
        let orgs = std::mem::take(&mut self.orgs);
        self.keys = orgs
            .into_iter()
            .map(|o| TokenKey::with_organization(client, o))
            .collect();
    }

    fn first_fetch(&mut self, i: usize) {
        self.clock.advance(SPACING);
        let key = self.keys[i].clone();
        assert!(self.driver.cached(&key).is_none());
        let step = self.driver.step(&key).expect("a valid key");
        assert!(matches!(step.lookup, Lookup::Pending), "a first fetch");
        self.serve(step.sends);
        assert!(self.driver.cached(&key).is_some(), "served after the fetch");
    }

    fn hit(&mut self, i: usize) {
        let token = self.driver.cached(&self.keys[i]).expect("a hit");
        drop(std::hint::black_box(token));
    }

    fn refresh(&mut self) {
        let key = self.keys[self.next_refresh].clone();
        self.next_refresh += 1;
        let now = self.clock.now();
        let at = self
            .driver
            .with_manager(|m| m.token(now, &key).map(|t| t.refresh_at()))
            .expect("cached");
        if at > now {
            self.clock.advance(at - now);
        }
        // A caller's miss at the refresh point: the old engine's only way to run the timers.
        assert!(
            self.driver.cached(&key).is_none(),
            "due at its refresh point"
        );
        let step = self.driver.step(&key).expect("a valid key");
        assert!(matches!(step.lookup, Lookup::Ready(_)));
        assert_eq!(self.serve(step.sends), 1, "one refresh per refresh point");
    }

    fn timeout(&mut self) -> bool {
        false
    }
}
