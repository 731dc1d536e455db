//! A log-linear latency histogram: exact below 128 ns, then 64 buckets per power of two (at
//! most 1.6 % error), the exact maximum kept aside. Recording is an index computation and an
//! increment, so callers calling in a tight loop can time every call.

use std::time::Duration;

const LINEAR: usize = 128;
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// Up to 2^41 ns (about 36 minutes).
const OCTAVES: usize = 41 - 7;

/// Latencies, in nanoseconds.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; LINEAR + OCTAVES * SUB],
            total: 0,
            max: 0,
        }
    }
}

fn index(ns: u64) -> usize {
    if ns < LINEAR as u64 {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros(); // >= 7
    let sub = ((ns >> (exp - SUB_BITS)) as usize) & (SUB - 1);
    (LINEAR + (exp as usize - 7) * SUB + sub).min(LINEAR + OCTAVES * SUB - 1)
}

/// The lowest value of bucket `i`.
fn value(i: usize) -> u64 {
    if i < LINEAR {
        return i as u64;
    }
    let (octave, sub) = ((i - LINEAR) / SUB, (i - LINEAR) % SUB);
    let exp = octave as u32 + 7;
    (1u64 << exp) + ((sub as u64) << (exp - SUB_BITS))
}

impl Histogram {
    /// Records one latency.
    #[inline]
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[index(ns)] += 1;
        self.total += 1;
        self.max = self.max.max(ns);
    }

    /// Adds `other`'s samples.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Samples at or above `d`.
    pub fn at_least(&self, d: Duration) -> u64 {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let from = index(ns);
        self.counts[from..].iter().sum()
    }

    /// The `p`-th percentile (0 < p < 100, nearest rank; the bucket's lower bound), or the
    /// exact maximum for p = 100.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        if p >= 100.0 {
            return Duration::from_nanos(self.max);
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_nanos(value(i).min(self.max));
            }
        }
        Duration::from_nanos(self.max)
    }
}
