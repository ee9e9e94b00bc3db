//! The `Config` tree read from `proxy.toml`.
//!
//! Policy: every key has a documented default in the shipped `proxy.toml`;
//! unknown keys are errors (collected with `serde_ignored`, so *every* unknown
//! key is named in one run rather than only the first, which is what
//! `#[serde(deny_unknown_fields)]` would give); `validate` reports every
//! semantic problem by its dotted key path. Durations are humantime strings
//! (`"5s"`, `"250ms"`). One file per group of sections (`proxy.rs`,
//! `cache.rs`, `feeds.rs`, `sink.rs`), each with its sections' checks.

mod cache;
mod feeds;
mod proxy;
mod sink;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use cache::*;
pub use feeds::*;
pub use proxy::*;
pub use sink::*;

/// serde's default for switches that are on unless turned off.
fn yes() -> bool {
    true
}

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

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    pub proxy: ProxyConfig,
    pub backend: BackendConfig,
    /// Accounts the proxy authenticates clients with. Backend connections are
    /// opened as the same user, so MySQL's own grants apply.
    pub users: Vec<UserConfig>,
    /// More accounts, read from MySQL (`accounts.source = "backend"`).
    pub accounts: AccountsConfig,
    pub cache: CacheConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub invalidation: InvalidationConfig,
    /// `sqlcache cdc`: the binlog → Kafka publisher.
    pub cdc: Option<CdcConfig>,
    /// `sqlcache sink`: Kafka → MySQL.
    pub sink: Option<SinkConfig>,
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let origin = path.display().to_string();
        let mut config = Self::parse(&text, &origin)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Err(problem) = config.backend.read_password_file(dir) {
            let mut problems = config.problems();
            problems.insert(0, problem);
            return Err(ConfigError::Invalid {
                path: origin,
                problems,
            });
        }
        config.validate(&origin)
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
        self.proxy.problems(&mut p);
        self.cache.ignite_problems(&mut p);
        self.backend.problems(&mut p);
        let proxy_file = self.cdc.is_none() && self.sink.is_none();
        proxy::user_problems(&self.users, &self.accounts, proxy_file, &mut p);
        self.cache.problems(&mut p);
        self.admin.problems(&mut p);
        self.invalidation.problems(&mut p);
        if let Some(c) = &self.cdc {
            c.problems(&mut p);
        }
        if let Some(s) = &self.sink {
            s.problems(&mut p);
        }
        self.log.problems(&mut p);
        p
    }

    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn shipped_proxy_toml_parses_and_validates() {
        let text = include_str!("../../proxy.toml");
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
    fn password_hashes_are_checked() {
        let users = |u: &str| {
            Config::parse(&format!("[[users]]\nname='a'\n{u}\n"), "t").and_then(|c| c.validate("t"))
        };
        let ok = users("password_hash = '*0123456789ABCDEF0123456789ABCDEF01234567'").unwrap();
        assert!(matches!(
            ok.users[0].secret(),
            Some(crate::credential::Secret::Hash(_))
        ));
        let err = users("password_hash = 'plain'").unwrap_err().to_string();
        assert!(err.contains("users[0].password_hash"), "{err}");
        let err = users("password = 'x'\npassword_hash = ''")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not both"), "{err}");
    }

    #[test]
    fn the_backend_password_can_live_in_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        let load = |name: &str| Config::load(&dir.path().join(name));
        write("secret", "s3cret\nignored\n");
        write(
            "a.toml",
            "[backend]\npassword_file = \"secret\"\n[[users]]\nname = \"u\"\n",
        );
        assert_eq!(load("a.toml").unwrap().backend.password, "s3cret");
        write(
            "b.toml",
            "[backend]\npassword = \"x\"\npassword_file = \"secret\"\npool_max = 0\n",
        );
        let err = load("b.toml").unwrap_err().to_string();
        assert!(
            err.contains("not both") && err.contains("backend.pool_max"),
            "{err}"
        );
        write(
            "c.toml",
            "[backend]\npassword_file = \"missing\"\n[[users]]\nname = \"u\"\n",
        );
        let err = load("c.toml").unwrap_err().to_string();
        assert!(err.contains("backend.password_file: cannot read"), "{err}");
    }

    #[test]
    fn every_bad_value_is_named() {
        let c = Config::parse(
            "[proxy]\nlisten='nope'\nsocket='/tmp/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'\nmax_connections=0\n[backend]\npool_max=0\n[log]\nlevel='=bad=['\n[accounts]\nsource='config'\n",
            "t",
        )
        .unwrap();
        let err = c.validate("t").unwrap_err().to_string();
        for key in [
            "proxy.listen",
            "proxy.socket: `/tmp/xxx",
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
        let text = include_str!("../../proxy.toml");
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
    fn the_documented_sink_section_parses() {
        let text = include_str!("../../proxy.toml");
        let sink = uncomment(text, "# [sink]");
        let c = Config::parse(&format!("[[users]]\nname = 'u'\n{sink}"), "t")
            .unwrap()
            .validate("t")
            .unwrap();
        let s = c.sink.unwrap();
        assert_eq!(s.topic_pattern.as_deref(), Some("^dbserver1\\.shop\\."));
        assert_eq!(s.tables["dbserver1.shop.orders"], "archive.orders");
        assert_eq!(s.key_columns["shop.events"], vec!["event_id".to_string()]);
        assert_eq!(s.dead_letter_topic.as_deref(), Some("sqlcache-sink-dead"));
        assert_eq!(s.kafka.len(), 1);
    }

    #[test]
    fn the_documented_binlog_section_parses() {
        let text = include_str!("../../proxy.toml");
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
        let text = include_str!("../../proxy.toml");
        let feed = uncomment(text, "# [invalidation.kafka]");
        let c = Config::parse(&format!("[[users]]\nname = 'u'\n{feed}"), "t")
            .unwrap()
            .validate("t")
            .unwrap();
        let k = c.invalidation.kafka.unwrap();
        assert_eq!(k.format, Format::Debezium);
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
