//! Where entries live: the `Store` trait and its in-process moka tier.
//!
//! Policy: a store only keeps bytes; freshness is decided by `Cache` from
//! the entry's `Guard`, so any store behind this trait gives the same
//! guarantees as long as it returns what was put. (The shared tier is not a
//! `Store`: it has tokens of its own, `l2/`.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Entry;

pub trait Store: Send + Sync {
    fn get(&self, key: &[u8]) -> Option<Arc<Entry>>;
    fn insert(&self, key: Vec<u8>, entry: Arc<Entry>);
    fn remove(&self, key: &[u8]);
    fn entries(&self) -> u64;
    /// Bytes counted against the memory bound.
    fn bytes(&self) -> u64;
    /// Calls `f` for every entry held now.
    fn for_each(&self, f: &mut dyn FnMut(&[u8], &Entry));
    /// A new memory bound; a store that cannot change its bound in place
    /// starts empty (every entry refills from a miss).
    fn resize(&self, max_bytes: u64);
}

/// Bytes an entry costs beyond its key and response, counted against
/// `max_memory` so the bound is on real memory: measured by
/// `bench/memory.sh` (RSS per cached row minus key and response, 195-byte
/// responses): moka's bookkeeping about 340, the `Entry`, its guard and
/// allocation rounding about 250.
pub const ENTRY_OVERHEAD: usize = 592;

/// What an entry counts against `max_memory`.
pub fn weight(key: &[u8], e: &Entry) -> u32 {
    (key.len() + e.response.len() + ENTRY_OVERHEAD).min(u32::MAX as usize) as u32
}

type Moka = moka::sync::Cache<Vec<u8>, Arc<Entry>, foldhash::fast::RandomState>;

/// moka, bounded by bytes (key + response + `ENTRY_OVERHEAD`) and
/// per-entry TTL. moka's capacity is fixed when it is built, so `resize`
/// swaps in a new, empty one (`ArcSwap`: a lookup is one atomic load more).
pub struct MokaStore {
    inner: arc_swap::ArcSwap<Moka>,
}

struct EntryExpiry;

impl moka::Expiry<Vec<u8>, Arc<Entry>> for EntryExpiry {
    fn expire_after_create(&self, _k: &Vec<u8>, v: &Arc<Entry>, _now: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
}

impl MokaStore {
    pub fn new(max_bytes: u64) -> Self {
        Self {
            inner: arc_swap::ArcSwap::from_pointee(Self::build(max_bytes)),
        }
    }

    fn build(max_bytes: u64) -> Moka {
        moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &Vec<u8>, v: &Arc<Entry>| weight(k, v))
            .expire_after(EntryExpiry)
            // The table's hash only spreads keys (moka compares them whole):
            // foldhash, randomly seeded per process, costs a fraction of
            // the default SipHash on keys of a statement's length.
            .build_with_hasher(foldhash::fast::RandomState::default())
    }
}

impl Store for MokaStore {
    fn get(&self, key: &[u8]) -> Option<Arc<Entry>> {
        self.inner.load().get(key)
    }

    fn insert(&self, key: Vec<u8>, entry: Arc<Entry>) {
        self.inner.load().insert(key, entry);
    }

    fn remove(&self, key: &[u8]) {
        self.inner.load().invalidate(key);
    }

    fn entries(&self) -> u64 {
        let inner = self.inner.load();
        inner.run_pending_tasks();
        inner.entry_count()
    }

    fn bytes(&self) -> u64 {
        let inner = self.inner.load();
        inner.run_pending_tasks();
        inner.weighted_size()
    }

    fn for_each(&self, f: &mut dyn FnMut(&[u8], &Entry)) {
        for (k, e) in self.inner.load().iter() {
            f(&k, &e);
        }
    }

    fn resize(&self, max_bytes: u64) {
        self.inner.store(Arc::new(Self::build(max_bytes)));
    }
}
