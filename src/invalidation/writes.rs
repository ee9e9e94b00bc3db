//! A write the proxy forwarded, as change events (then resolved by
//! `resolve.rs`, like every feed's).
//!
//! Policy: the events are what the binlog would carry for the write, plus
//! what only the proxy knows. A statement that names its rows by integer
//! primary key becomes one row event per row; one that moves a key, names
//! rows any other way, or names none becomes a table event. A write to a
//! view, to a table with triggers, or to a table whose facts are unknown
//! may change tables the statement does not name: `Everything`. (The binlog
//! logs trigger rows as rows of their own, so the feeds need no such rule.)
//!
//! Invariant: facts must be loaded first (`SchemaCache::load`) for a write
//! to resolve below "everything"; nothing here reads MySQL.

use mysql_common::value::Value;

use super::{resolve_all, ChangeEvent, Effect};
use crate::backend::schema::{SchemaCache, TableInfo};
use crate::cache::{canonical_int, resolve as value_of};
use crate::classify::{Invalidation, KeyValue, TableName};

/// The change events of a forwarded write; `default_db` is the session's.
pub fn events(
    inv: &Invalidation,
    params: &[Value],
    default_db: Option<&str>,
    schema: &SchemaCache,
) -> Vec<ChangeEvent> {
    let everything = vec![ChangeEvent::Everything];
    let db_of = |t: &TableName| t.db.as_deref().or(default_db).map(str::to_owned);
    match inv {
        Invalidation::Everything => everything,
        Invalidation::Tables { tables, ddl } => {
            let mut out = Vec::with_capacity(tables.len());
            for t in tables {
                let Some(db) = db_of(t) else {
                    return everything;
                };
                // DDL: the table's own tags cover its entries, and its
                // triggers go with it.
                if !*ddl && plain_table(schema, &db, &t.name).is_none() {
                    return everything;
                }
                out.push(ChangeEvent::Table {
                    db,
                    table: t.name.clone(),
                });
            }
            out
        }
        Invalidation::Rows {
            table,
            rows,
            assigned,
        } => {
            let Some(db) = db_of(table) else {
                return everything;
            };
            let Some(info) = plain_table(schema, &db, &table.name) else {
                return everything;
            };
            let moves_key = assigned.iter().any(|a| info.pk.iter().any(|(k, _)| k == a));
            let named = (!moves_key && info.integer_key())
                .then(|| row_events(&info, &db, &table.name, rows, params))
                .flatten();
            named.unwrap_or_else(|| {
                vec![ChangeEvent::Table {
                    db,
                    table: table.name.clone(),
                }]
            })
        }
    }
}

/// What a forwarded write invalidates: its events, resolved as every
/// feed's are; then the facts it may have changed are forgotten.
pub fn effect(
    inv: &Invalidation,
    params: &[Value],
    default_db: Option<&str>,
    schema: &SchemaCache,
) -> Effect {
    let effect = resolve_all(&events(inv, params, default_db, schema), schema);
    forget(inv, default_db, schema);
    effect
}

/// What the schema cache must forget after a forwarded write: the facts of
/// tables whose definition it may have changed.
pub fn forget(inv: &Invalidation, default_db: Option<&str>, schema: &SchemaCache) {
    match inv {
        // CREATE TRIGGER, DROP DATABASE, …: any fact may be stale.
        Invalidation::Everything => schema.forget_all(),
        Invalidation::Tables { tables, ddl: true } => {
            for t in tables {
                if let Some(db) = t.db.as_deref().or(default_db) {
                    schema.forget(db, &t.name);
                }
            }
        }
        Invalidation::Tables { ddl: false, .. } | Invalidation::Rows { .. } => {}
    }
}

/// The table's facts when it is a base table without triggers.
fn plain_table(schema: &SchemaCache, db: &str, name: &str) -> Option<std::sync::Arc<TableInfo>> {
    match schema.get(db, name) {
        Some(Some(info)) if info.base && !info.has_triggers => Some(info),
        _ => None,
    }
}

/// One row event per named row, keyed by canonical integer texts; `None`
/// when some row's key is not a set of integers.
fn row_events(
    info: &TableInfo,
    db: &str,
    table: &str,
    rows: &[Vec<(String, KeyValue)>],
    params: &[Value],
) -> Option<Vec<ChangeEvent>> {
    rows.iter()
        .map(|eq| {
            let key = info
                .pk
                .iter()
                .map(|(k, _)| {
                    let (_, v) = eq.iter().find(|(c, _)| c == k)?;
                    Some((k.clone(), canonical_int(&value_of(v, params)?)?))
                })
                .collect::<Option<Vec<_>>>()?;
            Some(ChangeEvent::Row {
                db: db.to_owned(),
                table: table.to_owned(),
                key,
            })
        })
        .collect()
}
