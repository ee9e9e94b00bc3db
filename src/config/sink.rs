//! `[sink]`: `sqlcache sink`, Kafka → MySQL, and what makes it invalid.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::yes;

/// `[sink]`: apply Debezium change events from Kafka to `[backend]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SinkConfig {
    /// `host:port[,host:port…]` (librdkafka's `bootstrap.servers`).
    pub brokers: String,
    /// This sink's identity: the rows of the offsets table it owns, the
    /// lock that keeps a second copy out, the consumer group it reports
    /// progress under.
    #[serde(default = "default_name")]
    pub name: String,
    /// Topics to apply.
    #[serde(default)]
    pub topics: Vec<String>,
    /// And every topic whose name matches this regex (checked again every
    /// 10 s, so new tables' topics are picked up).
    #[serde(default)]
    pub topic_pattern: Option<String>,
    /// The target table of a topic `….<db>.<table>`: `{db}` and `{table}`
    /// are its last two dot-separated parts.
    #[serde(default = "default_table")]
    pub table: String,
    /// Per-topic overrides of `table`: `"topic" = "db.table"`.
    #[serde(default)]
    pub tables: BTreeMap<String, String>,
    /// Per-table key columns (`"db.table" = ["col", …]`) used instead of
    /// the target's primary key to find rows to delete or replace.
    #[serde(default)]
    pub key_columns: BTreeMap<String, Vec<String>>,
    /// A tombstone (null value) deletes the row its key names.
    #[serde(default = "yes")]
    pub delete_on_tombstone: bool,
    /// A transaction holds at most this many changes…
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// …and takes more while each arrives within this of the one before.
    #[serde(default = "default_batch_wait", with = "humantime_serde")]
    pub batch_wait: Duration,
    /// `db.table` of the offsets the sink resumes from (created if absent);
    /// every sink transaction writes its row here first, which is how
    /// `sqlcache cdc` recognizes the sink's writes (`cdc.skip_sink_writes`).
    #[serde(default = "default_offsets_table")]
    pub offsets_table: String,
    /// Where a partition with no saved offset starts: `earliest` | `latest`.
    #[serde(default)]
    pub start: SinkStart,
    /// Create a missing target table from the envelope's schema.
    #[serde(default)]
    pub auto_create: bool,
    /// Add a column the envelope carries and the target lacks (needs the
    /// envelope's schema for its type).
    #[serde(default)]
    pub add_columns: bool,
    /// A record that cannot be applied goes here, with the error and its
    /// source position in headers; unset = the sink stops on one.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Target account. Default: `backend.user` / `password`.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Prometheus `/metrics` and `/health` address; unset = none.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// Passed verbatim to librdkafka's consumer and the dead-letter
    /// producer (`security.protocol`, `sasl.*`, …).
    #[serde(default)]
    pub kafka: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SinkStart {
    #[default]
    Earliest,
    Latest,
}

fn default_name() -> String {
    "sink".into()
}

fn default_table() -> String {
    "{db}.{table}".into()
}

fn default_batch_rows() -> usize {
    1000
}

fn default_batch_wait() -> Duration {
    Duration::from_millis(2)
}

fn default_offsets_table() -> String {
    "sqlcache.sink_offsets".into()
}

/// `db.table` with both parts plain identifiers.
pub fn split_table(name: &str) -> Option<(&str, &str)> {
    let (db, t) = name.split_once('.')?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    (ok(db) && ok(t)).then_some((db, t))
}

impl SinkConfig {
    pub(super) fn problems(&self, p: &mut Vec<String>) {
        if self.brokers.trim().is_empty() {
            p.push("sink.brokers: empty".into());
        }
        if self.name.is_empty() || self.name.len() > 64 {
            p.push("sink.name: must be 1 to 64 characters".into());
        }
        if self.topics.is_empty() && self.topic_pattern.is_none() {
            p.push("sink.topics: name at least one topic or set sink.topic_pattern".into());
        }
        if let Some(re) = &self.topic_pattern {
            if let Err(e) = regex::Regex::new(re) {
                p.push(format!("sink.topic_pattern: {e}"));
            }
        }
        if !self.table.contains('.') {
            p.push(format!(
                "sink.table: `{}` must be `db.table` (`{{db}}`, `{{table}}` allowed)",
                self.table
            ));
        }
        for (topic, t) in &self.tables {
            if split_table(t).is_none() {
                p.push(format!("sink.tables.\"{topic}\": `{t}` is not `db.table`"));
            }
        }
        for (t, cols) in &self.key_columns {
            if split_table(t).is_none() || cols.is_empty() {
                p.push(format!(
                    "sink.key_columns.\"{t}\": needs `db.table` and at least one column"
                ));
            }
        }
        if split_table(&self.offsets_table).is_none() {
            p.push(format!(
                "sink.offsets_table: `{}` is not `db.table`",
                self.offsets_table
            ));
        }
        if self.batch_rows == 0 {
            p.push("sink.batch_rows: must be at least 1".into());
        }
        if let Some(m) = &self.metrics_listen {
            if m.parse::<SocketAddr>().is_err() {
                p.push(format!("sink.metrics_listen: `{m}` is not an address:port"));
            }
        }
        if self.dead_letter_topic.as_deref() == Some("") {
            p.push("sink.dead_letter_topic: empty (leave it out to stop on a bad record)".into());
        }
        for (key, v) in &self.kafka {
            if matches!(v, toml::Value::Array(_) | toml::Value::Table(_)) {
                p.push(format!(
                    "sink.kafka.{key}: must be a string, number or boolean"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<SinkConfig, String> {
        let text = format!(
            "[[users]]\nname = 'u'\npassword = 'p'\n[sink]\nbrokers = 'k:9092'\ntopics = ['a.b.c']\n{extra}"
        );
        crate::config::Config::parse(&text, "t")
            .and_then(|c| c.validate("t"))
            .map(|c| c.sink.unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_safe() {
        let s = parse("").unwrap();
        assert_eq!(s.name, "sink");
        assert_eq!(s.table, "{db}.{table}");
        assert!(s.delete_on_tombstone);
        assert_eq!(s.offsets_table, "sqlcache.sink_offsets");
        assert!(
            s.dead_letter_topic.is_none(),
            "stop on a bad record by default"
        );
        assert!(!s.auto_create && !s.add_columns);
    }

    #[test]
    fn every_bad_key_is_named() {
        let e = parse(
            "topic_pattern = '('\noffsets_table = 'x'\nbatch_rows = 0\ntables = { 'a.b.c' = 'nodot' }",
        )
        .unwrap_err();
        for key in [
            "sink.topic_pattern",
            "sink.offsets_table",
            "sink.batch_rows",
            "sink.tables",
        ] {
            assert!(e.contains(key), "{key} in {e}");
        }
    }

    #[test]
    fn table_names_are_plain_identifiers() {
        assert_eq!(split_table("db.t_1"), Some(("db", "t_1")));
        assert_eq!(split_table("db.t`x"), None);
        assert_eq!(split_table("db"), None);
        assert_eq!(split_table(".t"), None);
    }
}
