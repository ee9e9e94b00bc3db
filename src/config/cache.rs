//! `[cache]` (with `[cache.ignite]` and `[[cache.tables]]`): the cache's
//! bounds and rules, and what makes them invalid.

use std::time::Duration;

use serde::Deserialize;

use super::yes;

#[derive(Debug, Clone, PartialEq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// Pipelined connections per address.
    pub pool_size: usize,
    /// Cap on an entry's lifetime in the tier (default: the entry's TTL).
    #[serde(default, with = "humantime_serde")]
    pub ttl: Option<Duration>,
    /// How other proxies' invalidations reach this proxy's L1.
    pub coherence: CoherenceMode,
    /// Events mode: the longest an L1 hit may lag another proxy's
    /// acknowledged write; past it, hits are confirmed against the tier.
    #[serde(with = "humantime_serde")]
    pub max_lag: Duration,
    /// Events mode: how often this proxy proves its subscription current.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
}

/// `cache.ignite.coherence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CoherenceMode {
    /// Invalidations from other proxies arrive as events (bounded lag).
    #[default]
    Events,
    /// Every L1 hit re-reads its tokens from the tier (read-your-writes
    /// across proxies, one round trip per hit).
    Strict,
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
            coherence: CoherenceMode::Events,
            max_lag: Duration::from_secs(1),
            heartbeat: Duration::from_millis(100),
        }
    }
}

impl IgniteConfig {
    pub(super) fn problems(&self, p: &mut Vec<String>) {
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
            ("max_lag", self.max_lag),
            ("heartbeat", self.heartbeat),
        ] {
            if d.is_zero() {
                p.push(format!("cache.ignite.{key}: must be above 0"));
            }
        }
        if self.pool_size == 0 {
            p.push("cache.ignite.pool_size: must be at least 1".into());
        }
        if self.heartbeat * 2 > self.max_lag {
            p.push("cache.ignite.heartbeat: must be at most half of max_lag (a late beat would close the gate)".into());
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
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

impl CacheConfig {
    pub(super) fn problems(&self, p: &mut Vec<String>) {
        if self.max_memory == 0 {
            p.push("cache.max_memory: must be above 0".into());
        }
        if self.ttl.is_zero() {
            p.push("cache.ttl: must be above 0".into());
        }
        for (i, t) in self.tables.iter().enumerate() {
            if t.name.split('.').count() != 2 || t.name.split('.').any(str::is_empty) {
                p.push(format!(
                    "cache.tables[{i}].name: `{}` is not `db.table`",
                    t.name
                ));
            }
        }
    }

    pub(super) fn ignite_problems(&self, p: &mut Vec<String>) {
        if let Some(i) = &self.ignite {
            i.problems(p);
        }
    }
}
