//! One pipeline for text and prepared statements.
//!
//! Policy: COM_QUERY (`session.rs`) and COM_STMT_EXECUTE (`stmt.rs`) only
//! translate their packets into a `Stmt` — the key's protocol byte and
//! statement bytes, the verdict, the parameter values and declared types —
//! and an `Exec`, how the statement reaches MySQL. From there one sequence
//! runs for both: hit → coalesce → acquire → plan → send → relay → complete
//! → settle. Only `sent` and `send` speak a protocol; `backend.query_timeout` bounds
//! both.
//!
//! Invariants: a write's invalidation runs on every path that may have
//! changed data (OK; an error inside a transaction; a lost connection; a
//! timeout) and before the reply is flushed; a fill is stored only for a
//! response relayed whole (`complete`).

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use mysql_async::{EncodedParams, QueryResult, ServerError};
use mysql_common::constants::StatusFlags;
use mysql_common::value::Value;

use super::caching::{Coalesced, Planned};
use super::packet::ProtoError;
use super::relay::{self, Outcome, Relay};
use super::session::{Session, SessionError};
use super::stmt::Execute;
use crate::backend::{BackendConn, BackendError};
use crate::cache::plan::Fill;
use crate::cache::{Cache, Flight};
use crate::classify::{BypassReason, Effects, Verdict};

/// A statement as the cache sees it, whatever its protocol.
pub(super) struct Stmt<'a> {
    /// `TEXT` or `BINARY`: the key's protocol byte.
    pub proto: u8,
    /// The key's statement bytes: the client's text, or the prepared SQL.
    pub sql: &'a [u8],
    pub verdict: &'a Verdict,
    pub params: &'a [Value],
    /// Declared parameter types (two bytes each), part of the key.
    pub types: &'a [u8],
    /// Why the session cannot use the cache now, if it cannot.
    pub bypass: Option<BypassReason>,
    /// The key is in the key buffer and missed already (text statements
    /// try the cache before they are parsed).
    pub keyed: bool,
}

/// How a statement reaches MySQL.
pub(super) enum Exec<'a> {
    /// COM_QUERY: the text sent (socket probes hidden), and its effects on
    /// session state.
    Text { sql: &'a [u8], fx: &'a Effects },
    /// COM_STMT_EXECUTE: the execution, encoded for MySQL only here.
    Binary {
        exec: &'a Execute<'a>,
        long_data: HashMap<u16, Vec<u8>>,
    },
}

/// A relayed response, before its final packet (`complete`).
pub(super) struct Relayed {
    outcome: Outcome,
    insert_id: u64,
    last: Option<relay::End>,
    cacheable: bool,
    mark: usize,
    flushes: u64,
}

/// Why a statement did not produce a response to relay.
enum Failed {
    /// The backend statement could not be prepared (nothing ran).
    NotPrepared(BackendError),
    Server(ServerError),
    /// mysql_async refused to send it (a prepared statement's parameters;
    /// for text, the connection's state is then unknown).
    Driver(mysql_async::DriverError),
    TimedOut,
    Lost(mysql_async::Error),
}

/// What MySQL runs: the text, or a backend statement and its parameters.
enum Sent<'a> {
    Text(&'a [u8]),
    Binary(mysql_async::Statement, EncodedParams),
}

impl Session {
    /// Runs one statement through the pipeline; the client's reply is
    /// buffered (the command loop flushes it).
    pub(super) async fn execute(
        &mut self,
        st: Stmt<'_>,
        exec: Exec<'_>,
    ) -> Result<(), SessionError> {
        let cache = self.shared.cache.clone();
        let Some(_flight) = self.lookup(&cache, &st).await else {
            return Ok(());
        };
        let fx = match &exec {
            Exec::Text { fx, .. } => Some(*fx),
            Exec::Binary { .. } => None,
        };
        let needs_insert_id = fx.is_some_and(|fx| fx.reads_last_insert_id);
        let Some(mut c) = self.acquire_or_reply(needs_insert_id).await else {
            return Ok(());
        };
        let sent = match self.sent(&mut c, &st, exec).await {
            Ok(sent) => sent,
            Err(failed) => return self.failed(c, &st, fx, failed).await,
        };
        let recipe = match &sent {
            Sent::Text(sql) => (*sql, None),
            Sent::Binary(_, wire) => (st.sql, Some(wire)),
        };
        let fill = match self
            .plan(&mut c, st.verdict, st.bypass, st.params, recipe)
            .await
        {
            Planned::Forward(fill) => fill,
            Planned::Served => return self.served_from_l2(c),
        };
        // A batch that writes and then returns rows: its OK must not reach
        // the client (mid-stream flush) before the invalidation.
        let hold =
            fx.is_some_and(|fx| fx.statements > 1) && matches!(st.verdict, Verdict::Write(_));
        self.conn.hold_response(hold);
        let ran = self.send(&mut c, &sent).await;
        self.conn.hold_response(false);
        let relayed = match ran? {
            Ok(r) => r,
            Err(failed) => return self.failed(c, &st, fx, failed).await,
        };
        let Some((mut c, status, done)) = self
            .complete(c, relayed, fill, st.verdict, st.params)
            .await?
        else {
            return Ok(());
        };
        if let Some(fx) = fx {
            if done {
                self.apply_effects(fx, &mut c);
            }
            self.note_pin(fx);
        }
        self.settle(c, status);
        Ok(())
    }

    /// Hit, or join a miss in flight: `None` when the client has its answer
    /// from the cache, else the flight this session leads (if any).
    async fn lookup<'c>(&mut self, cache: &'c Cache, st: &Stmt<'_>) -> Option<Option<Flight<'c>>> {
        if st.bypass.is_some() || !matches!(st.verdict, Verdict::Read(_)) {
            return Some(None);
        }
        if !st.keyed {
            self.build_key(st.proto, st.sql, st.params, st.types);
            if self.serve_hit().await {
                return None;
            }
        }
        match self.coalesce(cache).await {
            Some(Coalesced::Served) => None,
            Some(Coalesced::Leader(f)) => Some(Some(f)),
            None => Some(None),
        }
    }

    /// What MySQL is sent: for a prepared statement, its backend statement
    /// (prepared on this connection if needed) and the encoded parameters.
    async fn sent<'e>(
        &self,
        c: &mut BackendConn,
        st: &Stmt<'_>,
        exec: Exec<'e>,
    ) -> Result<Sent<'e>, Failed> {
        match exec {
            Exec::Text { sql, .. } => Ok(Sent::Text(sql)),
            Exec::Binary { exec, long_data } => {
                let p = c
                    .statement(self.vars.db.as_deref(), st.sql)
                    .await
                    .map_err(Failed::NotPrepared)?;
                Ok(Sent::Binary(p.stmt, exec.encode(st.types, long_data)))
            }
        }
    }

    /// Sends the statement and relays its response (bounded by
    /// `backend.query_timeout` until MySQL starts answering).
    async fn send(
        &mut self,
        c: &mut BackendConn,
        sent: &Sent<'_>,
    ) -> Result<Result<Relayed, Failed>, ProtoError> {
        let timeout = self.shared.cfg.backend.query_timeout;
        match sent {
            Sent::Text(sql) => match bounded(timeout, c.conn.query_iter(*sql)).await {
                Ok(qr) => self.relay(qr).await.map(Ok),
                Err(f) => Ok(Err(f)),
            },
            Sent::Binary(stmt, wire) => {
                match bounded(timeout, c.conn.exec_iter_encoded(stmt, wire)).await {
                    Ok(qr) => self.relay(qr).await.map(Ok),
                    Err(f) => Ok(Err(f)),
                }
            }
        }
    }

    /// A statement that failed before its response: the client's error,
    /// the write's invalidation, the connection settled or dropped.
    async fn failed(
        &mut self,
        c: BackendConn,
        st: &Stmt<'_>,
        fx: Option<&Effects>,
        failed: Failed,
    ) -> Result<(), SessionError> {
        // After an error the connection's last OK is an older one (or a
        // prepare reply mysql_async misreads as an OK): keep the state
        // known before the statement.
        let status = self.status;
        match failed {
            Failed::NotPrepared(BackendError::Mysql(mysql_async::Error::Server(se))) => {
                self.settle(c, status);
                self.reply_err(se.code, &se.state, &se.message);
                Ok(())
            }
            Failed::NotPrepared(BackendError::Mysql(e)) => self.lost(c, &e),
            Failed::NotPrepared(e) => {
                self.settle(c, status);
                self.reply_backend_error(&e);
                Ok(())
            }
            Failed::Server(se) => {
                self.reply_err(se.code, &se.state, &se.message);
                let tx_open = status.contains(StatusFlags::SERVER_STATUS_IN_TRANS);
                self.invalidate_after(st.verdict, st.params, tx_open).await;
                if let Some(fx) = fx {
                    self.note_pin(fx);
                }
                self.settle(c, status);
                Ok(())
            }
            Failed::Driver(d) if fx.is_some() => {
                self.invalidate_after(st.verdict, st.params, false).await;
                self.lost(c, &mysql_async::Error::Driver(d))
            }
            Failed::Driver(d) => {
                self.settle(c, status);
                self.reply_err(
                    1210,
                    "HY000",
                    &format!("Incorrect arguments to mysqld_stmt_execute: {d}"),
                );
                Ok(())
            }
            Failed::TimedOut => {
                // It may still commit: invalidated now, and at its end.
                self.invalidate_after(st.verdict, st.params, true).await;
                self.timed_out(c).await
            }
            Failed::Lost(e) => {
                self.invalidate_after(st.verdict, st.params, false).await;
                self.lost(c, &e)
            }
        }
    }

    /// Streams a backend result to the client (see `relay`).
    pub(super) async fn relay<P: mysql_async::prelude::Protocol>(
        &mut self,
        qr: QueryResult<'_, '_, P>,
    ) -> Result<Relayed, ProtoError> {
        let (mark, flushes) = (self.conn.buf().len(), self.conn.flushes());
        let mut r = Relay::new(&mut self.conn, self.login.caps, self.status);
        let (outcome, insert_id, last) = r.run(qr).await?;
        Ok(Relayed {
            outcome,
            insert_id,
            last,
            cacheable: r.cacheable(),
            mark,
            flushes,
        })
    }

    /// After a relayed result: the final packet with the server's own
    /// status, the cache fill, the write's invalidation. `None` when the
    /// backend connection was lost (the client has its error).
    pub(super) async fn complete(
        &mut self,
        mut c: BackendConn,
        r: Relayed,
        fill: Option<Fill>,
        verdict: &Verdict,
        params: &[Value],
    ) -> Result<Option<(BackendConn, StatusFlags, bool)>, SessionError> {
        // Only a response that ended normally carries the server's flags.
        let status = match r.outcome {
            Outcome::Done => relay::final_status(&c.conn, self.status),
            _ => self.status,
        };
        if let Some(end) = r.last {
            relay::write_end(&mut self.conn, self.login.caps, end, status);
        }
        let done = match r.outcome {
            Outcome::Lost(e) => {
                self.invalidate_after(verdict, params, false).await;
                self.lost(c, &e)?;
                return Ok(None);
            }
            Outcome::Done => true,
            Outcome::ServerError => false,
        };
        if let Some(fill) = fill {
            let delay = self.shared.cache.cfg.fill_delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            self.store_fill(done && r.cacheable, r.mark, r.flushes, fill);
        }
        self.invalidate_after(
            verdict,
            params,
            status.contains(StatusFlags::SERVER_STATUS_IN_TRANS),
        )
        .await;
        self.note_outcome(&mut c, r.insert_id, status);
        Ok(Some((c, status, done)))
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
}

/// A query's start, bounded by `timeout` (zero: unbounded), its errors
/// sorted by what the session must do about them.
async fn bounded<T>(
    timeout: std::time::Duration,
    started: impl std::future::Future<Output = Result<T, mysql_async::Error>>,
) -> Result<T, Failed> {
    let r = if timeout.is_zero() {
        started.await
    } else {
        tokio::time::timeout(timeout, started)
            .await
            .map_err(|_| Failed::TimedOut)?
    };
    r.map_err(|e| match e {
        mysql_async::Error::Server(se) => Failed::Server(se),
        mysql_async::Error::Driver(d) => Failed::Driver(d),
        e => Failed::Lost(e),
    })
}
