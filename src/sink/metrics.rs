//! Counters and health of the sink, as Prometheus text and `/health`.
//!
//! Policy: atomics updated by the sink's one task; the per-partition lag
//! (Kafka's high watermark minus the next offset to apply, as of the last
//! batch) sits behind a mutex taken only to replace or render it. Healthy
//! means a session is applying (connected to the target) and the last
//! metadata request reached Kafka; `/health` answers 503 with the reason
//! otherwise.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::admin::prom::Prom;
use crate::cdc::metrics::{Counter, Histogram};

/// Upper bounds (seconds) of the batch-latency histogram buckets.
const BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0];

pub struct Metrics {
    /// Records applied (each change once, whatever it was reduced to).
    pub records: Counter,
    pub batches: Counter,
    pub statements: Counter,
    /// Records with nothing to do (tombstones after a delete, DDL events).
    pub skipped: Counter,
    pub dead_letters: Counter,
    /// Batches applied record by record to find the one the target refused.
    pub bisected: Counter,
    /// Sessions that ended in an error and were started again.
    pub restarts: Counter,
    pub tables_created: Counter,
    pub columns_added: Counter,
    latency: Histogram,
    lag: Mutex<BTreeMap<(String, i32), i64>>,
    pub applying: AtomicBool,
    pub kafka_reachable: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            records: Counter::default(),
            batches: Counter::default(),
            statements: Counter::default(),
            skipped: Counter::default(),
            dead_letters: Counter::default(),
            bisected: Counter::default(),
            restarts: Counter::default(),
            tables_created: Counter::default(),
            columns_added: Counter::default(),
            latency: Histogram::new(&BUCKETS),
            lag: Mutex::default(),
            applying: AtomicBool::default(),
            kafka_reachable: AtomicBool::default(),
        }
    }
}

impl Metrics {
    pub fn batch_took(&self, d: Duration) {
        self.latency.observe(d.as_secs_f64());
    }

    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        if let Ok(mut m) = self.lag.lock() {
            m.insert((topic.to_string(), partition), lag.max(0));
        }
    }

    /// `Ok` when healthy, else why not.
    pub fn health(&self) -> Result<String, String> {
        if !self.applying.load(Ordering::Relaxed) {
            return Err(
                "not applying: the target is unreachable or the sink is restarting\n".into(),
            );
        }
        if !self.kafka_reachable.load(Ordering::Relaxed) {
            return Err("Kafka is unreachable\n".into());
        }
        Ok("ok\n".into())
    }

    pub fn prometheus(&self) -> String {
        let mut p = Prom::new();
        for (name, help, c) in [
            ("records", "Records applied to the target.", &self.records),
            ("batches", "Transactions committed.", &self.batches),
            (
                "statements",
                "Statements run in committed transactions.",
                &self.statements,
            ),
            (
                "skipped",
                "Records with nothing to apply (tombstones, DDL events).",
                &self.skipped,
            ),
            (
                "dead_letters",
                "Records sent to the dead-letter topic.",
                &self.dead_letters,
            ),
            (
                "bisected_batches",
                "Batches applied record by record after the target refused one.",
                &self.bisected,
            ),
            (
                "restarts",
                "Sessions restarted after an error.",
                &self.restarts,
            ),
            (
                "tables_created",
                "Target tables created from an envelope schema.",
                &self.tables_created,
            ),
            (
                "columns_added",
                "Target columns added from an envelope schema.",
                &self.columns_added,
            ),
        ] {
            p.counter(&format!("sqlcache_sink_{name}_total"), help, c.get());
        }
        p.gauge(
            "sqlcache_sink_up",
            "1 while healthy (applying, Kafka reachable).",
            u8::from(self.health().is_ok()),
        );
        if let Ok(lag) = self.lag.lock() {
            let labels: Vec<(String, i64)> = lag
                .iter()
                .map(|((t, part), v)| (format!("topic=\"{t}\",partition=\"{part}\""), *v))
                .collect();
            p.labelled_gauges(
                "sqlcache_sink_lag_records",
                "Records in Kafka not yet applied, per partition.",
                labels.iter().map(|(l, v)| (l.as_str(), *v)),
            );
        }
        p.histogram(
            "sqlcache_sink_batch_seconds",
            "One batch: first statement to commit.",
            [self.latency.series()],
        );
        p.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_names_what_is_wrong_and_metrics_render() {
        let m = Metrics::default();
        assert!(m.health().unwrap_err().contains("not applying"));
        m.applying.store(true, Ordering::Relaxed);
        assert!(m.health().unwrap_err().contains("Kafka"));
        m.kafka_reachable.store(true, Ordering::Relaxed);
        assert!(m.health().is_ok());
        m.set_lag("a.b.c", 0, 5);
        m.batch_took(Duration::from_millis(3));
        let text = m.prometheus();
        assert!(
            text.contains("sqlcache_sink_lag_records{topic=\"a.b.c\",partition=\"0\"} 5"),
            "{text}"
        );
        assert!(text.contains("sqlcache_sink_batch_seconds_count 1"));
        assert!(text.contains("sqlcache_sink_up 1"));
    }
}
