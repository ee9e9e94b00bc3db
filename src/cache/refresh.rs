//! Refresh on change (`[[cache.tables]] on_change = "refresh"`): which
//! entries a change feed should fill again right after invalidating them.
//!
//! Policy: only point reads by integer primary key of a `refresh` table
//! register, under their row tag's slot, with a `Recipe` — everything needed
//! to run the read again as its session ran it. When a feed's first echo of
//! a row slot fires (`invalidation::echo`, 100 ms after the event, when the
//! write is visible), each key registered there is refreshed if its entry
//! was hit since it was last filled ("hit recently"); a cold one is
//! forgotten, so refreshing stops by itself for rows nobody reads. Requests
//! go to the refresher (`frontend::refresh`) through a bounded queue and run
//! with bounded concurrency; a full queue drops the request (counted): a
//! dropped refresh costs one miss, never freshness, because a refresh is an
//! ordinary guarded fill. Table-level invalidations (TRUNCATE, DDL) never
//! refresh: they would stampede. The index holds at most `MAX_KEYS` keys.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mysql_async::EncodedParams;
use mysql_common::constants::{CapabilityFlags, StatusFlags};
use tokio::sync::mpsc;

use super::Tag;
use crate::backend::state::SessionVars;

/// At most this many keys are registered for refresh.
pub const MAX_KEYS: usize = 1 << 18;
/// Refresh requests waiting for the refresher.
pub const QUEUE: usize = 4096;

/// How to run a point read again, headless.
#[derive(Debug)]
pub struct Recipe {
    pub key: Vec<u8>,
    /// The backend account (pool) and its password.
    pub user: String,
    pub password: String,
    pub found_rows: bool,
    pub vars: SessionVars,
    pub sql: Vec<u8>,
    /// A prepared statement's parameters as sent to the backend (declared
    /// types and values); `None` for a text statement.
    pub params: Option<EncodedParams>,
    /// The client's capabilities and the status before the statement: the
    /// response bytes depend on both.
    pub caps: CapabilityFlags,
    pub status: StatusFlags,
    pub tags: Vec<Tag>,
    pub ttl: Duration,
    /// The row tag's slot (what the feed's echo names).
    pub slot: u32,
    /// The `Tuning::generation` its rule was read under: a refresh after a
    /// reload is not stored (the next miss plans it again).
    pub generation: u64,
    /// Its table's counters.
    pub table: Option<Arc<super::TableStats>>,
    filled: AtomicU64,
    hit: AtomicU64,
}

/// Microseconds since the first call (ties between a fill and a hit in the
/// same tick count as "not hit since", which only costs a miss).
fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64 + 1
}

impl Recipe {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: Vec<u8>,
        user: String,
        password: String,
        found_rows: bool,
        vars: SessionVars,
        sql: Vec<u8>,
        params: Option<EncodedParams>,
        caps: CapabilityFlags,
        status: StatusFlags,
        tags: Vec<Tag>,
        ttl: Duration,
        slot: u32,
    ) -> Recipe {
        Recipe {
            key,
            user,
            password,
            found_rows,
            vars,
            sql,
            params,
            caps,
            status,
            tags,
            ttl,
            slot,
            generation: 0,
            table: None,
            filled: AtomicU64::new(now_us()),
            hit: AtomicU64::new(0),
        }
    }

    /// The entry was served (hot path: one relaxed store).
    pub fn touch(&self) {
        self.hit.store(now_us(), Ordering::Relaxed);
    }

    /// The entry was filled again.
    pub fn refilled(&self) {
        self.filled.store(now_us(), Ordering::Relaxed);
    }

    /// Hit since it was last filled.
    pub fn hot(&self) -> bool {
        self.hit.load(Ordering::Relaxed) > self.filled.load(Ordering::Relaxed)
    }
}

/// What happened to refresh requests.
#[derive(Default, Debug)]
pub struct RefreshStats {
    /// Entries filled again by the refresher.
    pub done: AtomicU64,
    /// Invalidated entries not hit since their fill (forgotten).
    pub cold: AtomicU64,
    /// Requests dropped: queue full, or no refresher running.
    pub dropped: AtomicU64,
    /// Refreshes that failed (backend error, uncacheable answer, raced).
    pub failed: AtomicU64,
}

/// Recipes by row slot, then key.
type Index = HashMap<u32, HashMap<Vec<u8>, Arc<Recipe>>>;

#[derive(Default)]
pub struct Refresh {
    index: Mutex<Index>,
    keys: AtomicUsize,
    tx: Mutex<Option<mpsc::Sender<Arc<Recipe>>>>,
    pub stats: RefreshStats,
}

impl Refresh {
    /// The refresher's queue (one per proxy).
    pub fn channel(&self) -> mpsc::Receiver<Arc<Recipe>> {
        let (tx, rx) = mpsc::channel(QUEUE);
        *self.tx.lock().unwrap() = Some(tx);
        rx
    }

    /// Registers (or re-registers) a recipe; false when the index is full.
    pub fn register(&self, r: Arc<Recipe>) -> bool {
        let mut index = self.index.lock().unwrap();
        let slot = index.entry(r.slot).or_default();
        if !slot.contains_key(&r.key) {
            if self.keys.load(Ordering::Relaxed) >= MAX_KEYS {
                return false;
            }
            self.keys.fetch_add(1, Ordering::Relaxed);
        }
        slot.insert(r.key.clone(), r);
        true
    }

    /// Keys registered.
    pub fn len(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The feed's first echo re-invalidated these slots: refresh what was
    /// hit recently, forget the rest.
    pub fn echoed(&self, slots: &[u32]) {
        if self.is_empty() {
            return;
        }
        let mut wanted = Vec::new();
        {
            let mut index = self.index.lock().unwrap();
            for s in slots {
                let Some(keys) = index.get_mut(s) else {
                    continue;
                };
                let before = keys.len();
                keys.retain(|_, r| {
                    if r.hot() {
                        wanted.push(r.clone());
                        true
                    } else {
                        false
                    }
                });
                let forgotten = before - keys.len();
                self.keys.fetch_sub(forgotten, Ordering::Relaxed);
                self.stats
                    .cold
                    .fetch_add(forgotten as u64, Ordering::Relaxed);
                if keys.is_empty() {
                    index.remove(s);
                }
            }
        }
        if wanted.is_empty() {
            return;
        }
        let tx = self.tx.lock().unwrap().clone();
        for r in wanted {
            // Not hot again until it is hit after this refill.
            r.refilled();
            let sent = tx.as_ref().is_some_and(|tx| tx.try_send(r).is_ok());
            if !sent {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(key: &[u8], slot: u32) -> Arc<Recipe> {
        Arc::new(Recipe::new(
            key.to_vec(),
            "u".into(),
            String::new(),
            false,
            SessionVars::new(None, 45),
            b"SELECT 1".to_vec(),
            None,
            CapabilityFlags::empty(),
            StatusFlags::SERVER_STATUS_AUTOCOMMIT,
            vec![],
            Duration::from_secs(1),
            slot,
        ))
    }

    #[test]
    fn hot_entries_are_refreshed_cold_ones_forgotten() {
        let r = Refresh::default();
        let mut rx = r.channel();
        let hot = recipe(b"hot", 7);
        let cold = recipe(b"cold", 7);
        assert!(r.register(hot.clone()));
        assert!(r.register(cold.clone()));
        assert_eq!(r.len(), 2);
        std::thread::sleep(Duration::from_millis(2));
        hot.touch();
        r.echoed(&[7, 8]);
        assert_eq!(rx.try_recv().unwrap().key, b"hot");
        assert!(rx.try_recv().is_err());
        assert_eq!(r.len(), 1);
        assert_eq!(r.stats.cold.load(Ordering::Relaxed), 1);
        // Refreshed but not read since: forgotten at the next change.
        r.echoed(&[7]);
        assert!(rx.try_recv().is_err());
        assert!(r.is_empty());
    }

    #[test]
    fn no_refresher_means_dropped_requests() {
        let r = Refresh::default();
        let a = recipe(b"a", 1);
        r.register(a.clone());
        std::thread::sleep(Duration::from_millis(2));
        a.touch();
        r.echoed(&[1]);
        assert_eq!(r.stats.dropped.load(Ordering::Relaxed), 1);
    }
}
