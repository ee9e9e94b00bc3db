//! Per-table counters for `SHOW SQLCACHE TABLES`: hits, fills and
//! invalidations by source, per cached table.
//!
//! Policy: a table gets its counters at its first planned fill; an entry
//! keeps a pointer to them, so a hit counts without a lookup (one relaxed
//! add on a counter of the serving thread's own shard — no cache line is
//! shared between workers on the hit path). Entries and bytes are not
//! counted: `SHOW SQLCACHE TABLES` walks the store instead (O(entries),
//! run only on request). Bounded: past `MAX_TABLES` tables, new ones share
//! the counters named `OTHER`. Invalidations count per tag, as the global
//! `invalidations_*` counters do (a write's row and table tags are two);
//! other proxies' invalidations through the shared tier arrive as token
//! bumps and are not attributed to a table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use super::tokens::Tag;
use super::tuning::TableName;

/// Tables with counters of their own; later ones share `OTHER`'s.
pub const MAX_TABLES: usize = 4096;
/// The name of the shared counters past `MAX_TABLES`.
pub const OTHER: (&str, &str) = ("(other)", "(other)");
/// Hit counter shards (one per worker thread, wrapping).
const SHARDS: usize = 8;

/// Where an invalidation of one table came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableSource {
    ProxyRow,
    ProxyTable,
    FeedRow,
    FeedTable,
}

impl TableSource {
    pub const NAMES: [&'static str; 4] = ["proxy_row", "proxy_table", "feed_row", "feed_table"];
}

#[repr(align(64))]
#[derive(Default)]
struct Padded(AtomicU64);

impl std::fmt::Debug for TableStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TableStats({}.{})", self.name.0, self.name.1)
    }
}

pub struct TableStats {
    pub name: TableName,
    hits: [Padded; SHARDS],
    pub fills: AtomicU64,
    invalidations: [AtomicU64; 4],
}

thread_local! {
    static SHARD: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

fn my_shard() -> usize {
    SHARD.with(|s| {
        *s.get().get_or_insert_with(|| {
            let i = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(Some(i));
            i
        })
    })
}

impl TableStats {
    fn new(name: TableName) -> TableStats {
        TableStats {
            name,
            hits: Default::default(),
            fills: AtomicU64::new(0),
            invalidations: Default::default(),
        }
    }

    /// An entry of this table was served (hot path).
    pub fn hit(&self) {
        self.hits[my_shard()].0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn hits(&self) -> u64 {
        self.hits.iter().map(|h| h.0.load(Ordering::Relaxed)).sum()
    }

    pub fn invalidations(&self) -> [u64; 4] {
        self.invalidations
            .each_ref()
            .map(|a| a.load(Ordering::Acquire))
    }
}

#[derive(Default)]
pub struct Tables {
    map: RwLock<HashMap<TableName, Arc<TableStats>>>,
}

impl Tables {
    /// The counters of `db.table` (names lower-cased), created if new.
    pub fn get(&self, db: &str, table: &str) -> Arc<TableStats> {
        let name = (db.to_ascii_lowercase(), table.to_ascii_lowercase());
        if let Some(t) = self.read().get(&name) {
            return t.clone();
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        let name = match map.len() < MAX_TABLES || map.contains_key(&name) {
            true => name,
            false => (OTHER.0.to_string(), OTHER.1.to_string()),
        };
        map.entry(name.clone())
            .or_insert_with(|| Arc::new(TableStats::new(name)))
            .clone()
    }

    /// Counts an invalidation of a tag's table, if it has counters.
    pub fn invalidated(&self, tag: &Tag, feed: bool) {
        let (db, table, row) = match tag {
            Tag::Row { db, table, .. } => (db, table, true),
            Tag::Table { db, table } | Tag::AnyWrite { db, table } => (db, table, false),
        };
        let source = match (feed, row) {
            (false, true) => TableSource::ProxyRow,
            (false, false) => TableSource::ProxyTable,
            (true, true) => TableSource::FeedRow,
            (true, false) => TableSource::FeedTable,
        };
        let map = self.read();
        if let Some(t) = map.get(&(db.clone(), table.clone())) {
            // Release, paired with `invalidations`' Acquire: whoever sees
            // the count also sees the tokens bumped before it.
            t.invalidations[source as usize].fetch_add(1, Ordering::Release);
        }
    }

    /// Every table's counters, by name.
    pub fn all(&self) -> Vec<Arc<TableStats>> {
        let mut v: Vec<_> = self.read().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<TableName, Arc<TableStats>>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_per_table_and_bounded() {
        let t = Tables::default();
        let a = t.get("Shop", "Items");
        a.hit();
        a.hit();
        assert!(Arc::ptr_eq(&a, &t.get("shop", "items")));
        t.invalidated(&Tag::row("shop", "items", "1"), false);
        t.invalidated(&Tag::table("shop", "items"), true);
        t.invalidated(&Tag::table("shop", "unknown"), true);
        assert_eq!(a.hits(), 2);
        assert_eq!(a.invalidations(), [1, 0, 0, 1]);
        for i in 0..MAX_TABLES {
            t.get("d", &format!("t{i}"));
        }
        let other = t.get("d", "one_too_many");
        assert_eq!(other.name.0, OTHER.0);
        assert_eq!(t.all().len(), MAX_TABLES + 1);
        assert!(
            Arc::ptr_eq(&a, &t.get("shop", "items")),
            "known tables stay"
        );
    }
}
