//! Schema facts the cache relies on, read from `information_schema`.
//!
//! Policy: per (db, table), cached until DDL through the proxy (or a schema
//! change event) forgets it. A table is cacheable only if it is a base table
//! with a primary key (a point read may also name a NOT NULL unique key; it
//! then gets table-level freshness); row tags are used only when every key column is an
//! integer (collation-dependent string equality cannot be canonicalised
//! safely, so string keys get table-level freshness). Tables with triggers,
//! and tables referenced by foreign keys, are recorded so that a write to
//! them also invalidates what the trigger or a cascade may change; a write
//! to a view, or to a table the proxy cannot see, invalidates everything.
//!
//! Cost: every `information_schema` table a query reads is given the schema
//! and table as constants, so MariaDB opens only that table; joined on
//! columns instead, COLUMNS opened every table of every schema (23 ms per
//! load on a bare server, after each DDL — a 50 ms stall per write in
//! MariaDB's `lock_multi_bug38499.test`; 0.6 ms with constants). Finding
//! the tables that reference one (REFERENTIAL_CONSTRAINTS by the referenced
//! table) still scans them all: ~5 ms.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// A base table (not a view: a write through a view changes its base
    /// tables, which the proxy cannot name).
    pub base: bool,
    /// Primary key columns (lower-cased) and whether each is an integer;
    /// empty: no primary key, not cacheable.
    pub pk: Vec<(String, bool)>,
    /// Unique keys whose columns are all NOT NULL (each pins one row too).
    pub unique: Vec<Vec<String>>,
    pub has_triggers: bool,
    /// Tables with a foreign key referencing this one (db, table).
    pub referenced_by: Vec<(String, String)>,
    /// Tables this one's foreign keys reference (db, table).
    pub references: Vec<(String, String)>,
}

impl TableInfo {
    pub fn integer_key(&self) -> bool {
        !self.pk.is_empty() && self.pk.iter().all(|(_, int)| *int)
    }
}

/// Where facts not known yet are read from: a MySQL connection (here), or
/// anything a test provides. The cache's planning (`cache/plan.rs`) sees
/// schema facts only through this and `SchemaCache`.
pub trait FactsSource {
    /// The table's facts; `None` when it is not visible.
    fn read_facts(
        &mut self,
        db: &str,
        table: &str,
    ) -> impl std::future::Future<Output = Result<Option<TableInfo>, mysql_async::Error>> + Send;
}

impl FactsSource for Conn {
    async fn read_facts(
        &mut self,
        db: &str,
        table: &str,
    ) -> Result<Option<TableInfo>, mysql_async::Error> {
        read(self, db, table).await
    }
}

/// `(db, table)` → facts; `None`: the table is not visible (no such table).
type Facts = HashMap<(String, String), Option<Arc<TableInfo>>>;

#[derive(Default)]
pub struct SchemaCache {
    map: Mutex<Facts>,
}

impl SchemaCache {
    /// Known facts, if loaded (`Some(None)`: loaded, not cacheable).
    pub fn get(&self, db: &str, table: &str) -> Option<Option<Arc<TableInfo>>> {
        self.map
            .lock()
            .unwrap()
            .get(&(db.to_owned(), table.to_owned()))
            .cloned()
    }

    /// Known facts, or facts read from `source` (then remembered).
    pub async fn load(
        &self,
        source: &mut impl FactsSource,
        db: &str,
        table: &str,
    ) -> Result<Option<Arc<TableInfo>>, mysql_async::Error> {
        if let Some(known) = self.get(db, table) {
            return Ok(known);
        }
        let info = source.read_facts(db, table).await?.map(Arc::new);
        self.map
            .lock()
            .unwrap()
            .insert((db.to_owned(), table.to_owned()), info.clone());
        Ok(info)
    }

    /// Records facts learnt elsewhere (a schema-change event, a test).
    pub fn remember(&self, db: &str, table: &str, info: Option<TableInfo>) {
        self.map
            .lock()
            .unwrap()
            .insert((db.to_owned(), table.to_owned()), info.map(Arc::new));
    }

    /// Tables a cascade from `db.table` may change: its own `referenced_by`
    /// if loaded, and every loaded table whose foreign keys reference it
    /// (a parent loaded before a child's FK was added does not know it).
    pub fn dependents(&self, db: &str, table: &str) -> Vec<(String, String)> {
        let map = self.map.lock().unwrap();
        let key = (db.to_owned(), table.to_owned());
        let mut out: Vec<(String, String)> = map
            .get(&key)
            .and_then(|i| i.as_ref())
            .map(|i| i.referenced_by.clone())
            .unwrap_or_default();
        for (child, info) in map.iter() {
            if let Some(info) = info {
                if info.references.contains(&key) && !out.contains(child) {
                    out.push(child.clone());
                }
            }
        }
        out
    }

    pub fn forget(&self, db: &str, table: &str) {
        self.map
            .lock()
            .unwrap()
            .remove(&(db.to_owned(), table.to_owned()));
    }

    pub fn forget_all(&self) {
        self.map.lock().unwrap().clear();
    }
}

fn lit(s: &str) -> String {
    Value::from(s).as_sql(false)
}

/// The queries facts are read with, for one table (`d`, `t`: the names).
/// Each names the table by constants on every `information_schema` table
/// it reads (see the header); `tests/fidelity.rs` checks with EXPLAIN that
/// only `referenced_by` scans every database.
pub struct FactQueries {
    pub kind: String,
    pub pk: String,
    pub unique: String,
    pub triggers: String,
    pub referenced_by: String,
    pub references: String,
}

impl FactQueries {
    pub fn new(db: &str, table: &str) -> Self {
        let (d, t) = (lit(db), lit(table));
        FactQueries {
            kind: format!("SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = {d} AND TABLE_NAME = {t}"),
            pk: format!(
                "SELECT k.COLUMN_NAME, c.DATA_TYPE FROM information_schema.KEY_COLUMN_USAGE k \
                 JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = {d} \
                 AND c.TABLE_NAME = {t} AND c.COLUMN_NAME = k.COLUMN_NAME \
                 WHERE k.TABLE_SCHEMA = {d} AND k.TABLE_NAME = {t} AND k.CONSTRAINT_NAME = 'PRIMARY' \
                 ORDER BY k.ORDINAL_POSITION"
            ),
            unique: format!(
                "SELECT s.INDEX_NAME, s.COLUMN_NAME, c.IS_NULLABLE FROM information_schema.STATISTICS s \
                 JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = {d} \
                 AND c.TABLE_NAME = {t} AND c.COLUMN_NAME = s.COLUMN_NAME \
                 WHERE s.TABLE_SCHEMA = {d} AND s.TABLE_NAME = {t} AND s.NON_UNIQUE = 0 \
                 AND s.INDEX_NAME <> 'PRIMARY' AND s.SUB_PART IS NULL ORDER BY s.INDEX_NAME, s.SEQ_IN_INDEX"
            ),
            triggers: format!(
                "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = {d} AND EVENT_OBJECT_TABLE = {t}"
            ),
            referenced_by: format!(
                "SELECT DISTINCT CONSTRAINT_SCHEMA, TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS \
                 WHERE UNIQUE_CONSTRAINT_SCHEMA = {d} AND REFERENCED_TABLE_NAME = {t}"
            ),
            references: format!(
                "SELECT DISTINCT UNIQUE_CONSTRAINT_SCHEMA, REFERENCED_TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA = {d} AND TABLE_NAME = {t}"
            ),
        }
    }
}

async fn read(
    conn: &mut Conn,
    db: &str,
    table: &str,
) -> Result<Option<TableInfo>, mysql_async::Error> {
    let q = FactQueries::new(db, table);
    let kind: Option<String> = conn.query_first(&q.kind).await?;
    let Some(kind) = kind else { return Ok(None) };
    if kind != "BASE TABLE" {
        return Ok(Some(TableInfo {
            base: false,
            pk: Vec::new(),
            unique: Vec::new(),
            has_triggers: false,
            referenced_by: Vec::new(),
            references: Vec::new(),
        }));
    }
    let pk: Vec<(String, String)> = conn.query(&q.pk).await?;
    let unique = not_null_unique_keys(conn.query(&q.unique).await?);
    let triggers: Option<u64> = conn.query_first(&q.triggers).await?;
    let referenced_by: Vec<(String, String)> = conn.query(&q.referenced_by).await?;
    let references: Vec<(String, String)> = conn.query(&q.references).await?;
    Ok(Some(TableInfo {
        base: true,
        pk: pk
            .into_iter()
            .map(|(c, ty)| (c.to_ascii_lowercase(), is_integer_type(&ty)))
            .collect(),
        unique,
        has_triggers: triggers.unwrap_or(0) > 0,
        referenced_by,
        references,
    }))
}

/// Unique indexes other than the primary key whose columns are all NOT
/// NULL (lower-cased columns, in index order), from the rows of
/// `FactQueries::unique`: (index, column, IS_NULLABLE).
fn not_null_unique_keys(uniq: Vec<(String, String, String)>) -> Vec<Vec<String>> {
    let mut unique: Vec<(String, Vec<String>, bool)> = Vec::new();
    for (index, col, nullable) in uniq {
        if unique.last().is_none_or(|(i, _, _)| *i != index) {
            unique.push((index, Vec::new(), true));
        }
        if let Some(last) = unique.last_mut() {
            last.1.push(col.to_ascii_lowercase());
            last.2 &= nullable == "NO";
        }
    }
    unique
        .into_iter()
        .filter(|(_, _, not_null)| *not_null)
        .map(|(_, cols, _)| cols)
        .collect()
}

pub fn is_integer_type(data_type: &str) -> bool {
    [
        "tinyint",
        "smallint",
        "mediumint",
        "int",
        "integer",
        "bigint",
    ]
    .iter()
    .any(|t| data_type.eq_ignore_ascii_case(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_types() {
        for t in ["int", "BIGINT", "tinyint"] {
            assert!(is_integer_type(t));
        }
        for t in ["varchar", "decimal", "char", "date", "binary"] {
            assert!(!is_integer_type(t));
        }
        let info = TableInfo {
            base: true,
            pk: vec![("a".into(), true), ("b".into(), false)],
            unique: vec![],
            has_triggers: false,
            referenced_by: vec![],
            references: vec![],
        };
        assert!(!info.integer_key());
        let s = SchemaCache::default();
        let child = |parent: &str| TableInfo {
            references: vec![("d".into(), parent.into())],
            ..info.clone()
        };
        s.remember("d", "child", Some(child("parent")));
        s.remember("d", "other", Some(child("elsewhere")));
        // The parent's facts were never loaded: its loaded children still count.
        assert_eq!(
            s.dependents("d", "parent"),
            vec![("d".into(), "child".into())]
        );
    }
}
