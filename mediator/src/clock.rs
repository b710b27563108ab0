//! Time sources: a [`Clock`] trait with a monotonic real clock and a manually advanced fake.
//!
//! The scheduler ([`crate::sched`]) and anything else that measures time takes a `Clock`,
//! so tests run simulated seconds in microseconds and reproducibly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A monotonic time source. `now()` is the time since an arbitrary, fixed epoch.
pub trait Clock: Send + Sync {
    /// Current monotonic time since the clock's epoch. Never decreases.
    fn now(&self) -> Duration;
}

/// The real monotonic clock; its epoch is its creation.
#[derive(Debug, Clone, Copy)]
pub struct RealClock {
    epoch: Instant,
}

impl RealClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }
}

impl Default for RealClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for RealClock {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}

/// A clock that moves only when told to. Clones share the same time, so a test can keep
/// one handle and give another to the code under test.
#[derive(Debug, Clone, Default)]
pub struct FakeClock {
    nanos: Arc<AtomicU64>,
}

impl FakeClock {
    /// A fake clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves time forward by `d` (saturating at `u64::MAX` nanoseconds).
    pub fn advance(&self, d: Duration) {
        let add = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let mut cur = self.nanos.load(Ordering::Acquire);
        loop {
            let new = cur.saturating_add(add);
            match self
                .nanos
                .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Moves time forward by `ns` nanoseconds.
    pub fn advance_ns(&self, ns: u64) {
        self.advance(Duration::from_nanos(ns));
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }
}

/// A shared clock is a clock (so `Arc<dyn Clock>` can drive a [`crate::sched::Scheduler`]).
impl<T: Clock + ?Sized> Clock for Arc<T> {
    fn now(&self) -> Duration {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_moves_only_when_advanced_and_clones_share_time() {
        let c = FakeClock::new();
        let other = c.clone();
        assert_eq!(c.now(), Duration::ZERO);
        other.advance(Duration::from_millis(3));
        assert_eq!(c.now(), Duration::from_millis(3));
        c.advance_ns(u64::MAX);
        assert_eq!(c.now(), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn real_clock_is_monotonic() {
        let c = RealClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
    }
}
