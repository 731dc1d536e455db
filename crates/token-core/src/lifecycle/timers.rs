//! One timer table for every deadline the lifecycle keeps, after quinn-proto's `TimerTable`.
//!
//! Each owner (a cache entry, a refresh-token grant) has a fixed array of deadlines, one per
//! [`Timer`]; the table keeps all armed deadlines in one ordered set, so the next wake-up is its
//! first element and a change costs O(log n) in the number of armed deadlines. Nothing is ever
//! scanned. The manager derives an owner's wanted deadlines from its state in one place
//! (`TokenManager::rearm`) and hands them to [`TimerTable::update`]; `handle_timeout` pops what
//! is due, `poll_output`'s `Timeout` is [`TimerTable::next`], and `servable` reads the owner's
//! own array.

use std::collections::BTreeSet;
use std::time::Instant;

/// The kinds of deadline an owner can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Timer {
    /// The token request in flight is abandoned as timed out.
    Request,
    /// The store operation in flight (load / lease) is abandoned; the store counts as failing.
    Store,
    /// Another process holds the store lease: look at the store again.
    Poll,
    /// The token (or refresh token) is due for its background refresh.
    Refresh,
    /// The backoff after a failure ends.
    Retry,
    /// The token (or refresh token) expires.
    Expire,
    /// The entry is forgotten if it is still unused and empty.
    Idle,
}

impl Timer {
    /// Every timer, in array order.
    pub(crate) const ALL: [Timer; 7] = [
        Timer::Request,
        Timer::Store,
        Timer::Poll,
        Timer::Refresh,
        Timer::Retry,
        Timer::Expire,
        Timer::Idle,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Who a deadline belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Owner {
    /// An access-token cache entry (by slab index).
    Entry(usize),
    /// A refresh-token grant (by slab index).
    Grant(usize),
}

/// One owner's deadlines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Deadlines([Option<Instant>; Timer::ALL.len()]);

impl Deadlines {
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.0[timer.index()]
    }

    pub(crate) fn set(&mut self, timer: Timer, at: Option<Instant>) {
        self.0[timer.index()] = at;
    }

    /// The earliest armed deadline among `timers`.
    pub(crate) fn earliest(&self, timers: &[Timer]) -> Option<Instant> {
        timers.iter().filter_map(|t| self.get(*t)).min()
    }
}

/// Every armed deadline of every owner, in order.
#[derive(Debug, Default)]
pub(crate) struct TimerTable {
    queue: BTreeSet<(Instant, Owner, Timer)>,
}

impl TimerTable {
    /// Makes `owner`'s armed deadlines `wanted`, touching only the ones that changed. Returns
    /// whether any changed.
    pub(crate) fn update(
        &mut self,
        owner: Owner,
        current: &mut Deadlines,
        wanted: Deadlines,
    ) -> bool {
        if *current == wanted {
            return false;
        }
        for timer in Timer::ALL {
            let (old, new) = (current.get(timer), wanted.get(timer));
            if old == new {
                continue;
            }
            if let Some(at) = old {
                self.queue.remove(&(at, owner, timer));
            }
            if let Some(at) = new {
                self.queue.insert((at, owner, timer));
            }
        }
        *current = wanted;
        true
    }

    /// Disarms all of `owner`'s deadlines (before it is removed).
    pub(crate) fn clear(&mut self, owner: Owner, current: &mut Deadlines) {
        self.update(owner, current, Deadlines::default());
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.queue.first().map(|(at, _, _)| *at)
    }

    /// Removes and returns the earliest deadline due at `now`. The caller must also disarm it in
    /// the owner's [`Deadlines`] (see [`Deadlines::set`]) before re-arming the owner.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Owner, Timer)> {
        let &(at, owner, timer) = self.queue.first()?;
        if at > now {
            return None;
        }
        self.queue.pop_first();
        Some((owner, timer))
    }

    /// Number of armed deadlines (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn updates_touch_only_what_changed_and_pop_in_order() {
        let t0 = token_testkit::sansio::origin();
        let at = |s| t0 + Duration::from_secs(s);
        let mut table = TimerTable::default();
        let (mut a, mut b) = (Deadlines::default(), Deadlines::default());
        let mut want = Deadlines::default();
        want.set(Timer::Expire, Some(at(10)));
        want.set(Timer::Refresh, Some(at(5)));
        assert!(table.update(Owner::Entry(0), &mut a, want));
        assert!(!table.update(Owner::Entry(0), &mut a, want));
        let mut want_b = Deadlines::default();
        want_b.set(Timer::Retry, Some(at(3)));
        table.update(Owner::Grant(1), &mut b, want_b);
        assert_eq!(table.len(), 3);
        assert_eq!(table.next(), Some(at(3)));
        // Moving one deadline replaces it.
        want.set(Timer::Refresh, Some(at(7)));
        table.update(Owner::Entry(0), &mut a, want);
        assert_eq!(table.len(), 3);
        assert_eq!(table.pop_due(at(2)), None);
        assert_eq!(table.pop_due(at(8)), Some((Owner::Grant(1), Timer::Retry)));
        assert_eq!(
            table.pop_due(at(8)),
            Some((Owner::Entry(0), Timer::Refresh))
        );
        assert_eq!(table.pop_due(at(8)), None);
        table.clear(Owner::Entry(0), &mut a);
        assert_eq!(table.next(), None);
        assert_eq!(a, Deadlines::default());
    }
}
