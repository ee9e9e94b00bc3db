//! What a binlog item changes, as `ChangeEvent`s: the one reading of rows
//! and logged statements, shared by the proxy's binlog feed and `sqlcache
//! cdc`.
//!
//! Policy: a row image names its row by its primary-key columns (all
//! columns when the table declares none), once per update that keeps its
//! key; a statement (DDL, TRUNCATE …) names the tables the proxy's own
//! classifier finds in it, or everything; an event that cannot be decoded
//! names its table, or everything. Pure functions.

use mysql_common::binlog::row::BinlogRow;
use mysql_common::binlog::value::BinlogValue;
use mysql_common::constants::ColumnFlags;
use mysql_common::value::Value;

use super::Item;
use crate::change::ChangeEvent;
use crate::classify::{classify, Invalidation, TableName, Verdict};

/// The change events of one binlog item.
pub fn changes(item: &Item) -> Vec<ChangeEvent> {
    match item {
        Item::Rows {
            db, table, rows, ..
        } => {
            let mut out: Vec<ChangeEvent> = Vec::with_capacity(rows.len());
            for (before, after) in rows {
                for row in [before, after].into_iter().flatten() {
                    let ev = ChangeEvent::Row {
                        db: db.clone(),
                        table: table.clone(),
                        key: row_key(row),
                    };
                    // An update that keeps its key names the row once.
                    if out.last() != Some(&ev) {
                        out.push(ev);
                    }
                }
            }
            out
        }
        Item::Query { schema, sql } => statement_changes(schema, sql),
        Item::Unreadable {
            table: Some((db, table)),
            ..
        } => vec![ChangeEvent::Table {
            db: db.clone(),
            table: table.clone(),
        }],
        Item::Unreadable { table: None, .. } => vec![ChangeEvent::Everything],
        Item::Gtid(_) | Item::Xid | Item::Heartbeat | Item::Other => Vec::new(),
    }
}

/// The primary-key columns of a row image (all columns when the table
/// declares none), as (lower-cased name, value as text).
fn row_key(row: &BinlogRow) -> Vec<(String, String)> {
    let cols = row.columns_ref();
    let has_pk = cols
        .iter()
        .any(|c| c.flags().contains(ColumnFlags::PRI_KEY_FLAG));
    cols.iter()
        .enumerate()
        .filter(|(_, c)| !has_pk || c.flags().contains(ColumnFlags::PRI_KEY_FLAG))
        .map(|(i, c)| {
            let text = match row.as_ref(i) {
                Some(BinlogValue::Value(Value::Int(v))) => v.to_string(),
                Some(BinlogValue::Value(Value::UInt(v))) => v.to_string(),
                Some(BinlogValue::Value(Value::Bytes(b))) => String::from_utf8_lossy(b).into(),
                // Not an integer: `resolve` falls back to table level anyway.
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (c.name_str().to_ascii_lowercase(), text)
        })
        .collect()
}

/// What a logged statement invalidates.
pub fn statement_changes(schema: &str, sql: &str) -> Vec<ChangeEvent> {
    let head = sql.trim_start();
    let word = head
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    if ["BEGIN", "COMMIT", "ROLLBACK", "XA", "SAVEPOINT", "RELEASE"]
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w))
    {
        return Vec::new();
    }
    let db_of = |t: &TableName| {
        t.db.clone()
            .or_else(|| (!schema.is_empty()).then(|| schema.to_string()))
    };
    let table_event = |t: &TableName| match db_of(t) {
        Some(db) => ChangeEvent::Table {
            db,
            table: t.name.clone(),
        },
        None => ChangeEvent::Everything,
    };
    match classify(sql) {
        Verdict::Write(Invalidation::Tables { tables, .. }) => {
            tables.iter().map(table_event).collect()
        }
        Verdict::Write(Invalidation::Rows { table, .. }) => vec![table_event(&table)],
        Verdict::Write(Invalidation::Everything) => vec![ChangeEvent::Everything],
        // Reads, and ends of transactions, change nothing.
        Verdict::Read(_) | Verdict::Bypass(_) | Verdict::Commit | Verdict::Rollback => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn statements_name_their_tables() {
        let t = |db: &str, table: &str| ChangeEvent::Table {
            db: db.into(),
            table: table.into(),
        };
        assert_eq!(statement_changes("d", "BEGIN"), vec![]);
        assert_eq!(statement_changes("d", "COMMIT /* x */"), vec![]);
        assert_eq!(
            statement_changes("d", "TRUNCATE TABLE t"),
            vec![t("d", "t")]
        );
        assert_eq!(
            statement_changes("", "ALTER TABLE x.t ADD COLUMN c INT"),
            vec![t("x", "t")]
        );
        assert_eq!(
            statement_changes("", "DROP TABLE t"),
            vec![ChangeEvent::Everything]
        );
        assert_eq!(
            statement_changes("d", "DROP DATABASE d"),
            vec![ChangeEvent::Everything]
        );
    }

    #[test]
    fn rows_name_their_keys_once_per_unchanged_update() {
        use mysql_common::constants::ColumnType;
        use mysql_common::packets::Column;
        let cols: Arc<[Column]> = vec![
            Column::new(ColumnType::MYSQL_TYPE_LONG)
                .with_name(b"ID")
                .with_flags(ColumnFlags::PRI_KEY_FLAG),
            Column::new(ColumnType::MYSQL_TYPE_VAR_STRING).with_name(b"v"),
        ]
        .into();
        let row = |id: i64, v: &str| {
            BinlogRow::new(
                vec![
                    Some(BinlogValue::Value(Value::Int(id))),
                    Some(BinlogValue::Value(Value::Bytes(v.into()))),
                ],
                cols.clone(),
            )
        };
        let ev = |id: &str| ChangeEvent::Row {
            db: "d".into(),
            table: "t".into(),
            key: vec![("id".into(), id.into())],
        };
        let item = Item::Rows {
            db: "d".into(),
            table: "t".into(),
            table_id: 1,
            kind: crate::binlog::RowKind::Update,
            rows: vec![
                (Some(row(1, "a")), Some(row(1, "b"))),
                (Some(row(2, "a")), Some(row(3, "a"))),
            ],
        };
        assert_eq!(changes(&item), vec![ev("1"), ev("2"), ev("3")]);
        let bad = Item::Unreadable {
            table: None,
            why: "x".into(),
        };
        assert_eq!(changes(&bad), vec![ChangeEvent::Everything]);
    }
}
