//! Cache planning: whether a session may use the cache, what a point read
//! depends on, and how its fill starts.
//!
//! Policy: pure decisions over session state and schema facts, called by
//! the frontend (which only translates protocol to these and back).
//! * `session_bypass`: a session inside a transaction, with autocommit off,
//!   under LOCK TABLES, pinned, or while the change feed cannot vouch for
//!   freshness, never reads from the cache.
//! * `read_plan`: a point read by full primary key of a base table depends
//!   on its row tag (integer keys, `Tag::row_of`) and its table tag; by a
//!   NOT NULL unique key or a non-integer primary key, on the table's "any
//!   write" tag; anything else is not cached. Schema facts come only
//!   through `SchemaCache` and a `FactsSource`.
//! * `start_fill`: the guard's tokens are read *before* the backend query,
//!   L1's first, then the shared tier's (which may answer instead).
//!
//! Invariant: a fill is stored only under a guard read before MySQL was
//! asked, so a write that raced it makes it stale, never served.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mysql_common::constants::StatusFlags;
use mysql_common::value::Value;

use super::{canonical_int, resolve, Cache, Guard, L2Guard, L2Lookup, Recipe, TableStats, Tag};
use crate::backend::schema::{FactsSource, SchemaCache};
use crate::classify::{
    is_system_schema_name, BypassReason, Invalidation, PinReason, PointRead, TableName,
};

/// Why a session cannot use the cache right now (before any parsing).
pub fn session_bypass(
    enabled: bool,
    feed_fresh: bool,
    status: StatusFlags,
    lock_tables: bool,
    pin: Option<PinReason>,
    autocommit: bool,
) -> Option<BypassReason> {
    if !enabled {
        Some(BypassReason::CacheDisabled)
    } else if !feed_fresh {
        // Writes the proxy never saw may not have reached the cache.
        Some(BypassReason::FeedUnhealthy)
    } else if status.contains(StatusFlags::SERVER_STATUS_IN_TRANS) {
        Some(BypassReason::InTransaction)
    } else if !autocommit || !status.contains(StatusFlags::SERVER_STATUS_AUTOCOMMIT) {
        // Tracked from SET, and confirmed by the server's own flag.
        Some(BypassReason::AutocommitOff)
    } else if lock_tables {
        Some(BypassReason::LockTables)
    } else if pin.is_some() {
        // Temporary tables, user variables … live on the pinned connection.
        Some(BypassReason::PinnedSession)
    } else {
        None
    }
}

/// What a cacheable point read depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPlan {
    pub tags: Vec<Tag>,
    pub ttl: Duration,
    /// The row tag's slot, for a `refresh` table's entry.
    pub refresh: Option<u32>,
    /// The `Tuning::generation` the rule was read under.
    pub generation: u64,
    /// The table read (lower-cased), for its counters.
    pub table: (String, String),
}

/// Tags and TTL under which a point read may be filled, or why not.
pub async fn read_plan(
    cache: &Cache,
    schema: &SchemaCache,
    source: &mut impl FactsSource,
    pr: &PointRead,
    params: &[Value],
    default_db: Option<&str>,
) -> Result<ReadPlan, BypassReason> {
    let db = db_of(&pr.table, default_db).ok_or(BypassReason::NotPointRead)?;
    let name = &pr.table.name;
    if is_system_schema_name(&db) {
        return Err(BypassReason::SystemSchema);
    }
    let tuning = cache.tuning();
    let (enabled, ttl) = tuning.rule(&db, name);
    let generation = tuning.generation;
    if !enabled {
        return Err(BypassReason::TableDisabled);
    }
    let info = schema
        .load(source, &db, name)
        .await
        .map_err(|_| BypassReason::NotKey)?
        .filter(|i| i.base && !i.pk.is_empty())
        .ok_or(BypassReason::NotKey)?;
    let per_table = |tags| {
        Ok(ReadPlan {
            tags,
            ttl,
            refresh: None,
            generation,
            table: (db.clone(), name.to_string()),
        })
    };
    let value_of = |col: &str| {
        pr.eq
            .iter()
            .find(|(c, _)| c == col)
            .and_then(|(_, v)| resolve(v, params))
    };
    let values: Option<Vec<Value>> = info.pk.iter().map(|(col, _)| value_of(col)).collect();
    let Some(values) = values else {
        // A NOT NULL unique key also pins one row; writes name rows by
        // primary key, so such entries are fresh per table.
        let by_unique = info
            .unique
            .iter()
            .any(|cols| cols.iter().all(|c| value_of(c).is_some()));
        return match by_unique {
            true => per_table(vec![Tag::any_write(&db, name)]),
            false => Err(BypassReason::NotKey),
        };
    };
    if !info.integer_key() {
        // String/decimal/date keys: equality depends on collation and
        // conversion rules; any write to the table invalidates.
        return per_table(vec![Tag::any_write(&db, name)]);
    }
    let key = canonical_key(&values).ok_or(BypassReason::NotKey)?;
    let row = Tag::row_of(&db, name, &key);
    let refresh = tuning.refreshes(&db, name).then(|| row.slot());
    Ok(ReadPlan {
        tags: vec![row, Tag::table(&db, name)],
        ttl,
        refresh,
        generation,
        table: (db.clone(), name.to_string()),
    })
}

/// Loads schema facts for the tables a write names (triggers, foreign
/// keys, views change what it invalidates), once per table.
pub async fn load_write_facts(
    schema: &SchemaCache,
    source: &mut impl FactsSource,
    inv: &Invalidation,
    default_db: Option<&str>,
) {
    let tables: Vec<&TableName> = match inv {
        Invalidation::Rows { table, .. } => vec![table],
        Invalidation::Tables { tables, ddl: false } => tables.iter().collect(),
        _ => return,
    };
    for t in tables {
        if let Some(db) = db_of(t, default_db) {
            if schema.get(&db, &t.name).is_none() {
                // Unreadable facts stay unknown: the write invalidates
                // everything (`invalidation/writes.rs`).
                let _ = schema.load(source, &db, &t.name).await;
            }
        }
    }
}

/// A planned fill: tokens read before the backend query, the entry's TTL,
/// and for `refresh` tables how to run the read again.
pub struct Fill {
    pub guard: Guard,
    pub ttl: Duration,
    pub recipe: Option<Arc<Recipe>>,
    /// Shared-tier tokens read before the backend query, if L2 is in use.
    pub l2: Option<L2Guard>,
    /// The table's counters.
    pub table: Option<Arc<TableStats>>,
}

/// A shared-tier hit: the response, its entry's remaining life and the
/// tier's tokens it was filled under.
pub struct L2Hit {
    pub response: Bytes,
    pub ttl_left: Duration,
    pub guard: L2Guard,
}

/// How a fill starts.
pub enum Started {
    /// Forward the statement; store its response under this fill.
    Fill(Fill),
    /// The shared tier answered; keep it in L1 under this fill's guard.
    L2Hit(L2Hit, Fill),
}

/// Reads the guard's tokens (L1's first, then the shared tier's, the order
/// `l2` relies on) and asks the shared tier for the entry.
pub async fn start_fill(
    cache: &Cache,
    key: &[u8],
    plan: &ReadPlan,
    recipe: Option<Arc<Recipe>>,
) -> Started {
    let mut guard = cache.tokens.guard(&plan.tags);
    if cache.generation() != plan.generation {
        // Reloaded since the rule was read: it may no longer allow this.
        guard.expire();
    }
    let mut fill = Fill {
        guard,
        ttl: plan.ttl,
        recipe,
        l2: None,
        table: Some(cache.tables.get(&plan.table.0, &plan.table.1)),
    };
    if let Some(l2) = &cache.l2 {
        let slots: Vec<u32> = plan.tags.iter().map(Tag::slot).collect();
        match l2.lookup(key, &slots).await {
            L2Lookup::Hit {
                response,
                ttl_left,
                guard,
            } => {
                let hit = L2Hit {
                    response,
                    ttl_left,
                    guard,
                };
                return Started::L2Hit(hit, fill);
            }
            L2Lookup::Miss(g) => fill.l2 = g,
            L2Lookup::Skipped => {}
        }
    }
    Started::Fill(fill)
}

fn db_of(t: &TableName, default_db: Option<&str>) -> Option<String> {
    t.db.clone().or_else(|| default_db.map(str::to_owned))
}

/// The canonical texts of integer key values (`Tag::row_of`'s parts).
fn canonical_key(values: &[Value]) -> Option<Vec<String>> {
    values.iter().map(canonical_int).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_bypass_reasons() {
        let ac = StatusFlags::SERVER_STATUS_AUTOCOMMIT;
        let tx = StatusFlags::SERVER_STATUS_IN_TRANS;
        assert_eq!(session_bypass(true, true, ac, false, None, true), None);
        assert_eq!(
            session_bypass(false, true, ac, false, None, true),
            Some(BypassReason::CacheDisabled)
        );
        assert_eq!(
            session_bypass(true, true, ac | tx, false, None, true),
            Some(BypassReason::InTransaction)
        );
        assert_eq!(
            session_bypass(true, true, StatusFlags::empty(), false, None, false),
            Some(BypassReason::AutocommitOff)
        );
        assert_eq!(
            session_bypass(true, true, ac, true, None, true),
            Some(BypassReason::LockTables)
        );
        assert_eq!(
            session_bypass(true, false, ac, false, None, true),
            Some(BypassReason::FeedUnhealthy)
        );
        assert_eq!(
            session_bypass(true, true, ac, true, None, true),
            Some(BypassReason::LockTables)
        );
        assert_eq!(
            session_bypass(true, true, ac, false, Some(PinReason::TemporaryTable), true),
            Some(BypassReason::PinnedSession)
        );
    }

    #[test]
    fn composite_keys_join_canonically() {
        let v = [Value::Bytes(b" 05".to_vec()), Value::Int(7)];
        let key = canonical_key(&v).unwrap();
        assert_eq!(key, ["5", "7"]);
        assert_eq!(Tag::row_of("d", "t", &key), Tag::row("d", "t", "5\u{1f}7"));
        assert_eq!(canonical_key(&[Value::Double(1.0)]).unwrap(), ["1"]);
        assert_eq!(canonical_key(&[Value::Double(1.5)]), None);
    }

    /// Facts from a table of (db, table) → facts: the planning's only view
    /// of the schema, so it is tested without a server.
    struct Known(Vec<(&'static str, Option<crate::backend::schema::TableInfo>)>);

    impl FactsSource for Known {
        async fn read_facts(
            &mut self,
            _db: &str,
            table: &str,
        ) -> Result<Option<crate::backend::schema::TableInfo>, mysql_async::Error> {
            Ok(self
                .0
                .iter()
                .find(|(t, _)| *t == table)
                .and_then(|(_, i)| i.clone()))
        }
    }

    fn info(pk: &[(&str, bool)], unique: &[&str], base: bool) -> crate::backend::schema::TableInfo {
        crate::backend::schema::TableInfo {
            base,
            pk: pk.iter().map(|(c, i)| (c.to_string(), *i)).collect(),
            unique: unique.iter().map(|c| vec![c.to_string()]).collect(),
            has_triggers: false,
            referenced_by: vec![],
            references: vec![],
        }
    }

    #[tokio::test]
    async fn point_reads_depend_on_row_table_or_any_write_tags() {
        use crate::classify::{classify, Verdict};
        let cache = Cache::new(crate::config::CacheConfig::default());
        let schema = SchemaCache::default();
        let mut facts = Known(vec![
            ("ints", Some(info(&[("id", true)], &["email"], true))),
            ("strs", Some(info(&[("code", false)], &[], true))),
            ("nokey", Some(info(&[], &[], true))),
            ("view", Some(info(&[], &[], false))),
        ]);
        let f = &mut facts;
        macro_rules! plan {
            ($sql:expr) => {{
                let Verdict::Read(pr) = classify($sql) else {
                    panic!("{} is not a point read", $sql)
                };
                read_plan(&cache, &schema, f, &pr, &[], Some("d")).await
            }};
        }
        let tags = |r: Result<ReadPlan, BypassReason>| r.map(|p| p.tags);
        assert_eq!(
            tags(plan!("SELECT v FROM ints WHERE id = '07'")),
            Ok(vec![
                Tag::row_of("d", "ints", &["7"]),
                Tag::table("d", "ints")
            ])
        );
        assert_eq!(
            tags(plan!("SELECT v FROM ints WHERE email = 'a@b'")),
            Ok(vec![Tag::any_write("d", "ints")])
        );
        assert_eq!(
            tags(plan!("SELECT v FROM strs WHERE code = 'x'")),
            Ok(vec![Tag::any_write("d", "strs")])
        );
        assert_eq!(
            tags(plan!("SELECT v FROM ints WHERE id = 1.5")),
            Err(BypassReason::NotKey)
        );
        for sql in [
            "SELECT v FROM ints WHERE v = 1",
            "SELECT v FROM nokey WHERE id = 1",
            "SELECT v FROM view WHERE id = 1",
            "SELECT v FROM missing WHERE id = 1",
        ] {
            assert_eq!(tags(plan!(sql)), Err(BypassReason::NotKey), "{sql}");
        }
        // An unqualified name under a system schema as the default database.
        let Verdict::Read(pr) = classify("SELECT v FROM user WHERE id = 1") else {
            panic!("not a point read")
        };
        let r = read_plan(&cache, &schema, f, &pr, &[], Some("mysql")).await;
        assert_eq!(tags(r), Err(BypassReason::SystemSchema));
    }

    /// A reload between a plan's rule and its fill's tokens: the fill is
    /// never stored (`cache::tuning`'s invariant), even when the reload
    /// invalidated nothing this fill's tokens would notice.
    #[tokio::test]
    async fn a_fill_planned_before_a_reload_is_not_stored() {
        use crate::cache::{Tuning, UNKNOWN_SHAPE};
        let cfg = crate::config::CacheConfig::default();
        let cache = Cache::new(cfg.clone());
        let plan = ReadPlan {
            tags: vec![Tag::table("d", "t")],
            ttl: Duration::from_secs(5),
            refresh: None,
            generation: cache.generation(),
            table: ("d".into(), "t".into()),
        };
        let store = |fill: Fill| {
            cache.insert_entry(
                b"k".to_vec(),
                crate::cache::Entry {
                    response: Bytes::from_static(b"r"),
                    guard: fill.guard,
                    l2: None,
                    ttl: fill.ttl,
                    recipe: None,
                    shape: UNKNOWN_SHAPE,
                    table: fill.table,
                },
            )
        };
        let Started::Fill(before) = start_fill(&cache, b"k", &plan, None).await else {
            panic!("no shared tier here")
        };
        assert!(cache.retune(Tuning::from_config(&cfg)).await.is_empty());
        let Started::Fill(after) = start_fill(&cache, b"k", &plan, None).await else {
            panic!("no shared tier here")
        };
        assert!(!store(after), "planned under the old generation");
        assert!(
            store(before),
            "tokens read before the reload, nothing invalidated"
        );
    }
}
