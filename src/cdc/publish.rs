//! The Kafka side: an idempotent producer, topics created on first use, and
//! the order in which acknowledgements turn into saved positions.
//!
//! Policy: messages are handed to librdkafka in binlog order; checkpoints
//! (`mark`) are queued between them. A checkpoint is *acknowledged* only
//! when every message queued before it has been acknowledged by the broker
//! (`acks=all`), so a saved position never runs ahead of Kafka. The
//! producer is idempotent (`enable.idempotence`): its own retries neither
//! duplicate nor reorder messages within a partition; keyed messages of one
//! row always land in the same partition (murmur2, as Java clients and
//! Debezium partition). Deliveries never time out by default
//! (`message.timeout.ms = 0`, as Kafka Connect runs source connectors): a
//! broker outage stalls the publisher (reading stops at `MAX_PENDING`) and
//! librdkafka retries in order, so nothing is skipped and nothing reordered.
//! A delivery that fails anyway (a timeout the operator configured, a
//! message the broker refuses) *poisons* the publisher: no checkpoint after
//! it is ever handed out, the queue is purged so later messages are not
//! sent past the hole, and the caller drops it and starts again from the
//! last checkpoint before the failure (at-least-once; the window bounded by
//! `MAX_PENDING`). Without that, messages after a lost one could complete a
//! later checkpoint and the lost one would be skipped for good.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer, PurgeConfig};

use super::metrics::Metrics;
use super::state::State;
use super::CdcError;
use crate::config::CdcConfig;

/// Messages handed to librdkafka and not yet acknowledged, at most.
pub const MAX_PENDING: usize = 100_000;

enum Pending {
    Msg {
        fut: DeliveryFuture,
        /// When the publisher read the event (for the ack-latency metric);
        /// `None` for snapshot rows.
        read_at: Option<Instant>,
        /// The binlog event's time, seconds since epoch.
        event_ts: u32,
        row: bool,
        /// When it was queued, wall-clock ms (`/health`).
        queued_ms: i64,
    },
    Mark(State),
}

pub struct Publisher {
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    topics: HashSet<String>,
    partitions: i32,
    replication: i32,
    pending: VecDeque<Pending>,
    unacked_msgs: usize,
    /// The first failed delivery: every later call reports it.
    failed: Option<String>,
    metrics: Arc<Metrics>,
}

fn client_config(cfg: &CdcConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("partitioner", "murmur2_random")
        .set("message.timeout.ms", "0")
        .set("queue.buffering.max.messages", "200000")
        .set("reconnect.backoff.max.ms", "1000")
        .set_log_level(RDKafkaLogLevel::Warning);
    crate::kafka::set_properties(&mut c, &cfg.kafka);
    c
}

impl Publisher {
    pub fn new(cfg: &CdcConfig, metrics: Arc<Metrics>) -> Result<Publisher, CdcError> {
        let c = client_config(cfg);
        // A new session: what an earlier one left outstanding is not waited for.
        metrics.health.oldest_unacked(0);
        Ok(Publisher {
            producer: c.create().map_err(CdcError::Kafka)?,
            admin: c.create().map_err(CdcError::Kafka)?,
            topics: HashSet::new(),
            partitions: cfg.topic_partitions,
            replication: cfg.topic_replication,
            pending: VecDeque::new(),
            unacked_msgs: 0,
            failed: None,
            metrics,
        })
    }

    /// Creates `topic` unless this publisher created or found it before.
    async fn ensure_topic(&mut self, topic: &str) -> Result<(), CdcError> {
        if self.topics.contains(topic) {
            return Ok(());
        }
        let t = NewTopic::new(
            topic,
            self.partitions,
            TopicReplication::Fixed(self.replication),
        );
        // Bounded both at the broker and on the way there: a broker that is
        // unreachable ends the session (and its retry) instead of stalling it.
        let opts = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(10)))
            .request_timeout(Some(Duration::from_secs(10)));
        let res = self
            .admin
            .create_topics(&[t], &opts)
            .await
            .map_err(CdcError::Kafka)?;
        for r in res {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, e)) => {
                    return Err(CdcError::Topic(t, e.to_string()));
                }
            }
        }
        self.topics.insert(topic.to_string());
        Ok(())
    }

    /// Queues one message (`value: None` is a tombstone). Waits while
    /// librdkafka's queue is full.
    pub async fn send(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        read_at: Option<Instant>,
        event_ts: u32,
        row: bool,
    ) -> Result<(), CdcError> {
        self.ensure_topic(topic).await?;
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        loop {
            match self.producer.send_result(rec) {
                Ok(fut) => {
                    let queued_ms = super::now_ms();
                    self.pending.push_back(Pending::Msg {
                        fut,
                        read_at,
                        event_ts,
                        row,
                        queued_ms,
                    });
                    if self.unacked_msgs == 0 {
                        self.metrics.health.oldest_unacked(queued_ms);
                    }
                    self.unacked_msgs += 1;
                    self.metrics.sent.inc();
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => return Err(CdcError::Kafka(e)),
            }
        }
    }

    /// A checkpoint: acknowledged once every message before it is.
    pub fn mark(&mut self, state: State) {
        // Consecutive checkpoints without messages between them: keep the
        // newest only.
        if let Some(Pending::Mark(_)) = self.pending.back() {
            self.pending.pop_back();
        }
        self.pending.push_back(Pending::Mark(state));
    }

    /// Messages not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.unacked_msgs
    }

    /// Nothing for `acked` to report: no outstanding entry, no failure.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.failed.is_none()
    }

    /// Waits for the oldest outstanding acknowledgements; returns the newest
    /// checkpoint they completed (`None` once nothing is outstanding).
    /// Cancel-safe: an entry leaves the queue only once settled. After a
    /// failed delivery it returns the checkpoint reached before it, if any,
    /// then only errors.
    pub async fn acked(&mut self) -> Result<Option<State>, CdcError> {
        if let Some(e) = &self.failed {
            return Err(CdcError::Delivery(e.clone()));
        }
        let mut newest = None;
        loop {
            match self.pending.front_mut() {
                None => return Ok(newest),
                Some(Pending::Mark(_)) => {
                    if let Some(Pending::Mark(s)) = self.pending.pop_front() {
                        newest = Some(s);
                    }
                    // Hand checkpoints out promptly.
                    if !matches!(self.pending.front(), Some(Pending::Mark(_))) {
                        return Ok(newest);
                    }
                }
                Some(Pending::Msg { fut, .. }) => {
                    // With a checkpoint in hand, do not wait for more.
                    let res = if newest.is_some() {
                        match futures_util::FutureExt::now_or_never(&mut *fut) {
                            Some(r) => r,
                            None => return Ok(newest),
                        }
                    } else {
                        fut.await
                    };
                    let Some(Pending::Msg {
                        read_at,
                        event_ts,
                        row,
                        ..
                    }) = self.pending.pop_front()
                    else {
                        unreachable!("front was a message");
                    };
                    self.unacked_msgs -= 1;
                    self.metrics.health.oldest_unacked(self.oldest_queued_ms());
                    let failure = match res {
                        Ok(Ok(_)) => {
                            self.metrics.acked(read_at, event_ts, row);
                            continue;
                        }
                        Ok(Err((e, _))) => e.to_string(),
                        Err(_) => "producer dropped".to_string(),
                    };
                    return self.poison(failure, newest);
                }
            }
        }
    }

    /// When the oldest message still outstanding was queued (0: none).
    fn oldest_queued_ms(&self) -> i64 {
        self.pending
            .iter()
            .find_map(|p| match p {
                Pending::Msg { queued_ms, .. } => Some(*queued_ms),
                Pending::Mark(_) => None,
            })
            .unwrap_or(0)
    }

    /// Records the first failed delivery and stops librdkafka from sending
    /// anything queued after it; hands out `newest` (reached before it).
    fn poison(
        &mut self,
        failure: String,
        newest: Option<State>,
    ) -> Result<Option<State>, CdcError> {
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        let e = CdcError::Delivery(failure.clone());
        self.failed = Some(failure);
        match newest {
            Some(s) => Ok(Some(s)),
            None => Err(e),
        }
    }

    /// Waits (up to `limit`) until everything queued is acknowledged,
    /// recording in `newest` each checkpoint reached on the way.
    pub async fn drain(
        &mut self,
        limit: Duration,
        newest: &mut Option<State>,
    ) -> Result<(), CdcError> {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.is_idle() {
            match tokio::time::timeout_at(deadline, self.acked()).await {
                Ok(Ok(Some(s))) => *newest = Some(s),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(CdcError::Delivery(format!(
                        "{} messages not acknowledged within {limit:?}",
                        self.unacked_msgs
                    )))
                }
            }
        }
        Ok(())
    }
}
