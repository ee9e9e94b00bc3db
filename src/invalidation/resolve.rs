//! The one resolver: change events to cache tags, for every source.
//!
//! Policy: a forwarded write (`writes.rs`), a Debezium / Canal / Maxwell
//! message (`decode.rs`) and a binlog row (`binlog.rs`) all become
//! `ChangeEvent`s, and only `resolve` turns them into tags. A row event
//! names its row by column values; it becomes a row tag (`Tag::row_of`, the
//! one builder the read side uses too) only when the table's primary-key
//! facts are known and every key value is an integer, and otherwise the
//! table's tag. Every row event also bumps the table's "any write" tag.
//! A negative key value is also invalidated as its unsigned 64-bit twin
//! (`twins`): Debezium publishes BIGINT UNSIGNED values of 2^63 and above as
//! negative longs by default, and an event does not carry the column's
//! signedness; only one of the two tags can name a real row.
//!
//! Row-based binlogs log what triggers change as rows of their own, but not
//! what foreign-key cascades change: every event also invalidates the whole
//! of each table whose foreign keys reference the changed one.
//!
//! Invariant: `resolve` reads schema facts and never changes them; what an
//! event makes the schema cache forget is `forget`'s decision, applied after.

use crate::backend::schema::SchemaCache;
use crate::cache::{canonical_int, Tag};
use mysql_common::value::Value;

use super::ChangeEvent;

/// What applying events does to the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Tags(Vec<Tag>),
    Everything,
}

impl Effect {
    /// The union of two effects.
    pub fn merge(self, other: Effect) -> Effect {
        match (self, other) {
            (Effect::Tags(mut a), Effect::Tags(b)) => {
                a.extend(b);
                Effect::Tags(a)
            }
            _ => Effect::Everything,
        }
    }
}

/// The tags an event invalidates, given what is known of the schema.
pub fn resolve(ev: &ChangeEvent, schema: &SchemaCache) -> Effect {
    match ev {
        ChangeEvent::Everything => Effect::Everything,
        ChangeEvent::Table { db, table } => {
            let mut tags = Tag::whole_table(db, table).to_vec();
            push_dependents(&mut tags, schema, db, table);
            Effect::Tags(tags)
        }
        ChangeEvent::Row { db, table, key } => {
            let mut tags = vec![Tag::any_write(db, table)];
            push_dependents(&mut tags, schema, db, table);
            tags.extend(row_tags(schema, db, table, key));
            Effect::Tags(tags)
        }
    }
}

/// The union of what `events` invalidate.
pub fn resolve_all(events: &[ChangeEvent], schema: &SchemaCache) -> Effect {
    events.iter().fold(Effect::Tags(Vec::new()), |acc, ev| {
        acc.merge(resolve(ev, schema))
    })
}

/// What the schema cache must forget after a feed's event: a table event
/// may be DDL (its facts may have changed), `Everything` may be a dropped
/// database.
pub fn forget(ev: &ChangeEvent, schema: &SchemaCache) {
    match ev {
        ChangeEvent::Everything => schema.forget_all(),
        ChangeEvent::Table { db, table } => schema.forget(db, table),
        ChangeEvent::Row { .. } => {}
    }
}

/// A row's own tags: row tags by canonical integer key (and its twins), or
/// the table's tag when the key cannot name the row.
fn row_tags(schema: &SchemaCache, db: &str, table: &str, key: &[(String, String)]) -> Vec<Tag> {
    let info = match schema.get(db, table) {
        Some(Some(info)) if info.integer_key() => info,
        // Unknown facts, or a key whose equality is not exact: no entry can
        // hold a row tag of this table that its table tag does not cover.
        _ => return vec![Tag::table(db, table)],
    };
    let values: Option<Vec<String>> = info
        .pk
        .iter()
        .map(|(col, _)| {
            let (_, v) = key.iter().find(|(c, _)| c == col)?;
            canonical_int(&Value::Bytes(v.as_bytes().to_vec()))
        })
        .collect();
    match values.as_deref().and_then(twins) {
        Some(keys) => keys.iter().map(|k| Tag::row_of(db, table, k)).collect(),
        None => vec![Tag::table(db, table)],
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
            resolve(&ev, &s),
            Effect::Tags(vec![Tag::any_write("d", "t"), Tag::table("d", "t")])
        );
        assert_eq!(resolve(&ChangeEvent::Everything, &s), Effect::Everything);
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
                resolve(&ev, &s),
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
            resolve(&ev, &s),
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
            resolve(&ev, &s),
            Effect::Tags(vec![Tag::any_write("d", "s"), Tag::table("d", "s")])
        );
        // Resolving never forgets; a feed's table event then forgets the
        // table's facts (DDL may have changed them).
        let ev = ChangeEvent::Table {
            db: "d".into(),
            table: "t".into(),
        };
        let _ = resolve(&ev, &s);
        assert!(s.get("d", "t").is_some());
        forget(&ev, &s);
        assert!(s.get("d", "t").is_none());
    }
}
