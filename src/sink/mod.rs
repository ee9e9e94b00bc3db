//! `sqlcache sink`: Debezium change events from Kafka applied to MySQL.
//!
//! Policy: exactly-once in effect. A *session* connects to the target
//! (taking the sink's lock), reads the offsets table, and assigns each
//! partition from its saved offset (`consume`); then it repeats: a batch of
//! records (`sink.batch_rows`, `sink.batch_wait`), each decoded and mapped
//! onto its target table (`prepare`), applied in one transaction that also
//! writes the next offset of every partition in the batch (`apply`). So the
//! target holds a batch's effect together with its offsets or neither; any
//! failure — the target or Kafka gone, a deadlock, an unknown commit
//! outcome — ends the session, and the next one (after a back-off of
//! 100 ms doubling to 10 s) resumes from what the target says it holds.
//! Per-key order is the partition's order; records of different
//! partitions are applied in the order they arrive. Errors retrying cannot
//! fix stop the sink with a message: a table or column it cannot map
//! (`Schema`), a record it cannot apply with no dead-letter topic
//! (`BadRecord`), a saved offset Kafka no longer has, missing privileges.

mod apply;
mod consume;
pub mod metrics;
pub mod plan;
mod prepare;
pub mod record;
pub mod schema;
mod target;
pub mod values;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::Opts;
use rdkafka::message::Message;
use tracing::{info, warn};

use crate::config::{Config, SinkConfig};
use apply::Dlq;
pub use metrics::Metrics;
use target::{Failure, Target};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("the configuration has no [sink] section")]
    NoConfig,
    #[error("Kafka: {0}")]
    Kafka(rdkafka::error::KafkaError),
    #[error("target: {0}")]
    Target(String),
    #[error("schema: {0}")]
    Schema(String),
    #[error(
        "record {topic}/{partition}@{offset} cannot be applied: {reason} (set sink.dead_letter_topic to park such records and go on)"
    )]
    BadRecord {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
    #[error("{0}")]
    Fatal(String),
    #[error("metrics listener {0}: {1}")]
    Metrics(String, std::io::Error),
}

impl SinkError {
    /// Errors a new session would only repeat.
    fn is_fatal(&self) -> bool {
        !matches!(self, SinkError::Target(_) | SinkError::Kafka(_))
    }
}

impl From<Failure> for SinkError {
    fn from(f: Failure) -> SinkError {
        match f {
            Failure::Schema(m) => SinkError::Schema(m),
            Failure::Fatal(m) => SinkError::Fatal(m),
            Failure::Rejected(m) | Failure::Retry(m) => SinkError::Target(m),
        }
    }
}

/// Runs the sink until `shutdown` resolves or a fatal error.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), SinkError> {
    let c = cfg.sink.clone().ok_or(SinkError::NoConfig)?;
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = &c.metrics_listen {
        let (m, h) = (metrics.clone(), metrics.clone());
        crate::admin::http::spawn_endpoint(addr, move || m.prometheus(), move || h.health())
            .await
            .map_err(|e| SinkError::Metrics(addr.clone(), e))?;
    }
    let opts: Opts =
        crate::backend::account_opts(&cfg.backend, c.user.as_deref(), c.password.as_deref());
    let dlq = dead_letters(&c)?;
    tokio::pin!(shutdown);
    let mut backoff = crate::retry::Backoff::default();
    loop {
        let mut progressed = false;
        let session = session(
            &c,
            opts.clone(),
            &metrics,
            dlq.as_ref(),
            &mut shutdown,
            &mut progressed,
        );
        let err = match session.await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        metrics.applying.store(false, Ordering::Relaxed);
        if err.is_fatal() {
            return Err(err);
        }
        if progressed {
            backoff.progressed();
        }
        metrics.restarts.inc();
        warn!(error = %err, retry_in = ?backoff.delay(), "sink session ended; resuming from the target's offsets");
        if !backoff.wait(&mut shutdown).await {
            return Ok(());
        }
    }
}

fn dead_letters(c: &SinkConfig) -> Result<Option<Dlq>, SinkError> {
    let Some(topic) = &c.dead_letter_topic else {
        return Ok(None);
    };
    let mut pc = rdkafka::ClientConfig::new();
    pc.set("bootstrap.servers", &c.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all");
    crate::kafka::set_properties(&mut pc, &c.kafka);
    Ok(Some(Dlq {
        producer: pc.create().map_err(SinkError::Kafka)?,
        topic: topic.clone(),
        sink: c.name.clone(),
    }))
}

/// One session: connect, resume from the target's offsets, apply batches.
async fn session(
    c: &SinkConfig,
    opts: Opts,
    metrics: &Metrics,
    dlq: Option<&Dlq>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
    progressed: &mut bool,
) -> Result<(), SinkError> {
    let mut target = Target::connect(opts, &c.name, &c.offsets_table).await?;
    let mut source = consume::Source::new(c)?;
    let saved = target.offsets().await?;
    let reachable = source.refresh(&saved).await?;
    metrics.kafka_reachable.store(reachable, Ordering::Relaxed);
    metrics.applying.store(true, Ordering::Relaxed);
    info!(
        partitions = saved.len(),
        "sink: resuming from the target's offsets"
    );
    let mut refreshed = Instant::now();
    loop {
        let batch = tokio::select! {
            _ = &mut *shutdown => return Ok(()),
            b = source.batch(c.batch_rows, c.batch_wait, Duration::from_millis(500)) => b?,
        };
        let every = if source.next.is_empty() {
            consume::REFRESH_UNASSIGNED
        } else {
            consume::REFRESH
        };
        if refreshed.elapsed() >= every {
            refreshed = Instant::now();
            let saved = target.offsets().await?;
            let reachable = source.refresh(&saved).await?;
            metrics.kafka_reachable.store(reachable, Ordering::Relaxed);
            lag(&source, metrics);
        }
        if batch.is_empty() {
            continue;
        }
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut prepared = Vec::with_capacity(batch.len());
        for m in batch {
            next.insert((m.topic().to_string(), m.partition()), m.offset() + 1);
            prepared.push(prepare::prepare(&mut target, c, metrics, m).await?);
        }
        let offsets: Vec<(String, i32, i64)> =
            next.into_iter().map(|((t, p), o)| (t, p, o)).collect();
        apply::apply(&mut target, &prepared, &offsets, dlq, metrics)
            .await
            .map_err(|e| match e {
                SinkError::Target(m) => {
                    SinkError::Target(format!("batch up to {}: {m}", positions(&offsets)))
                }
                other => other,
            })?;
        *progressed = true;
        metrics.kafka_reachable.store(true, Ordering::Relaxed);
        source.report(&offsets);
        lag(&source, metrics);
    }
}

/// `topic/partition@offset` of each partition's last record in a batch.
fn positions(offsets: &[(String, i32, i64)]) -> String {
    let p: Vec<String> = offsets
        .iter()
        .map(|(t, p, o)| format!("{t}/{p}@{}", o - 1))
        .collect();
    p.join(", ")
}

fn lag(source: &consume::Source, metrics: &Metrics) {
    for (p, &next) in &source.next {
        let high = source.high.get(p).copied().unwrap_or(next).max(next);
        metrics.set_lag(&p.0, p.1, if next < 0 { high } else { high - next });
    }
}
