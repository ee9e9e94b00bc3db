//! Counters of the publisher, as Prometheus text.
//!
//! Policy: plain atomics updated on the publishing task, read by the
//! `/metrics` endpoint; no locks. Latency is measured from the moment the
//! publisher read a binlog event to Kafka's acknowledgement of its message
//! (millisecond resolution); lag is the age of the newest acknowledged event
//! by the binlog's own clock, which has one-second resolution.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::health::Health;
use crate::admin::prom::{Prom, Series};

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }
}

/// A latency histogram of fixed upper bounds (seconds), lock-free.
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<Counter>,
    count: Counter,
    sum_us: Counter,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| Counter::default()).collect(),
            count: Counter::default(),
            sum_us: Counter::default(),
        }
    }

    pub fn observe(&self, secs: f64) {
        for (b, c) in self.bounds.iter().zip(&self.buckets) {
            if secs <= *b {
                c.inc();
            }
        }
        self.count.inc();
        self.sum_us.add((secs * 1e6) as u64);
    }

    /// Its one series (no labels), for `Prom::histogram`.
    pub fn series(&self) -> Series<'static> {
        Series {
            labels: "",
            buckets: self
                .bounds
                .iter()
                .zip(&self.buckets)
                .map(|(b, c)| (*b, c.get()))
                .collect(),
            sum: self.sum_us.get() as f64 / 1e6,
            count: self.count.get(),
        }
    }
}

/// Upper bounds (seconds) of the ack-latency histogram buckets.
const BUCKETS: [f64; 11] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

pub struct Metrics {
    /// Messages handed to the producer / acknowledged.
    pub sent: Counter,
    pub acked_messages: Counter,
    /// Row change events (c/u/d/r) acknowledged.
    pub acked_rows: Counter,
    pub transactions: Counter,
    pub snapshot_rows: Counter,
    pub snapshot_tables_total: Counter,
    pub snapshot_tables_done: Counter,
    pub snapshot_running: Counter,
    /// Sessions that ended in an error and were restarted.
    pub restarts: Counter,
    /// The last saved position: file sequence number and offset.
    pub position_file: Counter,
    pub position_pos: Counter,
    /// Newest acknowledged event time (s since epoch).
    pub acked_event_ts: AtomicI64,
    latency: Histogram,
    /// What `/health` decides from (`health.rs`).
    pub health: Health,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            sent: Counter::default(),
            acked_messages: Counter::default(),
            acked_rows: Counter::default(),
            transactions: Counter::default(),
            snapshot_rows: Counter::default(),
            snapshot_tables_total: Counter::default(),
            snapshot_tables_done: Counter::default(),
            snapshot_running: Counter::default(),
            restarts: Counter::default(),
            position_file: Counter::default(),
            position_pos: Counter::default(),
            acked_event_ts: AtomicI64::default(),
            latency: Histogram::new(&BUCKETS),
            health: Health::default(),
        }
    }
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Metrics {
    /// One message acknowledged.
    pub fn acked(&self, read_at: Option<Instant>, event_ts: u32, row: bool) {
        self.acked_messages.inc();
        self.health.progressed();
        if row {
            self.acked_rows.inc();
        }
        if let Some(t) = read_at {
            self.latency.observe(t.elapsed().as_secs_f64());
            self.acked_event_ts
                .fetch_max(i64::from(event_ts), Ordering::Relaxed);
        }
    }

    pub fn prometheus(&self) -> String {
        let mut p = Prom::new();
        self.counters(&mut p);
        self.gauges(&mut p);
        p.histogram(
            "sqlcache_cdc_ack_latency_seconds",
            "Binlog event read -> Kafka acknowledgement.",
            [self.latency.series()],
        );
        p.finish()
    }

    fn counters(&self, p: &mut Prom) {
        for (name, help, v) in [
            (
                "messages_sent",
                "Messages handed to the Kafka producer.",
                &self.sent,
            ),
            (
                "messages_acked",
                "Messages acknowledged by Kafka.",
                &self.acked_messages,
            ),
            (
                "row_events",
                "Row change events (c/u/d/r) acknowledged by Kafka.",
                &self.acked_rows,
            ),
            (
                "transactions",
                "Binlog transactions read.",
                &self.transactions,
            ),
            (
                "snapshot_rows",
                "Rows read by snapshots.",
                &self.snapshot_rows,
            ),
            (
                "restarts",
                "Sessions restarted after an error.",
                &self.restarts,
            ),
        ] {
            p.counter(&format!("sqlcache_cdc_{name}_total"), help, v.get());
        }
    }

    fn gauges(&self, p: &mut Prom) {
        for (name, help, v) in [
            (
                "snapshot_running",
                "1 while a snapshot is being published.",
                &self.snapshot_running,
            ),
            (
                "snapshot_tables",
                "Tables in the running or last snapshot.",
                &self.snapshot_tables_total,
            ),
            (
                "snapshot_tables_done",
                "Tables of the snapshot fully read.",
                &self.snapshot_tables_done,
            ),
            (
                "position_file",
                "Saved binlog position: file sequence number.",
                &self.position_file,
            ),
            (
                "position_offset",
                "Saved binlog position: offset in the file.",
                &self.position_pos,
            ),
        ] {
            p.gauge(&format!("sqlcache_cdc_{name}"), help, v.get());
        }
        let ts = self.acked_event_ts.load(Ordering::Relaxed);
        let lag = if ts == 0 { 0 } else { (now_s() - ts).max(0) };
        p.gauge(
            "sqlcache_cdc_lag_seconds",
            "Age of the newest acknowledged binlog event (binlog clock, 1 s resolution).",
            lag,
        );
        p.gauge(
            "sqlcache_cdc_oldest_unacked_seconds",
            "Age of the oldest message still waiting for Kafka's acknowledgement (0: none).",
            self.health.oldest_unacked_age_s(super::now_ms()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_every_family() {
        let m = Metrics::default();
        m.acked(Some(Instant::now()), 1, true);
        m.sent.inc();
        let t = m.prometheus();
        for f in [
            "sqlcache_cdc_messages_sent_total 1",
            "sqlcache_cdc_row_events_total 1",
            "sqlcache_cdc_ack_latency_seconds_count 1",
            "sqlcache_cdc_ack_latency_seconds_bucket{le=\"+Inf\"} 1",
            "sqlcache_cdc_snapshot_tables_done 0",
            "sqlcache_cdc_lag_seconds",
            "sqlcache_cdc_oldest_unacked_seconds 0",
        ] {
            assert!(t.contains(f), "{f} missing in\n{t}");
        }
    }
}
