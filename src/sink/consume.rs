//! The sink's Kafka side: which partitions it reads, from where, and in
//! what batches.
//!
//! Policy: partitions are assigned, not balanced by a consumer group —
//! every partition of the configured topics (and of topics matching
//! `topic_pattern`, listed again every `REFRESH`), each from the offset
//! the target's offsets table holds, else from `sink.start`. Kafka's own
//! committed offsets are written after each batch for tools that show lag,
//! never read back. `auto.offset.reset = error`: a saved offset Kafka no
//! longer has (retention, a recreated topic) stops the sink with the
//! partition named, rather than silently skipping or re-reading. A message
//! below the next offset of its partition (redelivered) is dropped here, so
//! nothing is applied twice within a session either.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, warn};

use super::SinkError;
use crate::config::{SinkConfig, SinkStart};

/// How often topics and partitions are listed again, and lag measured
/// (every second while no partition is assigned yet: Kafka was down or the
/// topics did not exist).
pub const REFRESH: Duration = Duration::from_secs(10);
pub const REFRESH_UNASSIGNED: Duration = Duration::from_secs(1);

pub type Partition = (String, i32);

pub struct Source {
    consumer: Arc<StreamConsumer>,
    topics: Vec<String>,
    pattern: Option<regex::Regex>,
    start: SinkStart,
    /// Next offset to apply, per assigned partition.
    pub next: HashMap<Partition, i64>,
    /// High watermarks as of the last refresh.
    pub high: HashMap<Partition, i64>,
}

impl Source {
    pub fn new(cfg: &SinkConfig) -> Result<Source, SinkError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &cfg.brokers)
            .set("group.id", format!("sqlcache-sink-{}", cfg.name))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "error")
            .set("fetch.wait.max.ms", "10")
            .set("reconnect.backoff.max.ms", "1000")
            .set("socket.keepalive.enable", "true");
        crate::kafka::set_properties(&mut c, &cfg.kafka);
        // A consumer that cannot be made (a bad property) will not be later.
        let consumer: StreamConsumer = c
            .create()
            .map_err(|e| SinkError::Fatal(format!("Kafka consumer: {e}")))?;
        let pattern = match &cfg.topic_pattern {
            Some(p) => Some(regex::Regex::new(p).map_err(|e| SinkError::Fatal(e.to_string()))?),
            None => None,
        };
        Ok(Source {
            consumer: Arc::new(consumer),
            topics: cfg.topics.clone(),
            pattern,
            start: cfg.start,
            next: HashMap::new(),
            high: HashMap::new(),
        })
    }

    /// Lists topics and partitions; assigns new ones from `saved` (else
    /// `start`); measures high watermarks. `Ok(false)`: Kafka did not answer.
    pub async fn refresh(&mut self, saved: &HashMap<Partition, i64>) -> Result<bool, SinkError> {
        let consumer = self.consumer.clone();
        let (topics, pattern) = (self.topics.clone(), self.pattern.clone());
        let known: HashSet<Partition> = self.next.keys().cloned().collect();
        let listed =
            tokio::task::spawn_blocking(move || list(&consumer, &topics, pattern.as_ref(), &known))
                .await
                .map_err(|e| SinkError::Fatal(format!("metadata task: {e}")))?;
        let Some((found, high)) = listed else {
            return Ok(false);
        };
        self.high.extend(high);
        let mut tpl = TopicPartitionList::new();
        for p in found {
            if self.next.contains_key(&p) {
                continue;
            }
            let offset = match (saved.get(&p), self.start) {
                (Some(&o), _) => Offset::Offset(o),
                (None, SinkStart::Earliest) => Offset::Beginning,
                (None, SinkStart::Latest) => Offset::End,
            };
            info!(topic = %p.0, partition = p.1, ?offset, "sink: reading partition");
            tpl.add_partition_offset(&p.0, p.1, offset)
                .map_err(SinkError::Kafka)?;
            let next = saved.get(&p).copied().unwrap_or(-1);
            self.next.insert(p, next);
        }
        if tpl.count() > 0 {
            self.consumer
                .incremental_assign(&tpl)
                .map_err(SinkError::Kafka)?;
        }
        Ok(true)
    }

    /// Up to `max` new messages: waits for the first (until `idle`), then
    /// takes more while each comes within `gap` of the one before (under
    /// load librdkafka has them prefetched, so batches fill; when writes
    /// are sparse a record waits one `gap`, not a batch's worth).
    pub async fn batch(
        &mut self,
        max: usize,
        gap: Duration,
        idle: Duration,
    ) -> Result<Vec<OwnedMessage>, SinkError> {
        let mut out = Vec::new();
        let first_by = Instant::now() + idle;
        let mut deadline = first_by;
        while out.len() < max {
            let m = match tokio::time::timeout_at(deadline.into(), self.consumer.recv()).await {
                Err(_) => break,
                Ok(Ok(m)) => m.detach(),
                Ok(Err(e)) => {
                    gone(&e)?;
                    warn!(error = %e, "sink: Kafka consumer error");
                    continue;
                }
            };
            let p = (m.topic().to_string(), m.partition());
            let next = self.next.entry(p).or_insert(-1);
            if *next >= 0 && m.offset() < *next {
                continue;
            }
            *next = m.offset() + 1;
            deadline = Instant::now() + gap;
            out.push(m);
        }
        Ok(out)
    }

    /// Tells Kafka how far the target is (for lag tools; never read back).
    pub fn report(&self, applied: &[(String, i32, i64)]) {
        let mut tpl = TopicPartitionList::new();
        for (t, p, o) in applied {
            let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*o));
        }
        if tpl.count() > 0 {
            let _ = self.consumer.commit(&tpl, CommitMode::Async);
        }
    }
}

/// A saved offset Kafka no longer has: stop, naming it.
fn gone(e: &KafkaError) -> Result<(), SinkError> {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange) => Err(SinkError::Fatal(format!(
            "a saved offset is no longer in Kafka ({e}): records between it and the oldest kept were lost to retention; \
             fix the offsets table or recreate the target"
        ))),
        _ => Ok(()),
    }
}

type Listed = (Vec<Partition>, HashMap<Partition, i64>);

/// Every partition of `topics` and of topics matching `pattern`, and the
/// high watermark of each partition in `known` (blocking; `None`: no answer).
fn list(
    c: &StreamConsumer,
    topics: &[String],
    pattern: Option<&regex::Regex>,
    known: &HashSet<Partition>,
) -> Option<Listed> {
    let md = c.fetch_metadata(None, Duration::from_secs(5)).ok()?;
    let mut found = Vec::new();
    for t in md.topics() {
        let wanted =
            topics.iter().any(|n| n == t.name()) || pattern.is_some_and(|p| p.is_match(t.name()));
        if wanted && t.error().is_none() {
            found.extend(
                t.partitions()
                    .iter()
                    .map(|p| (t.name().to_string(), p.id())),
            );
        }
    }
    let mut high = HashMap::new();
    for p in known {
        if let Ok((_, h)) = c.fetch_watermarks(&p.0, p.1, Duration::from_secs(1)) {
            high.insert(p.clone(), h);
        }
    }
    Some((found, high))
}
