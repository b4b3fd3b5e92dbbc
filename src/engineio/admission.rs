//! Admission of new sessions: the process's `--max-connections` and
//! `--max-handshakes-per-second`, shared by every shard.
//!
//! Both are per process, so the shards share them: one padded atomic counts the sessions open
//! in the process, and a GCRA rate limiter (`governor`, one atomic word) paces the handshakes.
//! Each is touched once when a handshake asks to open a session and once when a session ends,
//! never per message or per broadcast, so the hot path never sees them; a handshake already
//! costs several syscalls and allocations, beside which one contended atomic update is noise.
//! Per-shard budgets would need no shared word at all, but would refuse a client while other
//! shards have room whenever the kernel's spread is uneven, and would split a small rate
//! limit into unusable crumbs. A limit set to 0 is off, and then nothing is shared.

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::protocol::http::Overload;

/// An atomic alone on its cache lines, so that the shards writing it do not also invalidate
/// whatever would sit next to it.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Padded(AtomicUsize);

/// The process's limits on sessions, shared by its shards.
pub(crate) struct Admission {
    open: Padded,
    max_open: Option<NonZeroUsize>,
    rate: Option<DefaultDirectRateLimiter>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("open", &self.open.0.load(Relaxed))
            .field("max_open", &self.max_open)
            .field("rate", &self.rate.is_some())
            .finish()
    }
}

impl Admission {
    /// At most `max_open` sessions at once and `per_second` new ones per second (in bursts of
    /// as many); 0 turns a limit off.
    pub(crate) fn new(max_open: usize, per_second: u32) -> Self {
        Admission {
            open: Padded::default(),
            max_open: NonZeroUsize::new(max_open),
            rate: NonZeroU32::new(per_second).map(|n| RateLimiter::direct(Quota::per_second(n))),
        }
    }

    /// Takes a place for a new session, or says which limit refuses it. A place taken is given
    /// back with [`Admission::release`] when the session ends.
    pub(crate) fn admit(&self) -> Result<(), Overload> {
        if let Some(max) = self.max_open {
            self.open
                .0
                .fetch_update(Relaxed, Relaxed, |n| (n < max.get()).then_some(n + 1))
                .map_err(|_| Overload::Connections)?;
        }
        if self.rate.as_ref().is_some_and(|rate| rate.check().is_err()) {
            self.release();
            return Err(Overload::HandshakeRate);
        }
        Ok(())
    }

    /// Gives back the place of a session that ended.
    pub(crate) fn release(&self) {
        if self.max_open.is_some() {
            self.open.0.fetch_sub(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_over_the_limit_are_refused_until_one_ends() {
        let a = Admission::new(2, 0);
        assert_eq!((a.admit(), a.admit()), (Ok(()), Ok(())));
        assert_eq!(a.admit(), Err(Overload::Connections));
        a.release();
        assert_eq!(a.admit(), Ok(()));
        assert_eq!(a.admit(), Err(Overload::Connections));
    }

    #[test]
    fn handshakes_over_the_rate_are_refused_and_keep_no_place() {
        let a = Admission::new(10, 3);
        for _ in 0..3 {
            assert_eq!(a.admit(), Ok(()));
        }
        // A burst of 3, then about one every 333 ms: the fourth, at once, is refused.
        assert_eq!(a.admit(), Err(Overload::HandshakeRate));
        assert_eq!(
            a.open.0.load(Relaxed),
            3,
            "a refused handshake holds no place"
        );
    }

    #[test]
    fn without_limits_nothing_is_counted() {
        let a = Admission::new(0, 0);
        for _ in 0..1000 {
            assert_eq!(a.admit(), Ok(()));
        }
        a.release();
        assert_eq!(a.open.0.load(Relaxed), 0);
    }
}
