//! The wire side of the statements the proxy answers itself (`SHOW
//! SQLCACHE STATUS | LAST`, content in `admin/status.rs`): ordinary text
//! result sets any client can display.

use mysql_common::constants::{CapabilityFlags, ColumnType};
use mysql_common::packets::Column;

use super::session::Session;
use super::wire;
use crate::admin::status::{status_rows, Own};

impl Session {
    pub(super) fn sqlcache_statement(&mut self, sql: &[u8]) {
        let rows: Vec<(String, String)> = match Own::parse(sql) {
            Some(Own::Status) => status_rows(&self.shared.cache),
            Some(Own::Last) => vec![("route".into(), self.last.to_string())],
            None => {
                return self.reply_err(
                    1064,
                    "42000",
                    "sqlcache: expected SHOW SQLCACHE STATUS or SHOW SQLCACHE LAST",
                )
            }
        };
        self.write_rows(&["Variable_name", "Value"], &rows);
    }

    /// A text result set of string columns.
    fn write_rows(&mut self, names: &[&str], rows: &[(String, String)]) {
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
        for (k, v) in rows {
            let m = self.conn.begin();
            wire::put_lenenc_bytes(self.conn.buf(), k.as_bytes());
            wire::put_lenenc_bytes(self.conn.buf(), v.as_bytes());
            self.conn.finish(m);
        }
        self.write_end_of_rows();
    }
}
