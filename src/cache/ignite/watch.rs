//! The subscription to the tokens cache that keeps other proxies' L1 in
//! step (`l2/peers.rs`): an Ignite continuous query over the thin-client
//! protocol.
//!
//! Policy: the query runs on a connection of its own (its notifications
//! are the subscription's, in the order the node sent them), with page size
//! 1 and no time interval, so each change is sent as the node applies it.
//! The stream ends — and the tier treats every L1 hit as unproven until it
//! subscribes again — when that connection dies, the server ends the query,
//! or a frame cannot be decoded. A newer affinity topology reported on any
//! of the pool's connections is passed on as `Notice::Topology`.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::warn;

use super::codec::{self, EntryEvent, Obj};
use super::conn::Conn;
use super::pool::Pool;
use super::IgniteError;
use crate::cache::l2::Notice;

/// Subscribes from the first address that accepts.
pub(super) async fn subscribe(
    pool: &Arc<Pool>,
) -> Result<mpsc::UnboundedReceiver<Notice>, IgniteError> {
    let t = &pool.target;
    let mut last = IgniteError::Unavailable;
    let start = rand::random::<usize>();
    for i in 0..t.addresses.len() {
        let addr = &t.addresses[(start + i) % t.addresses.len()];
        match open(pool, addr).await {
            Ok(rx) => return Ok(rx),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn open(
    pool: &Arc<Pool>,
    addr: &str,
) -> Result<mpsc::UnboundedReceiver<Notice>, IgniteError> {
    let t = &pool.target;
    let c = Conn::connect(addr, &t.dial, pool.topology.clone()).await?;
    let mut frames = c.take_notifications().ok_or(IgniteError::Closed)?;
    let seen = pool.topology.changes();
    let q = codec::continuous_query(pool.tokens_id);
    let payload = tokio::time::timeout(t.dial.timeout, c.call(q))
        .await
        .map_err(|_| IgniteError::Timeout)??;
    let cursor = codec::take_i64(&mut &payload[..])?;
    let (tx, rx) = mpsc::unbounded_channel();
    let topology = pool.topology.clone();
    tokio::spawn(async move {
        let mut seen = seen;
        loop {
            tokio::select! {
                f = frames.recv() => {
                    let Some(frame) = f else { return };
                    match codec::parse_notification(&frame).and_then(|(id, evs)| Ok((id, tokens(evs)?))) {
                        Ok((id, changes)) if id == cursor => {
                            if tx.send(Notice::Tokens(changes)).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            warn!(error = %e, "Ignite continuous query ended");
                            return;
                        }
                    }
                }
                _ = topology.changed_since(seen) => {
                    seen = topology.changes();
                    if tx.send(Notice::Topology).is_err() {
                        return;
                    }
                }
                _ = c.closed() => return,
            }
        }
    });
    Ok(rx)
}

/// Token keys and values of a notification's events.
fn tokens(evs: Vec<EntryEvent>) -> Result<Vec<(i64, Option<i64>)>, IgniteError> {
    evs.into_iter()
        .map(|e| match (e.key, e.value) {
            (Obj::Long(k), Obj::Long(v)) => Ok((k, Some(v))),
            (Obj::Long(k), Obj::Null) => Ok((k, None)),
            _ => Err(IgniteError::Protocol("token event is not long → long")),
        })
        .collect()
}
