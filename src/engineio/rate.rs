//! A per-connection rate limit: so many units per second, with a burst of so many at once
//! (the generic cell rate algorithm, a token bucket kept as one timestamp), and the rule for
//! persistent abuse: a connection that has been refused more than a burst's worth of units
//! since its bucket was last full is abusing it.
//!
//! By hand rather than `governor`: that crate's limiters are `Sync` (atomics, a clock object)
//! and do not say when the bucket is full again, which the abuse rule needs; this is one `u64`
//! per connection on a single thread.

use std::sync::OnceLock;
use std::time::Instant;

/// A rate: `per_second` units per second, `burst` at once. `per_second == 0` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimit {
    /// Nanoseconds one unit costs (0: no limit).
    interval_ns: u64,
    /// How far ahead of now the bucket may be spent: `burst - 1` intervals.
    tolerance_ns: u64,
    burst: u32,
}

/// What a limit says to one more unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allowed,
    /// Over the rate: refuse this unit.
    Refused,
    /// Over the rate, and refused more than `burst` times since the bucket was last full.
    Abuse,
}

/// The state of one connection against a [`RateLimit`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RateState {
    /// The theoretical arrival time of the next unit, in nanoseconds since [`epoch`]; the
    /// bucket is full when it is not in the future.
    tat: u64,
    /// Units refused since the bucket was last full.
    refused: u32,
}

impl RateLimit {
    /// `per_second` units per second (0: unlimited), bursts of `burst` (at least 1).
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        let interval_ns = if per_second == 0 {
            0
        } else {
            1_000_000_000 / u64::from(per_second)
        };
        let burst = burst.max(1);
        RateLimit {
            interval_ns,
            tolerance_ns: interval_ns * u64::from(burst - 1),
            burst,
        }
    }

    /// Whether the limit is off.
    pub(crate) fn is_unlimited(&self) -> bool {
        self.interval_ns == 0
    }

    /// Takes one unit now.
    pub(crate) fn check(&self, state: &mut RateState) -> Verdict {
        if self.is_unlimited() {
            return Verdict::Allowed;
        }
        self.check_at(state, now_ns())
    }

    fn check_at(&self, state: &mut RateState, now: u64) -> Verdict {
        if state.tat <= now {
            // Full again: earlier refusals are forgiven.
            state.tat = now;
            state.refused = 0;
        }
        if state.tat - now <= self.tolerance_ns {
            state.tat += self.interval_ns;
            return Verdict::Allowed;
        }
        state.refused = state.refused.saturating_add(1);
        if state.refused > self.burst {
            Verdict::Abuse
        } else {
            Verdict::Refused
        }
    }
}

/// Nanoseconds since the first call in this process (never 0 after it, so a fresh state is
/// always a full bucket).
fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_nanos() as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_burst_then_the_rate() {
        let limit = RateLimit::new(10, 3); // one unit per 100 ms
        let mut s = RateState::default();
        let t = 1_000 * MS;
        for _ in 0..3 {
            assert_eq!(limit.check_at(&mut s, t), Verdict::Allowed);
        }
        assert_eq!(limit.check_at(&mut s, t), Verdict::Refused);
        assert_eq!(limit.check_at(&mut s, t + 99 * MS), Verdict::Refused);
        assert_eq!(limit.check_at(&mut s, t + 100 * MS), Verdict::Allowed);
        assert_eq!(limit.check_at(&mut s, t + 100 * MS), Verdict::Refused);
    }

    #[test]
    fn abuse_is_more_than_a_burst_of_refusals_since_the_bucket_was_full() {
        let limit = RateLimit::new(10, 2);
        let mut s = RateState::default();
        let t = 1_000 * MS;
        assert_eq!(limit.check_at(&mut s, t), Verdict::Allowed);
        assert_eq!(limit.check_at(&mut s, t), Verdict::Allowed);
        assert_eq!(limit.check_at(&mut s, t), Verdict::Refused);
        assert_eq!(limit.check_at(&mut s, t), Verdict::Refused);
        assert_eq!(limit.check_at(&mut s, t), Verdict::Abuse);
        // Quiet long enough for the bucket to fill: forgiven.
        let mut s = RateState::default();
        for _ in 0..2 {
            limit.check_at(&mut s, t);
        }
        assert_eq!(limit.check_at(&mut s, t), Verdict::Refused);
        assert_eq!(limit.check_at(&mut s, t), Verdict::Refused);
        assert_eq!(limit.check_at(&mut s, t + 200 * MS), Verdict::Allowed);
        assert_eq!(limit.check_at(&mut s, t + 200 * MS), Verdict::Allowed);
        assert_eq!(limit.check_at(&mut s, t + 200 * MS), Verdict::Refused);
    }

    #[test]
    fn zero_is_unlimited() {
        let limit = RateLimit::new(0, 5);
        let mut s = RateState::default();
        assert!(limit.is_unlimited());
        for _ in 0..10_000 {
            assert_eq!(limit.check(&mut s), Verdict::Allowed);
        }
    }
}
