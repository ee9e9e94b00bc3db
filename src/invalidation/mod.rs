//! Change events: the one currency of invalidation (DESIGN.md).
//!
//! Policy: every source — a write the proxy forwarded, a Debezium / Canal /
//! Maxwell message, the binlog reader — becomes `ChangeEvent`s, and only
//! `tags` turns them into cache tags. A row event names its row by column
//! values; it becomes a row tag only when the table's primary-key facts are
//! known and every key value is an integer, and otherwise the table's tags.
//! Every row event also bumps the table's "any write" tag. A negative key
//! value is also invalidated as its unsigned 64-bit twin (`twins`): Debezium
//! publishes BIGINT UNSIGNED values of 2^63 and above as negative longs by
//! default, and the proxy cannot tell the column's signedness from the
//! event; only one of the two tags can name a real row. Anything a decoder
//! cannot read becomes a table event, or `Everything` when even the table is
//! unknown: an unreadable message never leaves the cache trusting old data.

pub mod binlog;
pub mod decode;
pub mod echo;
pub mod freshness;
pub mod kafka;
pub mod keeper;

use std::thread::JoinHandle;
use std::time::Instant;

use crate::backend::schema::SchemaCache;
use crate::cache::{canonical_int, Cache, Tag};
pub use echo::Echo;
use mysql_common::value::Value;

/// Errors of the feed layer (all at start; afterwards a feed retries).
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("invalidation.kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("invalidation.kafka.topics: `{0}` is not a valid regular expression: {1}")]
    Pattern(String, regex::Error),
    #[error("cannot start the change-feed thread: {0}")]
    Thread(std::io::Error),
}

/// At most one log line per kind of trouble per this period.
pub const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// A rate-limited logger: says how many it suppressed.
#[derive(Default)]
pub struct Quiet {
    last: Option<Instant>,
    suppressed: u64,
    said: String,
}

impl Quiet {
    /// Some(number suppressed since the last line) if a line may be logged.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }

    /// Like `allow`, but a line that differs from the last one logged is
    /// always allowed (a new kind of trouble is news).
    pub fn allow_changed(&mut self, line: &str) -> Option<u64> {
        if line != self.said {
            self.said = line.to_string();
            self.last = None;
        }
        self.allow()
    }
}

/// A running feed (Kafka or binlog); stops and joins its thread when dropped.
pub struct FeedHandle {
    stop: Option<Box<dyn FnOnce() + Send>>,
    thread: Option<JoinHandle<()>>,
}

impl FeedHandle {
    /// `stop` tells the feed's thread to end (called once, on drop).
    pub fn new(stop: impl FnOnce() + Send + 'static, thread: JoinHandle<()>) -> FeedHandle {
        FeedHandle {
            stop: Some(Box::new(stop)),
            thread: Some(thread),
        }
    }
}

impl Drop for FeedHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One change, from any source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEvent {
    /// A row, identified by (lower-cased column, value as text) pairs.
    Row {
        db: String,
        table: String,
        key: Vec<(String, String)>,
    },
    /// Rows that cannot be named (TRUNCATE, DDL, a message without a key).
    Table { db: String, table: String },
    /// Anything (database-level DDL, an unknown table).
    Everything,
}

/// What applying events does to the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Tags(Vec<Tag>),
    Everything,
}

/// The tags an event invalidates, given what is known of the schema.
///
/// Row-based binlogs log what triggers change as rows of their own, but not
/// what foreign-key cascades change: every event also invalidates the whole
/// of each table whose foreign keys reference the changed one.
pub fn tags(ev: &ChangeEvent, schema: &SchemaCache) -> Effect {
    match ev {
        ChangeEvent::Everything => {
            schema.forget_all();
            Effect::Everything
        }
        ChangeEvent::Table { db, table } => {
            let mut tags = Tag::whole_table(db, table).to_vec();
            push_dependents(&mut tags, schema, db, table);
            schema.forget(db, table);
            Effect::Tags(tags)
        }
        ChangeEvent::Row { db, table, key } => {
            let mut tags = vec![Tag::any_write(db, table)];
            push_dependents(&mut tags, schema, db, table);
            let info = match schema.get(db, table) {
                Some(Some(info)) => info,
                // Unknown facts: no entry can hold a row tag of this table
                // that its table tag does not also cover.
                _ => {
                    tags.push(Tag::table(db, table));
                    return Effect::Tags(tags);
                }
            };
            let values: Option<Vec<String>> = info
                .pk
                .iter()
                .map(|(col, _)| {
                    let (_, v) = key.iter().find(|(c, _)| c == col)?;
                    canonical_int(&Value::Bytes(v.as_bytes().to_vec()))
                })
                .collect();
            match values {
                Some(v) if info.integer_key() => match twins(&v) {
                    Some(keys) => {
                        tags.extend(keys.iter().map(|k| Tag::row(db, table, &k.join("\u{1f}"))))
                    }
                    None => tags.push(Tag::table(db, table)),
                },
                _ => tags.push(Tag::table(db, table)),
            }
            Effect::Tags(tags)
        }
    }
}

/// Every reading of canonical integer key values where each negative one
/// may also be the same 64 bits read as unsigned (v + 2^64); `None` when
/// that would be more than 8 keys (the caller falls back to the table).
fn twins(values: &[String]) -> Option<Vec<Vec<String>>> {
    let mut out: Vec<Vec<String>> = vec![Vec::with_capacity(values.len())];
    for v in values {
        let twin = v
            .parse::<i64>()
            .ok()
            .filter(|i| *i < 0)
            .map(|i| (i as u64).to_string());
        if let Some(t) = twin {
            if out.len() >= 8 {
                return None;
            }
            let mut other = out.clone();
            other.iter_mut().for_each(|k| k.push(t.clone()));
            out.iter_mut().for_each(|k| k.push(v.clone()));
            out.extend(other);
        } else {
            out.iter_mut().for_each(|k| k.push(v.clone()));
        }
    }
    Some(out)
}

fn push_dependents(tags: &mut Vec<Tag>, schema: &SchemaCache, db: &str, table: &str) {
    for (d, t) in schema.dependents(db, table) {
        tags.extend(Tag::whole_table(&d, &t));
    }
}

/// Applies change events to the cache (bumps their tags' tokens) and
/// queues their echoes (`echo.rs`).
pub fn apply(events: &[ChangeEvent], cache: &Cache, schema: &SchemaCache, echo: &mut Echo) {
    let now = Instant::now();
    let mut all = Vec::new();
    let mut everything = false;
    for ev in events {
        match tags(ev, schema) {
            Effect::Everything => everything = true,
            Effect::Tags(tags) => all.extend(tags),
        }
    }
    if all.is_empty() && !everything {
        return;
    }
    // One call: the shared tier (if any) hears it before this process.
    cache.invalidate_feed(&all, everything);
    if everything {
        echo.everything(now);
    }
    echo.slots(now, all.iter().map(Tag::slot).collect());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_key_values_have_unsigned_twins() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(twins(&s(&["5", "7"])), Some(vec![s(&["5", "7"])]));
        assert_eq!(
            twins(&s(&["-9223372036854775808", "1"])),
            Some(vec![
                s(&["-9223372036854775808", "1"]),
                s(&["9223372036854775808", "1"])
            ])
        );
        assert_eq!(twins(&s(&["-1", "-2"])).map(|k| k.len()), Some(4));
        assert_eq!(
            twins(&s(&["-1"; 4])),
            None,
            "16 readings: the table instead"
        );
    }

    #[test]
    fn unknown_tables_get_table_tags_and_table_events_forget_facts() {
        let s = SchemaCache::default();
        let ev = ChangeEvent::Row {
            db: "d".into(),
            table: "t".into(),
            key: vec![("id".into(), "5".into())],
        };
        assert_eq!(
            tags(&ev, &s),
            Effect::Tags(vec![Tag::any_write("d", "t"), Tag::table("d", "t")])
        );
        assert_eq!(tags(&ChangeEvent::Everything, &s), Effect::Everything);
    }

    #[test]
    fn integer_keys_become_row_tags_matching_the_read_side() {
        use crate::backend::schema::TableInfo;
        let s = SchemaCache::default();
        let info = |int| TableInfo {
            base: true,
            pk: vec![("id".into(), int)],
            unique: vec![],
            has_triggers: false,
            referenced_by: vec![],
            references: vec![],
        };
        s.remember("d", "t", Some(info(true)));
        // Canal sends strings, Debezium numbers: both give the read side's tag.
        for v in ["5", " 05"] {
            let ev = ChangeEvent::Row {
                db: "d".into(),
                table: "t".into(),
                key: vec![("id".into(), v.into())],
            };
            assert_eq!(
                tags(&ev, &s),
                Effect::Tags(vec![Tag::any_write("d", "t"), Tag::row("d", "t", "5")])
            );
        }
        // A negative value may be a BIGINT UNSIGNED that Debezium wrapped.
        let ev = ChangeEvent::Row {
            db: "d".into(),
            table: "t".into(),
            key: vec![("id".into(), "-1".into())],
        };
        assert_eq!(
            tags(&ev, &s),
            Effect::Tags(vec![
                Tag::any_write("d", "t"),
                Tag::row("d", "t", "-1"),
                Tag::row("d", "t", &u64::MAX.to_string()),
            ])
        );
        s.remember("d", "s", Some(info(false)));
        let ev = ChangeEvent::Row {
            db: "d".into(),
            table: "s".into(),
            key: vec![("id".into(), "abc".into())],
        };
        assert_eq!(
            tags(&ev, &s),
            Effect::Tags(vec![Tag::any_write("d", "s"), Tag::table("d", "s")])
        );
        // A table event forgets the table's facts (DDL may have changed them).
        let _ = tags(
            &ChangeEvent::Table {
                db: "d".into(),
                table: "t".into(),
            },
            &s,
        );
        assert!(s.get("d", "t").is_none());
    }
}
