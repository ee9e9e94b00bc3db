//! Counters of the publisher, as Prometheus text.
//!
//! Policy: plain atomics updated on the publishing task, read by the
//! `/metrics` endpoint; no locks. Latency is measured from the moment the
//! publisher read a binlog event to Kafka's acknowledgement of its message
//! (millisecond resolution); lag is the age of the newest acknowledged event
//! by the binlog's own clock, which has one-second resolution.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

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

/// Upper bounds (seconds) of the ack-latency histogram buckets.
const BUCKETS: [f64; 11] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
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
    latency: [Counter; BUCKETS.len()],
    latency_count: Counter,
    latency_sum_us: Counter,
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
        if row {
            self.acked_rows.inc();
        }
        if let Some(t) = read_at {
            let s = t.elapsed().as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if s <= *b {
                    self.latency[i].inc();
                }
            }
            self.latency_count.inc();
            self.latency_sum_us.add((s * 1e6) as u64);
            self.acked_event_ts
                .fetch_max(i64::from(event_ts), Ordering::Relaxed);
        }
    }

    pub fn prometheus(&self) -> String {
        let mut t = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(t, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            "sqlcache_cdc_messages_sent_total",
            "Messages handed to the Kafka producer.",
            self.sent.get(),
        );
        counter(
            "sqlcache_cdc_messages_acked_total",
            "Messages acknowledged by Kafka.",
            self.acked_messages.get(),
        );
        counter(
            "sqlcache_cdc_row_events_total",
            "Row change events (c/u/d/r) acknowledged by Kafka.",
            self.acked_rows.get(),
        );
        counter(
            "sqlcache_cdc_transactions_total",
            "Binlog transactions read.",
            self.transactions.get(),
        );
        counter(
            "sqlcache_cdc_snapshot_rows_total",
            "Rows read by snapshots.",
            self.snapshot_rows.get(),
        );
        counter(
            "sqlcache_cdc_restarts_total",
            "Sessions restarted after an error.",
            self.restarts.get(),
        );
        let mut gauge = |name: &str, help: &str, v: String| {
            let _ = writeln!(t, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            "sqlcache_cdc_snapshot_running",
            "1 while a snapshot is being published.",
            self.snapshot_running.get().to_string(),
        );
        gauge(
            "sqlcache_cdc_snapshot_tables",
            "Tables in the running or last snapshot.",
            self.snapshot_tables_total.get().to_string(),
        );
        gauge(
            "sqlcache_cdc_snapshot_tables_done",
            "Tables of the snapshot fully read.",
            self.snapshot_tables_done.get().to_string(),
        );
        gauge(
            "sqlcache_cdc_position_file",
            "Saved binlog position: file sequence number.",
            self.position_file.get().to_string(),
        );
        gauge(
            "sqlcache_cdc_position_offset",
            "Saved binlog position: offset in the file.",
            self.position_pos.get().to_string(),
        );
        let ts = self.acked_event_ts.load(Ordering::Relaxed);
        let lag = if ts == 0 { 0 } else { (now_s() - ts).max(0) };
        gauge(
            "sqlcache_cdc_lag_seconds",
            "Age of the newest acknowledged binlog event (binlog clock, 1 s resolution).",
            lag.to_string(),
        );
        let name = "sqlcache_cdc_ack_latency_seconds";
        let _ = writeln!(
            t,
            "# HELP {name} Binlog event read -> Kafka acknowledgement.\n# TYPE {name} histogram"
        );
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(t, "{name}_bucket{{le=\"{b}\"}} {}", self.latency[i].get());
        }
        let n = self.latency_count.get();
        let _ = writeln!(t, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(t, "{name}_sum {}", self.latency_sum_us.get() as f64 / 1e6);
        let _ = writeln!(t, "{name}_count {n}");
        t
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
        ] {
            assert!(t.contains(f), "{f} missing in\n{t}");
        }
    }
}
