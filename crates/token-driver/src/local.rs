//! What each thread keeps for cache hits, in one thread-local (one access per hit): the
//! publications it saw last ([`Seen`]) and the counter stripe it owns.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::slot::Servable;

/// A thread's last look at a slot: the publication it loaded, and the slot's generation then.
/// Three cells, so a hit reads two words and moves one pointer out and back.
pub(crate) struct Seen {
    /// The slot's id plus one (0: nothing seen yet).
    pub(crate) slot: Cell<u64>,
    pub(crate) generation: Cell<u64>,
    pub(crate) servable: Cell<Option<Arc<Servable>>>,
}

/// How many slots a thread remembers (indexed by slot id).
pub(crate) const SEEN_WAYS: usize = 4;

/// Stripes owned by one thread each; this index is the shared one.
pub(crate) const EXCLUSIVE: usize = 16;

/// A thread's state.
pub(crate) struct Local {
    /// Its last looks at a few slots. A remembered publication stays alive until the thread
    /// looks at that slot again (or exits): a replaced token lingers in memory that much
    /// longer, never served after its `until`.
    pub(crate) seen: [Seen; SEEN_WAYS],
    /// The stripe this thread owns, or `usize::MAX` before it has one.
    stripe: Cell<usize>,
}

impl Local {
    /// The thread's counter stripe: its own (`< EXCLUSIVE`), or the shared one.
    #[inline]
    pub(crate) fn stripe(&self) -> usize {
        match self.stripe.get() {
            usize::MAX => {
                let i = claim();
                self.stripe.set(i);
                i
            }
            i => i,
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let i @ 0..EXCLUSIVE = self.stripe.get() {
            // The next owner's loads happen after this thread's last store (the mutex).
            FREE.lock().unwrap_or_else(|p| p.into_inner()).push(i);
        }
    }
}

/// The owned stripes no live thread has.
static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static NEVER_OWNED: AtomicUsize = AtomicUsize::new(0);

fn claim() -> usize {
    if let Some(i) = FREE.lock().unwrap_or_else(|p| p.into_inner()).pop() {
        return i;
    }
    let next = NEVER_OWNED.fetch_add(1, Ordering::Relaxed);
    if next < EXCLUSIVE {
        next
    } else {
        NEVER_OWNED.store(EXCLUSIVE, Ordering::Relaxed);
        EXCLUSIVE
    }
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            seen: [const {
                Seen {
                    slot: Cell::new(0),
                    generation: Cell::new(0),
                    servable: Cell::new(None),
                }
            }; SEEN_WAYS],
            stripe: Cell::new(usize::MAX),
        }
    };
}

/// Runs `f` with this thread's state, or `None` while the thread is exiting.
#[inline]
pub(crate) fn with<R>(f: impl FnOnce(Option<&Local>) -> R) -> R {
    let mut f = Some(f);
    match LOCAL.try_with(|local| (f.take().expect("called once"))(Some(local))) {
        Ok(r) => r,
        Err(_) => (f.take().expect("not called"))(None),
    }
}
