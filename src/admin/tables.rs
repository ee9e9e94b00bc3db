//! `SHOW SQLCACHE TABLES`: one row per table the cache has planned a fill
//! for (`cache::tables`), with what it holds now and what happened to it.
//!
//! Policy: `Entries` (fresh: what a hit would serve), `Stale_entries`
//! (invalidated, not yet dropped) and `Bytes` (both, as `max_memory`
//! counts them) are counted by walking the store when the statement runs;
//! the other counters are cumulative since start. Rows are ordered by
//! database and table. The counters are read before the walk: a cache
//! bumps an invalidation's tokens before it counts it, so an invalidation
//! a row counts is always reflected in its `Entries`/`Stale_entries`.

use crate::cache::tables::TableSource;
use crate::cache::Cache;

pub const COLUMNS: [&str; 10] = [
    "Table",
    "Entries",
    "Stale_entries",
    "Bytes",
    "Hits",
    "Fills",
    "Invalidations_proxy_row",
    "Invalidations_proxy_table",
    "Invalidations_feed_row",
    "Invalidations_feed_table",
];

pub fn table_rows(cache: &Cache) -> Vec<Vec<String>> {
    let counted: Vec<_> = cache
        .tables
        .all()
        .into_iter()
        .map(|t| {
            let fills = t.fills.load(std::sync::atomic::Ordering::Relaxed);
            (t.hits(), fills, t.invalidations(), t)
        })
        .collect();
    let held = cache.held_per_table();
    counted
        .into_iter()
        .map(|(hits, fills, invalidations, t)| {
            let h = held
                .get(&std::sync::Arc::as_ptr(&t))
                .copied()
                .unwrap_or_default();
            let mut row = vec![
                format!("{}.{}", t.name.0, t.name.1),
                h.fresh.to_string(),
                h.stale.to_string(),
                h.bytes.to_string(),
                hits.to_string(),
                fills.to_string(),
            ];
            row.extend(invalidations.iter().map(u64::to_string));
            debug_assert_eq!(row.len(), 6 + TableSource::NAMES.len());
            row
        })
        .collect()
}
