//! The shared tier (L2): entries and tag tokens in a store every proxy
//! reaches (Apache Ignite, `cache::ignite`), behind the same freshness
//! protocol as the in-process tier.
//!
//! Policy:
//! * **Tokens live in the store too**, one per tag slot (`Tag::slot`, a
//!   stable hash) plus an epoch (`EPOCH`) that an invalidate-everything
//!   replaces. An invalidation writes fresh random values, so no
//!   read-modify-write is needed and any proxy's write is seen by all.
//! * **A fill is guarded** by the tokens read *before* the backend query
//!   (the same round trip as the lookup that missed); the entry stores them,
//!   and a lookup is a hit only if every stored token equals the current one.
//! * **A missing token never matches.** A token the store lost (eviction,
//!   node loss, restart) is created afresh with a random value, so entries
//!   filled under the old one are stale: losing data costs hit rate only.
//! * **Ordering.** An invalidation is written to the store *before* L1's
//!   token is bumped; a lookup reads L1's guard *before* asking the store. So
//!   an L2 hit can only fill L1 with a value that an L1 bump still covers.
//! * **Outage.** A write's invalidation is delivered before its OK, or the
//!   store was unreachable *after* the write: a put that fails is retried
//!   after `Kv::connect` (which fails only when a connection attempt begun
//!   after the write failed), and a write puts its tokens even while
//!   this proxy counts the tier down (down is one proxy's view: another may
//!   still trust L1 on the tokens cache; a change feed's event is parked at
//!   once instead: every proxy applies the feed itself, and a feed must not
//!   wait on a dial per event). What cannot be delivered
//!   marks the tier down: this proxy stops reading and filling L2 and keeps
//!   the slots (past `MAX_PENDING`, "everything"). A background task
//!   retries with back-off (at most `MAX_BACKOFF`); it writes the pending
//!   tokens (or a new epoch) *before* the tier is trusted again. Reads
//!   that keep failing also mark it down (without pending slots) so a dead
//!   store costs no timeouts per query. So a proxy never sits on an
//!   undelivered invalidation while the store answers: a "down" proxy that
//!   had not yet noticed the store was back was the cause of reads past
//!   `max_lag` in `tests/chaos.rs`.
//! * **Expiry.** Each entry carries its deadline (unix ms, checked on read);
//!   the store may also expire it (Ignite expiry policy per put).
//! * **Other proxies' L1.** `peers.rs`: every token write reaches every
//!   proxy's in-process tokens through a subscription, and an L1 hit is
//!   served unconfirmed only while that subscription is proven current;
//!   otherwise (and always in strict mode) it is confirmed with one read of
//!   its tokens (`confirm`).

#[cfg(test)]
pub(crate) mod mem;
pub mod peers;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tracing::{info, warn};

use super::stats::Histogram;
use super::tokens::TagTokens;
pub use peers::{Coherence, Notice, Peers};

/// Token key of the epoch; slots are 0..SLOTS.
pub const EPOCH: i64 = -1;
/// Undelivered invalidations kept per slot before collapsing to "everything".
pub const MAX_PENDING: usize = 100_000;
/// Consecutive failed reads that mark the tier down.
const READ_FAILURES_DOWN: u32 = 3;
/// Puts of a write's tokens retried on another connection (one that died
/// unnoticed is skipped once it fails).
const PUT_RETRIES: usize = 2;
/// Longest wait between recovery attempts while down.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const MAGIC: &[u8; 3] = b"SC1";

#[derive(Debug, thiserror::Error)]
pub enum L2Error {
    #[error("shared tier unavailable: {0}")]
    Unavailable(String),
    #[error("shared tier timed out")]
    Timeout,
}

pub type KvFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, L2Error>> + Send + 'a>>;

/// What the tier needs from a store: two maps (entries by key bytes, tokens
/// by `i64`), each call one round trip.
pub trait Kv: Send + Sync + 'static {
    /// The entry under `key` and the tokens under `tokens` (None: absent).
    fn read(&self, key: Bytes, tokens: Vec<i64>)
        -> KvFuture<'_, (Option<Bytes>, Vec<Option<i64>>)>;
    /// Sets each absent token to its candidate; returns the values now held.
    fn create_tokens(&self, tokens: Vec<(i64, i64)>) -> KvFuture<'_, Vec<i64>>;
    /// Overwrites tokens.
    fn put_tokens(&self, tokens: Vec<(i64, i64)>) -> KvFuture<'_, ()>;
    /// Stores an entry; `ttl` lets the store expire it too.
    fn put_entry(&self, key: Bytes, value: Bytes, ttl: Duration) -> KvFuture<'_, ()>;
    /// Returns once a connection is live, or fails once a connection
    /// attempt begun after the call has failed (the store was unreachable
    /// after this moment). Stores without connections: at once.
    fn connect(&self) -> KvFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    /// A round trip proving the store answers.
    fn ping(&self) -> KvFuture<'_, ()>;
    /// The current values of `tokens` (None: absent), one round trip.
    fn tokens(&self, tokens: Vec<i64>) -> KvFuture<'_, Vec<Option<i64>>>;
    /// Subscribes to every change of the tokens; the stream ends when the
    /// subscription is lost.
    fn watch(&self) -> KvFuture<'_, tokio::sync::mpsc::UnboundedReceiver<Notice>>;
    /// Keys from `base` on (fewer than `peers::BEAT_SPAN`) that together
    /// reach every node holding tokens: one per primary node when the
    /// store knows its partition map.
    fn beat_keys(&self, base: i64) -> Vec<i64>;
    /// Writes heartbeat keys (the store may expire them).
    fn beat(&self, keys: Vec<(i64, i64)>) -> KvFuture<'_, ()>;
    /// Single-key requests sent to their key's primary node, and those
    /// sent anywhere (stores without partitions: none).
    fn routing(&self) -> (u64, u64) {
        (0, 0)
    }
}

/// How hard an invalidation tries before it is parked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// A write's, before its OK: put even while down, retried on a fresh
    /// connection (module policy: Outage).
    BeforeOk,
    /// A feed's: one put while up; parked at once while down.
    Park,
}

/// Tokens an L2 fill was guarded by, in slot order, epoch last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Guard(Vec<(i64, i64)>);

/// Result of an L2 lookup.
#[derive(Debug)]
pub enum L2Lookup {
    Hit {
        response: Bytes,
        ttl_left: Duration,
        /// The tokens the entry was filled under (what an L1 copy confirms).
        guard: L2Guard,
    },
    /// Not servable; fill with this guard if one could be read.
    Miss(Option<L2Guard>),
    /// The tier is down or disabled for this proxy: neither read nor fill.
    Skipped,
}

#[derive(Default)]
pub struct L2Stats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub stale: AtomicU64,
    pub skipped: AtomicU64,
    pub read_errors: AtomicU64,
    pub fills: AtomicU64,
    pub fill_errors: AtomicU64,
    pub invalidations: AtomicU64,
    pub invalidation_errors: AtomicU64,
    pub recoveries: AtomicU64,
    pub epoch_bumps: AtomicU64,
    /// L1 hits confirmed against the tier's tokens, and those refused.
    pub confirmed: AtomicU64,
    pub unconfirmed: AtomicU64,
    pub lookup: Histogram,
    pub confirm: Histogram,
}

#[derive(Debug, Clone)]
pub struct L2Config {
    /// Budget of a lookup (entry + tokens, one round trip).
    pub timeout: Duration,
    /// Budget of an invalidation before the tier is marked down.
    pub write_timeout: Duration,
    /// Cap on an entry's lifetime in the tier (None: the entry's own TTL).
    pub ttl: Option<Duration>,
    /// How other proxies' invalidations reach this proxy's L1.
    pub coherence: Coherence,
}

/// Undelivered invalidations while down.
#[derive(Default)]
struct Pending {
    slots: HashSet<u32>,
    everything: bool,
}

pub struct L2 {
    kv: Arc<dyn Kv>,
    cfg: L2Config,
    /// Readable without a lock on every lookup; written under `pending`.
    up: AtomicBool,
    pending: Mutex<Pending>,
    recovering: AtomicBool,
    read_failures: AtomicU32,
    rt: tokio::runtime::Handle,
    pub stats: L2Stats,
    /// Cross-proxy coherence of L1 (`peers.rs`).
    pub peers: Peers,
    /// This process's L1 tokens, once a cache is attached.
    local: OnceLock<Arc<TagTokens>>,
}

impl L2 {
    /// A tier over `kv`, down until a first round trip succeeds (spawned on
    /// the current runtime, which also runs fills and recovery).
    pub fn new(kv: Arc<dyn Kv>, cfg: L2Config) -> Arc<L2> {
        let l2 = Arc::new(L2 {
            kv,
            cfg,
            up: AtomicBool::new(false),
            pending: Mutex::default(),
            recovering: AtomicBool::new(false),
            read_failures: AtomicU32::new(0),
            rt: tokio::runtime::Handle::current(),
            stats: L2Stats::default(),
            peers: Peers::new(),
            local: OnceLock::new(),
        });
        l2.recover();
        l2
    }

    /// Connects the tier to the L1 tokens it keeps coherent (once); in
    /// events mode this starts the subscription.
    pub fn attach(self: &Arc<Self>, tokens: Arc<TagTokens>) {
        if self.local.set(tokens.clone()).is_err() {
            return;
        }
        if let Coherence::Events { max_lag, heartbeat } = self.cfg.coherence {
            self.rt
                .spawn(peers::run(self.clone(), tokens, max_lag, heartbeat));
        }
    }

    /// Whether an L1 hit may be served without confirming it here.
    pub fn l1_trusted(&self) -> bool {
        self.peers.gate.is_open()
    }

    /// The store's routing counters (`Kv::routing`).
    pub fn routing(&self) -> (u64, u64) {
        self.kv.routing()
    }

    pub fn coherence(&self) -> Coherence {
        self.cfg.coherence
    }

    /// Confirms an L1 copy: true if every token it was filled under is
    /// still current in the tier (one round trip, bounded by `timeout`).
    pub async fn confirm(self: &Arc<Self>, guard: &L2Guard) -> bool {
        if !self.is_up() {
            self.stats.unconfirmed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let started = std::time::Instant::now();
        let keys: Vec<i64> = guard.0.iter().map(|(k, _)| *k).collect();
        let read = self.kv.tokens(keys);
        let ok = match self.bounded(read, self.cfg.timeout).await {
            Ok(current) => {
                self.read_failures.store(0, Ordering::Relaxed);
                current.len() == guard.0.len()
                    && guard
                        .0
                        .iter()
                        .zip(&current)
                        .all(|((_, t), c)| Some(*t) == *c)
            }
            Err(e) => {
                self.read_failed(&e);
                false
            }
        };
        self.stats.confirm.observe(started.elapsed());
        let counter = if ok {
            &self.stats.confirmed
        } else {
            &self.stats.unconfirmed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        ok
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Slots (plus "everything") waiting to be delivered.
    pub fn pending(&self) -> (usize, bool) {
        let p = self.pending.lock().unwrap();
        (p.slots.len(), p.everything)
    }

    /// Looks `key` up under the tags hashed to `slots`; on a miss returns
    /// the guard to fill with (tokens read now, before the backend query).
    pub async fn lookup(self: &Arc<Self>, key: &[u8], slots: &[u32]) -> L2Lookup {
        if !self.is_up() {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            return L2Lookup::Skipped;
        }
        let started = std::time::Instant::now();
        let keys: Vec<i64> = slots.iter().map(|&s| s as i64).chain([EPOCH]).collect();
        let read = self.kv.read(Bytes::copy_from_slice(key), keys.clone());
        let (entry, current) = match self.bounded(read, self.cfg.timeout).await {
            Ok(r) => {
                self.read_failures.store(0, Ordering::Relaxed);
                r
            }
            Err(e) => {
                self.read_failed(&e);
                return L2Lookup::Miss(None);
            }
        };
        self.stats.lookup.observe(started.elapsed());
        if let Some(value) = entry {
            let now = now_ms();
            match decode(&value) {
                Some(e) if e.is_fresh(&keys, &current, now) => {
                    self.stats.hits.fetch_add(1, Ordering::Relaxed);
                    return L2Lookup::Hit {
                        ttl_left: Duration::from_millis(e.deadline_ms.saturating_sub(now)),
                        response: value.slice_ref(e.response),
                        guard: L2Guard(e.tokens),
                    };
                }
                _ => self.stats.stale.fetch_add(1, Ordering::Relaxed),
            };
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        L2Lookup::Miss(self.guard(keys, current).await)
    }

    /// Completes a guard: tokens the store does not hold are created first
    /// (a missing token never guards a fill).
    async fn guard(self: &Arc<Self>, keys: Vec<i64>, current: Vec<Option<i64>>) -> Option<L2Guard> {
        let absent: Vec<(i64, i64)> = keys
            .iter()
            .zip(&current)
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| (*k, fresh_token()))
            .collect();
        let mut created = if absent.is_empty() {
            Vec::new()
        } else {
            // Our candidates' echoes are ours: they must not flush our L1.
            self.peers.wrote(&absent);
            let f = self.kv.create_tokens(absent);
            match self.bounded(f, self.cfg.timeout).await {
                Ok(v) => v,
                Err(e) => {
                    self.read_failed(&e);
                    return None;
                }
            }
        }
        .into_iter();
        let pairs = keys
            .into_iter()
            .zip(current)
            .map(|(k, v)| Some((k, v.or_else(|| created.next())?)))
            .collect::<Option<Vec<_>>>()?;
        Some(L2Guard(pairs))
    }

    /// Stores a response filled under `guard`, in the background.
    pub fn fill(self: &Arc<Self>, key: &[u8], response: &[u8], guard: L2Guard, ttl: Duration) {
        if !self.is_up() {
            return;
        }
        let ttl = self.cfg.ttl.map_or(ttl, |cap| ttl.min(cap));
        let value = encode(now_ms() + ttl.as_millis() as u64, &guard, response);
        let key = Bytes::copy_from_slice(key);
        let me = self.clone();
        self.rt.spawn(async move {
            let put = me.kv.put_entry(key, value, ttl);
            match me.bounded(put, me.cfg.write_timeout).await {
                Ok(()) => me.stats.fills.fetch_add(1, Ordering::Relaxed),
                Err(_) => me.stats.fill_errors.fetch_add(1, Ordering::Relaxed),
            };
        });
    }

    /// Delivers an invalidation (call *before* bumping L1), within
    /// `write_timeout`. On failure the tier is down for this proxy until the
    /// slots are delivered.
    pub async fn invalidate(self: &Arc<Self>, slots: &[u32], everything: bool) {
        self.invalidate_as(slots, everything, Delivery::BeforeOk)
            .await
    }

    async fn invalidate_as(self: &Arc<Self>, slots: &[u32], everything: bool, how: Delivery) {
        if slots.is_empty() && !everything {
            return;
        }
        self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
        let deliver = self.deliver(slots, everything, how);
        let delivered = self.bounded(deliver, self.cfg.write_timeout);
        if let Err(e) = delivered.await {
            self.stats
                .invalidation_errors
                .fetch_add(1, Ordering::Relaxed);
            warn!(error = %e, "shared tier missed an invalidation: not used until it is delivered");
            self.down(slots, everything);
        }
        if everything {
            self.stats.epoch_bumps.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes fresh tokens for `slots` (a feed's are only parked while
    /// down). A write's are put even while this proxy counts the tier down:
    /// "down" is this proxy's view (a read failed, the entries cache is
    /// missing) while other proxies may still trust L1 on the tokens alone.
    /// A failed put is retried (`PUT_RETRIES`), each time once
    /// `Kv::connect` has a connection (its failure: unreachable since the
    /// write).
    fn deliver<'a>(
        self: &'a Arc<Self>,
        slots: &'a [u32],
        everything: bool,
        how: Delivery,
    ) -> KvFuture<'a, ()> {
        Box::pin(async move {
            // While down they are parked as well: recovery writes them again
            // (fresh values: harmless) with everything else it holds.
            if self.park(slots, everything) && how == Delivery::Park {
                return Ok(());
            }
            let tokens = new_tokens(slots.iter().copied(), everything);
            self.peers.wrote(&tokens);
            let mut retries = 0;
            loop {
                match self.kv.put_tokens(tokens.clone()).await {
                    Ok(()) => return Ok(()),
                    Err(e) if retries == PUT_RETRIES || how == Delivery::Park => return Err(e),
                    Err(_) => retries += 1,
                }
                self.kv.connect().await?;
            }
        })
    }

    /// `invalidate` for threads outside the runtime (the change feeds):
    /// waits for it, at most `write_timeout` plus a margin, then marks the
    /// tier down if it did not finish. A feed's change is applied by every
    /// proxy itself, so it is parked at once while down (`Delivery::Park`):
    /// a feed is never slowed to one connection attempt per event.
    pub fn invalidate_blocking(self: &Arc<Self>, slots: &[u32], everything: bool) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let me = self.clone();
        let owned = slots.to_vec();
        self.rt.spawn(async move {
            me.invalidate_as(&owned, everything, Delivery::Park).await;
            let _ = tx.send(());
        });
        if rx
            .recv_timeout(self.cfg.write_timeout + Duration::from_millis(100))
            .is_err()
        {
            self.down(slots, everything);
        }
    }

    /// Records undelivered slots if the tier is down; false if it is up.
    fn park(&self, slots: &[u32], everything: bool) -> bool {
        let mut p = self.pending.lock().unwrap();
        if self.up.load(Ordering::SeqCst) {
            return false;
        }
        add(&mut p, slots, everything);
        true
    }

    fn down(self: &Arc<Self>, slots: &[u32], everything: bool) {
        {
            let mut p = self.pending.lock().unwrap();
            self.up.store(false, Ordering::SeqCst);
            add(&mut p, slots, everything);
        }
        self.recover();
    }

    fn read_failed(self: &Arc<Self>, e: &L2Error) {
        self.stats.read_errors.fetch_add(1, Ordering::Relaxed);
        if self.read_failures.fetch_add(1, Ordering::Relaxed) + 1 >= READ_FAILURES_DOWN {
            warn!(error = %e, "shared tier failing reads: skipped until it answers again");
            self.down(&[], false);
        }
    }

    /// Starts the recovery task unless it runs.
    fn recover(self: &Arc<Self>) {
        if self.recovering.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        self.rt.spawn(async move {
            let mut backoff = Duration::from_millis(50);
            loop {
                if me.try_recover().await {
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            me.recovering.store(false, Ordering::SeqCst);
            // A failure between the last check and the flag reset restarts it.
            if !me.is_up() {
                me.recover();
            }
        });
    }

    /// One recovery attempt: deliver what is pending, then trust the tier.
    /// Each run removes only the slots it delivered (slots parked
    /// meanwhile wait for the next round of its loop).
    async fn try_recover(&self) -> bool {
        let answers = Box::pin(async {
            self.kv.connect().await?;
            self.kv.ping().await
        });
        if self.bounded(answers, self.cfg.write_timeout).await.is_err() {
            return false;
        }
        loop {
            let (slots, everything) = {
                let p = self.pending.lock().unwrap();
                (p.slots.iter().copied().collect::<Vec<_>>(), p.everything)
            };
            if !slots.is_empty() || everything {
                // Past MAX_PENDING the epoch covers everything anyway.
                let tokens = new_tokens(slots.iter().copied(), everything);
                self.peers.wrote(&tokens);
                let put = self.kv.put_tokens(tokens);
                if self.bounded(put, self.cfg.write_timeout).await.is_err() {
                    return false;
                }
                if everything {
                    self.stats.epoch_bumps.fetch_add(1, Ordering::Relaxed);
                }
            }
            let mut p = self.pending.lock().unwrap();
            for s in &slots {
                p.slots.remove(s);
            }
            if everything {
                p.everything = false;
            }
            if p.slots.is_empty() && !p.everything {
                self.read_failures.store(0, Ordering::Relaxed);
                self.up.store(true, Ordering::SeqCst);
                self.stats.recoveries.fetch_add(1, Ordering::Relaxed);
                info!(
                    delivered = slots.len(),
                    everything, "shared tier up: pending invalidations delivered"
                );
                return true;
            }
        }
    }

    async fn bounded<T>(&self, f: KvFuture<'_, T>, budget: Duration) -> Result<T, L2Error> {
        match tokio::time::timeout(budget, f).await {
            Ok(r) => r,
            Err(_) => Err(L2Error::Timeout),
        }
    }
}

fn add(p: &mut Pending, slots: &[u32], everything: bool) {
    if everything || p.slots.len() + slots.len() > MAX_PENDING {
        p.everything = true;
        p.slots.clear();
    } else if !p.everything {
        p.slots.extend(slots);
    }
}

fn new_tokens(slots: impl Iterator<Item = u32>, everything: bool) -> Vec<(i64, i64)> {
    slots
        .map(|s| (s as i64, fresh_token()))
        .chain(everything.then(|| (EPOCH, fresh_token())))
        .collect()
}

/// A random non-zero token.
fn fresh_token() -> i64 {
    loop {
        let t: i64 = rand::random();
        if t != 0 {
            return t;
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An entry as stored: `"SC1"`, `u64` deadline (unix ms), `u16` n, n ×
/// (`i64` token key, `i64` token), then the response bytes; little-endian.
pub fn encode(deadline_ms: u64, guard: &L2Guard, response: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(13 + guard.0.len() * 16 + response.len());
    b.put_slice(MAGIC);
    b.put_u64_le(deadline_ms);
    b.put_u16_le(guard.0.len() as u16);
    for (k, v) in &guard.0 {
        b.put_i64_le(*k);
        b.put_i64_le(*v);
    }
    b.put_slice(response);
    b.freeze()
}

struct Decoded<'a> {
    deadline_ms: u64,
    tokens: Vec<(i64, i64)>,
    response: &'a [u8],
}

impl Decoded<'_> {
    /// Unexpired, guarded by exactly `keys`, and every token unchanged.
    fn is_fresh(&self, keys: &[i64], current: &[Option<i64>], now: u64) -> bool {
        now < self.deadline_ms
            && self.tokens.len() == keys.len()
            && current.len() == keys.len()
            && self
                .tokens
                .iter()
                .zip(keys.iter().zip(current))
                .all(|((k, t), (key, cur))| k == key && Some(*t) == *cur)
    }
}

fn decode(v: &[u8]) -> Option<Decoded<'_>> {
    let mut b = v.strip_prefix(MAGIC)?;
    if b.len() < 10 {
        return None;
    }
    let deadline_ms = b.get_u64_le();
    let n = b.get_u16_le() as usize;
    if b.len() < n * 16 {
        return None;
    }
    let tokens = (0..n).map(|_| (b.get_i64_le(), b.get_i64_le())).collect();
    Some(Decoded {
        deadline_ms,
        tokens,
        response: b,
    })
}

#[cfg(test)]
mod tests;
