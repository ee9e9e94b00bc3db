//! The point-read cache: entries, keys, fills, coalescing, table rules.
//!
//! Policy: an entry is the exact response bytes a client was sent (one per
//! protocol variant) plus the `Guard` of tag tokens read before MySQL was
//! asked; it is served only while `TagTokens::is_fresh` holds. The store is
//! moka, bounded by bytes (a weigher over key + value) and by a per-entry TTL
//! (`cache.ttl`, overridable per table), the safety net for writes the proxy
//! never sees. Concurrent misses for one key run one backend query; the
//! others wait up to `cache.coalesce_wait` and look again. With a shared
//! tier, a fresh entry is served at once only while the tier vouches that
//! other proxies' invalidations have reached this process (`l2/peers.rs`);
//! otherwise the lookup says `Confirm` (the session checks the entry's L2
//! tokens first) or, for an entry filled without L2 tokens, `Miss`.
//!
//! The cache key holds everything that can change the response bytes:
//! * the user, unless `share_across_users` (grants differ per user);
//! * the current database (unqualified names resolve against it);
//! * `SET NAMES` state (the charset of every string in the response);
//! * `sql_mode` and `time_zone` (how literals and TIMESTAMPs are read/shown);
//! * the protocol — text, or binary with the statement's SQL — and whether the
//!   client negotiated CLIENT_DEPRECATE_EOF (it changes the framing);
//! * the statement text (text protocol) or the parameter values and their
//!   types (binary protocol).
//!
//! Rooms: `key.rs` lays the key out, `plan.rs` decides what a read depends
//! on and starts its fill, `tokens.rs` holds the tags' counters, `store.rs`
//! the entries, `l2/` and `ignite/` the shared tier, `refresh.rs` re-reads
//! hot rows of `refresh` tables, `gate.rs` closes the cache while a feed
//! cannot vouch for freshness, `stats.rs` counts.

pub mod gate;
pub mod ignite;
pub mod key;
pub mod l2;
pub mod plan;
pub mod refresh;
pub mod stats;
pub mod store;
pub mod tables;
pub mod tokens;
pub mod tuning;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use mysql_common::value::Value;
use tokio::sync::Notify;

use crate::classify::{KeyValue, Lit};
use crate::config::CacheConfig;
pub use gate::FeedGate;
pub use l2::{L2Guard, L2Lookup, L2};
pub use refresh::{Recipe, Refresh};
pub use stats::{FeedStats, Route, Source, Stats};
pub use store::{MokaStore, Store};
pub use tables::{TableStats, Tables};
pub use tokens::{Guard, Tag, TagTokens};
pub use tuning::Tuning;

/// A cached response.
pub struct Entry {
    pub response: Bytes,
    pub guard: Guard,
    /// The shared tier's tokens it was filled under, when L2 is in use:
    /// what an L1 hit is confirmed against while other proxies'
    /// invalidations cannot be vouched for (`l2/peers.rs`).
    pub l2: Option<L2Guard>,
    pub ttl: Duration,
    /// How to fill it again when a feed changes its row (refresh tables).
    pub recipe: Option<Arc<Recipe>>,
    /// The statement's shape digest for query insight
    /// (`classify::digest`), so a hit need not compute it; `UNKNOWN_SHAPE`
    /// when the filler did not know it.
    pub shape: u64,
    /// Its table's counters (`SHOW SQLCACHE TABLES`).
    pub table: Option<Arc<TableStats>>,
}

/// What the store holds of one table: entries it would serve, entries
/// invalidated but not yet dropped (a lookup or eviction drops them), and
/// the bytes of both as `max_memory` counts them.
#[derive(Debug, Default, Clone, Copy)]
pub struct Held {
    pub fresh: u64,
    pub stale: u64,
    pub bytes: u64,
}

/// `Entry::shape` of an entry filled without its statement's shape.
pub const UNKNOWN_SHAPE: u64 = 0;

/// Where an invalidation came from (its metric label).
#[derive(Clone, Copy)]
enum Origin {
    Proxy,
    Feed,
}

impl Origin {
    /// The counter for one tag, or for "everything" (None).
    fn source(self, tag: Option<&Tag>) -> Source {
        match (self, tag) {
            (Origin::Proxy, Some(Tag::Row { .. })) => Source::ProxyRow,
            (Origin::Proxy, Some(_)) => Source::ProxyTable,
            (Origin::Proxy, None) => Source::ProxyAll,
            (Origin::Feed, Some(Tag::Row { .. })) => Source::FeedRow,
            (Origin::Feed, Some(_)) => Source::FeedTable,
            (Origin::Feed, None) => Source::FeedAll,
        }
    }
}

/// Result of a lookup.
pub enum Lookup {
    /// The response and its statement's shape (`Entry::shape`).
    Hit(Bytes, u64),
    /// Fresh here, but another proxy may have invalidated it: serve it
    /// only once the tier confirms these tokens (`L2::confirm`); the
    /// table's counters to count the hit on then.
    Confirm(Bytes, L2Guard, u64, Option<Arc<TableStats>>),
    /// An entry existed but something it depends on changed.
    Stale,
    Miss,
}

pub struct Cache {
    /// As started; what live reload changes is in `tuning` instead.
    pub cfg: CacheConfig,
    store: Box<dyn Store>,
    /// Shared with the tier, which bumps them for other proxies' writes.
    pub tokens: Arc<TagTokens>,
    pub stats: Stats,
    /// Per-table counters.
    pub tables: Tables,
    /// Closed while a configured change feed cannot prove it is fresh.
    pub gate: FeedGate,
    inflight: Mutex<HashMap<Vec<u8>, Arc<Notify>>>,
    tuning: arc_swap::ArcSwap<Tuning>,
    /// Entries of `on_change = "refresh"` tables, by row slot.
    pub refresh: Refresh,
    /// The shared tier, when `[cache.ignite]` is enabled.
    pub l2: Option<Arc<L2>>,
}

/// Held by the one session running a miss; waiters wake when it drops.
pub struct Flight<'a> {
    cache: &'a Cache,
    key: Vec<u8>,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let n = self.cache.inflight.lock().unwrap().remove(&self.key);
        if let Some(n) = n {
            n.notify_waiters();
        }
    }
}

impl Cache {
    pub fn new(cfg: CacheConfig) -> Arc<Cache> {
        Cache::with_l2(cfg, None)
    }

    /// A cache whose misses also consult a shared tier.
    pub fn with_l2(cfg: CacheConfig, l2: Option<Arc<L2>>) -> Arc<Cache> {
        let store = Box::new(MokaStore::new(cfg.max_memory));
        let tuning = arc_swap::ArcSwap::from_pointee(Tuning::from_config(&cfg));
        let tokens = Arc::new(TagTokens::new());
        if let Some(l2) = &l2 {
            l2.attach(tokens.clone());
        }
        Arc::new(Cache {
            cfg,
            store,
            tokens,
            stats: Stats::default(),
            tables: Tables::default(),
            gate: FeedGate::open(),
            inflight: Mutex::new(HashMap::new()),
            tuning,
            refresh: Refresh::default(),
            l2,
        })
    }

    pub fn lookup(&self, key: &[u8]) -> Lookup {
        match self.store.get(key) {
            Some(e) if self.tokens.is_fresh(&e.guard) => {
                if let Some(r) = &e.recipe {
                    r.touch();
                }
                if self.l1_trusted() {
                    if let Some(t) = &e.table {
                        t.hit();
                    }
                    return Lookup::Hit(e.response.clone(), e.shape);
                }
                match &e.l2 {
                    Some(g) => {
                        Lookup::Confirm(e.response.clone(), g.clone(), e.shape, e.table.clone())
                    }
                    None => Lookup::Miss,
                }
            }
            Some(_) => {
                self.store.remove(key);
                Lookup::Stale
            }
            None => Lookup::Miss,
        }
    }

    /// Whether an L1 hit needs no word from the shared tier: no tier, or
    /// (events mode) its subscription is proven current. Strict mode:
    /// never. A healthy change feed does not stand in for the subscription:
    /// its bound runs from when a change is *on Kafka*, so another proxy's
    /// write that the publisher has not yet carried would be served past
    /// `max_lag` after its OK (found by `tests/chaos.rs`).
    fn l1_trusted(&self) -> bool {
        self.l2.as_ref().is_none_or(|l2| l2.l1_trusted())
    }

    /// Drops an entry (an L1 copy the tier did not confirm).
    pub fn remove(&self, key: &[u8]) {
        self.store.remove(key);
    }

    /// Stores a response filled under `guard` (unless already stale); true
    /// if stored. A `recipe` registers the entry for refresh.
    pub fn insert(
        &self,
        key: Vec<u8>,
        response: Bytes,
        guard: Guard,
        ttl: Duration,
        recipe: Option<Arc<Recipe>>,
    ) -> bool {
        self.insert_entry(
            key,
            Entry {
                response,
                guard,
                l2: None,
                ttl,
                recipe,
                shape: UNKNOWN_SHAPE,
                table: None,
            },
        )
    }

    /// `insert` for an entry that may also carry its shared-tier guard.
    pub fn insert_entry(&self, key: Vec<u8>, e: Entry) -> bool {
        if e.response.len() as u64 > self.max_result_bytes() || !self.tokens.is_fresh(&e.guard) {
            return false;
        }
        if let Some(r) = &e.recipe {
            self.refresh.register(r.clone());
        }
        if let Some(t) = &e.table {
            t.fills.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.store.insert(key, Arc::new(e));
        self.stats
            .fills
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        true
    }

    /// Whether `db.table` may be cached, and its TTL.
    pub fn rule(&self, db: &str, table: &str) -> (bool, Duration) {
        self.tuning.load().rule(db, table)
    }

    /// Whether a feed's change to a row of `db.table` re-fills its entries.
    pub fn refreshes(&self, db: &str, table: &str) -> bool {
        self.tuning.load().refreshes(db, table)
    }

    /// Responses larger than this are not cached (`cache.max_result_bytes`).
    pub fn max_result_bytes(&self) -> u64 {
        self.tuning.load().max_result_bytes
    }

    /// The settings in force now.
    pub fn tuning(&self) -> Arc<Tuning> {
        self.tuning.load_full()
    }

    /// `Tuning::generation` in force now.
    pub fn generation(&self) -> u64 {
        self.tuning.load().generation
    }

    /// Puts `new` in force (live reload), then invalidates what it no
    /// longer allows (`tuning::stale_after`), as `SQLCACHE FLUSH` would:
    /// through the shared tier too (the order `tuning.rs` relies on).
    /// Returns what it did, for the log.
    pub async fn retune(&self, mut new: Tuning) -> Vec<String> {
        let old = self.tuning.load_full();
        new.generation = old.generation + 1;
        let stale = tuning::stale_after(&old, &new);
        let resized = new.max_memory != old.max_memory;
        if resized {
            self.store.resize(new.max_memory);
        }
        self.tuning.store(Arc::new(new.clone()));
        let mut done = Vec::new();
        match stale {
            tuning::Stale::Nothing => {}
            tuning::Stale::Everything => {
                self.invalidate_writes(&[], true).await;
                done.push("every entry invalidated (cache.ttl shorter)".to_string());
            }
            tuning::Stale::Tables(tables) => {
                for ((db, t), why) in tables {
                    let tags = [Tag::any_write(&db, &t), Tag::table(&db, &t)];
                    self.invalidate_writes(&tags, false).await;
                    done.push(format!("{db}.{t} invalidated ({})", why.as_str()));
                }
            }
        }
        if resized {
            done.push(format!(
                "cache.max_memory {} -> {} bytes: the in-process cache starts empty",
                old.max_memory, new.max_memory
            ));
        }
        done
    }

    /// Becomes the leader for `key` (Some), or waits for the current leader
    /// (bounded) and returns None so the caller looks again.
    pub async fn join_flight(&self, key: &[u8]) -> Option<Flight<'_>> {
        let notify = {
            let mut map = self.inflight.lock().unwrap();
            match map.get(key) {
                Some(n) => n.clone(),
                None => {
                    map.insert(key.to_vec(), Arc::new(Notify::new()));
                    return Some(Flight {
                        cache: self,
                        key: key.to_vec(),
                    });
                }
            }
        };
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // The leader may have finished between the lookup and enable().
        if self
            .inflight
            .lock()
            .unwrap()
            .get(key)
            .is_none_or(|n| !Arc::ptr_eq(n, &notify))
        {
            return None;
        }
        let _ = tokio::time::timeout(self.cfg.coalesce_wait, notified).await;
        self.stats
            .coalesced
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        None
    }

    /// Invalidates after a write the proxy forwarded: the shared tier
    /// first (awaited), then this process (`l2` module: ordering).
    pub async fn invalidate_writes(&self, tags: &[Tag], everything: bool) {
        if let Some(l2) = &self.l2 {
            let slots: Vec<u32> = tags.iter().map(Tag::slot).collect();
            l2.invalidate(&slots, everything).await;
        }
        self.bump(tags, everything, Origin::Proxy);
    }

    /// Invalidates what a change feed reported, from a feed's own thread:
    /// the shared tier first (waited for), then this process.
    pub fn invalidate_feed(&self, tags: &[Tag], everything: bool) {
        if let Some(l2) = &self.l2 {
            let slots: Vec<u32> = tags.iter().map(Tag::slot).collect();
            l2.invalidate_blocking(&slots, everything);
        }
        self.bump(tags, everything, Origin::Feed);
    }

    /// Re-applies slots already hashed (echoes), from a feed's thread.
    pub fn invalidate_slots(&self, slots: &[u32], everything: bool) {
        if let Some(l2) = &self.l2 {
            l2.invalidate_blocking(slots, everything);
        }
        for &s in slots {
            self.tokens.invalidate_slot(s);
        }
        if everything {
            self.tokens.invalidate_all();
        }
    }

    /// Bumps tags (and everything) in this process only, counted by origin.
    /// Each tag is counted after its token is bumped (`SHOW SQLCACHE
    /// TABLES` relies on it: `admin::tables`).
    fn bump(&self, tags: &[Tag], everything: bool, origin: Origin) {
        for tag in tags {
            self.tokens.invalidate(tag);
            self.stats.invalidated(origin.source(Some(tag)));
            self.tables.invalidated(tag, matches!(origin, Origin::Feed));
        }
        if everything {
            self.tokens.invalidate_all();
            self.stats.invalidated(origin.source(None));
        }
    }

    /// Invalidates one tag in this process only (tests, local effects).
    pub fn invalidate(&self, tag: &Tag) {
        self.bump(std::slice::from_ref(tag), false, Origin::Proxy);
    }

    /// Stores an L2 fill for a response just stored in (or offered to) L1.
    pub fn fill_l2(&self, key: &[u8], response: &[u8], guard: L2Guard, ttl: Duration) {
        if let Some(l2) = &self.l2 {
            if response.len() as u64 <= self.max_result_bytes() {
                l2.fill(key, response, guard, ttl);
            }
        }
    }

    pub fn entries(&self) -> u64 {
        self.store.entries()
    }

    /// What the store holds per table (walks it: O(entries)).
    pub fn held_per_table(&self) -> HashMap<*const TableStats, Held> {
        let mut held: HashMap<*const TableStats, Held> = HashMap::new();
        self.store.for_each(&mut |key, e| {
            if let Some(t) = &e.table {
                let h = held.entry(Arc::as_ptr(t)).or_default();
                match self.tokens.is_fresh(&e.guard) {
                    true => h.fresh += 1,
                    false => h.stale += 1,
                }
                h.bytes += store::weight(key, e) as u64;
            }
        });
        held
    }

    pub fn bytes(&self) -> u64 {
        self.store.bytes()
    }
}

/// The canonical text of an integer key value, or None if the value does not
/// denote exactly one integer (then no row tag can be trusted). A binary
/// DOUBLE/FLOAT parameter (Node's mysql2 sends every JS number as one) is
/// an integer key when it is integral and below 2^53: MySQL compares an
/// integer column with it as a double, which is exact there.
pub fn canonical_int(v: &Value) -> Option<String> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match v {
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Double(f) if f.fract() == 0.0 && f.abs() < EXACT => Some((*f as i64).to_string()),
        Value::Float(f) if f.fract() == 0.0 && f64::from(*f).abs() < EXACT => {
            Some((*f as i64).to_string())
        }
        Value::Bytes(b) => std::str::from_utf8(b).ok().and_then(parse_int),
        _ => None,
    }
}

/// A literal or parameter as a `Value`, for canonicalisation.
pub fn resolve(kv: &KeyValue, params: &[Value]) -> Option<Value> {
    match kv {
        KeyValue::Param(i) => params.get(*i).cloned(),
        KeyValue::Lit(Lit::Number(n)) | KeyValue::Lit(Lit::Str(n)) => {
            Some(Value::Bytes(n.as_bytes().to_vec()))
        }
        KeyValue::Lit(Lit::Null) => None,
    }
}

fn parse_int(s: &str) -> Option<String> {
    let t = s.trim_matches(|c: char| c == ' ' || c == '\t');
    let digits = t.strip_prefix('-').unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<i128>().ok().map(|n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn cfg() -> CacheConfig {
        CacheConfig {
            max_memory: 10_000,
            max_result_bytes: 1000,
            ..CacheConfig::default()
        }
    }

    #[test]
    fn canonical_integers() {
        let b = |s: &str| Value::Bytes(s.as_bytes().to_vec());
        assert_eq!(canonical_int(&b("5")), Some("5".into()));
        assert_eq!(canonical_int(&b(" 05")), Some("5".into()));
        assert_eq!(canonical_int(&b("-0")), Some("0".into()));
        assert_eq!(canonical_int(&Value::Int(5)), Some("5".into()));
        assert_eq!(
            canonical_int(&Value::UInt(u64::MAX)),
            Some(u64::MAX.to_string())
        );
        for bad in ["5.0", "5abc", "", "1e3", "0x10"] {
            assert_eq!(canonical_int(&b(bad)), None, "{bad}");
        }
        assert_eq!(canonical_int(&Value::Double(5.0)), Some("5".into()));
        assert_eq!(canonical_int(&Value::Double(-0.0)), Some("0".into()));
        assert_eq!(canonical_int(&Value::Float(7.0)), Some("7".into()));
        for bad in [5.5, 9_007_199_254_740_992.0, f64::NAN, f64::INFINITY] {
            assert_eq!(canonical_int(&Value::Double(bad)), None, "{bad}");
        }
    }

    #[test]
    fn hits_need_fresh_tokens() {
        let c = Cache::new(cfg());
        let tag = Tag::row("d", "t", "1");
        let g = c.tokens.guard(std::slice::from_ref(&tag));
        c.insert(
            b"k".to_vec(),
            Bytes::from_static(b"resp"),
            g,
            Duration::from_secs(60),
            None,
        );
        assert!(matches!(c.lookup(b"k"), Lookup::Hit(b, _) if &b[..] == b"resp"));
        c.invalidate(&tag);
        assert!(matches!(c.lookup(b"k"), Lookup::Stale));
        assert!(matches!(c.lookup(b"k"), Lookup::Miss));
    }

    #[test]
    fn stale_fills_and_large_results_are_not_stored() {
        let c = Cache::new(cfg());
        let tag = Tag::table("d", "t");
        let g = c.tokens.guard(std::slice::from_ref(&tag));
        c.invalidate(&tag);
        c.insert(
            b"k".to_vec(),
            Bytes::from_static(b"old"),
            g,
            Duration::from_secs(60),
            None,
        );
        assert!(matches!(c.lookup(b"k"), Lookup::Miss));
        let g = c.tokens.guard(&[tag]);
        c.insert(
            b"big".to_vec(),
            Bytes::from(vec![0u8; 2000]),
            g,
            Duration::from_secs(60),
            None,
        );
        assert!(matches!(c.lookup(b"big"), Lookup::Miss));
    }

    #[test]
    fn ttl_and_byte_bound() {
        let c = Cache::new(cfg());
        let g = c.tokens.guard(&[]);
        c.insert(
            b"short".to_vec(),
            Bytes::from_static(b"x"),
            g.clone(),
            Duration::from_millis(50),
            None,
        );
        assert!(matches!(c.lookup(b"short"), Lookup::Hit(..)));
        std::thread::sleep(Duration::from_millis(120));
        assert!(matches!(c.lookup(b"short"), Lookup::Miss));
        for i in 0..100u32 {
            c.insert(
                i.to_le_bytes().to_vec(),
                Bytes::from(vec![1u8; 900]),
                g.clone(),
                Duration::from_secs(60),
                None,
            );
        }
        let _ = c.entries();
        assert!(c.bytes() <= 10_000, "{} bytes", c.bytes());
    }

    #[test]
    fn table_rules() {
        let mut cf = cfg();
        cf.tables.push(crate::config::TableRule {
            name: "Shop.P".into(),
            ttl: Some(Duration::from_secs(5)),
            enabled: true,
            on_change: Default::default(),
        });
        cf.tables.push(crate::config::TableRule {
            name: "shop.secret".into(),
            ttl: None,
            enabled: false,
            on_change: Default::default(),
        });
        let c = Cache::new(cf);
        assert_eq!(c.rule("shop", "p"), (true, Duration::from_secs(5)));
        assert!(!c.rule("shop", "secret").0);
        assert_eq!(c.rule("x", "y"), (true, Duration::from_secs(60)));
    }

    #[tokio::test]
    async fn concurrent_misses_coalesce() {
        let c = Cache::new(cfg());
        let leader = c.join_flight(b"k").await.expect("first is leader");
        let c2 = c.clone();
        let waiter = tokio::spawn(async move {
            let started = Instant::now();
            assert!(c2.join_flight(b"k").await.is_none());
            started.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(leader);
        let waited = waiter.await.unwrap();
        assert!(waited < Duration::from_millis(400), "{waited:?}");
        assert!(c.join_flight(b"k").await.is_some());
    }
}
