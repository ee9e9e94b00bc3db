//! The target MySQL/MariaDB: one connection, the sink's lock, its offsets,
//! table descriptions, and batches applied in one transaction each.
//!
//! Policy: the connection holds `GET_LOCK('sqlcache-sink:<name>')` for its
//! life, so a second sink of the same name cannot interleave writes (the
//! lock goes with the connection, also when the process is killed). A
//! batch is one transaction that first writes the next offset of every
//! partition it consumed (first, so `sqlcache cdc` can tell the sink's
//! transactions from their first row event) and then its statements; the
//! offsets table is the only record of progress, so a batch is in the
//! target with its offsets or not at all. Errors are sorted by what fixes
//! them (`Failure`): a record the target rejects, a table or column the
//! sink cannot map, or anything else, which ends the session (the next one
//! reads the offsets again, so an unknown commit outcome is settled by the
//! target itself).

use std::collections::HashMap;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row};

use super::plan::{ident, Table};
use super::values::ColType;

/// A target table as the sink maps values into it.
#[derive(Debug)]
pub struct TableInfo {
    pub plan: Table,
    /// Column name → type.
    pub columns: HashMap<String, ColType>,
}

/// Why a statement failed, by what fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The target refused a value or row (bad data, a constraint).
    Rejected(String),
    /// A table or column the target lacks.
    Schema(String),
    /// Connection lost, deadlock, anything else: retry from the offsets.
    Retry(String),
    /// Retrying cannot help (no privilege, …).
    Fatal(String),
}

/// Server error codes by `Failure`.
fn classify(e: &mysql_async::Error) -> Failure {
    let text = e.to_string();
    let mysql_async::Error::Server(se) = e else {
        return Failure::Retry(text);
    };
    match se.code {
        // Duplicate entry, NULL into NOT NULL, out of range, data
        // truncated, incorrect value, too long, foreign key, invalid JSON,
        // CHECK constraint (MariaDB 4025, MySQL 3819), no default value,
        // truncated wrong value, BIGINT out of range.
        1062 | 1048 | 1264 | 1265 | 1292 | 1366 | 1406 | 1451 | 1452 | 3140 | 4025 | 3819
        | 1364 | 1367 | 1690 | 1416 | 1411 | 1365 => Failure::Rejected(text),
        // No such table / column / database.
        1146 | 1054 | 1049 => Failure::Schema(text),
        // Access denied, command denied, read-only.
        1044 | 1045 | 1142 | 1143 | 1227 | 1290 | 1836 => Failure::Fatal(text),
        _ => Failure::Retry(text),
    }
}

pub struct Target {
    conn: Conn,
    offsets_table: String,
    name: String,
    tables: HashMap<String, Arc<TableInfo>>,
}

impl Target {
    /// Connects, takes the sink's lock and makes sure the offsets table
    /// exists.
    pub async fn connect(opts: Opts, name: &str, offsets_table: &str) -> Result<Target, Failure> {
        let mut conn = Conn::new(opts).await.map_err(|e| classify(&e))?;
        conn.query_drop("SET SESSION time_zone = '+00:00', SESSION autocommit = 1")
            .await
            .map_err(|e| classify(&e))?;
        let lock = format!("sqlcache-sink:{name}");
        let got: Option<Option<i64>> = conn
            .exec_first("SELECT GET_LOCK(?, 5)", (lock,))
            .await
            .map_err(|e| classify(&e))?;
        if got.flatten() != Some(1) {
            return Err(Failure::Retry(format!(
                "another sink named `{name}` holds its lock on the target"
            )));
        }
        let (db, t) = crate::config::split_table(offsets_table)
            .ok_or_else(|| Failure::Fatal(format!("bad offsets table `{offsets_table}`")))?;
        let ddl = format!(
            "CREATE DATABASE IF NOT EXISTS {db}; CREATE TABLE IF NOT EXISTS {db}.{t} (\
             sink VARCHAR(64) NOT NULL, topic VARCHAR(249) NOT NULL, kafka_partition INT NOT NULL, \
             next_offset BIGINT NOT NULL, PRIMARY KEY (sink, topic, kafka_partition)) ENGINE=InnoDB",
            db = ident(db),
            t = ident(t)
        );
        conn.query_drop(ddl).await.map_err(|e| classify(&e))?;
        Ok(Target {
            conn,
            offsets_table: format!("{}.{}", ident(db), ident(t)),
            name: name.to_string(),
            tables: HashMap::new(),
        })
    }

    /// The next offset of every partition this sink has applied.
    pub async fn offsets(&mut self) -> Result<HashMap<(String, i32), i64>, Failure> {
        let q = format!(
            "SELECT topic, kafka_partition, next_offset FROM {} WHERE sink = ?",
            self.offsets_table
        );
        let rows: Vec<(String, i32, i64)> = self
            .conn
            .exec(q, (self.name.clone(),))
            .await
            .map_err(|e| classify(&e))?;
        Ok(rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
    }

    /// The description of `db.table` (`None`: no such table), cached
    /// until `forget`.
    pub async fn table(
        &mut self,
        db: &str,
        table: &str,
        key_override: Option<&[String]>,
    ) -> Result<Option<Arc<TableInfo>>, Failure> {
        let id = format!("{db}.{table}");
        if let Some(t) = self.tables.get(&id) {
            return Ok(Some(t.clone()));
        }
        let cols: Vec<Row> = self
            .conn
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, COALESCE(DATETIME_PRECISION, 0) FROM \
                 information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
                 ORDER BY ORDINAL_POSITION",
                (db, table),
            )
            .await
            .map_err(|e| classify(&e))?;
        if cols.is_empty() {
            return Ok(None);
        }
        let mut columns = HashMap::new();
        for mut r in cols {
            let name: String = r.take(0).unwrap_or_default();
            let ty: String = r.take(1).unwrap_or_default();
            let full: String = r.take(2).unwrap_or_default();
            let p: u64 = r.take(3).unwrap_or(0);
            let t = ColType::from_schema(&ty, &full, p.min(6) as u8).ok_or_else(|| {
                Failure::Schema(format!("{id}.{name}: column type {ty} is not supported"))
            })?;
            columns.insert(name, t);
        }
        let (key, independent) = self.keys(db, table, key_override).await?;
        if key.is_empty() {
            return Err(Failure::Schema(format!(
                "{id} has no primary key: name its key in sink.key_columns"
            )));
        }
        let info = Arc::new(TableInfo {
            plan: Table {
                db: db.to_string(),
                name: table.to_string(),
                key,
                independent,
            },
            columns,
        });
        self.tables.insert(id, info.clone());
        Ok(Some(info))
    }

    /// The key columns (configured or the primary key) and whether it is
    /// the table's only unique index.
    async fn keys(
        &mut self,
        db: &str,
        table: &str,
        key_override: Option<&[String]>,
    ) -> Result<(Vec<String>, bool), Failure> {
        let rows: Vec<(String, String)> = self
            .conn
            .exec(
                "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE \
                 TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 ORDER BY INDEX_NAME, SEQ_IN_INDEX",
                (db, table),
            )
            .await
            .map_err(|e| classify(&e))?;
        let pk: Vec<String> = rows
            .iter()
            .filter(|(i, _)| i == "PRIMARY")
            .map(|(_, c)| c.clone())
            .collect();
        let key = key_override.map(<[String]>::to_vec).unwrap_or(pk);
        let mut indexes: Vec<&str> = rows.iter().map(|(i, _)| i.as_str()).collect();
        indexes.dedup();
        let only_key = indexes.len() == 1
            && rows
                .iter()
                .filter(|(i, _)| i == indexes[0])
                .map(|(_, c)| c)
                .eq(key.iter());
        Ok((key, only_key))
    }

    /// Forgets cached descriptions (after DDL).
    pub fn forget(&mut self) {
        self.tables.clear();
    }

    /// Runs DDL outside any batch.
    pub async fn ddl(&mut self, sql: &str) -> Result<(), Failure> {
        self.forget();
        self.conn.query_drop(sql).await.map_err(|e| classify(&e))
    }

    /// Starts a batch's transaction and writes its offsets.
    pub async fn begin(&mut self, offsets: &[(String, i32, i64)]) -> Result<(), Failure> {
        self.conn
            .query_drop("BEGIN")
            .await
            .map_err(|e| classify(&e))?;
        if offsets.is_empty() {
            return Ok(());
        }
        let rows: Vec<String> = offsets
            .iter()
            .map(|(t, p, o)| format!("({}, {}, {p}, {o})", text(&self.name), text(t)))
            .collect();
        let q = format!(
            "INSERT INTO {} (sink, topic, kafka_partition, next_offset) VALUES {} \
             ON DUPLICATE KEY UPDATE next_offset = VALUES(next_offset)",
            self.offsets_table,
            rows.join(", ")
        );
        self.run(&q).await
    }

    pub async fn run(&mut self, sql: &str) -> Result<(), Failure> {
        self.conn.query_drop(sql).await.map_err(|e| classify(&e))
    }

    pub async fn commit(&mut self) -> Result<(), Failure> {
        self.run("COMMIT").await
    }

    pub async fn rollback(&mut self) -> Result<(), Failure> {
        self.run("ROLLBACK").await
    }
}

/// A string literal (hex, so no escaping mode matters).
fn text(s: &str) -> String {
    let mut out = String::from("_utf8mb4 X'");
    for b in s.bytes() {
        out.push_str(&format!("{b:02X}"));
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_sort_by_what_fixes_them() {
        let server = |code: u16| {
            mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: "m".into(),
                state: "HY000".into(),
            })
        };
        assert!(matches!(classify(&server(1406)), Failure::Rejected(_)));
        assert!(matches!(classify(&server(1062)), Failure::Rejected(_)));
        assert!(matches!(classify(&server(1146)), Failure::Schema(_)));
        assert!(matches!(classify(&server(1213)), Failure::Retry(_)));
        assert!(matches!(classify(&server(1142)), Failure::Fatal(_)));
        assert_eq!(text("a"), "_utf8mb4 X'61'");
    }
}
