//! Counters and latency histograms, lock-free; rendered by `SHOW SQLCACHE
//! STATUS` and the Prometheus endpoint.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::classify::BypassReason;

/// How a statement was routed (metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Hit,
    Miss,
    Bypass,
    Write,
    Other,
}

impl Route {
    pub const ALL: [Route; 5] = [
        Route::Hit,
        Route::Miss,
        Route::Bypass,
        Route::Write,
        Route::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Hit => "hit",
            Route::Miss => "miss",
            Route::Bypass => "bypass",
            Route::Write => "write",
            Route::Other => "other",
        }
    }
}

/// Upper bounds of the latency buckets, in microseconds.
pub const BUCKETS_US: [u64; 14] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 500_000, 1_000_000,
];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let i = BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket (Prometheus `le` semantics), sum, count.
    pub fn snapshot(&self) -> (Vec<u64>, u64, u64) {
        let mut acc = 0;
        let cum = self
            .buckets
            .iter()
            .map(|b| {
                acc += b.load(Ordering::Relaxed);
                acc
            })
            .collect();
        (
            cum,
            self.sum_us.load(Ordering::Relaxed),
            self.count.load(Ordering::Relaxed),
        )
    }
}

/// Invalidation sources (metric label).
#[derive(Debug, Clone, Copy)]
pub enum Source {
    ProxyRow,
    ProxyTable,
    ProxyAll,
    FeedRow,
    FeedTable,
    FeedAll,
}

/// The change feed's counters (zero when no feed is configured).
#[derive(Default)]
pub struct FeedStats {
    pub messages: AtomicU64,
    pub events: AtomicU64,
    /// Messages that could not be decoded (their table, or all, invalidated).
    pub malformed: AtomicU64,
    /// Times continuity of the stream could not be proven.
    pub gaps: AtomicU64,
    /// Broker or metadata errors while checking freshness.
    pub errors: AtomicU64,
    /// New librdkafka clients started after gaps.
    pub client_restarts: AtomicU64,
    /// Milliseconds from the last applied message's timestamp to applying it.
    pub lag_ms: AtomicU64,
    /// Milliseconds since the feed last proved it was caught up (u64::MAX: never).
    pub proof_age_ms: AtomicU64,
}

#[derive(Default)]
pub struct Stats {
    pub hits: AtomicU64,
    /// Hits answered by the shared tier (also counted in `hits`).
    pub l2_hits: AtomicU64,
    pub misses: AtomicU64,
    /// Lookups that found an entry whose tokens had changed.
    pub stale: AtomicU64,
    pub fills: AtomicU64,
    pub coalesced: AtomicU64,
    /// Text statements classified by sqlparser, and from the verdict memo.
    pub parsed: AtomicU64,
    pub memoized: AtomicU64,
    pub bypass: [AtomicU64; BypassReason::ALL.len()],
    pub invalidations: [AtomicU64; 6],
    pub feed: FeedStats,
    pub latency: [Histogram; Route::ALL.len()],
}

impl Stats {
    pub fn bypass(&self, r: BypassReason) {
        self.bypass[r.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn classified(&self, s: crate::classify::memo::Source) {
        let c = match s {
            crate::classify::memo::Source::Parsed => &self.parsed,
            crate::classify::memo::Source::Memo => &self.memoized,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn invalidated(&self, s: Source) {
        self.invalidations[s as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe(&self, route: Route, d: Duration) {
        let i = Route::ALL.iter().position(|r| *r == route).unwrap_or(0);
        self.latency[i].observe(d);
    }

    pub const SOURCES: [&'static str; 6] = [
        "proxy_row",
        "proxy_table",
        "proxy_all",
        "feed_row",
        "feed_table",
        "feed_all",
    ];
}
