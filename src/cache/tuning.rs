//! The cache settings a running proxy can change (live reload): TTLs,
//! `[[cache.tables]]` rules, `max_result_bytes`, `max_memory`.
//!
//! Policy: `Cache` holds one `Tuning` behind an `ArcSwap`; fills and plans
//! read it (one atomic load, no lock), a reload swaps in a new one. An entry
//! already stored was filled under the old rules, so a change that makes a
//! rule stricter must not leave it served: `stale_after` names what a new
//! tuning invalidates — a table newly disabled, or whose TTL got shorter,
//! loses its entries; a shorter `cache.ttl` drops everything (any table
//! without its own TTL uses it). Looser changes (a longer TTL, a larger
//! `max_result_bytes`, a table enabled) keep every entry: each is still as
//! fresh as it was promised to be. `max_memory` is moka's capacity, fixed
//! when built: a change builds a new, empty store.
//!
//! Invariant (no entry outlives its rule): a fill reads the rule, then its
//! guard's tokens; a reload swaps the tuning, then invalidates. A fill whose
//! rule came from before the swap and whose tokens from after the
//! invalidation is caught by `generation`: it is compared once the tokens
//! are read (`plan::start_fill`, the refresher), and a fill planned under
//! another generation is never stored.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::{CacheConfig, OnChange};

/// One `[[cache.tables]]` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub enabled: bool,
    pub ttl: Option<Duration>,
    pub on_change: OnChange,
}

/// `(db, table)`, lower-cased.
pub type TableName = (String, String);

#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    /// Bumped by every reload (`Cache::retune`).
    pub generation: u64,
    pub ttl: Duration,
    pub max_result_bytes: u64,
    pub max_memory: u64,
    pub rules: HashMap<TableName, Rule>,
}

impl Tuning {
    pub fn from_config(cfg: &CacheConfig) -> Tuning {
        let rules = cfg
            .tables
            .iter()
            .filter_map(|r| {
                let (db, t) = r.name.split_once('.')?;
                let rule = Rule {
                    enabled: r.enabled,
                    ttl: r.ttl,
                    on_change: r.on_change,
                };
                Some(((db.to_ascii_lowercase(), t.to_ascii_lowercase()), rule))
            })
            .collect();
        Tuning {
            generation: 0,
            ttl: cfg.ttl,
            max_result_bytes: cfg.max_result_bytes,
            max_memory: cfg.max_memory,
            rules,
        }
    }

    fn get(&self, db: &str, table: &str) -> Option<&Rule> {
        self.rules
            .get(&(db.to_ascii_lowercase(), table.to_ascii_lowercase()))
    }

    /// Whether `db.table` may be cached, and its TTL.
    pub fn rule(&self, db: &str, table: &str) -> (bool, Duration) {
        match self.get(db, table) {
            Some(r) => (r.enabled, r.ttl.unwrap_or(self.ttl)),
            None => (true, self.ttl),
        }
    }

    /// Whether a feed's change to a row of `db.table` re-fills its entries.
    pub fn refreshes(&self, db: &str, table: &str) -> bool {
        self.get(db, table)
            .is_some_and(|r| r.on_change == OnChange::Refresh)
    }

    /// Whether any table is refreshed on change.
    pub fn any_refresh(&self) -> bool {
        self.rules
            .values()
            .any(|r| r.on_change == OnChange::Refresh)
    }
}

/// What a new tuning invalidates of the entries stored under the old one.
#[derive(Debug, PartialEq, Eq)]
pub enum Stale {
    Nothing,
    /// Every entry: `cache.ttl` got shorter.
    Everything,
    /// These tables' entries, each with its reason.
    Tables(Vec<(TableName, Reason)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Disabled,
    ShorterTtl,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Disabled => "disabled",
            Reason::ShorterTtl => "shorter ttl",
        }
    }
}

/// Entries `new` no longer allows (pure). The tables are those with a rule
/// in either tuning; a table with no rule follows `cache.ttl`.
pub fn stale_after(old: &Tuning, new: &Tuning) -> Stale {
    if new.ttl < old.ttl {
        return Stale::Everything;
    }
    let mut names: Vec<&TableName> = old.rules.keys().chain(new.rules.keys()).collect();
    names.sort();
    names.dedup();
    let mut tables = Vec::new();
    for (db, t) in names {
        let (was_on, was_ttl) = old.rule(db, t);
        let (on, ttl) = new.rule(db, t);
        let reason = if was_on && !on {
            Reason::Disabled
        } else if was_on && ttl < was_ttl {
            Reason::ShorterTtl
        } else {
            continue;
        };
        tables.push(((db.clone(), t.clone()), reason));
    }
    if tables.is_empty() {
        Stale::Nothing
    } else {
        Stale::Tables(tables)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TableRule;

    fn tuning(ttl: u64, tables: &[(&str, bool, Option<u64>)]) -> Tuning {
        let cfg = CacheConfig {
            ttl: Duration::from_secs(ttl),
            tables: tables
                .iter()
                .map(|(n, enabled, ttl)| TableRule {
                    name: n.to_string(),
                    ttl: ttl.map(Duration::from_secs),
                    enabled: *enabled,
                    on_change: OnChange::Invalidate,
                })
                .collect(),
            ..CacheConfig::default()
        };
        Tuning::from_config(&cfg)
    }

    fn name(s: &str) -> TableName {
        let (d, t) = s.split_once('.').unwrap();
        (d.into(), t.into())
    }

    #[test]
    fn looser_changes_keep_every_entry() {
        let old = tuning(60, &[("s.a", false, None), ("s.b", true, Some(10))]);
        let new = tuning(120, &[("s.a", true, None), ("s.b", true, Some(30))]);
        assert_eq!(stale_after(&old, &new), Stale::Nothing);
        assert_eq!(stale_after(&old, &old), Stale::Nothing);
    }

    #[test]
    fn a_shorter_global_ttl_drops_everything() {
        let old = tuning(60, &[]);
        assert_eq!(stale_after(&old, &tuning(30, &[])), Stale::Everything);
    }

    #[test]
    fn a_disabled_table_or_shorter_table_ttl_drops_that_table() {
        let old = tuning(60, &[("S.A", true, None), ("s.b", true, Some(50))]);
        let new = tuning(60, &[("s.a", false, None), ("s.b", true, Some(5))]);
        assert_eq!(
            stale_after(&old, &new),
            Stale::Tables(vec![
                (name("s.a"), Reason::Disabled),
                (name("s.b"), Reason::ShorterTtl)
            ])
        );
        // A rule added with a TTL below the global one shortens it too.
        let added = tuning(60, &[("s.c", true, Some(1))]);
        assert_eq!(
            stale_after(&tuning(60, &[]), &added),
            Stale::Tables(vec![(name("s.c"), Reason::ShorterTtl)])
        );
        // A removed rule falls back to `cache.ttl`: longer here, kept.
        assert_eq!(stale_after(&added, &tuning(60, &[])), Stale::Nothing);
    }

    #[test]
    fn rules_are_case_insensitive_and_default_to_the_global_ttl() {
        let t = tuning(60, &[("Shop.Items", true, Some(5))]);
        assert_eq!(t.rule("shop", "ITEMS"), (true, Duration::from_secs(5)));
        assert_eq!(t.rule("shop", "other"), (true, Duration::from_secs(60)));
        assert!(!t.refreshes("shop", "items"));
    }
}
