//! `[invalidation.kafka]`, `[invalidation.binlog]` and `[cdc]`: the change
//! feeds and the publisher, and what makes each invalid.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::yes;

/// `[cdc]`: publish the binlog to Kafka as Debezium change events.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CdcConfig {
    /// `host:port[,host:port…]` (librdkafka's `bootstrap.servers`).
    pub brokers: String,
    /// Topics are `<topic_prefix>.<db>.<table>`; schema changes go to
    /// `<topic_prefix>` itself (Debezium's `topic.prefix`).
    pub topic_prefix: String,
    /// The replica id announced to MySQL; unique among its replicas.
    /// Default: random in 1000000000..2000000000.
    #[serde(default)]
    pub server_id: Option<u32>,
    /// Replication account (REPLICATION SLAVE, BINLOG MONITOR on MariaDB /
    /// REPLICATION CLIENT on MySQL, SELECT for the snapshot). Default:
    /// `backend.user` / `password`.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// `db.table` patterns (`*` matches any run of characters) to publish;
    /// empty = every table outside the system schemas.
    #[serde(default)]
    pub include: Vec<String>,
    /// `db.table` patterns left out (wins over `include`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `initial`: publish every row once (op `r`) before streaming, when
    /// there is no saved state; `never`: stream from the current position.
    #[serde(default)]
    pub snapshot: SnapshotMode,
    /// Where the acknowledged position is kept.
    #[serde(default = "default_cdc_state")]
    pub state: PathBuf,
    /// A tombstone (null value) after each delete, for log compaction.
    #[serde(default = "yes")]
    pub tombstones: bool,
    /// Wrap keys and values in `{schema, payload}` (Debezium's
    /// `schemas.enable`).
    #[serde(default)]
    pub schemas: bool,
    /// Partitions and replication factor of the topics `cdc` creates.
    #[serde(default = "one_i32")]
    pub topic_partitions: i32,
    #[serde(default = "one_i32")]
    pub topic_replication: i32,
    /// Prometheus `/metrics` address; unset = none.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// Leave out every transaction a `sqlcache sink` wrote (it writes its
    /// `sink_offsets_table` row first): the spoke's setting in two-way sync.
    /// Proxies fed by these topics then do not see those writes.
    #[serde(default)]
    pub skip_sink_writes: bool,
    /// `db.table` of the sinks' offsets (`sink.offsets_table`).
    #[serde(default = "default_sink_offsets")]
    pub sink_offsets_table: String,
    /// Idle heartbeat asked of MySQL (a dead link is noticed after twice it).
    #[serde(default = "one_second", with = "humantime_serde")]
    pub heartbeat: Duration,
    /// `/health` answers 503 once a change read from the binlog has waited
    /// this long for Kafka's acknowledgement, or sessions have been failing
    /// for this long (`cdc/health.rs`).
    #[serde(default = "thirty_seconds", with = "humantime_serde")]
    pub max_unacked_age: Duration,
    /// Passed verbatim to librdkafka's producer (`security.protocol`,
    /// `sasl.*`, `linger.ms`, …).
    #[serde(default)]
    pub kafka: std::collections::BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotMode {
    #[default]
    Initial,
    Never,
}

fn default_sink_offsets() -> String {
    "sqlcache.sink_offsets".into()
}

fn default_cdc_state() -> PathBuf {
    PathBuf::from("sqlcache-cdc.state.json")
}

/// librdkafka settings are scalars: name each array or table.
fn property_problems(
    p: &mut Vec<String>,
    path: &str,
    props: &std::collections::BTreeMap<String, toml::Value>,
) {
    for (key, v) in props {
        if matches!(v, toml::Value::Array(_) | toml::Value::Table(_)) {
            p.push(format!("{path}.{key}: must be a string, number or boolean"));
        }
    }
}

fn one_i32() -> i32 {
    1
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}

fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

/// Change feeds that keep the cache fresh from writes the proxy never sees.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
pub struct InvalidationConfig {
    pub kafka: Option<KafkaConfig>,
    pub binlog: Option<BinlogConfig>,
}

/// `[invalidation.binlog]`: the proxy tails MySQL's binlog itself.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BinlogConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The replica id announced to MySQL; unique among its replicas.
    /// Default: random in 1000000000..2000000000.
    #[serde(default)]
    pub server_id: Option<u32>,
    /// Account with REPLICATION SLAVE (+ BINLOG MONITOR on MariaDB,
    /// REPLICATION CLIENT on MySQL). Default: `backend.user` / `password`.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Hits stop when the reader cannot prove it is this close to the head.
    #[serde(default = "five_seconds", with = "humantime_serde")]
    pub max_staleness: Duration,
}

/// `[invalidation.kafka]`: a Debezium / Canal / Maxwell feed on Kafka.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct KafkaConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `host:port[,host:port…]` (librdkafka's `bootstrap.servers`).
    pub brokers: String,
    /// Topic names, or librdkafka regular expressions starting with `^`.
    pub topics: Vec<String>,
    pub format: Format,
    /// Default: unique per proxy process — every proxy must see every event.
    #[serde(default)]
    pub group_id: Option<String>,
    /// Where a partition without a committed offset starts.
    #[serde(default)]
    pub start: FeedStart,
    /// Hits stop when the feed cannot prove it is this close to the head.
    #[serde(default = "five_seconds", with = "humantime_serde")]
    pub max_staleness: Duration,
    /// Passed verbatim to librdkafka (`security.protocol`, `sasl.*`, …).
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FeedStart {
    #[default]
    Latest,
    Earliest,
}

fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

/// The envelope of a change feed's messages (`invalidation.kafka.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Debezium,
    Canal,
    Maxwell,
}

impl InvalidationConfig {
    pub(super) fn problems(&self, p: &mut Vec<String>) {
        if let Some(k) = self.kafka.as_ref().filter(|k| k.enabled) {
            if k.brokers.trim().is_empty() {
                p.push("invalidation.kafka.brokers: empty".into());
            }
            if k.topics.is_empty() || k.topics.iter().any(|t| t.trim().is_empty()) {
                p.push("invalidation.kafka.topics: name at least one topic (or a `^regex`)".into());
            }
            for t in k.topics.iter().filter(|t| t.starts_with('^')) {
                if let Err(e) = regex::Regex::new(t) {
                    p.push(format!("invalidation.kafka.topics: `{t}`: {e}"));
                }
            }
            if k.max_staleness < Duration::from_millis(100) {
                p.push("invalidation.kafka.max_staleness: must be at least 100ms".into());
            }
            property_problems(p, "invalidation.kafka.properties", &k.properties);
        }
        if let Some(b) = self.binlog.as_ref().filter(|b| b.enabled) {
            if b.max_staleness < Duration::from_millis(100) {
                p.push("invalidation.binlog.max_staleness: must be at least 100ms".into());
            }
            if b.server_id == Some(0) {
                p.push("invalidation.binlog.server_id: must be above 0".into());
            }
            if self.kafka.as_ref().is_some_and(|k| k.enabled) {
                p.push(
                    "invalidation: enable either [invalidation.kafka] or [invalidation.binlog], not both"
                        .into(),
                );
            }
        }
    }
}

impl CdcConfig {
    /// True for the sinks' offsets table (what marks a sink's transaction).
    pub fn is_sink_offsets(&self, db: &str, table: &str) -> bool {
        self.sink_offsets_table
            .split_once('.')
            .is_some_and(|(d, t)| d == db && t == table)
    }

    pub(super) fn problems(&self, p: &mut Vec<String>) {
        if super::split_table(&self.sink_offsets_table).is_none() {
            p.push(format!(
                "cdc.sink_offsets_table: `{}` is not `db.table`",
                self.sink_offsets_table
            ));
        }
        if self.brokers.trim().is_empty() {
            p.push("cdc.brokers: empty".into());
        }
        if self.topic_prefix.is_empty()
            || !self
                .topic_prefix
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
        {
            p.push(format!(
                "cdc.topic_prefix: `{}` must be non-empty and use only letters, digits, '.', '_' and '-'",
                self.topic_prefix
            ));
        }
        if self.server_id == Some(0) {
            p.push("cdc.server_id: must be above 0".into());
        }
        if self.topic_partitions < 1 {
            p.push("cdc.topic_partitions: must be at least 1".into());
        }
        if self.topic_replication < 1 {
            p.push("cdc.topic_replication: must be at least 1".into());
        }
        if self.max_unacked_age < Duration::from_millis(100) {
            p.push("cdc.max_unacked_age: must be at least 100ms".into());
        }
        if self.heartbeat < Duration::from_millis(100) {
            p.push("cdc.heartbeat: must be at least 100ms".into());
        }
        if let Some(m) = &self.metrics_listen {
            if m.parse::<SocketAddr>().is_err() {
                p.push(format!("cdc.metrics_listen: `{m}` is not an address:port"));
            }
        }
        for pat in self.include.iter().chain(&self.exclude) {
            if !pat.contains('.') {
                p.push(format!(
                    "cdc.include/exclude: `{pat}` must be `db.table` (`*` allowed)"
                ));
            }
        }
        property_problems(p, "cdc.kafka", &self.kafka);
    }
}
