//! Timer arithmetic: when a token refreshes and expires, how long a failure backs off, how
//! long a fleet store keeps a value. Pure functions of the configuration, the inputs and a
//! seeded generator.

use std::time::{Duration, Instant};

use crate::lifecycle::manager::ManagerConfig;

/// When a token fetched at `sent_at` with `lifetime` expires and when it refreshes:
/// `expires_at = sent_at + lifetime` (lifetime capped by [`ManagerConfig::max_lifetime`]),
/// `refresh_at = expires_at - window - jitter`, where `window` is clamped to half the lifetime
/// and `jitter` is drawn from `[0, min(refresh_jitter, lifetime / 2 - window)]`.
pub(crate) fn plan(
    config: &ManagerConfig,
    rng: &mut fastrand::Rng,
    sent_at: Instant,
    lifetime: Duration,
    window: Duration,
) -> (Instant, Instant) {
    let lifetime = lifetime.min(config.max_lifetime);
    let half = lifetime / 2;
    let window = window.min(half);
    let room = (half - window).min(config.refresh_jitter);
    let jitter = draw(rng, room);
    (
        later(sent_at, lifetime),
        later(sent_at, lifetime - window - jitter),
    )
}

/// A uniformly drawn duration in `[0, max]`.
pub(crate) fn draw(rng: &mut fastrand::Rng, max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let max = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.u64(0..=max))
}

/// Exponential from `base`, doubling per step after the first, capped at `cap`, with equal
/// jitter (half fixed, half drawn).
pub(crate) fn exponential(
    rng: &mut fastrand::Rng,
    base: Duration,
    step: u32,
    cap: Duration,
) -> Duration {
    let exp = base
        .saturating_mul(1u32 << step.saturating_sub(1).min(20))
        .min(cap);
    let half = exp / 2;
    half + draw(rng, half)
}

/// The backoff after the `failures`-th consecutive failure: exponential from
/// [`ManagerConfig::initial_backoff`] for retryable errors or
/// [`ManagerConfig::rejected_backoff`] for the rest, capped at [`ManagerConfig::max_backoff`],
/// and never shorter than what the server asked for (`server`, itself capped at
/// [`ManagerConfig::max_retry_after`]).
pub(crate) fn backoff(
    config: &ManagerConfig,
    rng: &mut fastrand::Rng,
    retryable: bool,
    failures: u32,
    server: Option<Duration>,
) -> Duration {
    let base = if retryable {
        config.initial_backoff
    } else {
        config.rejected_backoff
    };
    let jittered = exponential(rng, base, failures, config.max_backoff);
    let server = server.unwrap_or(Duration::ZERO).min(config.max_retry_after);
    jittered.max(server)
}

/// How long a fleet store keeps a token with `remaining` life of `lifetime`: the remaining life
/// minus a safety margin of 5 % of the lifetime, at least 1 s and at most 30 s (and never more
/// than a quarter of the lifetime), so every process that loads it stops using it a little
/// before it really expires. (A loader counts the store's TTL from the moment it asked, on its
/// own monotonic clock: already the conservative end. The margin covers the rest: the fetcher's
/// clock against the token endpoint's. Kept small, because loaders refresh that much earlier
/// than the fetcher would have.)
pub(crate) fn store_ttl(remaining: Duration, lifetime: Duration) -> Duration {
    remaining.saturating_sub(store_margin(lifetime))
}

/// The safety margin [`store_ttl`] takes off a token of `lifetime`.
pub(crate) fn store_margin(lifetime: Duration) -> Duration {
    (lifetime / 20)
        .clamp(Duration::from_secs(1), Duration::from_secs(30))
        .min(lifetime / 4)
}

/// `t + d`, saturating instead of panicking when the platform's `Instant` cannot represent it.
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    let mut d = d;
    loop {
        if let Some(x) = t.checked_add(d) {
            return x;
        }
        d /= 2;
        if d.is_zero() {
            return t;
        }
    }
}

/// `t - d`, or `t` itself when the platform's `Instant` cannot go that far back.
pub(crate) fn earlier(t: Instant, d: Duration) -> Instant {
    t.checked_sub(d).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_ttl_keeps_a_margin() {
        let s = Duration::from_secs;
        // 5 %, capped at 30 s: an hour keeps 30 s, bookingtime's 300 s tokens 15 s.
        assert_eq!(store_ttl(s(3600), s(3600)), s(3570));
        assert_eq!(store_ttl(s(300), s(300)), s(285));
        // At least 1 s, at most a quarter of the lifetime.
        assert_eq!(store_ttl(s(10), s(10)), s(9));
        assert_eq!(store_ttl(s(2), s(2)), Duration::from_millis(1500));
        assert_eq!(store_ttl(s(1), s(3600)), Duration::ZERO);
    }

    #[test]
    fn exponential_doubles_to_the_cap_with_equal_jitter() {
        let mut rng = fastrand::Rng::with_seed(7);
        let s = Duration::from_secs;
        for (step, lo, hi) in [
            (1, 1, 2),
            (2, 2, 4),
            (3, 4, 8),
            (10, 5, 10),
            (u32::MAX, 5, 10),
        ] {
            let d = exponential(&mut rng, s(2), step, s(10));
            assert!(d >= s(lo) && d <= s(hi), "step {step}: {d:?}");
        }
    }
}
