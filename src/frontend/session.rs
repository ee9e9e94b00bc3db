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

use mysql_common::constants::{CapabilityFlags, StatusFlags};
use tokio::sync::watch;
use tracing::{debug, info_span, warn, Instrument};

use super::auth::{self, Login};
use super::commands::hide_socket;
use super::packet::{PacketConn, ProtoError};
use super::pipeline::{Exec, Stmt};
use super::route::Routed;
use super::stmt::PreparedStmt;
use super::stream::ClientStream;
use super::wire;
use crate::backend::schema::SchemaCache;
use crate::backend::{Backend, BackendConn, BackendError, PoolKey, SessionVars};
use crate::cache::key::TEXT;
use crate::cache::Cache;
use crate::classify::{self, BypassReason, PinReason, Verdict};
use crate::config::Config;

/// State shared by every session of one proxy.
pub struct Shared {
    pub cfg: Config,
    pub backend: Arc<Backend>,
    pub cache: Arc<Cache>,
    pub schema: Arc<SchemaCache>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub next_id: AtomicU32,
    pub sessions: Mutex<HashMap<u32, Arc<SessionHandle>>>,
    /// Per-shape statistics for `SHOW SQLCACHE QUERIES`.
    pub insight: crate::admin::insight::Insight,
    /// Who may log in (`accounts.rs`).
    pub accounts: super::accounts::Accounts,
    /// Live reload of the configuration file (`reload.rs`).
    pub reloader: super::reload::Reloader,
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
            Hold::Pinned(_) => "forward_pinned",
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
    /// The proxy's connection id (the handshake's; what KILL and
    /// `CONNECTION_ID()` speak).
    pub(super) id: u32,
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
    /// By statement id. The ids are the proxy's own (sequential), so the
    /// table's hash needs no DoS resistance: foldhash, not SipHash (which
    /// cost about 110 instructions per COM_STMT_EXECUTE).
    pub(super) stmts: HashMap<u32, PreparedStmt, foldhash::fast::FixedState>,
    pub(super) next_stmt: u32,
    /// How the current command was routed (`route`).
    pub(super) routed: Routed,
    /// `SHOW SQLCACHE LAST`: how the last statement with a cache decision
    /// was routed (`routed` after each command; rendered only when asked).
    pub(super) last: Option<Routed>,
    /// Reused buffer for cache keys (no allocation per lookup).
    pub(super) keybuf: Vec<u8>,
    /// The session-state part of `keybuf`, hashed once per state change.
    pub(super) state_hash: crate::cache::key::StateHash,
    /// Invalidations of an open transaction, applied again at COMMIT.
    pub(super) pending: Vec<crate::invalidation::Effect>,
    /// The current statement's shape digest once known (prepared: from
    /// PREPARE; a hit: from its entry; a text miss: computed), else
    /// `UNKNOWN_SHAPE` (`SHOW SQLCACHE QUERIES`).
    pub(super) shape: u64,
}

/// Drives one accepted client connection from handshake to close.
pub async fn serve(
    shared: Arc<Shared>,
    client: super::listen::Incoming,
    mut shutdown: watch::Receiver<bool>,
) {
    use super::listen::Incoming;
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (peer, stream, tls) = match client {
        Incoming::Tcp(tcp) => {
            let _ = tcp.set_nodelay(true);
            let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            (peer, ClientStream::Plain(tcp), shared.tls.clone())
        }
        Incoming::Unix(unix) => ("localhost".into(), ClientStream::Unix(unix), None),
    };
    let span = info_span!("conn", id, peer = %peer);
    async move {
        let conn = PacketConn::new(stream, auth::cfg_max_packet());
        let version = match shared.backend.server_version().await {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "backend unreachable; advertising the fallback version");
                shared.cfg.proxy.fallback_server_version.clone()
            }
        };
        let hs = auth::handshake(
            conn,
            &shared.cfg,
            &shared.accounts,
            tls.as_ref(),
            &version,
            id,
        )
        .await;
        let (conn, login, scramble) = match hs {
            Ok(x) => x,
            Err(e) => return debug!(error = %e, "handshake failed"),
        };
        let handle = Arc::new(SessionHandle::default());
        shared.sessions.lock().unwrap().insert(id, handle.clone());
        let mut s = Session {
            id,
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
            stmts: HashMap::default(),
            next_stmt: 1,
            routed: Routed::Local("local"),
            last: None,
            keybuf: Vec::with_capacity(256),
            state_hash: Default::default(),
            pending: Vec::new(),
            shape: crate::cache::UNKNOWN_SHAPE,
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
            if let Err(e) = self.check_db().await {
                self.reply_backend_error(&e);
                self.conn.flush().await?;
                return Ok(());
            }
        }
        self.reply_ok(0, 0, b"");
        self.conn.flush().await?;
        // One wait for shutdown per session, not one per statement: a
        // watch waiter registered and dropped per statement, and select!'s
        // random branch order, cost about 300 instructions a hit
        // (bench/hit_profile.sh). Shutdown is checked first, between
        // statements, as before.
        let stop = shutdown.changed();
        tokio::pin!(stop);
        loop {
            self.conn.set_seq(0);
            let pkt = tokio::select! {
                biased;
                _ = &mut stop => return Ok(()),
                r = self.conn.read_packet() => r?,
            };
            let Some(pkt) = pkt else { return Ok(()) };
            if self.handle.killed.load(Ordering::Relaxed) {
                return Ok(());
            }
            let Some((&cmd, body)) = pkt.split_first() else {
                return Err(ProtoError::Malformed("empty command packet".into()).into());
            };
            let started = Instant::now();
            self.routed = Routed::Local("local");
            self.shape = crate::cache::UNKNOWN_SHAPE;
            let flow = self.dispatch(cmd, body).await?;
            // Counted before the reply is flushed: once a client has its
            // answer, every scrape of /metrics includes the statement.
            let routed = std::mem::replace(&mut self.routed, Routed::Local("local"));
            let took = started.elapsed();
            self.shared.cache.stats.observe(routed.metric(), took);
            self.record_insight(cmd, body, &routed, took);
            self.conn.flush().await?;
            debug!(
                command = command_name(cmd),
                route = routed.label(),
                pin = self.pin.map(PinReason::as_str),
                elapsed_us = started.elapsed().as_micros() as u64,
                "statement"
            );
            if !matches!(routed, Routed::Local(_)) {
                self.last = Some(routed);
            }
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

    /// The current database exists and the user may use it (runs `USE`).
    pub(super) async fn check_db(&mut self) -> Result<(), BackendError> {
        let c = self.acquire(false).await?;
        self.settle(c, self.status);
        Ok(())
    }

    /// Ends a row set or field list: EOF, or an OK with 0xFE under
    /// CLIENT_DEPRECATE_EOF.
    pub(super) fn write_end_of_rows(&mut self) {
        let status = self.status;
        let m = self.conn.begin();
        if self.deprecate_eof() {
            wire::ok(self.conn.buf(), 0xFE, 0, 0, status, 0, b"");
        } else {
            wire::eof(self.conn.buf(), 0, status);
        }
        self.conn.finish(m);
    }

    /// `acquire`, answering the client with the error when it fails.
    pub(super) async fn acquire_or_reply(&mut self, needs_insert_id: bool) -> Option<BackendConn> {
        match self.acquire(needs_insert_id).await {
            Ok(c) => Some(c),
            Err(e) => {
                self.reply_backend_error(&e);
                None
            }
        }
    }

    /// After a statement: record the status and keep or return the connection.
    pub(super) fn settle(&mut self, c: BackendConn, status: StatusFlags) {
        self.status = status
            & (StatusFlags::SERVER_STATUS_IN_TRANS
                | StatusFlags::SERVER_STATUS_AUTOCOMMIT
                | StatusFlags::SERVER_STATUS_IN_TRANS_READONLY);
        let decision = hold(self.status, self.lock_tables, self.pin);
        if self.routed == Routed::Local("local") {
            self.routed = Routed::Local(decision.label());
        }
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
        if crate::admin::status::is_sqlcache_statement(sql) {
            self.sqlcache_statement(sql).await;
            return Ok(());
        }
        // Hit path: no parsing at all.
        let bypass = self.cache_bypass();
        if bypass.is_none() {
            self.build_key(TEXT, sql, &[], &[]);
            if self.serve_hit().await {
                return Ok(());
            }
        }
        self.shape = classify::digest::digest(sql);
        let text = String::from_utf8_lossy(sql);
        let lexed = classify::Lexed::new(&text);
        let fx = classify::analyze_lexed(&lexed);
        if fx.statements > 1 && !self.multi_statements {
            self.reply_err(1064, "42000", "You have an error in your SQL syntax; multi-statements are disabled for this connection");
            return Ok(());
        }
        if let Some(kill) = classify::kill_of(&lexed) {
            return self.kill(kill).await;
        }
        let verdict = if self.shared.cache.cfg.enabled {
            let (verdict, source) = classify::classify_memo(&lexed);
            self.shared.cache.stats.classified(source);
            verdict
        } else {
            Verdict::Bypass(BypassReason::CacheDisabled)
        };
        let mut sent: Cow<'_, [u8]> = if fx.probes_socket {
            Cow::Owned(hide_socket(&text).into_bytes())
        } else {
            Cow::Borrowed(sql)
        };
        if fx.reads_connection_id {
            let own =
                classify::rewrite::own_connection_id(&String::from_utf8_lossy(&sent), self.id);
            if let Some(own) = own {
                sent = Cow::Owned(own.into_bytes());
            }
        }
        let st = Stmt {
            proto: TEXT,
            sql,
            verdict: &verdict,
            params: &[],
            types: &[],
            bypass,
            keyed: bypass.is_none(),
        };
        self.execute(
            st,
            Exec::Text {
                sql: &sent,
                fx: &fx,
            },
        )
        .await
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

    pub(super) fn note_pin(&mut self, fx: &classify::Effects) {
        if self.pin.is_none() {
            self.pin = fx.pin;
        }
    }

    /// Records tracked state a successful statement changed.
    pub(super) fn apply_effects(&mut self, fx: &classify::Effects, c: &mut BackendConn) {
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
        if fx.sets_global {
            self.shared.backend.globals_changed();
        }
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
    fn backend_errors_map_to_mysql_codes() {
        let e = BackendError::PoolExhausted(4, std::time::Duration::from_secs(1));
        assert_eq!(error_reply(&e).0, 1040);
        let e = BackendError::ConnectTimeout(std::time::Duration::from_secs(1), "x".into());
        assert_eq!(error_reply(&e).0, 2003);
    }
}
