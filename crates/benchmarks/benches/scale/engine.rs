//! The engines under test, lifecycle v2: the sans-IO manager, and the driver with a recording
//! executor. (`crates/benchmarks/before/engine_930f991.rs` is the same for the engine before.)

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use token_core::{
    ClientId, ClientSecret, Credentials, Lookup, ManagerConfig, Output, StoreRequest, Target,
    TokenKey, TokenManager, TokenRequest, presets,
};
use token_driver::{Clock as _, Driver, Executor, KeySlot, ManualClock, TransportConfig};

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
    /// Drains the output until the timeout, keeping the requests.
    fn drain(&mut self) {
        loop {
            match self.mgr.poll_output(self.now) {
                Output::Send(send) => self.pending.push(send),
                Output::Event(_) => {}
                Output::Store(_) => unreachable!("no store configured"),
                Output::Timeout(_) => return,
            }
        }
    }

    /// Answers every pending request (and those the answers cause).
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
        // An arbitrary origin for virtual time; nothing depends on its value.
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
        // The keys are what a caller holds; building them is not the manager's work.
        let orgs = std::mem::take(&mut self.orgs);
        self.keys = orgs
            .into_iter()
            .map(|o| TokenKey::with_organization(client, o))
            .collect();
    }

    fn first_fetch(&mut self, i: usize) {
        self.now += SPACING;
        // What a driver does on a miss: fire due timers, ask, drain.
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
        // The timer fires the refresh: nobody asks.
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

/// Records what the driver hands its transport.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<TokenRequest>>>);

impl Executor for Recorder {
    fn send(&self, driver: &Arc<Driver>, request: TokenRequest) {
        driver.sent(request.id);
        self.0.lock().expect("recorder").push(request);
    }

    fn store(&self, _: &Arc<Driver>, _: StoreRequest) {
        unreachable!("no store configured")
    }

    fn wake(&self) {}
}

/// `token_driver::Driver` with a recording executor answered in-process, on a `ManualClock`
/// (no timer worker: the bench calls `run_timers` where a worker would).
pub struct ViaDriver {
    driver: Arc<Driver>,
    recorder: Recorder,
    clock: ManualClock,
    orgs: Vec<String>,
    keys: Vec<TokenKey>,
    slots: Vec<Arc<KeySlot>>,
    issued: u64,
    next_refresh: usize,
}

impl ViaDriver {
    fn serve(&mut self) -> usize {
        let mut served = 0;
        loop {
            let sends = std::mem::take(&mut *self.recorder.0.lock().expect("recorder"));
            if sends.is_empty() {
                return served;
            }
            for send in sends {
                self.issued += 1;
                served += 1;
                let refresh_leg = matches!(send.target, Target::RefreshToken(_));
                self.driver
                    .complete(send.id, Ok(answer(refresh_leg, self.issued)));
            }
        }
    }
}

impl Engine for ViaDriver {
    const NAME: &'static str = "token_driver::Driver";

    fn new(orgs: usize) -> Self {
        let clock = ManualClock::starting_now();
        let mut config = TransportConfig::default();
        config.clock = Arc::new(clock.clone());
        let recorder = Recorder::default();
        Self {
            driver: Driver::new(&config, recorder.clone()),
            recorder,
            clock,
            orgs: (0..orgs).map(org).collect(),
            keys: Vec::with_capacity(orgs),
            slots: Vec::with_capacity(orgs),
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
        // What a handle for a new organization does: its slot, a miss, a step, the fetch, the
        // first hit (which tells the manager the key is in use).
        let slot = self.driver.slot(&self.keys[i]);
        assert!(self.driver.cached(&slot).is_none());
        let lookup = self.driver.step(&slot).expect("a valid key");
        assert!(matches!(lookup, Lookup::Pending), "a first fetch");
        self.serve();
        assert!(
            self.driver.cached(&slot).is_some(),
            "served after the fetch"
        );
        self.slots.push(slot);
    }

    fn hit(&mut self, i: usize) {
        let token = self.driver.cached(&self.slots[i]).expect("a hit");
        drop(std::hint::black_box(token));
    }

    fn refresh(&mut self) {
        let slot = &self.slots[self.next_refresh];
        self.next_refresh += 1;
        let at = self
            .driver
            .with_manager(|m| m.refresh_due_at(slot.key()))
            .expect("cached");
        let now = self.clock.now();
        if at > now {
            self.clock.advance(at - now);
        }
        // What the timer worker does when it wakes at the refresh point.
        self.driver.run_timers();
        assert_eq!(self.serve(), 1, "one refresh per refresh point");
    }

    fn timeout(&mut self) -> bool {
        self.driver.run_timers();
        true
    }
}
