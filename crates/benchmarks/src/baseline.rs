//! The hand-written cache a caller would write without this project: a token string and its
//! refresh instant behind a mutex, cloned out on every hit.

use std::sync::Mutex;
use std::time::Instant;

/// `Mutex<Option<(String, Instant)>>`: the token and the instant it stops being served.
#[derive(Debug, Default)]
pub struct HandCache {
    slot: Mutex<Option<(String, Instant)>>,
}

impl HandCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `token`, served until `refresh_at`.
    pub fn put(&self, token: String, refresh_at: Instant) {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some((token, refresh_at));
    }

    /// The cached token if it is still fresh: reads the clock, locks, compares, clones.
    pub fn get(&self) -> Option<String> {
        let now = Instant::now();
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some((token, refresh_at)) if now < *refresh_at => Some(token.clone()),
            _ => None,
        }
    }
}
