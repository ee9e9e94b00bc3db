//! Session commands other than statements: KILL mapping, COM_FIELD_LIST,
//! COM_STATISTICS, COM_SET_OPTION, COM_RESET_CONNECTION, COM_CHANGE_USER.
//!
//! Policy: each answers exactly as a MySQL server would for the session the
//! client sees; state resets drop everything pinned (the connection goes
//! back to the pool reset) and everything pending for the cache.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use mysql_async::prelude::Queryable;
use mysql_common::constants::StatusFlags;

use super::auth;
use super::packet::ProtoError;
use super::session::{Flow, Session, SessionError};
use super::wire;
use crate::backend::SessionVars;

impl Session {
    /// `KILL [QUERY|CONNECTION] id` names *proxy* connection ids (the ones
    /// clients saw in their handshake); map them to backend threads.
    pub(super) async fn kill(
        &mut self,
        k: crate::classify::effects::Kill,
    ) -> Result<(), SessionError> {
        let target = self.shared.sessions.lock().unwrap().get(&k.id).cloned();
        let Some(target) = target else {
            self.reply_err(1094, "HY000", &format!("Unknown thread id: {}", k.id));
            return Ok(());
        };
        if !k.query_only {
            target.killed.store(true, Ordering::Relaxed);
        }
        let thread = target.backend_thread.load(Ordering::Relaxed);
        if thread != 0 {
            let sql = if k.query_only { "KILL QUERY" } else { "KILL" };
            let Some(mut c) = self.acquire_or_reply(false).await else {
                return Ok(());
            };
            let r = c.conn.query_drop(format!("{sql} {thread}")).await;
            let status = self.status; // these commands change no transaction state
            self.settle(c, status);
            if let Err(mysql_async::Error::Server(se)) = r {
                if se.code != 1094 {
                    self.reply_err(se.code, &se.state, &se.message);
                    return Ok(());
                }
            }
        }
        self.reply_ok(0, 0, b"");
        Ok(())
    }

    pub(super) async fn com_field_list(&mut self, body: &[u8]) -> Result<(), SessionError> {
        let mut r = wire::Reader::new(body);
        let table = String::from_utf8_lossy(r.cstr()).into_owned();
        let Some(mut c) = self.acquire_or_reply(false).await else {
            return Ok(());
        };
        let sql = format!(
            "SELECT * FROM {} LIMIT 0",
            crate::backend::state::quote_ident(&table)
        );
        let cols = match c.conn.query_iter(sql).await {
            Ok(mut qr) => {
                let cols = qr.columns();
                let _ = qr.next().await;
                Ok(cols.unwrap_or_default())
            }
            Err(e) => Err(e),
        };
        match cols {
            Ok(cols) => {
                for col in cols.iter() {
                    let m = self.conn.begin();
                    wire::column(self.conn.buf(), col);
                    // COM_FIELD_LIST appends the default value; NULL here.
                    self.conn.buf().push(0xFB);
                    self.conn.finish(m);
                }
                self.write_end_of_rows();
            }
            Err(mysql_async::Error::Server(se)) => self.reply_err(se.code, &se.state, &se.message),
            Err(e) => return self.lost(c, &e),
        }
        let status = self.status; // these commands change no transaction state
        self.settle(c, status);
        Ok(())
    }

    pub(super) async fn com_statistics(&mut self) -> Result<(), SessionError> {
        let Some(mut c) = self.acquire_or_reply(false).await else {
            return Ok(());
        };
        let rows: Result<Vec<(String, String)>, _> = c
            .conn
            .query("SHOW GLOBAL STATUS WHERE Variable_name IN ('Uptime','Threads_connected','Questions','Slow_queries','Opened_tables','Open_tables')")
            .await;
        let status = self.status; // these commands change no transaction state
        self.settle(c, status);
        match rows {
            Ok(rows) => {
                let text = statistics_line(&rows.into_iter().collect());
                self.conn.write_packet(text.as_bytes());
            }
            Err(e) => self.reply_err(1105, "HY000", &format!("statistics unavailable: {e}")),
        }
        Ok(())
    }

    pub(super) fn com_set_option(&mut self, body: &[u8]) {
        match wire::Reader::new(body).u16() {
            Some(0) => self.multi_statements = true,
            Some(1) => self.multi_statements = false,
            _ => return self.reply_err(1047, "08S01", "Unknown command"),
        }
        self.write_end_of_rows();
    }

    /// Forgets every piece of session state; the connection returns reset.
    pub(super) fn reset_state(&mut self) {
        if let Some(mut c) = self.pinned.take() {
            c.dirty = true;
            self.shared.backend.release(c);
        }
        self.handle.backend_thread.store(0, Ordering::Relaxed);
        self.pin = None;
        self.lock_tables = false;
        self.status = StatusFlags::SERVER_STATUS_AUTOCOMMIT;
        self.stmts.clear();
        // The transaction, if any, was rolled back.
        self.pending.clear();
    }

    pub(super) async fn com_reset_connection(&mut self) {
        self.reset_state();
        self.vars = SessionVars::new(self.vars.db.clone(), self.login.collation);
        self.reply_ok(0, 0, b"");
    }

    pub(super) async fn com_change_user(&mut self, body: &[u8]) -> Result<Flow, SessionError> {
        let Some(req) = super::stmt::parse_change_user(body, self.login.caps) else {
            self.reply_err(1047, "08S01", "Malformed COM_CHANGE_USER");
            return Ok(Flow::Quit);
        };
        let secret = self.shared.accounts.secret(&req.user).await;
        let mut scramble = self.scramble;
        let mut response = req.auth;
        let mut decision =
            auth::check(req.plugin.as_deref(), &response, &scramble, secret.as_ref());
        if decision == auth::AuthDecision::Switch {
            scramble = auth::new_scramble();
            let mut data = scramble.to_vec();
            data.push(0);
            let mut b = Vec::new();
            mysql_common::proto::MySerialize::serialize(
                &mysql_common::packets::AuthSwitchRequest::new(auth::NATIVE, data),
                &mut b,
            );
            self.conn.write_packet(&b);
            self.conn.flush().await?;
            response = self
                .conn
                .read_packet()
                .await?
                .ok_or(ProtoError::Closed)?
                .to_vec();
            decision = auth::check(None, &response, &scramble, secret.as_ref());
        }
        let auth::AuthDecision::Accept(credential) = decision else {
            let m = self.conn.begin();
            auth::access_denied(self.conn.buf(), &req.user, !response.is_empty());
            self.conn.finish(m);
            return Ok(Flow::Quit);
        };
        self.reset_state();
        self.login.user = req.user.clone();
        self.login.password = credential;
        self.login.db = req.db.clone();
        if let Some(cs) = req.collation {
            self.login.collation = cs;
        }
        self.key.user = req.user;
        self.vars = SessionVars::new(req.db, self.login.collation);
        if self.vars.db.is_some() {
            if let Err(e) = self.check_db().await {
                self.reply_backend_error(&e);
                return Ok(Flow::Quit);
            }
        }
        self.reply_ok(0, 0, b"");
        Ok(Flow::Continue)
    }
}

/// Rewrites `@@socket` so the backend's socket path never reaches the client.
pub fn hide_socket(sql: &str) -> String {
    let lower = sql.to_ascii_lowercase();
    let mut out = String::with_capacity(sql.len() + 16);
    let mut i = 0;
    while let Some(p) = lower[i..].find("@@socket") {
        let at = i + p;
        let end = at + "@@socket".len();
        let boundary = lower
            .as_bytes()
            .get(end)
            .is_none_or(|b| !(b.is_ascii_alphanumeric() || *b == b'_'));
        out.push_str(&sql[i..at]);
        out.push_str(if boundary {
            "NULL AS `@@socket`"
        } else {
            &sql[at..end]
        });
        i = end;
    }
    out.push_str(&sql[i..]);
    out
}

fn statistics_line(v: &HashMap<String, String>) -> String {
    let get = |k: &str| v.get(k).cloned().unwrap_or_else(|| "0".into());
    let uptime: f64 = get("Uptime").parse().unwrap_or(0.0);
    let questions: f64 = get("Questions").parse().unwrap_or(0.0);
    let qps = if uptime > 0.0 {
        questions / uptime
    } else {
        0.0
    };
    format!(
        "Uptime: {}  Threads: {}  Questions: {}  Slow queries: {}  Opens: {}  Open tables: {}  Queries per second avg: {qps:.3}",
        get("Uptime"),
        get("Threads_connected"),
        get("Questions"),
        get("Slow_queries"),
        get("Opened_tables"),
        get("Open_tables"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_probe_is_neutralised() {
        assert_eq!(
            hide_socket("SELECT @@socket, @@max_allowed_packet"),
            "SELECT NULL AS `@@socket`, @@max_allowed_packet"
        );
        assert_eq!(hide_socket("select @@SOCKET"), "select NULL AS `@@socket`");
        assert_eq!(hide_socket("select @@socket_x"), "select @@socket_x");
    }
}
