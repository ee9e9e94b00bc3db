//! The Kafka change feed: an rdkafka consumer on a thread of its own.
//!
//! Policy:
//! * **Every proxy reads every partition.** Partitions are assigned
//!   explicitly rather than through consumer-group membership: a group would
//!   split the partitions across proxies sharing a `group_id`, and each of
//!   its rebalances is a moment the feed cannot vouch for. Each partition is
//!   assigned at an offset the feed chose, so it always knows its position —
//!   also of a partition that never carried a message (librdkafka reports no
//!   position for those), which is what lets silence count as fresh.
//! * **Topics** are names or `^regex`es matched against the broker's metadata
//!   at every check. Partitions found at start are read from `start`; one
//!   found later is read from its beginning (a new Debezium table topic),
//!   and is a gap only if its beginning was already deleted.
//! * **Apply, then store.** A message is decoded, applied (tags bumped), and
//!   only then is its offset stored; librdkafka commits stored offsets to
//!   `group_id`, so the committed offset never runs ahead of the cache.
//! * **Bad messages** invalidate their table, or everything when no table can
//!   be named (`decode::fallback`); they are counted and logged at most once
//!   per `LOG_EVERY`.
//! * **Freshness**: every check (a quarter of `max_staleness`, 50 ms–1 s)
//!   reads metadata and the high watermarks — a proof for `freshness.rs`,
//!   which opens the cache's gate until proof + `max_staleness`. An offset
//!   reset, a position beyond a partition's end (topic re-created) and
//!   startup are gaps: hits stop until a later proof, and every entry is
//!   dropped before they resume.
//! * **Latency**: `fetch.wait.max.ms` defaults to 10 ms (librdkafka: 500 ms)
//!   and reconnect back-off to at most 1 s; `properties` override anything.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use super::decode::{self, Format};
use super::freshness::Partition;
use super::keeper::Keeper;
use super::{Echo, FeedError, FeedHandle, Quiet};
use crate::backend::schema::SchemaCache;
use crate::cache::Cache;
use crate::config::{FeedStart, KafkaConfig};
use crate::kafka::set_properties;

/// librdkafka's own log lines, warnings and worse, rate-limited.
struct FeedContext {
    quiet: Mutex<Quiet>,
}

impl ClientContext for FeedContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if (level as i32) > (RDKafkaLogLevel::Warning as i32) {
            debug!(target: "sqlcache::feed", facility = fac, "{message}");
        } else if let Some(suppressed) = self.quiet.lock().unwrap().allow() {
            warn!(target: "sqlcache::feed", facility = fac, suppressed, "librdkafka: {message}");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(suppressed) = self.quiet.lock().unwrap().allow() {
            warn!(target: "sqlcache::feed", suppressed, %error, "kafka: {reason}");
        }
    }
}

impl ConsumerContext for FeedContext {}

/// Which topics the feed reads.
struct Topics {
    names: Vec<String>,
    patterns: Vec<regex::Regex>,
}

impl Topics {
    fn new(list: &[String]) -> Result<Topics, FeedError> {
        let mut t = Topics {
            names: Vec::new(),
            patterns: Vec::new(),
        };
        for s in list {
            if s.starts_with('^') {
                let re = regex::Regex::new(s).map_err(|e| FeedError::Pattern(s.clone(), e))?;
                t.patterns.push(re);
            } else {
                t.names.push(s.clone());
            }
        }
        Ok(t)
    }

    fn matches(&self, topic: &str) -> bool {
        self.names.iter().any(|n| n == topic) || self.patterns.iter().any(|p| p.is_match(topic))
    }
}

/// A running feed; stops (and joins its thread) when dropped.
/// The group id when none is configured: unique per proxy process.
fn default_group_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!(
        "sqlcache-{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", "sqlcache")
        .set(
            "group.id",
            cfg.group_id.clone().unwrap_or_else(default_group_id),
        )
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "1000")
        .set(
            "auto.offset.reset",
            match cfg.start {
                FeedStart::Latest => "latest",
                FeedStart::Earliest => "earliest",
            },
        )
        .set("fetch.wait.max.ms", "10")
        .set("reconnect.backoff.max.ms", "1000")
        .set_log_level(RDKafkaLogLevel::Warning);
    set_properties(&mut c, &cfg.properties);
    c
}

/// Starts the feed: closes the cache's gate until the first proof.
pub fn spawn(
    cfg: &KafkaConfig,
    cache: Arc<Cache>,
    schema: Arc<SchemaCache>,
) -> Result<FeedHandle, FeedError> {
    let topics = Topics::new(&cfg.topics)?;
    let client = client_config(cfg);
    let consumer = new_consumer(&client)?;
    let interval = (cfg.max_staleness / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let stop = Arc::new(AtomicBool::new(false));
    let feed = Feed {
        client,
        renew: false,
        topics,
        format: cfg.format,
        start: cfg.start,
        keeper: Keeper::start(cache.clone(), cfg.max_staleness),
        cache,
        schema,
        next: HashMap::new(),
        started: false,
        resync: false,
        echo: Echo::new(cfg.max_staleness),
        interval,
        timeout: (cfg.max_staleness / 2).clamp(Duration::from_millis(100), Duration::from_secs(2)),
        quiet_bad: Quiet::default(),
        quiet_check: Quiet::default(),
        stop: stop.clone(),
    };
    info!(
        brokers = %cfg.brokers,
        topics = ?cfg.topics,
        format = ?cfg.format,
        max_staleness = ?cfg.max_staleness,
        "change feed starting; cache hits wait for its first freshness proof"
    );
    let thread = std::thread::Builder::new()
        .name("sqlcache-feed".into())
        .spawn(move || feed.run(consumer))
        .map_err(FeedError::Thread)?;
    Ok(FeedHandle::new(
        move || stop.store(true, Ordering::Release),
        thread,
    ))
}

type Kafka = BaseConsumer<FeedContext>;

fn new_consumer(client: &ClientConfig) -> Result<Kafka, KafkaError> {
    client.create_with_context(FeedContext {
        quiet: Mutex::new(Quiet::default()),
    })
}

struct Feed {
    client: ClientConfig,
    /// Start a new librdkafka client before the next check (after a gap).
    renew: bool,
    topics: Topics,
    format: Format,
    start: FeedStart,
    cache: Arc<Cache>,
    schema: Arc<SchemaCache>,
    /// Next offset to apply, per assigned partition.
    next: HashMap<Partition, i64>,
    /// The first check (which places the start) has run.
    started: bool,
    /// librdkafka reset an offset: re-place positions at the next check.
    resync: bool,
    keeper: Keeper,
    echo: Echo,
    interval: Duration,
    timeout: Duration,
    quiet_bad: Quiet,
    quiet_check: Quiet,
    stop: Arc<AtomicBool>,
}

impl Feed {
    fn run(mut self, mut consumer: Kafka) {
        let mut next_check = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            if std::mem::take(&mut self.renew) {
                // A fresh client after a gap: no metadata, topic ids or
                // leader epochs from before it. (librdkafka 2.12.1 crashed
                // here on a Fetch response's leader-change tags from a
                // broker that came back empty: a NULL topic name in
                // rd_kafka_metadata_update_op.)
                match new_consumer(&self.client) {
                    Ok(c) => {
                        consumer = c;
                        self.resync = true;
                        self.cache
                            .stats
                            .feed
                            .client_restarts
                            .fetch_add(1, Ordering::Relaxed);
                        info!("change feed: new Kafka client after a gap");
                    }
                    Err(e) => warn!(error = %e, "change feed: cannot start a new Kafka client"),
                }
            }
            if Instant::now() >= next_check {
                self.check(&consumer);
                next_check = Instant::now() + self.interval;
            }
            let wait = next_check
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            match consumer.poll(wait) {
                None => {}
                Some(Ok(m)) => {
                    self.apply(&m);
                    // Only now may the offset be committed.
                    let _ = consumer.store_offset_from_message(&m);
                    // A pending proof may just have been satisfied.
                    self.settle();
                }
                Some(Err(e)) => self.consume_error(e),
            }
            self.echo.tick(Instant::now(), &self.cache);
        }
        info!("change feed stopped");
    }

    fn apply(&mut self, m: &BorrowedMessage<'_>) {
        let stats = &self.cache.stats.feed;
        stats.messages.fetch_add(1, Ordering::Relaxed);
        let events = match decode::decode(self.format, m.topic(), m.key(), m.payload()) {
            Ok(events) => events,
            Err(e) => {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                let fallback = decode::fallback(self.format, m.topic(), m.payload());
                if let Some(suppressed) = self.quiet_bad.allow() {
                    warn!(
                        topic = m.topic(),
                        partition = m.partition(),
                        offset = m.offset(),
                        error = %e,
                        invalidating = ?fallback,
                        suppressed,
                        "undecodable change-feed message"
                    );
                }
                vec![fallback]
            }
        };
        stats
            .events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        super::apply(&events, &self.cache, &self.schema, &mut self.echo);
        self.next
            .insert((m.topic().to_string(), m.partition()), m.offset() + 1);
        if let Some(ts) = m.timestamp().to_millis() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            stats
                .lag_ms
                .store(now.saturating_sub(ts).max(0) as u64, Ordering::Relaxed);
        }
    }

    fn consume_error(&mut self, e: KafkaError) {
        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset) {
            self.gap("librdkafka reset an offset");
            self.resync = true;
        } else if let Some(suppressed) = self.quiet_check.allow() {
            warn!(error = %e, suppressed, "change feed: consume error");
        }
    }

    fn gap(&mut self, why: &str) {
        self.keeper.gap(why);
        self.renew = true;
    }

    /// Reads metadata and watermarks: (re)assigns partitions and records a
    /// freshness proof.
    fn check(&mut self, consumer: &Kafka) {
        let at = Instant::now();
        match self.read_heads(consumer) {
            Ok(highs) => {
                if self.keeper.observe(at, highs) {
                    self.renew = true;
                }
            }
            Err(why) => {
                debug!(reason = %why, elapsed = ?at.elapsed(), "change feed check failed");
                self.cache.stats.feed.errors.fetch_add(1, Ordering::Relaxed);
                if let Some(suppressed) = self.quiet_check.allow() {
                    warn!(reason = %why, suppressed, "change feed cannot prove it is fresh");
                }
            }
        }
        self.settle();
    }

    fn settle(&mut self) {
        let next = &self.next;
        if self.keeper.settle(|p| next.get(p).copied()) {
            self.renew = true;
        }
    }

    /// The high watermark of every partition the feed reads; places new
    /// partitions and repairs positions the broker no longer has.
    fn read_heads(&mut self, consumer: &Kafka) -> Result<Vec<(Partition, i64)>, String> {
        let wanted = self.wanted(consumer)?;
        let highs = list_offsets(consumer, self.timeout, &wanted, Offset::End)?;
        let new = wanted.iter().any(|p| !self.next.contains_key(p));
        let lows = if self.resync || (self.started && new) {
            list_offsets(consumer, self.timeout, &wanted, Offset::Beginning)?
        } else {
            HashMap::new()
        };
        let mut reassign = std::mem::take(&mut self.resync);
        let mut heads = Vec::with_capacity(wanted.len());
        for p in wanted {
            let high = *highs
                .get(&p)
                .ok_or_else(|| format!("no high watermark for {}/{}", p.0, p.1))?;
            reassign |= self.place(consumer, &p, high, lows.get(&p).copied())?;
            heads.push((p, high));
        }
        let before = self.next.len();
        self.next.retain(|p, _| heads.iter().any(|(w, _)| w == p));
        reassign |= self.next.len() != before;
        self.started = true;
        if reassign {
            self.assign(consumer)?;
        }
        Ok(heads)
    }

    /// Every partition of the topics the feed reads; an error when a named
    /// topic does not exist.
    fn wanted(&self, consumer: &Kafka) -> Result<Vec<Partition>, String> {
        let md = consumer
            .fetch_metadata(None, self.timeout)
            .map_err(|e| format!("metadata: {e}"))?;
        let mut wanted: Vec<Partition> = Vec::new();
        for t in md.topics() {
            if t.error().is_none() && self.topics.matches(t.name()) {
                wanted.extend(
                    t.partitions()
                        .iter()
                        .map(|p| (t.name().to_string(), p.id())),
                );
            }
        }
        let missing: Vec<&String> = self
            .topics
            .names
            .iter()
            .filter(|n| !wanted.iter().any(|(t, _)| t == *n))
            .collect();
        if !missing.is_empty() {
            return Err(format!("topic(s) {missing:?} do not exist"));
        }
        Ok(wanted)
    }

    /// Where to read `p` from, given its high (and, when listed, low)
    /// watermark; true when the assignment must change. A position the
    /// broker no longer has is a gap.
    fn place(
        &mut self,
        consumer: &Kafka,
        p: &Partition,
        high: i64,
        low: Option<i64>,
    ) -> Result<bool, String> {
        let at = match self.next.get(p).copied() {
            None if !self.started => match self.start {
                FeedStart::Latest => high,
                FeedStart::Earliest => {
                    let lows = list_offsets(
                        consumer,
                        self.timeout,
                        std::slice::from_ref(p),
                        Offset::Beginning,
                    )?;
                    *lows
                        .get(p)
                        .ok_or_else(|| format!("no low watermark for {}/{}", p.0, p.1))?
                }
            },
            None => {
                let low = low.unwrap_or(0);
                if low > 0 {
                    self.gap("a new partition's first events were already deleted");
                }
                info!(topic = %p.0, partition = p.1, "change feed: new partition, reading from its beginning");
                low
            }
            Some(n) if n > high => {
                self.gap("a partition is shorter than what was read (topic re-created?)");
                high
            }
            Some(n) if low.is_some_and(|l| n < l) => {
                self.gap("events were deleted before they were read");
                high
            }
            Some(_) => return Ok(false),
        };
        self.next.insert(p.clone(), at);
        Ok(true)
    }

    fn assign(&self, consumer: &Kafka) -> Result<(), String> {
        let mut tpl = TopicPartitionList::new();
        for ((t, p), off) in &self.next {
            tpl.add_partition_offset(t, *p, Offset::Offset(*off))
                .map_err(|e| format!("assignment: {e}"))?;
        }
        consumer.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
        debug!(partitions = self.next.len(), "change feed assignment");
        Ok(())
    }
}

/// Offsets at `which` (End: high watermark, Beginning: low) per partition,
/// in one request per broker.
fn list_offsets(
    consumer: &Kafka,
    timeout: Duration,
    parts: &[Partition],
    which: Offset,
) -> Result<HashMap<Partition, i64>, String> {
    if parts.is_empty() {
        return Ok(HashMap::new());
    }
    let mut tpl = TopicPartitionList::new();
    for (t, p) in parts {
        tpl.add_partition_offset(t, *p, which)
            .map_err(|e| format!("offsets: {e}"))?;
    }
    let got = consumer
        .offsets_for_times(tpl, timeout)
        .map_err(|e| format!("list offsets: {e}"))?;
    let mut out = HashMap::new();
    for e in got.elements() {
        if let Err(err) = e.error() {
            return Err(format!(
                "list offsets {}/{}: {err}",
                e.topic(),
                e.partition()
            ));
        }
        match e.offset() {
            Offset::Offset(o) => {
                out.insert((e.topic().to_string(), e.partition()), o);
            }
            other => {
                return Err(format!(
                    "list offsets {}/{}: no offset ({other:?})",
                    e.topic(),
                    e.partition()
                ))
            }
        }
    }
    for p in parts {
        if !out.contains_key(p) {
            return Err(format!("list offsets: no answer for {}/{}", p.0, p.1));
        }
    }
    Ok(out)
}
