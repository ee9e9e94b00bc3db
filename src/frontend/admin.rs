//! The wire side of the statements the proxy answers itself (`SHOW
//! SQLCACHE STATUS | LAST | QUERIES | TABLES`, content in
//! `admin/status.rs`, `admin/insight.rs` and `admin/tables.rs`: ordinary text result sets any client can display;
//! `SQLCACHE FLUSH [QUERIES | [db.]table]`: an OK; `SQLCACHE RELOAD`: an
//! OK saying what changed, or the file's problems as error 1105,
//! `reload.rs`), and the recording of
//! each statement's shape for QUERIES.
//!
//! Policy: every COM_QUERY and COM_STMT_EXECUTE is recorded under its
//! shape except the proxy's own statements; the shape's text is built only
//! the first time it is seen. The digest is not computed on a hit: it
//! comes with the entry (or, prepared, from PREPARE).

use std::time::Duration;

use mysql_common::constants::{CapabilityFlags, ColumnType};
use mysql_common::packets::Column;

use super::route::Routed;
use super::session::Session;
use super::wire::{self, Reader};
use crate::admin::insight::{self, MAX_TEXT};
use crate::admin::status::{is_sqlcache_statement, status_rows, Flush, Own};
use crate::cache::Tag;
use crate::cache::UNKNOWN_SHAPE;
use crate::classify::digest;

impl Session {
    pub(super) async fn sqlcache_statement(&mut self, sql: &[u8]) {
        let pairs = |rows: Vec<(String, String)>| -> Vec<Vec<String>> {
            rows.into_iter().map(|(k, v)| vec![k, v]).collect()
        };
        match Own::parse(sql) {
            Some(Own::Status) => {
                let mut rows = status_rows(&self.shared.cache);
                let (applied, refused) = self.shared.reloader.counts();
                rows.push(("config_reloads".into(), applied.to_string()));
                rows.push(("config_reload_failures".into(), refused.to_string()));
                let resets = self.shared.backend.globals_resets.load(std::sync::atomic::Ordering::Relaxed);
                rows.push(("backend_globals_resets".into(), resets.to_string()));
                let rows = pairs(rows);
                self.write_rows(&["Variable_name", "Value"], &rows)
            }
            Some(Own::Last) => {
                let last = self.last.clone().and_then(Routed::describe);
                let rows = pairs(vec![("route".into(), last.unwrap_or("none".into()).into())]);
                self.write_rows(&["Variable_name", "Value"], &rows)
            }
            Some(Own::Queries) => {
                let rows = insight::query_rows(&self.shared.insight);
                self.write_rows(&insight::COLUMNS, &rows)
            }
            Some(Own::Tables) => {
                let rows = crate::admin::tables::table_rows(&self.shared.cache);
                self.write_rows(&crate::admin::tables::COLUMNS, &rows)
            }
            Some(Own::Flush(f)) => self.flush(f).await,
            Some(Own::Reload) => match super::reload::reload(&self.shared).await {
                Ok(report) => self.reply_ok(0, 0, report.summary().as_bytes()),
                Err(e) => self.reply_err(1105, "HY000", &format!("sqlcache: reload: {e}")),
            },
            None => self.reply_err(
                1064,
                "42000",
                "sqlcache: expected SHOW SQLCACHE STATUS | LAST | QUERIES | TABLES or SQLCACHE FLUSH [QUERIES | [db.]table] | RELOAD",
            ),
        }
    }

    /// `SQLCACHE FLUSH`: entries are invalidated as a forwarded write would
    /// (the shared tier first, then this process), so every proxy sharing
    /// the tier stops serving them too.
    async fn flush(&mut self, f: Flush) {
        let cache = self.shared.cache.clone();
        match f {
            Flush::All => cache.invalidate_writes(&[], true).await,
            Flush::Queries => self.shared.insight.clear(),
            Flush::Table { db, table } => {
                let Some(db) = db.or_else(|| self.vars.db.clone()) else {
                    return self.reply_err(1046, "3D000", "No database selected");
                };
                let tags = [Tag::any_write(&db, &table), Tag::table(&db, &table)];
                cache.invalidate_writes(&tags, false).await
            }
        }
        self.reply_ok(0, 0, b"");
    }

    /// Counts a statement under its shape (`SHOW SQLCACHE QUERIES`).
    pub(super) fn record_insight(&self, cmd: u8, body: &[u8], routed: &Routed, took: Duration) {
        let shape = match (cmd, self.shape) {
            (0x03 | 0x17, s) if s != UNKNOWN_SHAPE => s,
            (0x03, _) if !is_sqlcache_statement(body) => digest::digest(body),
            _ => return,
        };
        let text = || {
            let sql = match cmd {
                0x17 => Reader::new(body)
                    .u32()
                    .and_then(|id| self.stmts.get(&id))
                    .map_or(&b""[..], |s| &s.sql[..]),
                _ => body,
            };
            digest::normalize(sql, MAX_TEXT)
        };
        self.shared
            .insight
            .record(shape, text, routed.outcome(), took);
    }

    /// A text result set of string columns.
    fn write_rows(&mut self, names: &[&str], rows: &[Vec<String>]) {
        let status = self.status;
        let deprecate = self
            .login
            .caps
            .contains(CapabilityFlags::CLIENT_DEPRECATE_EOF);
        let m = self.conn.begin();
        wire::put_lenenc_int(self.conn.buf(), names.len() as u64);
        self.conn.finish(m);
        for n in names {
            let col = Column::new(ColumnType::MYSQL_TYPE_VAR_STRING)
                .with_name(n.as_bytes())
                .with_org_name(n.as_bytes())
                .with_character_set(45)
                .with_column_length(1024);
            let m = self.conn.begin();
            wire::column(self.conn.buf(), &col);
            self.conn.finish(m);
        }
        if !deprecate {
            let m = self.conn.begin();
            wire::eof(self.conn.buf(), 0, status);
            self.conn.finish(m);
        }
        for row in rows {
            let m = self.conn.begin();
            for v in row {
                wire::put_lenenc_bytes(self.conn.buf(), v.as_bytes());
            }
            self.conn.finish(m);
        }
        self.write_end_of_rows();
    }
}
