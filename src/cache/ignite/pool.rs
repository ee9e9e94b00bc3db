//! Connections to every configured node, and which one a request goes to.
//!
//! Policy: each address has `pool_size` pipelined connections, each dialled
//! in the background and redialled with back-off the moment it dies; a call
//! never waits for a dial (no live connection: it fails at once and the
//! tier skips L2). Only `connect_now` waits: it wakes every dialer out of
//! its back-off and returns once a connection is live, or once every slot
//! has failed an attempt begun after the call (so a failure it reports is
//! evidence the cluster was unreachable *after* the caller's moment, which
//! the write path relies on: `l2::L2::invalidate`).
//!
//! A single-key request goes to a live connection whose
//! node (handshake id) is the key's primary in the current partition map
//! (`affinity.rs`); with no map, a map older than the topology the server
//! last reported, or no connection to that node, it goes to any live
//! connection, round-robin, and Ignite forwards it: slower, never wrong.
//! The map is read once connected, again whenever a response says the
//! topology changed, and every `MAP_REFRESH` regardless.
//!
//! Caches are created (OP_CACHE_GET_OR_CREATE_WITH_NAME) only by
//! `ensure_caches`, only when an operation shows one missing, and never on
//! a node this pool first reached less than `CREATE_SETTLE` ago: Apache
//! Ignite 2.18 can abort its own start when a cache is created while its
//! first exchange runs (apache/ignite#12621). Measured here: creating
//! caches every 5 ms from four clients while a node restarts made its start
//! fail every time (six in a row), every 200 ms twice in seven starts;
//! handshakes alone every 5 ms, never in six; asking the cluster state
//! (ACTIVE throughout) or the partition map first did not tell a starting
//! node from a started one. Until then the tier fails over a missing cache
//! (no proxy can use it either: nothing is stale).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use super::affinity::{self, NodeId, PartitionMap};
use super::codec::{self, Request};
use super::conn::{Conn, Topology};
use super::{IgniteError, Target};

/// Re-read the partition map at least this often.
const MAP_REFRESH: Duration = Duration::from_secs(10);
/// A node is left this long after this pool first reached it before the
/// pool creates caches on it (apache/ignite#12621: starts that failed took
/// 3–4 s here on a loaded machine, so 2 s was not enough).
pub const CREATE_SETTLE: Duration = Duration::from_secs(10);
/// Ignite's status for an operation on a cache that does not exist.
const CACHE_DOES_NOT_EXIST: i32 = 1000;

pub(super) struct Pool {
    pub target: Target,
    pub entries_id: i32,
    pub tokens_id: i32,
    endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    pub topology: Arc<Topology>,
    map: Mutex<Option<Arc<PartitionMap>>>,
    /// Single-key requests sent to their primary, and those sent anywhere.
    pub routed: AtomicU64,
    pub unrouted: AtomicU64,
    /// Dial attempts begun (each attempt's number is its value before).
    begun: AtomicU64,
    /// Bumped whenever a dial attempt ends, either way.
    ended: watch::Sender<u64>,
    /// Per address, the node last reached there (handshake id) and when
    /// this pool first reached it: a restarted node has a new id.
    seen: Mutex<HashMap<String, (Option<NodeId>, Instant)>>,
}

struct Endpoint {
    addr: String,
    slots: Vec<Slot>,
}

#[derive(Default)]
struct Slot {
    conn: Mutex<Option<Arc<Conn>>>,
    dialing: AtomicBool,
    /// Wakes its dialer out of a back-off sleep.
    wake: Notify,
    /// 1 + the number of this slot's last failed attempt (0: none yet).
    failed: AtomicU64,
}

impl Pool {
    /// Starts dialling every connection and following the partition map.
    pub fn start(target: Target) -> Arc<Pool> {
        let n = target.pool_size.max(1);
        let pool = Arc::new(Pool {
            entries_id: codec::java_hash(&target.cache_name),
            tokens_id: codec::java_hash(&target.tokens_cache_name),
            endpoints: target
                .addresses
                .iter()
                .map(|a| Endpoint {
                    addr: a.clone(),
                    slots: (0..n).map(|_| Slot::default()).collect(),
                })
                .collect(),
            next: AtomicUsize::new(0),
            topology: Arc::default(),
            map: Mutex::new(None),
            routed: AtomicU64::new(0),
            unrouted: AtomicU64::new(0),
            begun: AtomicU64::new(0),
            ended: watch::Sender::new(0),
            seen: Mutex::default(),
            target,
        });
        for e in 0..pool.endpoints.len() {
            for s in 0..n {
                Pool::dial(&pool, e, s);
            }
        }
        tokio::spawn(follow_map(Arc::downgrade(&pool)));
        pool
    }

    fn live(&self, e: usize, s: usize) -> Option<Arc<Conn>> {
        let g = self.endpoints[e].slots[s].conn.lock().unwrap();
        g.as_ref().filter(|c| c.is_alive()).cloned()
    }

    /// A live connection, round-robin over every node; kicks a redial of
    /// dead ones it passes.
    pub fn any(self: &Arc<Self>) -> Result<Arc<Conn>, IgniteError> {
        let per = self.target.pool_size.max(1);
        let n = self.endpoints.len() * per;
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let idx = (start + i) % n;
            let (e, s) = (idx % self.endpoints.len(), idx / self.endpoints.len());
            match self.live(e, s) {
                Some(c) => return Ok(c),
                None => Pool::dial(self, e, s),
            }
        }
        Err(IgniteError::Unavailable)
    }

    /// The connection for a single-key request on `cache_id` whose key has
    /// Java hash `hash`: its primary's when known, else any.
    pub fn to_primary(
        self: &Arc<Self>,
        cache_id: i32,
        hash: i32,
    ) -> Result<Arc<Conn>, IgniteError> {
        if let Some(c) = self.primary(cache_id, hash).and_then(|n| self.to_node(n)) {
            self.routed.fetch_add(1, Ordering::Relaxed);
            return Ok(c);
        }
        self.unrouted.fetch_add(1, Ordering::Relaxed);
        self.any()
    }

    /// The primary node of a key, if the map is current.
    pub fn primary(&self, cache_id: i32, hash: i32) -> Option<NodeId> {
        self.current_map()?.primary(cache_id, hash)
    }

    /// The partition map, if it is as new as the topology last reported.
    pub fn current_map(&self) -> Option<Arc<PartitionMap>> {
        let m = self.map.lock().unwrap().clone()?;
        (m.version >= self.topology.latest()).then_some(m)
    }

    fn to_node(&self, node: NodeId) -> Option<Arc<Conn>> {
        let per = self.target.pool_size.max(1);
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for e in 0..self.endpoints.len() {
            for i in 0..per {
                let s = (start + i) % per;
                if let Some(c) = self.live(e, s).filter(|c| c.node == Some(node)) {
                    return Some(c);
                }
            }
        }
        None
    }

    /// The address of a live connection to `node` (diagnostics, tests).
    pub fn addr_of(&self, node: NodeId) -> Option<String> {
        self.to_node(node).map(|c| c.addr.clone())
    }

    /// How many connections are live.
    pub fn live_connections(&self) -> usize {
        let per = self.target.pool_size.max(1);
        (0..self.endpoints.len())
            .flat_map(|e| (0..per).map(move |s| (e, s)))
            .filter(|&(e, s)| self.live(e, s).is_some())
            .count()
    }

    /// Waits until a connection is live, waking every dialer now; fails
    /// once every slot has failed a dial attempt begun after this call.
    /// Callers bound it (a dial lasts up to `dial.timeout`).
    pub async fn connect_now(self: &Arc<Self>) -> Result<(), IgniteError> {
        let mut ended = self.ended.subscribe();
        let since = self.begun.load(Ordering::SeqCst);
        let slots = || {
            self.endpoints
                .iter()
                .enumerate()
                .flat_map(|(e, ep)| (0..ep.slots.len()).map(move |s| (e, s)))
        };
        for (e, s) in slots() {
            Pool::kick(self, e, s);
        }
        loop {
            ended.borrow_and_update();
            if self.live_connections() > 0 {
                return Ok(());
            }
            let failed = |(e, s): (usize, usize)| {
                self.endpoints[e].slots[s].failed.load(Ordering::SeqCst) > since
            };
            if slots().all(failed) {
                return Err(IgniteError::Unavailable);
            }
            if ended.changed().await.is_err() {
                return Err(IgniteError::Unavailable);
            }
        }
    }

    /// `dial`, or if that slot's dialer sleeps out a back-off, wakes it.
    fn kick(me: &Arc<Self>, e: usize, s: usize) {
        if me.live(e, s).is_none() {
            me.endpoints[e].slots[s].wake.notify_one();
            Pool::dial(me, e, s);
        }
    }

    /// Dials slot `s` of endpoint `e` in the background until it connects.
    fn dial(me: &Arc<Self>, e: usize, s: usize) {
        let slot = &me.endpoints[e].slots[s];
        if slot.dialing.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = me.clone();
        tokio::spawn(async move {
            let addr = me.endpoints[e].addr.clone();
            let slot = &me.endpoints[e].slots[s];
            let mut backoff = Duration::from_millis(50);
            loop {
                let attempt = me.begun.fetch_add(1, Ordering::SeqCst);
                match Conn::connect(&addr, &me.target.dial, me.topology.clone()).await {
                    Ok(c) => {
                        info!(%addr, version = %c.version, slot = s, "connected to Ignite");
                        me.reached(&c);
                        let c = Arc::new(c);
                        *slot.conn.lock().unwrap() = Some(c.clone());
                        me.ended.send_modify(|n| *n += 1);
                        // Redial as soon as it dies, not at the next call.
                        let watch = Arc::downgrade(&me);
                        tokio::spawn(async move {
                            c.closed().await;
                            if let Some(me) = watch.upgrade() {
                                warn!(addr = %c.addr, slot = s, "Ignite connection lost; redialling");
                                Pool::dial(&me, e, s);
                            }
                        });
                        break;
                    }
                    Err(err) => {
                        slot.failed.store(attempt + 1, Ordering::SeqCst);
                        me.ended.send_modify(|n| *n += 1);
                        if s == 0 {
                            warn!(%addr, error = %err, "cannot reach Ignite; retrying");
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = slot.wake.notified() => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            slot.dialing.store(false, Ordering::SeqCst);
        });
    }

    async fn read_map(self: &Arc<Self>) -> Result<PartitionMap, IgniteError> {
        let c = self.any()?;
        if !c.version.has_partitions() {
            return Err(IgniteError::Protocol("server too old for partition maps"));
        }
        let r = Request::new(codec::OP_CACHE_PARTITIONS)
            .int(2)
            .int(self.entries_id)
            .int(self.tokens_id);
        let payload = tokio::time::timeout(self.target.dial.timeout, c.call(r))
            .await
            .map_err(|_| IgniteError::Timeout)??;
        affinity::parse_partitions(&payload)
    }
}

/// Keeps the partition map current while the pool lives.
async fn follow_map(pool: std::sync::Weak<Pool>) {
    let mut seen = None;
    loop {
        let Some(p) = pool.upgrade() else { return };
        let changes = p.topology.changes();
        if seen != Some(changes) || p.current_map().is_none() {
            match p.read_map().await {
                Ok(m) => {
                    info!(version = ?m.version, entries = m.partitions(p.entries_id),
                        tokens = m.partitions(p.tokens_id), "Ignite partition map");
                    *p.map.lock().unwrap() = Some(Arc::new(m));
                    seen = Some(changes);
                    if p.current_map().is_none() {
                        // The server answered for an older topology than
                        // one already reported: ask again shortly.
                        drop(p);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
                Err(_) => {
                    drop(p);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let topology = p.topology.clone();
        drop(p);
        tokio::select! {
            _ = topology.changed_since(changes) => {}
            _ = tokio::time::sleep(MAP_REFRESH) => seen = None,
        }
    }
}

impl Pool {
    /// Notes when this pool first reached `c`'s node at its address (a
    /// restarted node has a new id, so its clock starts again).
    fn reached(&self, c: &Conn) {
        let mut seen = self.seen.lock().unwrap();
        if seen.get(&c.addr).is_none_or(|(node, _)| *node != c.node) {
            seen.insert(c.addr.clone(), (c.node, Instant::now()));
        }
    }

    /// Whether `c`'s node was first reached `CREATE_SETTLE` ago or more.
    fn settled(&self, c: &Conn) -> bool {
        match self.seen.lock().unwrap().get(&c.addr) {
            Some(&(node, at)) => node == c.node && at.elapsed() >= CREATE_SETTLE,
            None => false,
        }
    }

    /// Checks both caches answer on `c`; creates them if one is missing
    /// and `c`'s node was first reached `CREATE_SETTLE` ago or more.
    pub async fn ensure_caches(&self, c: &Conn) -> Result<(), IgniteError> {
        let probes = vec![
            Request::cache(codec::OP_CACHE_GET, self.tokens_id, None).long(i64::MIN),
            Request::cache(codec::OP_CACHE_GET, self.entries_id, None).bytes(b"?"),
        ];
        let answers = tokio::time::timeout(self.target.dial.timeout, c.call_many(probes))
            .await
            .map_err(|_| IgniteError::Timeout)??;
        let mut missing = false;
        for a in answers {
            match a {
                Ok(_) => {}
                Err(IgniteError::Server { status, .. }) if status == CACHE_DOES_NOT_EXIST => {
                    missing = true
                }
                Err(e) => return Err(e),
            }
        }
        if !missing {
            return Ok(());
        }
        if !self.settled(c) {
            return Err(IgniteError::Protocol(
                "caches missing; node too new to create them",
            ));
        }
        create_caches(c, &self.target).await
    }
}

/// OP_CACHE_GET_OR_CREATE_WITH_NAME for both caches.
pub(super) async fn create_caches(c: &Conn, t: &Target) -> Result<(), IgniteError> {
    let reqs = [&t.cache_name, &t.tokens_cache_name]
        .into_iter()
        .map(|n| Request::new(codec::OP_CACHE_GET_OR_CREATE_WITH_NAME).string(n))
        .collect();
    for r in tokio::time::timeout(t.dial.timeout, c.call_many(reqs))
        .await
        .map_err(|_| IgniteError::Timeout)??
    {
        r?;
    }
    Ok(())
}
