//! A one-shot gate for token requests: armed with `n`, it holds every request that reaches
//! it until `n` are held at once, then lets them all through and opens. A held request that
//! waits longer than the gate's timeout answers 503, and so do the others it was held with:
//! the gate then opens, so nothing hangs.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::state::lock;

/// What the requests held at a gate are told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    Holding,
    Open,
    TimedOut,
}

/// How a request got past the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Passed {
    /// Let through: the gate was open, or enough requests arrived.
    Open,
    /// Held too long.
    TimedOut,
}

struct Hold {
    id: u64,
    target: usize,
    held: usize,
    timeout: Duration,
    signal: watch::Sender<Signal>,
}

/// The gate of one provider.
pub(crate) struct Gate {
    hold: Mutex<Option<Hold>>,
    next_id: Mutex<u64>,
}

/// Leaves the hold it was taken for if the request is dropped while held.
struct Leave<'a> {
    gate: &'a Gate,
    id: u64,
    armed: bool,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Some(hold) = lock(&self.gate.hold).as_mut().filter(|h| h.id == self.id)
        {
            hold.held = hold.held.saturating_sub(1);
        }
    }
}

impl Gate {
    pub(crate) fn new() -> Gate {
        Gate {
            hold: Mutex::new(None),
            next_id: Mutex::new(0),
        }
    }

    /// Arms the gate for `n` requests at once (0 or 1: open). Requests held by a previous
    /// arming are let through.
    pub(crate) fn arm(&self, n: usize, timeout: Duration) {
        let id = {
            let mut next = lock(&self.next_id);
            *next += 1;
            *next
        };
        let new = (n > 1).then(|| Hold {
            id,
            target: n,
            held: 0,
            timeout,
            signal: watch::Sender::new(Signal::Holding),
        });
        if let Some(old) = std::mem::replace(&mut *lock(&self.hold), new) {
            old.signal.send_replace(Signal::Open);
        }
    }

    /// Opens the gate, letting every held request through.
    pub(crate) fn open(&self) {
        if let Some(old) = lock(&self.hold).take() {
            old.signal.send_replace(Signal::Open);
        }
    }

    /// How many requests the gate holds right now.
    pub(crate) fn held(&self) -> usize {
        lock(&self.hold).as_ref().map_or(0, |h| h.held)
    }

    /// Waits at the gate.
    pub(crate) async fn pass(&self) -> Passed {
        let (id, mut signal, timeout) = {
            let mut hold = lock(&self.hold);
            let Some(h) = hold.as_mut() else {
                return Passed::Open;
            };
            h.held += 1;
            if h.held >= h.target {
                if let Some(h) = hold.take() {
                    h.signal.send_replace(Signal::Open);
                }
                return Passed::Open;
            }
            (h.id, h.signal.subscribe(), h.timeout)
        };
        let mut leave = Leave {
            gate: self,
            id,
            armed: true,
        };
        let waited = tokio::time::timeout(timeout, signal.wait_for(|s| *s != Signal::Holding))
            .await
            .map(|r| r.map(|s| *s));
        leave.armed = false;
        match waited {
            Ok(Ok(Signal::Open)) => Passed::Open,
            Ok(Ok(_)) => Passed::TimedOut,
            // The hold was dropped without a word: nothing holds this request any more.
            Ok(Err(_)) => Passed::Open,
            // Opened just as the timer fired: it counts as opened.
            Err(_elapsed) if *signal.borrow() == Signal::Open => Passed::Open,
            Err(_elapsed) => {
                let mut hold = lock(&self.hold);
                if hold.as_ref().is_some_and(|h| h.id == id)
                    && let Some(h) = hold.take()
                {
                    h.signal.send_replace(Signal::TimedOut);
                }
                Passed::TimedOut
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn open_gate_passes_at_once() {
        let gate = Gate::new();
        assert_eq!(gate.pass().await, Passed::Open);
        gate.arm(1, Duration::from_secs(1));
        assert_eq!(gate.pass().await, Passed::Open);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn releases_all_at_n_then_stays_open() {
        let gate = std::sync::Arc::new(Gate::new());
        gate.arm(3, Duration::from_secs(60));
        let a = tokio::spawn({
            let gate = gate.clone();
            async move { gate.pass().await }
        });
        let b = tokio::spawn({
            let gate = gate.clone();
            async move { gate.pass().await }
        });
        // Let both reach the gate (current-thread runtime: they run at this yield).
        while gate.held() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.pass().await, Passed::Open);
        assert_eq!(a.await.unwrap(), Passed::Open);
        assert_eq!(b.await.unwrap(), Passed::Open);
        assert_eq!(gate.pass().await, Passed::Open);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn times_out_everyone_held_and_opens() {
        let gate = std::sync::Arc::new(Gate::new());
        // Long enough that the second request is surely held before the first times out.
        gate.arm(3, Duration::from_millis(500));
        let a = tokio::spawn({
            let gate = gate.clone();
            async move { gate.pass().await }
        });
        while gate.held() < 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.pass().await, Passed::TimedOut);
        assert_eq!(a.await.unwrap(), Passed::TimedOut);
        assert_eq!(gate.pass().await, Passed::Open);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_cancelled_request_leaves_the_hold() {
        let gate = Gate::new();
        gate.arm(2, Duration::from_secs(60));
        {
            use std::future::Future as _;
            let mut fut = std::pin::pin!(gate.pass());
            // Poll once so it registers, then drop it.
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            assert_eq!(gate.held(), 1);
        }
        assert_eq!(gate.held(), 0);
    }
}
