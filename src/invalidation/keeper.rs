//! Turns a feed's freshness proofs into the cache's gate (every feed).
//!
//! Policy: the gate is closed from the moment a feed starts. Each proof a
//! feed observes and each step of its consumer is settled through
//! `freshness::Freshness`; its decision is enacted at once — closing the
//! gate, opening it until a deadline, or dropping every entry before
//! opening after a gap. Gaps are counted and logged here, so that every feed
//! reports them alike (`feed_gaps`, `feed_proof_age_ms`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::freshness::{Decision, Freshness, Partition};
use crate::cache::Cache;

pub struct Keeper {
    freshness: Freshness,
    cache: Arc<Cache>,
}

impl Keeper {
    /// A feed starting now: its gate is closed until the first proof.
    pub fn start(cache: Arc<Cache>, max_staleness: Duration) -> Keeper {
        cache.gate.close();
        let freshness = Freshness::new(max_staleness, Instant::now());
        let stats = &cache.stats.feed;
        stats.proof_age_ms.store(u64::MAX, Ordering::Relaxed);
        stats.gaps.store(freshness.gaps(), Ordering::Relaxed);
        Keeper { freshness, cache }
    }

    /// Continuity is lost now: hits stop at once.
    pub fn gap(&mut self, why: &str) {
        warn!(
            reason = why,
            "change feed lost continuity: hits stop until it catches up, then every entry is dropped"
        );
        self.freshness.gap(Instant::now());
        self.note_gaps();
        self.cache.gate.close();
    }

    /// A check at `at` read these heads. True if the rules found a gap of
    /// their own (no proof for longer than max_staleness).
    pub fn observe(&mut self, at: Instant, heads: Vec<(Partition, i64)>) -> bool {
        let before = self.freshness.gaps();
        self.freshness.observe(at, heads);
        self.expired(before)
    }

    /// Settles proofs against the consumer's positions and enacts the
    /// decision. True if the rules found a gap of their own.
    pub fn settle(&mut self, next: impl Fn(&Partition) -> Option<i64>) -> bool {
        self.freshness.settle(next);
        let age = self
            .freshness
            .proved_at()
            .map_or(u64::MAX, |t| t.elapsed().as_millis() as u64);
        self.cache
            .stats
            .feed
            .proof_age_ms
            .store(age, Ordering::Relaxed);
        let before = self.freshness.gaps();
        let decision = self.freshness.decide(Instant::now());
        let expired = self.expired(before);
        match decision {
            Decision::Closed => self.cache.gate.close(),
            Decision::OpenUntil(deadline) => self.cache.gate.open_until(deadline),
            Decision::InvalidateAllThenOpenUntil(deadline) => {
                self.cache.invalidate_feed(&[], true);
                self.cache.gate.open_until(deadline);
                info!("change feed caught up: cache entries from before it dropped, hits resume");
            }
        }
        expired
    }

    fn expired(&mut self, before: u64) -> bool {
        let found = self.freshness.gaps() > before;
        if found {
            warn!("change feed unproven for longer than max_staleness: hits stopped; the cache is flushed when it recovers");
            self.note_gaps();
        }
        found
    }

    fn note_gaps(&self) {
        self.cache
            .stats
            .feed
            .gaps
            .store(self.freshness.gaps(), Ordering::Relaxed);
    }
}
