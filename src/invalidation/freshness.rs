//! Freshness proofs of a change feed: may the cache trust it right now?
//!
//! Policy: a *proof* is a check taken at instant `at` that read every
//! partition's high watermark from the broker; it is *satisfied* once the
//! consumer has applied everything below those watermarks, and then every
//! event published before `at` has reached the cache. The cache may serve
//! hits until the newest satisfied proof's `at` plus `max_staleness`. Silence
//! is not lag: an idle partition whose watermark we have reached proves
//! freshness as well as a busy one.
//!
//! A *gap* — the consumer (re)started at the head, or a partition was reset —
//! means events may have been missed; hits stop at once, and only a proof
//! taken after the gap reopens them, after every entry filled before it is
//! dropped (`Decision::InvalidateAllThenOpenUntil`). Startup is a gap. So is
//! any stretch without a proof longer than `max_staleness`: offsets alone
//! cannot show that a broker which went away came back with the same log
//! (a re-created topic of the same length, a broker that lost its storage),
//! so an outage long enough to stop hits also flushes the cache.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// (topic, partition).
pub type Partition = (String, i32);

/// At most this many unsatisfied proofs are kept (the oldest go first:
/// dropping one only delays reopening).
const MAX_PENDING: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Serve hits until the deadline.
    OpenUntil(Instant),
    /// Drop every cached entry, then serve hits until the deadline.
    InvalidateAllThenOpenUntil(Instant),
    /// Serve no hits.
    Closed,
}

pub struct Freshness {
    max_staleness: Duration,
    gap_since: Option<Instant>,
    pending: VecDeque<(Instant, Vec<(Partition, i64)>)>,
    proved_at: Option<Instant>,
    gaps: u64,
}

impl Freshness {
    /// A feed that starts now (a gap: nothing before it was seen).
    pub fn new(max_staleness: Duration, now: Instant) -> Self {
        Freshness {
            max_staleness,
            gap_since: Some(now),
            pending: VecDeque::new(),
            proved_at: None,
            gaps: 1,
        }
    }

    /// Continuity was lost at `now`.
    pub fn gap(&mut self, now: Instant) {
        if self.gap_since.is_none() {
            self.gap_since = Some(now);
            self.gaps += 1;
        }
    }

    /// Gaps so far (startup counts).
    pub fn gaps(&self) -> u64 {
        self.gaps
    }

    #[cfg(test)]
    fn in_gap(&self) -> bool {
        self.gap_since.is_some()
    }

    /// A stretch without proof longer than `max_staleness` is a gap that
    /// began when the last proof expired.
    fn note_expiry(&mut self, now: Instant) {
        if let Some(p) = self.proved_at {
            let expiry = p + self.max_staleness;
            if self.gap_since.is_none() && now > expiry {
                self.gap_since = Some(expiry);
                self.gaps += 1;
            }
        }
    }

    /// A check at `at` read these high watermarks.
    pub fn observe(&mut self, at: Instant, highs: Vec<(Partition, i64)>) {
        self.note_expiry(at);
        if self.pending.len() == MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back((at, highs));
    }

    /// Marks satisfied the proofs that `next` (the next offset to apply, per
    /// partition) has caught up with.
    pub fn settle(&mut self, next: impl Fn(&Partition) -> Option<i64>) {
        let satisfied = |highs: &[(Partition, i64)]| {
            highs
                .iter()
                .all(|(p, high)| next(p).is_some_and(|n| n >= *high))
        };
        if let Some(i) = self.pending.iter().rposition(|(_, h)| satisfied(h)) {
            let (at, _) = self.pending[i];
            self.proved_at = Some(self.proved_at.map_or(at, |p| p.max(at)));
            self.pending.drain(..=i);
        }
    }

    /// When the newest satisfied proof was taken.
    pub fn proved_at(&self) -> Option<Instant> {
        self.proved_at
    }

    /// What the cache may do now; a closed gap is reported once.
    pub fn decide(&mut self, now: Instant) -> Decision {
        self.note_expiry(now);
        match (self.gap_since, self.proved_at) {
            (Some(gap), Some(proof)) if proof > gap => {
                self.gap_since = None;
                Decision::InvalidateAllThenOpenUntil(proof + self.max_staleness)
            }
            (None, Some(proof)) => Decision::OpenUntil(proof + self.max_staleness),
            _ => Decision::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        ("t".into(), n)
    }

    const MAX: Duration = Duration::from_secs(5);

    #[test]
    fn startup_is_a_gap_closed_by_the_first_satisfied_proof() {
        let t0 = Instant::now();
        let mut f = Freshness::new(MAX, t0);
        assert_eq!(f.decide(t0), Decision::Closed);
        let t1 = t0 + Duration::from_millis(10);
        f.observe(t1, vec![(p(0), 7), (p(1), 0)]);
        f.settle(|q| (q.1 == 0).then_some(5)); // p1 unknown, p0 behind
        assert_eq!(f.decide(t0), Decision::Closed);
        f.settle(|q| Some(if q.1 == 0 { 7 } else { 0 }));
        assert_eq!(f.decide(t0), Decision::InvalidateAllThenOpenUntil(t1 + MAX));
        // Reported once; afterwards plain opening.
        assert_eq!(f.decide(t0), Decision::OpenUntil(t1 + MAX));
    }

    #[test]
    fn silence_is_not_lag_and_lag_is_bounded_by_the_last_proof() {
        let t0 = Instant::now();
        let mut f = Freshness::new(MAX, t0);
        let at = |ms| t0 + Duration::from_millis(ms);
        f.observe(at(1), vec![(p(0), 3)]);
        f.settle(|_| Some(3));
        f.decide(t0);
        // An idle feed keeps proving with the same watermark.
        for ms in [1000, 2000, 3000] {
            f.observe(at(ms), vec![(p(0), 3)]);
            f.settle(|_| Some(3));
        }
        assert_eq!(f.decide(at(3000)), Decision::OpenUntil(at(3000) + MAX));
        // The consumer stalls behind new events: the deadline stays put.
        f.observe(at(4000), vec![(p(0), 9)]);
        f.settle(|_| Some(3));
        assert_eq!(f.decide(at(4000)), Decision::OpenUntil(at(3000) + MAX));
        // It catches up with that check's watermark: the 4000 proof counts.
        f.observe(at(5000), vec![(p(0), 12)]);
        f.settle(|_| Some(10));
        assert_eq!(f.decide(at(5000)), Decision::OpenUntil(at(4000) + MAX));
        // No proof for longer than max_staleness: a gap, even once it proves
        // again (the broker may have come back with another log) — also
        // when nothing decided while it lasted.
        f.observe(at(9600), vec![(p(0), 12)]);
        f.settle(|_| Some(12));
        assert_eq!(
            f.decide(at(9600)),
            Decision::InvalidateAllThenOpenUntil(at(9600) + MAX)
        );
    }

    #[test]
    fn a_gap_closes_at_once_and_needs_a_later_proof() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut f = Freshness::new(MAX, t0);
        f.observe(at(1), vec![]);
        f.settle(|_| None);
        assert!(matches!(
            f.decide(t0),
            Decision::InvalidateAllThenOpenUntil(_)
        ));
        // A check that started before the gap does not close it.
        f.observe(at(100), vec![(p(0), 1)]);
        f.gap(at(200));
        assert!(f.in_gap());
        f.settle(|_| Some(1));
        assert_eq!(f.decide(t0), Decision::Closed);
        f.observe(at(300), vec![(p(0), 1)]);
        f.settle(|_| Some(1));
        assert_eq!(
            f.decide(t0),
            Decision::InvalidateAllThenOpenUntil(at(300) + MAX)
        );
    }
}
