//! One client session: the command loop and the text-protocol commands.
//!
//! Policy: a session owns no backend connection while idle. Each statement
//! borrows one (`acquire`: the pinned one, or one from the pool brought in
//! line with the session's tracked state) and `settle` decides afterwards —
//! with the pure `hold` — whether the session keeps it. Query-level failures
//! are ERR packets and the session goes on; client I/O and protocol errors,
//! and the loss of a backend connection that held session state (a
//! transaction the client believes is open), close the session.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_common::constants::{CapabilityFlags, StatusFlags};
use tokio::sync::watch;
use tracing::{debug, info_span, warn, Instrument};

use super::auth::{self, Login};
use super::packet::{PacketConn, ProtoError};
use super::relay::{self, Outcome, Relay};
use super::stmt::PreparedStmt;
use super::stream::ClientStream;
use super::wire;
use crate::backend::{Backend, BackendConn, BackendError, PoolKey, SessionVars};
use crate::classify::{self, PinReason};
use crate::config::Config;

/// State shared by every session of one proxy.
pub struct Shared {
    pub cfg: Config,
    pub backend: Arc<Backend>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub next_id: AtomicU32,
    pub sessions: Mutex<HashMap<u32, Arc<SessionHandle>>>,
}

/// What other sessions may see of a session (for KILL).
#[derive(Default)]
pub struct SessionHandle {
    /// Backend thread id of the connection in use, 0 when none.
    pub backend_thread: AtomicU32,
    pub killed: AtomicBool,
}

/// Why a session keeps its backend connection after a statement.
///
/// `autocommit = 0` alone does not hold a connection: it is tracked state,
/// re-applied on whichever connection runs the next statement. The server
/// reports SERVER_STATUS_IN_TRANS as soon as that mode has opened a
/// transaction, and from then on the connection is held (`Transaction`).
/// PyMySQL, JDBC and most ORMs run with autocommit off; pinning on the mode
/// alone would give every such client a MySQL connection of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Release,
    Transaction,
    LockTables,
    Pinned(PinReason),
}

impl Hold {
    /// A label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Hold::Release => "forward",
            Hold::Transaction => "forward_pinned_transaction",
            Hold::LockTables => "forward_pinned_lock_tables",
            Hold::Pinned(r) => r.pinned_label(),
        }
    }
}

/// Pure decision: keep the connection or give it back.
pub fn hold(status: StatusFlags, lock_tables: bool, pin: Option<PinReason>) -> Hold {
    if let Some(r) = pin {
        Hold::Pinned(r)
    } else if status.contains(StatusFlags::SERVER_STATUS_IN_TRANS) {
        Hold::Transaction
    } else if lock_tables {
        Hold::LockTables
    } else {
        Hold::Release
    }
}

/// Errors that end a session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Proto(#[from] ProtoError),
    #[error("backend connection holding session state was lost: {0}")]
    StateLost(String),
}

pub enum Flow {
    Continue,
    Quit,
}

pub struct Session {
    pub(super) conn: PacketConn<ClientStream>,
    pub(super) shared: Arc<Shared>,
    pub(super) handle: Arc<SessionHandle>,
    pub(super) login: Login,
    pub(super) scramble: [u8; 20],
    pub(super) key: PoolKey,
    pub(super) vars: SessionVars,
    pub(super) pinned: Option<BackendConn>,
    pub(super) pin: Option<PinReason>,
    pub(super) lock_tables: bool,
    pub(super) status: StatusFlags,
    pub(super) multi_statements: bool,
    pub(super) stmts: HashMap<u32, PreparedStmt>,
    pub(super) next_stmt: u32,
    /// How the current command was routed (for the statement event).
    pub(super) route: &'static str,
}

/// Drives one accepted client connection from handshake to close.
pub async fn serve(
    shared: Arc<Shared>,
    tcp: tokio::net::TcpStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let span = info_span!("conn", id, peer = %peer);
    async move {
        let _ = tcp.set_nodelay(true);
        let conn = PacketConn::new(ClientStream::Plain(tcp), auth::cfg_max_packet());
        let version = match shared.backend.server_version().await {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "backend unreachable; advertising the fallback version");
                shared.cfg.proxy.fallback_server_version.clone()
            }
        };
        let hs = auth::handshake(conn, &shared.cfg, shared.tls.as_ref(), &version, id).await;
        let (conn, login, scramble) = match hs {
            Ok(x) => x,
            Err(e) => return debug!(error = %e, "handshake failed"),
        };
        let handle = Arc::new(SessionHandle::default());
        shared.sessions.lock().unwrap().insert(id, handle.clone());
        let mut s = Session {
            key: PoolKey {
                user: login.user.clone(),
                found_rows: login.caps.contains(CapabilityFlags::CLIENT_FOUND_ROWS),
            },
            vars: SessionVars::new(login.db.clone(), login.collation),
            multi_statements: login
                .caps
                .contains(CapabilityFlags::CLIENT_MULTI_STATEMENTS),
            conn,
            shared: shared.clone(),
            handle,
            login,
            scramble,
            pinned: None,
            pin: None,
            lock_tables: false,
            status: StatusFlags::SERVER_STATUS_AUTOCOMMIT,
            stmts: HashMap::new(),
            next_stmt: 1,
            route: "local",
        };
        tracing::info!(user = %s.login.user, "connected");
        if let Err(e) = s.run(&mut shutdown).await {
            debug!(error = %e, "session ended with error");
        }
        s.close().await;
        shared.sessions.lock().unwrap().remove(&id);
    }
    .instrument(span)
    .await
}

impl Session {
    async fn run(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<(), SessionError> {
        if self.vars.db.is_some() {
            // CONNECT_WITH_DB: the database must exist and be allowed.
            if let Err(e) = self
                .acquire(false)
                .await
                .map(|c| self.settle(c, self.status))
            {
                self.reply_backend_error(&e);
                self.conn.flush().await?;
                return Ok(());
            }
        }
        self.reply_ok(0, 0, b"");
        self.conn.flush().await?;
        loop {
            self.conn.set_seq(0);
            let pkt = tokio::select! {
                r = self.conn.read_packet() => r?,
                _ = shutdown.changed() => return Ok(()),
            };
            let Some(pkt) = pkt else { return Ok(()) };
            if self.handle.killed.load(Ordering::Relaxed) {
                return Ok(());
            }
            let Some((&cmd, body)) = pkt.split_first() else {
                return Err(ProtoError::Malformed("empty command packet".into()).into());
            };
            let started = Instant::now();
            self.route = "local";
            let flow = self.dispatch(cmd, body).await?;
            self.conn.flush().await?;
            debug!(
                command = command_name(cmd),
                route = self.route,
                elapsed_us = started.elapsed().as_micros() as u64,
                "statement"
            );
            if let Flow::Quit = flow {
                return Ok(());
            }
        }
    }

    async fn dispatch(&mut self, cmd: u8, body: &[u8]) -> Result<Flow, SessionError> {
        match cmd {
            0x01 => return Ok(Flow::Quit),
            0x02 => self.com_init_db(body).await?,
            0x03 => self.com_query(body).await?,
            0x04 => self.com_field_list(body).await?,
            0x09 => self.com_statistics().await?,
            0x0e => self.reply_ok(0, 0, b""),
            0x11 => return self.com_change_user(body).await,
            0x16 => self.com_stmt_prepare(body).await?,
            0x17 => self.com_stmt_execute(body).await?,
            0x18 => self.com_stmt_send_long_data(body),
            0x19 => self.com_stmt_close(body),
            0x1a => self.com_stmt_reset(body),
            0x1b => self.com_set_option(body),
            0x1f => self.com_reset_connection().await,
            _ => self.reply_err(1047, "08S01", "Unknown command"),
        }
        Ok(Flow::Continue)
    }

    pub(super) fn reply_ok(&mut self, affected: u64, insert_id: u64, info: &[u8]) {
        let status = self.status;
        let m = self.conn.begin();
        wire::ok(self.conn.buf(), 0x00, affected, insert_id, status, 0, info);
        self.conn.finish(m);
    }

    pub(super) fn reply_err(&mut self, code: u16, state: &str, msg: &str) {
        let m = self.conn.begin();
        wire::err(self.conn.buf(), code, state, msg);
        self.conn.finish(m);
    }

    /// Writes the ERR packet for a backend-layer failure.
    pub(super) fn reply_backend_error(&mut self, e: &BackendError) {
        let (code, state, msg) = error_reply(e);
        self.reply_err(code, &state, &msg);
    }

    pub(super) fn deprecate_eof(&self) -> bool {
        self.login
            .caps
            .contains(CapabilityFlags::CLIENT_DEPRECATE_EOF)
    }

    /// Does the session hold state that lives only on its pinned connection?
    pub(super) fn holds_state(&self) -> bool {
        hold(self.status, self.lock_tables, self.pin) != Hold::Release
    }

    /// The backend connection for the next statement.
    pub(super) async fn acquire(
        &mut self,
        needs_insert_id: bool,
    ) -> Result<BackendConn, BackendError> {
        let mut c = match self.pinned.take() {
            Some(c) => c,
            None => {
                self.shared
                    .backend
                    .acquire(&self.key, &self.login.password, self.vars.db.as_deref())
                    .await?
            }
        };
        self.handle
            .backend_thread
            .store(c.conn.id(), Ordering::Relaxed);
        if let Err(e) = c.sync(&self.vars, needs_insert_id).await {
            self.settle(c, self.status);
            return Err(e);
        }
        Ok(c)
    }

    /// After a statement: record the status and keep or return the connection.
    pub(super) fn settle(&mut self, c: BackendConn, status: StatusFlags) {
        self.status = status
            & (StatusFlags::SERVER_STATUS_IN_TRANS
                | StatusFlags::SERVER_STATUS_AUTOCOMMIT
                | StatusFlags::SERVER_STATUS_IN_TRANS_READONLY);
        let decision = hold(self.status, self.lock_tables, self.pin);
        self.route = decision.label();
        match decision {
            Hold::Release => {
                self.handle.backend_thread.store(0, Ordering::Relaxed);
                self.shared.backend.release(c);
            }
            _ => self.pinned = Some(c),
        }
    }

    /// A backend connection failed mid-statement: drop it; fatal if it held state.
    pub(super) fn lost(
        &mut self,
        c: BackendConn,
        e: &mysql_async::Error,
    ) -> Result<(), SessionError> {
        drop(c);
        self.handle.backend_thread.store(0, Ordering::Relaxed);
        self.reply_err(
            2013,
            "HY000",
            &format!("Lost connection to MySQL backend during query: {e}"),
        );
        if self.holds_state() {
            return Err(SessionError::StateLost(e.to_string()));
        }
        Ok(())
    }

    async fn com_query(&mut self, sql: &[u8]) -> Result<(), SessionError> {
        let text = String::from_utf8_lossy(sql);
        let fx = classify::analyze(&text);
        if fx.statements > 1 && !self.multi_statements {
            self.reply_err(1064, "42000", "You have an error in your SQL syntax; multi-statements are disabled for this connection");
            return Ok(());
        }
        if let Some(kill) = classify::effects::parse_kill(&text) {
            return self.kill(kill).await;
        }
        let sql: Cow<'_, [u8]> = if fx.probes_socket {
            Cow::Owned(hide_socket(&text).into_bytes())
        } else {
            Cow::Borrowed(sql)
        };
        let mut c = match self.acquire(fx.reads_last_insert_id).await {
            Ok(c) => c,
            Err(e) => {
                self.reply_backend_error(&e);
                return Ok(());
            }
        };
        let timeout = self.shared.cfg.backend.query_timeout;
        let started = c.conn.query_iter(sql.as_ref());
        let qr = if timeout.is_zero() {
            started.await
        } else {
            match tokio::time::timeout(timeout, started).await {
                Ok(r) => r,
                Err(_) => return self.timed_out(c).await,
            }
        };
        let qr = match qr {
            Ok(qr) => qr,
            Err(mysql_async::Error::Server(se)) => {
                self.reply_err(se.code, &se.state, &se.message);
                let status = relay::final_status(&c.conn, self.status);
                self.note_pin(&fx);
                self.settle(c, status);
                return Ok(());
            }
            Err(e) => return self.lost(c, &e),
        };
        let mut r = Relay {
            out: &mut self.conn,
            caps: self.login.caps,
            binary: false,
            status: self.status,
        };
        let (outcome, insert_id, last) = r.run(qr).await?;
        let status = relay::final_status(&c.conn, self.status);
        if let Some(end) = last {
            r.write_end(end, status);
        }
        match outcome {
            Outcome::Lost(e) => return self.lost(c, &e),
            Outcome::Done => self.apply_effects(&fx, &mut c),
            Outcome::ServerError => {}
        }
        self.note_outcome(&mut c, insert_id, status);
        self.note_pin(&fx);
        self.settle(c, status);
        Ok(())
    }

    /// State the server reported in a statement's final packet.
    pub(super) fn note_outcome(
        &mut self,
        c: &mut BackendConn,
        insert_id: u64,
        status: StatusFlags,
    ) {
        if insert_id != 0 {
            self.vars.last_insert_id = insert_id;
            c.applied.last_insert_id = Some(insert_id);
        }
        if status.contains(StatusFlags::SERVER_STATUS_DB_DROPPED) {
            // The current database was dropped: MySQL leaves none selected.
            self.vars.db = None;
            c.applied.db = Some(None);
        }
    }

    fn note_pin(&mut self, fx: &classify::Effects) {
        if self.pin.is_none() {
            self.pin = fx.pin;
        }
    }

    /// Records tracked state a successful statement changed.
    fn apply_effects(&mut self, fx: &classify::Effects, c: &mut BackendConn) {
        if let Some(db) = &fx.use_db {
            self.vars.db = Some(db.clone());
            c.applied.db = Some(self.vars.db.clone());
        }
        for s in &fx.sets {
            self.vars.apply(s);
        }
        if !fx.sets.is_empty() {
            c.applied.assume(&self.vars, false);
        }
        if let Some(l) = fx.lock_tables {
            self.lock_tables = l;
        }
    }

    async fn timed_out(&mut self, c: BackendConn) -> Result<(), SessionError> {
        let thread = c.conn.id();
        drop(c);
        let backend = self.shared.backend.clone();
        tokio::spawn(async move { backend.kill(thread).await });
        let t = self.shared.cfg.backend.query_timeout;
        self.reply_err(
            1969,
            "70100",
            &format!("Query execution was interrupted (backend.query_timeout = {t:?} exceeded)"),
        );
        if self.holds_state() {
            return Err(SessionError::StateLost("query timeout".into()));
        }
        Ok(())
    }

    /// `KILL [QUERY|CONNECTION] id` names *proxy* connection ids (the ones
    /// clients saw in their handshake); map them to backend threads.
    async fn kill(&mut self, k: classify::effects::Kill) -> Result<(), SessionError> {
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
            let mut c = match self.acquire(false).await {
                Ok(c) => c,
                Err(e) => {
                    self.reply_backend_error(&e);
                    return Ok(());
                }
            };
            let r = c.conn.query_drop(format!("{sql} {thread}")).await;
            let status = relay::final_status(&c.conn, self.status);
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

    async fn com_init_db(&mut self, body: &[u8]) -> Result<(), SessionError> {
        let db = String::from_utf8_lossy(body).into_owned();
        let previous = self.vars.db.replace(db);
        match self.acquire(false).await {
            Ok(c) => {
                self.settle(c, self.status);
                self.reply_ok(0, 0, b"");
            }
            Err(e) => {
                self.vars.db = previous;
                self.reply_backend_error(&e);
            }
        }
        Ok(())
    }

    async fn com_field_list(&mut self, body: &[u8]) -> Result<(), SessionError> {
        let mut r = wire::Reader::new(body);
        let table = String::from_utf8_lossy(r.cstr()).into_owned();
        let mut c = match self.acquire(false).await {
            Ok(c) => c,
            Err(e) => {
                self.reply_backend_error(&e);
                return Ok(());
            }
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
                let status = self.status;
                let m = self.conn.begin();
                if self.deprecate_eof() {
                    wire::ok(self.conn.buf(), 0xFE, 0, 0, status, 0, b"");
                } else {
                    wire::eof(self.conn.buf(), 0, status);
                }
                self.conn.finish(m);
            }
            Err(mysql_async::Error::Server(se)) => self.reply_err(se.code, &se.state, &se.message),
            Err(e) => return self.lost(c, &e),
        }
        let status = relay::final_status(&c.conn, self.status);
        self.settle(c, status);
        Ok(())
    }

    async fn com_statistics(&mut self) -> Result<(), SessionError> {
        let mut c = match self.acquire(false).await {
            Ok(c) => c,
            Err(e) => {
                self.reply_backend_error(&e);
                return Ok(());
            }
        };
        let rows: Result<Vec<(String, String)>, _> = c
            .conn
            .query("SHOW GLOBAL STATUS WHERE Variable_name IN ('Uptime','Threads_connected','Questions','Slow_queries','Opened_tables','Open_tables')")
            .await;
        let status = relay::final_status(&c.conn, self.status);
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

    fn com_set_option(&mut self, body: &[u8]) {
        match wire::Reader::new(body).u16() {
            Some(0) => self.multi_statements = true,
            Some(1) => self.multi_statements = false,
            _ => return self.reply_err(1047, "08S01", "Unknown command"),
        }
        let status = self.status;
        let m = self.conn.begin();
        if self.deprecate_eof() {
            wire::ok(self.conn.buf(), 0xFE, 0, 0, status, 0, b"");
        } else {
            wire::eof(self.conn.buf(), 0, status);
        }
        self.conn.finish(m);
    }

    /// Forgets every piece of session state; the connection returns reset.
    fn reset_state(&mut self) {
        if let Some(mut c) = self.pinned.take() {
            c.dirty = true;
            self.shared.backend.release(c);
        }
        self.handle.backend_thread.store(0, Ordering::Relaxed);
        self.pin = None;
        self.lock_tables = false;
        self.status = StatusFlags::SERVER_STATUS_AUTOCOMMIT;
        self.stmts.clear();
    }

    async fn com_reset_connection(&mut self) {
        self.reset_state();
        self.vars = SessionVars::new(self.vars.db.clone(), self.login.collation);
        self.reply_ok(0, 0, b"");
    }

    async fn com_change_user(&mut self, body: &[u8]) -> Result<Flow, SessionError> {
        let Some(req) = super::stmt::parse_change_user(body, self.login.caps) else {
            self.reply_err(1047, "08S01", "Malformed COM_CHANGE_USER");
            return Ok(Flow::Quit);
        };
        let password = self.shared.cfg.user(&req.user).map(|u| u.password.clone());
        let mut scramble = self.scramble;
        let mut response = req.auth;
        let mut decision = auth::check(
            req.plugin.as_deref(),
            &response,
            &scramble,
            password.as_deref(),
        );
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
            decision = auth::check(None, &response, &scramble, password.as_deref());
        }
        if decision != auth::AuthDecision::Accept {
            let m = self.conn.begin();
            auth::access_denied(self.conn.buf(), &req.user, !response.is_empty());
            self.conn.finish(m);
            return Ok(Flow::Quit);
        }
        self.reset_state();
        self.login.user = req.user.clone();
        self.login.password = password.unwrap_or_default();
        self.login.db = req.db.clone();
        if let Some(cs) = req.collation {
            self.login.collation = cs;
        }
        self.key.user = req.user;
        self.vars = SessionVars::new(req.db, self.login.collation);
        if self.vars.db.is_some() {
            if let Err(e) = self
                .acquire(false)
                .await
                .map(|c| self.settle(c, self.status))
            {
                self.reply_backend_error(&e);
                return Ok(Flow::Quit);
            }
        }
        self.reply_ok(0, 0, b"");
        Ok(Flow::Continue)
    }

    /// Session end: a connection still pinned goes back reset (rolls back).
    async fn close(&mut self) {
        if let Some(mut c) = self.pinned.take() {
            c.dirty = true;
            self.shared.backend.release(c);
        }
        self.conn.shutdown().await;
    }
}

/// The protocol name of a command byte (log field; literals never logged).
pub fn command_name(cmd: u8) -> &'static str {
    match cmd {
        0x01 => "quit",
        0x02 => "init_db",
        0x03 => "query",
        0x04 => "field_list",
        0x09 => "statistics",
        0x0e => "ping",
        0x11 => "change_user",
        0x16 => "stmt_prepare",
        0x17 => "stmt_execute",
        0x18 => "stmt_send_long_data",
        0x19 => "stmt_close",
        0x1a => "stmt_reset",
        0x1b => "set_option",
        0x1c => "stmt_fetch",
        0x1f => "reset_connection",
        _ => "unknown",
    }
}

/// Maps a backend-layer error to (code, SQLSTATE, message) for the client.
pub fn error_reply(e: &BackendError) -> (u16, String, String) {
    match e {
        BackendError::Mysql(mysql_async::Error::Server(se)) => {
            (se.code, se.state.clone(), se.message.clone())
        }
        BackendError::Connect { .. } | BackendError::ConnectTimeout(..) => {
            (2003, "HY000".into(), format!("sqlcache: {e}"))
        }
        BackendError::PoolExhausted(..) => (
            1040,
            "08004".into(),
            format!("Too many connections: sqlcache: {e}"),
        ),
        BackendError::Mysql(other) => (
            2013,
            "HY000".into(),
            format!("Lost connection to MySQL backend: {other}"),
        ),
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
    fn hold_decisions() {
        let ac = StatusFlags::SERVER_STATUS_AUTOCOMMIT;
        let tx = StatusFlags::SERVER_STATUS_IN_TRANS;
        assert_eq!(hold(ac, false, None), Hold::Release);
        assert_eq!(hold(ac | tx, false, None), Hold::Transaction);
        assert_eq!(hold(StatusFlags::empty(), false, None), Hold::Release);
        assert_eq!(hold(tx, false, None), Hold::Transaction);
        assert_eq!(hold(ac, true, None), Hold::LockTables);
        assert_eq!(
            hold(ac, false, Some(PinReason::TemporaryTable)),
            Hold::Pinned(PinReason::TemporaryTable)
        );
    }

    #[test]
    fn socket_probe_is_neutralised() {
        assert_eq!(
            hide_socket("SELECT @@socket, @@max_allowed_packet"),
            "SELECT NULL AS `@@socket`, @@max_allowed_packet"
        );
        assert_eq!(hide_socket("select @@SOCKET"), "select NULL AS `@@socket`");
        assert_eq!(hide_socket("select @@socket_x"), "select @@socket_x");
    }

    #[test]
    fn backend_errors_map_to_mysql_codes() {
        let e = BackendError::PoolExhausted(4, std::time::Duration::from_secs(1));
        assert_eq!(error_reply(&e).0, 1040);
        let e = BackendError::ConnectTimeout(std::time::Duration::from_secs(1), "x".into());
        assert_eq!(error_reply(&e).0, 2003);
    }
}
