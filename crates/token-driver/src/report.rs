//! A drop guard for the transports' jobs: each token request and store operation handed to a
//! transport is reported to the driver exactly once.

use std::sync::Arc;

use token_core::{
    RequestId, StoreFailure, StoreOpId, StoreReply, TransportErrorKind, TransportFailure,
};

use crate::Driver;

/// Reports a request's (or store operation's) outcome exactly once: with its result, or, if
/// the job panics or is dropped unrun (the client shutting down, no runtime), as a failure
/// saying it was `abandoned`, so nobody waits on work nobody will finish.
pub struct Report {
    driver: Arc<Driver>,
    pending: Option<Pending>,
    abandoned: &'static str,
}

#[derive(Clone, Copy)]
enum Pending {
    Request(RequestId),
    Store(StoreOpId),
}

impl Report {
    /// A guard for token request `id`; `abandoned` completes the sentence "the token request
    /// …" in the failure reported if the job never finishes.
    pub fn request(driver: &Arc<Driver>, id: RequestId, abandoned: &'static str) -> Self {
        Self {
            driver: Arc::clone(driver),
            pending: Some(Pending::Request(id)),
            abandoned,
        }
    }

    /// A guard for store operation `id` (`abandoned` as for [`request`](Self::request)).
    pub fn store(driver: &Arc<Driver>, id: StoreOpId, abandoned: &'static str) -> Self {
        Self {
            driver: Arc::clone(driver),
            pending: Some(Pending::Store(id)),
            abandoned,
        }
    }

    /// Tells the driver the request is going out now (its timeout counts from here).
    pub fn sent(&self) {
        if let Some(Pending::Request(id)) = self.pending {
            self.driver.sent(id);
        }
    }

    /// Reports the request's outcome. (The report is marked done only once it went through:
    /// if reporting panics, the drop guard reports a failure instead.)
    pub fn finish(&mut self, outcome: Result<http::Response<Vec<u8>>, TransportFailure>) {
        if let Some(Pending::Request(id)) = self.pending {
            self.driver.complete(id, outcome);
            self.pending = None;
        }
    }

    /// Reports the store operation's reply.
    pub fn finish_store(&mut self, reply: StoreReply) {
        if let Some(Pending::Store(id)) = self.pending {
            self.driver.complete_store(id, reply);
            self.pending = None;
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        match self.pending.take() {
            Some(Pending::Request(id)) => self.driver.complete(
                id,
                Err(TransportFailure::new(
                    TransportErrorKind::Other,
                    format!("the token request {}", self.abandoned),
                )),
            ),
            Some(Pending::Store(id)) => self.driver.complete_store(
                id,
                StoreReply::Failed(StoreFailure::new(format!(
                    "the store operation {}",
                    self.abandoned
                ))),
            ),
            None => {}
        }
    }
}
