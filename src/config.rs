//! The `Config` tree read from `proxy.toml`.
//!
//! Policy: every key has a documented default in the shipped `proxy.toml`;
//! unknown keys are errors (collected with `serde_ignored`, so *every* unknown
//! key is named in one run rather than only the first, which is what
//! `#[serde(deny_unknown_fields)]` would give); `validate` reports every
//! semantic problem by its dotted key path. Durations are humantime strings
//! (`"5s"`, `"250ms"`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Errors of the configuration layer.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: invalid configuration:\n  - {}", problems.join("\n  - "))]
    Invalid { path: String, problems: Vec<String> },
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    pub proxy: ProxyConfig,
    pub backend: BackendConfig,
    /// Accounts the proxy authenticates clients with. Backend connections are
    /// opened as the same user, so MySQL's own grants apply.
    pub users: Vec<UserConfig>,
    pub cache: CacheConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub invalidation: InvalidationConfig,
    /// `sqlcache cdc`: the binlog → Kafka publisher.
    pub cdc: Option<CdcConfig>,
}

/// `[cdc]`: publish the binlog to Kafka as Debezium change events.
#[derive(Debug, Clone, Deserialize)]
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
    /// Idle heartbeat asked of MySQL (a dead link is noticed after twice it).
    #[serde(default = "one_second", with = "humantime_serde")]
    pub heartbeat: Duration,
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

/// Change feeds that keep the cache fresh from writes the proxy never sees.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct InvalidationConfig {
    pub kafka: Option<KafkaConfig>,
    pub binlog: Option<BinlogConfig>,
}

/// `[invalidation.binlog]`: the proxy tails MySQL's binlog itself.
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
pub struct KafkaConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `host:port[,host:port…]` (librdkafka's `bootstrap.servers`).
    pub brokers: String,
    /// Topic names, or librdkafka regular expressions starting with `^`.
    pub topics: Vec<String>,
    pub format: crate::invalidation::decode::Format,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Bound on cached keys + responses, in bytes (`"256MiB"` or a number).
    #[serde(deserialize_with = "bytes_size")]
    pub max_memory: u64,
    /// Safety-net lifetime of an entry.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Responses larger than this are not cached.
    #[serde(deserialize_with = "bytes_size")]
    pub max_result_bytes: u64,
    /// Serve one user's cached rows to another (only if grants are uniform).
    pub share_across_users: bool,
    /// How long a miss waits for an identical miss already in flight.
    #[serde(with = "humantime_serde")]
    pub coalesce_wait: Duration,
    /// Testing aid: pause between the backend's answer and storing a fill,
    /// so tests can force a write into that window. Keep at 0s.
    #[serde(with = "humantime_serde")]
    pub fill_delay: Duration,
    /// Refreshes (`on_change = "refresh"`) running at once.
    pub refresh_concurrency: usize,
    pub tables: Vec<TableRule>,
    /// The shared tier (L2) on Apache Ignite; off unless `enabled`.
    pub ignite: Option<IgniteConfig>,
}

/// `[cache.ignite]`: the shared tier's cluster and budgets.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct IgniteConfig {
    pub enabled: bool,
    /// Thin-client endpoints (`host:10800`); each pooled connection starts
    /// at a different one and moves on when it fails.
    pub addresses: Vec<String>,
    /// Cache holding entries (response bytes + the tokens they were filled under).
    pub cache_name: String,
    /// Cache holding tag tokens (must not be the entries cache).
    pub tokens_cache_name: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// TLS to the cluster, verified against `tls_ca` (PEM).
    pub tls: bool,
    pub tls_ca: Option<std::path::PathBuf>,
    /// Budget of a lookup; past it the miss goes to MySQL.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Budget of an invalidation; past it the tier is not used until the
    /// invalidation is delivered.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Connect + handshake budget.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Pipelined connections.
    pub pool_size: usize,
    /// Cap on an entry's lifetime in the tier (default: the entry's TTL).
    #[serde(default, with = "humantime_serde")]
    pub ttl: Option<Duration>,
}

impl Default for IgniteConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            addresses: vec!["127.0.0.1:10800".into()],
            cache_name: "sqlcache_entries".into(),
            tokens_cache_name: "sqlcache_tokens".into(),
            username: None,
            password: None,
            tls: false,
            tls_ca: None,
            timeout: Duration::from_millis(2),
            write_timeout: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(2),
            pool_size: 2,
            ttl: None,
        }
    }
}

impl IgniteConfig {
    fn problems(&self, p: &mut Vec<String>) {
        if !self.enabled {
            return;
        }
        if self.addresses.is_empty() {
            p.push("cache.ignite.addresses: empty".into());
        }
        for a in &self.addresses {
            if a.rsplit_once(':')
                .is_none_or(|(h, port)| h.is_empty() || port.parse::<u16>().is_err())
            {
                p.push(format!("cache.ignite.addresses: `{a}` is not host:port"));
            }
        }
        if self.cache_name.is_empty() || self.cache_name == self.tokens_cache_name {
            p.push("cache.ignite.cache_name / tokens_cache_name: must be two different, non-empty names".into());
        }
        if self.username.is_some() != self.password.is_some() {
            p.push("cache.ignite.username / password: set both or neither".into());
        }
        match (&self.tls_ca, self.tls) {
            (None, true) => p.push("cache.ignite.tls_ca: required when tls = true".into()),
            (Some(ca), true) if !ca.is_file() => p.push(format!(
                "cache.ignite.tls_ca: `{}` is not a readable file",
                ca.display()
            )),
            _ => {}
        }
        for (key, d) in [
            ("timeout", self.timeout),
            ("write_timeout", self.write_timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if d.is_zero() {
                p.push(format!("cache.ignite.{key}: must be above 0"));
            }
        }
        if self.pool_size == 0 {
            p.push("cache.ignite.pool_size: must be at least 1".into());
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct TableRule {
    /// `db.table`.
    pub name: String,
    #[serde(default, with = "humantime_serde")]
    pub ttl: Option<Duration>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// What a change feed does to this table's entries.
    #[serde(default)]
    pub on_change: OnChange,
}

/// `[[cache.tables]] on_change`.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnChange {
    /// Drop the entry; the next read refills it.
    #[default]
    Invalidate,
    /// Drop it, and re-run the read at once if it was hit recently.
    Refresh,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct AdminConfig {
    /// Prometheus `/metrics` address; unset = no admin listener.
    pub listen: Option<String>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_memory: 256 << 20,
            ttl: Duration::from_secs(60),
            max_result_bytes: 64 << 10,
            share_across_users: false,
            coalesce_wait: Duration::from_millis(500),
            fill_delay: Duration::ZERO,
            refresh_concurrency: 4,
            tables: Vec::new(),
            ignite: None,
        }
    }
}

/// Parses `"64MiB"`, `"512KiB"`, `"1GiB"`, `"100kB"`, or a plain number.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn bytes_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        N(u64),
        S(String),
    }
    match Size::deserialize(d)? {
        Size::N(n) => Ok(n),
        Size::S(s) => parse_size(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a size like \"64MiB\""))),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ProxyConfig {
    pub listen: String,
    /// Client connections accepted at once; more get error 1040.
    pub max_connections: usize,
    /// Worker threads, each a single-threaded runtime; 0 = one per CPU.
    pub workers: usize,
    /// How long a graceful shutdown waits for sessions to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Server version advertised before the backend has been reached once
    /// (afterwards the backend's own version string is advertised).
    pub fallback_server_version: String,
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Refuse clients that do not upgrade to TLS.
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BackendConfig {
    pub host: String,
    pub port: u16,
    /// Unix socket path; when set it is used instead of host/port.
    pub socket: Option<PathBuf>,
    /// The proxy's own account (server version probe, health checks).
    pub user: String,
    pub password: String,
    /// Most backend connections open at once, over all users.
    pub pool_max: usize,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long a statement waits for a free backend connection.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Longest wait for the first response to a statement; `0s` = no limit.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Idle backend connections older than this are closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UserConfig {
    pub name: String,
    #[serde(default)]
    pub password: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive; `RUST_LOG` overrides it.
    pub level: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:6033".into(),
            max_connections: 4096,
            workers: 0,
            shutdown_timeout: Duration::from_secs(30),
            fallback_server_version: "5.5.5-10.11.0-MariaDB-sqlcache".into(),
            tls: None,
        }
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 3306,
            socket: None,
            user: "root".into(),
            password: String::new(),
            pool_max: 64,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(10),
            query_timeout: Duration::ZERO,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())?.validate(&path.display().to_string())
    }

    /// Parses TOML text; unknown keys are reported all at once.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let mut unknown = Vec::new();
        let config: Config = serde_ignored::deserialize(de, |p| unknown.push(p.to_string()))
            .map_err(|e| ConfigError::Parse {
                path: origin.into(),
                message: e.to_string(),
            })?;
        if !unknown.is_empty() {
            return Err(ConfigError::Invalid {
                path: origin.into(),
                problems: unknown
                    .iter()
                    .map(|k| format!("unknown key `{k}`"))
                    .collect(),
            });
        }
        Ok(config)
    }

    /// Checks semantic constraints, naming every bad key.
    pub fn validate(self, origin: &str) -> Result<Config, ConfigError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(ConfigError::Invalid {
                path: origin.into(),
                problems,
            })
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.proxy.listen.parse::<SocketAddr>().is_err() {
            p.push(format!(
                "proxy.listen: `{}` is not an address:port",
                self.proxy.listen
            ));
        }
        if self.proxy.max_connections == 0 {
            p.push("proxy.max_connections: must be at least 1".into());
        }
        if let Some(tls) = &self.proxy.tls {
            for (key, path) in [("cert", &tls.cert), ("key", &tls.key)] {
                if !path.is_file() {
                    p.push(format!(
                        "proxy.tls.{key}: `{}` is not a readable file",
                        path.display()
                    ));
                }
            }
        }
        if let Some(i) = &self.cache.ignite {
            i.problems(&mut p);
        }
        if self.backend.socket.is_none() && self.backend.host.is_empty() {
            p.push("backend.host: empty (set host or socket)".into());
        }
        if self.backend.pool_max == 0 {
            p.push("backend.pool_max: must be at least 1".into());
        }
        if self.backend.connect_timeout.is_zero() {
            p.push("backend.connect_timeout: must be above 0".into());
        }
        if self.users.is_empty() {
            p.push("users: at least one [[users]] entry is needed".into());
        }
        for (i, u) in self.users.iter().enumerate() {
            if u.name.is_empty() {
                p.push(format!("users[{i}].name: empty"));
            }
            if self.users[..i].iter().any(|o| o.name == u.name) {
                p.push(format!("users[{i}].name: `{}` listed twice", u.name));
            }
        }
        if self.cache.max_memory == 0 {
            p.push("cache.max_memory: must be above 0".into());
        }
        if self.cache.ttl.is_zero() {
            p.push("cache.ttl: must be above 0".into());
        }
        for (i, t) in self.cache.tables.iter().enumerate() {
            if t.name.split('.').count() != 2 || t.name.split('.').any(str::is_empty) {
                p.push(format!(
                    "cache.tables[{i}].name: `{}` is not `db.table`",
                    t.name
                ));
            }
        }
        if let Some(a) = &self.admin.listen {
            if a.parse::<SocketAddr>().is_err() {
                p.push(format!("admin.listen: `{a}` is not an address:port"));
            }
        }
        if let Some(k) = self.invalidation.kafka.as_ref().filter(|k| k.enabled) {
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
            property_problems(&mut p, "invalidation.kafka.properties", &k.properties);
        }
        if let Some(b) = self.invalidation.binlog.as_ref().filter(|b| b.enabled) {
            if b.max_staleness < Duration::from_millis(100) {
                p.push("invalidation.binlog.max_staleness: must be at least 100ms".into());
            }
            if b.server_id == Some(0) {
                p.push("invalidation.binlog.server_id: must be above 0".into());
            }
            if self.invalidation.kafka.as_ref().is_some_and(|k| k.enabled) {
                p.push(
                    "invalidation: enable either [invalidation.kafka] or [invalidation.binlog], not both"
                        .into(),
                );
            }
        }
        if let Some(c) = &self.cdc {
            if c.brokers.trim().is_empty() {
                p.push("cdc.brokers: empty".into());
            }
            if c.topic_prefix.is_empty()
                || !c
                    .topic_prefix
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
            {
                p.push(format!(
                    "cdc.topic_prefix: `{}` must be non-empty and use only letters, digits, '.', '_' and '-'",
                    c.topic_prefix
                ));
            }
            if c.server_id == Some(0) {
                p.push("cdc.server_id: must be above 0".into());
            }
            if c.topic_partitions < 1 {
                p.push("cdc.topic_partitions: must be at least 1".into());
            }
            if c.topic_replication < 1 {
                p.push("cdc.topic_replication: must be at least 1".into());
            }
            if c.heartbeat < Duration::from_millis(100) {
                p.push("cdc.heartbeat: must be at least 100ms".into());
            }
            if let Some(m) = &c.metrics_listen {
                if m.parse::<SocketAddr>().is_err() {
                    p.push(format!("cdc.metrics_listen: `{m}` is not an address:port"));
                }
            }
            for pat in c.include.iter().chain(&c.exclude) {
                if !pat.contains('.') {
                    p.push(format!(
                        "cdc.include/exclude: `{pat}` must be `db.table` (`*` allowed)"
                    ));
                }
            }
            property_problems(&mut p, "cdc.kafka", &c.kafka);
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            p.push(format!("log.level: `{}`: {e}", self.log.level));
        }
        p
    }

    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_proxy_toml_parses_and_validates() {
        let text = include_str!("../proxy.toml");
        let c = Config::parse(text, "proxy.toml")
            .unwrap()
            .validate("proxy.toml")
            .unwrap();
        assert_eq!(c.proxy.listen, "127.0.0.1:6033");
        assert_eq!(c.backend.host, "127.0.0.1");
        assert_eq!(c.backend.port, 3306);
        assert_eq!(c.backend.user, "root");
        assert_eq!(c.users.len(), 1);
        assert_eq!(c.users[0].name, "root");
        assert_eq!(c.users[0].password, "");
    }

    #[test]
    fn every_unknown_key_is_named() {
        let err = Config::parse(
            "[proxy]\nlisten='127.0.0.1:1'\nlisen=1\n[backend]\nprot=1\n[[users]]\nname='a'\npw='x'\n",
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("proxy.lisen"), "{err}");
        assert!(err.contains("backend.prot"), "{err}");
        assert!(err.contains("users.0.pw") || err.contains("pw"), "{err}");
    }

    #[test]
    fn every_bad_value_is_named() {
        let c = Config::parse(
            "[proxy]\nlisten='nope'\nmax_connections=0\n[backend]\npool_max=0\n[log]\nlevel='=bad=['\n",
            "t",
        )
        .unwrap();
        let err = c.validate("t").unwrap_err().to_string();
        for key in [
            "proxy.listen",
            "proxy.max_connections",
            "backend.pool_max",
            "users:",
        ] {
            assert!(err.contains(key), "{key} missing in {err}");
        }
    }

    /// The commented block of `text` that starts at `from`, uncommented
    /// (up to the first blank line).
    fn uncomment(text: &str, from: &str) -> String {
        let start = text.find(from).unwrap();
        text[start..]
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_documented_cdc_section_parses() {
        let text = include_str!("../proxy.toml");
        let cdc = uncomment(text, "# [cdc]");
        let c = Config::parse(&format!("[[users]]\nname = 'u'\n{cdc}"), "t")
            .unwrap()
            .validate("t")
            .unwrap();
        let c = c.cdc.unwrap();
        assert_eq!(c.topic_prefix, "dbserver1");
        assert_eq!(c.snapshot, SnapshotMode::Initial);
        assert!(c.tombstones && !c.schemas);
        assert_eq!(c.kafka.len(), 2);
        assert_eq!(c.kafka["message.timeout.ms"].to_string(), "\"0\"");
        let bad = cdc.replace("dbserver1", "bad prefix!");
        let err = Config::parse(&format!("[[users]]\nname = 'u'\n{bad}"), "t")
            .unwrap()
            .validate("t")
            .unwrap_err();
        assert!(err.to_string().contains("cdc.topic_prefix"), "{err}");
    }

    #[test]
    fn the_documented_binlog_section_parses() {
        let text = include_str!("../proxy.toml");
        let feed = uncomment(text, "# [invalidation.binlog]");
        let c = Config::parse(&format!("[[users]]\nname = 'u'\n{feed}"), "t")
            .unwrap()
            .validate("t")
            .unwrap();
        let b = c.invalidation.binlog.unwrap();
        assert!(b.enabled);
        assert_eq!(b.max_staleness, Duration::from_secs(5));
        assert_eq!(b.user.as_deref(), Some("sqlcache_repl"));
        // Both feeds at once is an error.
        let both = format!(
            "[[users]]\nname = 'u'\n{}\n{feed}",
            uncomment(text, "# [invalidation.kafka]")
        );
        let err = Config::parse(&both, "t")
            .unwrap()
            .validate("t")
            .unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
    }

    #[test]
    fn the_documented_feed_section_parses() {
        // proxy.toml's commented example, uncommented.
        let text = include_str!("../proxy.toml");
        let feed = uncomment(text, "# [invalidation.kafka]");
        let c = Config::parse(&format!("[[users]]\nname = 'u'\n{feed}"), "t")
            .unwrap()
            .validate("t")
            .unwrap();
        let k = c.invalidation.kafka.unwrap();
        assert_eq!(k.format, crate::invalidation::decode::Format::Debezium);
        assert_eq!(k.max_staleness, Duration::from_secs(5));
        assert_eq!(k.topics, vec!["^dbserver1(\\..*)?$".to_string()]);
        assert_eq!(k.properties.len(), 5);
        let bad = Config::parse(
            "[[users]]\nname='u'\n[invalidation.kafka]\nbrokers=''\ntopics=[]\nformat='canal'\nmax_staleness='1ms'\n",
            "t",
        )
        .unwrap()
        .validate("t")
        .unwrap_err()
        .to_string();
        for key in ["kafka.brokers", "kafka.topics", "kafka.max_staleness"] {
            assert!(bad.contains(key), "{key} missing in {bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1GB"), Some(1_000_000_000));
        assert_eq!(parse_size("lots"), None);
        let c = Config::parse("[cache]\nmax_memory = \"1MiB\"\nmax_result_bytes = 10\n[[cache.tables]]\nname = \"a.b\"\nenabled = false\n", "t").unwrap();
        assert_eq!(c.cache.max_memory, 1 << 20);
        assert_eq!(c.cache.max_result_bytes, 10);
        assert!(!c.cache.tables[0].enabled);
        assert!(Config::parse("[cache]\nmax_memory = \"lots\"\n", "t").is_err());
    }

    #[test]
    fn durations_are_humantime() {
        let c = Config::parse("[backend]\nconnect_timeout='250ms'\n", "t").unwrap();
        assert_eq!(c.backend.connect_timeout, Duration::from_millis(250));
    }
}
