//! The feed gate: may cached entries be served right now?
//!
//! Policy: with no change feed configured the gate is always open. With one,
//! the feed's thread opens it *until a deadline* — the instant it last proved
//! it had applied everything the broker held, plus `max_staleness` — so a
//! feed that stops proving (broker gone, consumer stuck) closes the gate by
//! itself, without the feed thread having to notice. A hit reads one atomic
//! and, only when a feed is configured, the monotonic clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const ALWAYS: u64 = u64::MAX;

pub struct FeedGate {
    base: Instant,
    /// Milliseconds since `base` before which the gate is open.
    open_until_ms: AtomicU64,
}

impl FeedGate {
    /// A gate for a cache without a change feed.
    pub fn open() -> Self {
        FeedGate {
            base: Instant::now(),
            open_until_ms: AtomicU64::new(ALWAYS),
        }
    }

    pub fn is_open(&self) -> bool {
        match self.open_until_ms.load(Ordering::Acquire) {
            ALWAYS => true,
            until => (self.base.elapsed().as_millis() as u64) < until,
        }
    }

    /// Whether a change feed controls this gate.
    pub fn has_feed(&self) -> bool {
        self.open_until_ms.load(Ordering::Relaxed) != ALWAYS
    }

    /// Closes until `open_until` is called.
    pub fn close(&self) {
        self.open_until_ms.store(0, Ordering::Release);
    }

    /// Opens until `deadline` (a deadline in the past keeps it closed).
    pub fn open_until(&self, deadline: Instant) {
        let ms = deadline.saturating_duration_since(self.base).as_millis() as u64;
        self.open_until_ms
            .store(ms.min(ALWAYS - 1), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn opens_until_a_deadline_and_closes_by_itself() {
        let g = FeedGate::open();
        assert!(g.is_open());
        g.close();
        assert!(!g.is_open());
        g.open_until(Instant::now() + Duration::from_secs(60));
        assert!(g.is_open());
        g.open_until(Instant::now() + Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!g.is_open(), "a deadline that passed closes the gate");
    }
}
