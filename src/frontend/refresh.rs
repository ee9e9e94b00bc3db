//! The refresher: runs `cache::Recipe`s headless, so hot rows of
//! `on_change = "refresh"` tables are filled again right after a change feed
//! invalidated them (policy in `cache::refresh`).
//!
//! Policy: a refresh is an ordinary guarded fill — tokens read before the
//! query, the response relayed by the same `Relay` code a session uses into a
//! buffer instead of a socket (so the bytes equal what a session would have
//! stored), stored only if exactly one row set without warnings, small
//! enough, and still fresh. It never runs while the feed gate is closed, it
//! joins the key's in-flight miss instead of running beside it, and at most
//! `cache.refresh_concurrency` run at once, each on a pooled backend
//! connection of the entry's own account, within `backend.query_timeout`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use mysql_async::prelude::Queryable;
use tokio::sync::{mpsc, Semaphore};
use tracing::debug;

use super::packet::PacketConn;
use super::relay::{self, Outcome, Relay};
use super::session::Shared;
use crate::backend::PoolKey;
use crate::cache::Recipe;

/// Serves refresh requests until the queue closes.
pub async fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<Arc<Recipe>>) {
    let slots = Arc::new(Semaphore::new(shared.cfg.cache.refresh_concurrency.max(1)));
    while let Some(r) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let stats = &shared.cache.refresh.stats;
            match refresh(&shared, &r).await {
                Ok(true) => stats.done.fetch_add(1, Ordering::Relaxed),
                Ok(false) => 0,
                Err(why) => {
                    debug!(reason = %why, "refresh failed");
                    stats.failed.fetch_add(1, Ordering::Relaxed)
                }
            };
        });
    }
}

/// One headless fill; Ok(false) when someone else is filling the key or
/// the cache may not be filled now.
async fn refresh(shared: &Shared, r: &Arc<Recipe>) -> Result<bool, String> {
    let cache = &shared.cache;
    if !cache.gate.is_open() {
        return Ok(false);
    }
    let Some(_flight) = cache.join_flight(&r.key).await else {
        return Ok(false);
    };
    let timeout = shared.cfg.backend.query_timeout;
    let run = fill(shared, r);
    let response = if timeout.is_zero() {
        run.await?
    } else {
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))??
    };
    let (bytes, guard) = response;
    if cache.generation() != r.generation {
        // Reloaded since this entry's rule was read (`cache::tuning`).
        return Ok(false);
    }
    let entry = crate::cache::Entry {
        response: bytes,
        guard,
        l2: None,
        ttl: r.ttl,
        recipe: Some(r.clone()),
        shape: crate::cache::UNKNOWN_SHAPE,
        table: r.table.clone(),
    };
    if cache.insert_entry(r.key.clone(), entry) {
        Ok(true)
    } else {
        Err("raced a newer change (or too large)".into())
    }
}

async fn fill(shared: &Shared, r: &Recipe) -> Result<(Bytes, crate::cache::Guard), String> {
    let key = PoolKey {
        user: r.user.clone(),
        found_rows: r.found_rows,
    };
    let mut c = shared
        .backend
        .acquire(&key, &r.password, r.vars.db.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        c.sync(&r.vars, false).await.map_err(|e| e.to_string())?;
        let guard = shared.cache.tokens.guard(&r.tags);
        let sink = tokio::io::join(tokio::io::empty(), tokio::io::sink());
        let mut out = PacketConn::new(sink, usize::MAX);
        // A response's first packet follows the command (sequence 0).
        out.set_seq(1);
        let mut relay = Relay::new(&mut out, r.caps, r.status);
        let (outcome, _, last) = if let Some(params) = &r.params {
            let stmt = c
                .statement(r.vars.db.as_deref(), &r.sql)
                .await
                .map_err(|e| e.to_string())?;
            let qr = c
                .conn
                .exec_iter_encoded(&stmt.stmt, params)
                .await
                .map_err(|e| e.to_string())?;
            relay.run(qr).await
        } else {
            let qr = c
                .conn
                .query_iter(&r.sql[..])
                .await
                .map_err(|e| e.to_string())?;
            relay.run(qr).await
        }
        .map_err(|e| e.to_string())?;
        let cacheable = relay.cacheable();
        match outcome {
            Outcome::Done => {}
            Outcome::ServerError => return Err("server error".to_string()),
            Outcome::Lost(e) => return Err(e.to_string()),
        }
        let status = relay::final_status(&c.conn, r.status);
        if let Some(end) = last {
            relay::write_end(&mut out, r.caps, end, status);
        }
        if !cacheable || out.flushes() != 0 {
            return Err("answer not cacheable".to_string());
        }
        Ok((Bytes::copy_from_slice(out.buf()), guard))
    }
    .await;
    match &result {
        Ok(_) => shared.backend.release(c),
        // The connection's state is unknown after a failure: do not reuse.
        Err(_) => drop(c),
    }
    result
}
