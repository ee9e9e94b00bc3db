//! Echoes: every feed invalidation is applied again, later.
//!
//! Policy: a binlog carries a transaction once it is written to the binary
//! log, which MySQL and MariaDB do *before* the storage engine makes the
//! transaction visible (two-phase commit: prepare, binlog write, engine
//! commit). A proxy that reads the binlog directly, or a feed fast enough,
//! can bump a row's tag while a concurrent fill still reads the old row; the
//! fill then stores under the new token and would be served until TTL. So
//! each invalidation is re-applied after `ECHO_AFTER` (the common case: the
//! engine commit follows within microseconds to one fsync) and again after
//! `max_staleness` (a stalled commit), which bounds what such a race can
//! leave behind to the feed's own staleness bound. Echoes keep tag slots
//! (4 bytes a tag); past `MAX_SLOTS` queued a round collapses into one
//! invalidate-everything — bounded memory, never a lost echo.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::cache::Cache;

/// The first echo's delay.
pub const ECHO_AFTER: Duration = Duration::from_millis(100);
/// At most this many slots wait in one round.
const MAX_SLOTS: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Echoed {
    Slots(Vec<u32>),
    Everything,
}

/// One round: invalidations first applied at `.0`, re-applied at `.0 + delay`.
struct Round {
    delay: Duration,
    queue: VecDeque<(Instant, Echoed)>,
    slots: usize,
}

pub struct Echo {
    rounds: Vec<Round>,
}

impl Echo {
    /// Echoes after `ECHO_AFTER` and after `max_staleness` (if later).
    pub fn new(max_staleness: Duration) -> Echo {
        let mut delays = vec![ECHO_AFTER];
        if max_staleness > ECHO_AFTER {
            delays.push(max_staleness);
        }
        Echo {
            rounds: delays
                .into_iter()
                .map(|delay| Round {
                    delay,
                    queue: VecDeque::new(),
                    slots: 0,
                })
                .collect(),
        }
    }

    /// Records slots just invalidated at `at`.
    pub fn slots(&mut self, at: Instant, slots: Vec<u32>) {
        if !slots.is_empty() {
            self.push(0, at, Echoed::Slots(slots));
        }
    }

    /// Records an invalidate-everything at `at`.
    pub fn everything(&mut self, at: Instant) {
        self.push(0, at, Echoed::Everything);
    }

    fn push(&mut self, round: usize, at: Instant, e: Echoed) {
        let Some(r) = self.rounds.get_mut(round) else {
            return;
        };
        if let Echoed::Slots(s) = &e {
            if r.slots + s.len() > MAX_SLOTS {
                r.queue.clear();
                r.slots = 0;
                r.queue.push_back((at, Echoed::Everything));
                return;
            }
            r.slots += s.len();
        }
        r.queue.push_back((at, e));
    }

    /// Re-applies what is due at `now`.
    pub fn tick(&mut self, now: Instant, cache: &Cache) {
        for i in 0..self.rounds.len() {
            while let Some((at, _)) = self.rounds[i].queue.front() {
                if *at + self.rounds[i].delay > now {
                    break;
                }
                let (at, e) = self.rounds[i].queue.pop_front().expect("front");
                match &e {
                    Echoed::Slots(s) => {
                        self.rounds[i].slots -= s.len();
                        cache.invalidate_slots(s, false);
                        if i == 0 {
                            // The write is visible now: re-fill hot rows.
                            cache.refresh.echoed(s);
                        }
                    }
                    Echoed::Everything => cache.invalidate_slots(&[], true),
                }
                self.push(i + 1, at, e);
            }
        }
    }

    /// Invalidations waiting for an echo.
    pub fn pending(&self) -> usize {
        self.rounds.iter().map(|r| r.queue.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Tag;
    use crate::config::CacheConfig;

    #[test]
    fn echoes_twice_then_forgets() {
        let cache = Cache::new(CacheConfig::default());
        let tag = Tag::row("d", "t", "1");
        let t0 = Instant::now();
        let mut echo = Echo::new(Duration::from_secs(5));
        echo.slots(t0, vec![tag.slot()]);
        // A fill that raced the first bump (it read the new token but the
        // old row) …
        let g = cache.tokens.guard(std::slice::from_ref(&tag));
        echo.tick(t0 + Duration::from_millis(50), &cache);
        assert!(cache.tokens.is_fresh(&g));
        // … is invalid after the first echo.
        echo.tick(t0 + ECHO_AFTER, &cache);
        assert!(!cache.tokens.is_fresh(&g));
        let g = cache.tokens.guard(std::slice::from_ref(&tag));
        echo.tick(t0 + Duration::from_secs(5), &cache);
        assert!(!cache.tokens.is_fresh(&g));
        assert_eq!(echo.pending(), 0);
    }

    #[test]
    fn an_overfull_round_collapses_into_everything() {
        let cache = Cache::new(CacheConfig::default());
        let t0 = Instant::now();
        let mut echo = Echo::new(Duration::from_secs(1));
        echo.slots(t0, vec![1; MAX_SLOTS]);
        echo.slots(t0, vec![2]);
        assert_eq!(echo.pending(), 1);
        let g = cache.tokens.guard(&[Tag::table("x", "y")]);
        echo.tick(t0 + ECHO_AFTER, &cache);
        assert!(!cache.tokens.is_fresh(&g));
    }
}
