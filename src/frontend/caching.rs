//! The session's side of the cache: eligibility, keys, hits, fills and
//! invalidation of the writes it forwards.
//!
//! Policy: a hit parses nothing — the key is built from the session's state
//! and the statement bytes (or the prepared statement's SQL and parameter
//! values), looked up, its tokens checked, and the stored bytes written. A
//! miss of a point read reads its tags' tokens *before* the backend query and
//! stores the response only if it is exactly one row set without warnings.
//! Writes invalidate after MySQL acknowledged them and before the client sees
//! the OK (the response is flushed after this runs) — immediately, and again
//! at COMMIT when inside a transaction (a second bump costs only hit rate and
//! covers non-transactional tables); ROLLBACK drops what was pending.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use mysql_async::EncodedParams;
use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::value::Value;

use super::route::{Routed, Stored, Tier};
use super::session::Session;
use crate::backend::BackendConn;
use crate::cache::{
    canonical_int, resolve, Cache, Flight, Guard, L2Guard, L2Lookup, Lookup, Recipe, Tag,
};
use crate::classify::{
    is_system_schema_name, BypassReason, Invalidation, PinReason, PointRead, TableName, Verdict,
};
use crate::invalidation::{resolve_all, writes, Effect};

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

/// A planned fill: tokens read before the backend query, the entry's TTL,
/// and for `refresh` tables how to run the read again.
pub struct Fill {
    pub guard: Guard,
    pub ttl: Duration,
    pub recipe: Option<Arc<Recipe>>,
    /// Shared-tier tokens read before the backend query, if L2 is in use.
    pub l2: Option<L2Guard>,
}

/// What `plan` decided for a statement about to be forwarded.
pub enum Planned {
    /// Forward it; store the response under this fill if there is one.
    Forward(Option<Fill>),
    /// The shared tier answered: nothing to forward.
    Served,
}

/// Outcome of joining a miss in flight.
pub enum Coalesced<'c> {
    /// Another session's fill answered this one from the cache.
    Served,
    /// This session runs the query; waiters wake when this drops.
    Leader(Flight<'c>),
}

/// Protocol byte of a key.
pub const TEXT: u8 = b'T';
pub const BINARY: u8 = b'B';

impl Session {
    pub(super) fn cache_bypass(&self) -> Option<BypassReason> {
        session_bypass(
            self.shared.cache.cfg.enabled,
            self.shared.cache.gate.is_open(),
            self.status,
            self.lock_tables,
            self.pin,
            self.vars.autocommit,
        )
    }

    /// Builds the lookup key into `self.keybuf`.
    pub(super) fn build_key(&mut self, proto: u8, body: &[u8], params: &[Value], types: &[u8]) {
        let state = KeyState {
            user: (!self.shared.cache.cfg.share_across_users).then_some(self.login.user.as_str()),
            db: self.vars.db.as_deref(),
            names: &self.vars.names,
            sql_mode: self.vars.sql_mode.as_deref(),
            time_zone: self.vars.time_zone.as_deref(),
            deprecate_eof: self
                .login
                .caps
                .contains(CapabilityFlags::CLIENT_DEPRECATE_EOF),
        };
        build_key(&mut self.keybuf, &state, proto, body, (params, types));
    }

    /// Answers from the cache if `self.keybuf` is a fresh entry.
    pub(super) fn serve_hit(&mut self) -> bool {
        let cache = &self.shared.cache;
        match cache.lookup(&self.keybuf) {
            Lookup::Hit(bytes) => {
                self.conn.write_framed(&bytes);
                cache
                    .stats
                    .hits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.routed = Routed::Hit(Tier::L1);
                true
            }
            Lookup::Stale => {
                cache
                    .stats
                    .stale
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                false
            }
            Lookup::Miss => false,
        }
    }

    /// Decides the cache route of a statement about to be forwarded; for a
    /// fillable point read, returns the guard (tokens read now, before the
    /// backend query) and the entry's TTL.
    /// `stmt` is the statement as run and, for a prepared one, its encoded
    /// parameters (what a refresh would run again).
    pub(super) async fn plan(
        &mut self,
        c: &mut BackendConn,
        verdict: &Verdict,
        bypass: Option<BypassReason>,
        params: &[Value],
        stmt: (&[u8], Option<&EncodedParams>),
    ) -> Planned {
        let fill = match (verdict, bypass) {
            (Verdict::Read(pr), None) => match self.fill_plan(c, pr, params).await {
                Ok((tags, ttl, refresh_slot)) => {
                    let cache = self.shared.cache.clone();
                    // L1's tokens first, then the shared tier (l2 ordering).
                    let guard = cache.tokens.guard(&tags);
                    let recipe = refresh_slot.map(|slot| {
                        Arc::new(Recipe::new(
                            self.keybuf.clone(),
                            self.key.user.clone(),
                            self.login.password.clone(),
                            self.key.found_rows,
                            self.vars.clone(),
                            stmt.0.to_vec(),
                            stmt.1.cloned(),
                            self.login.caps,
                            self.status,
                            tags.clone(),
                            ttl,
                            slot,
                        ))
                    });
                    let mut fill = Fill {
                        guard,
                        ttl,
                        recipe,
                        l2: None,
                    };
                    if let Some(l2) = &cache.l2 {
                        let slots: Vec<u32> = tags.iter().map(Tag::slot).collect();
                        match l2.lookup(&self.keybuf, &slots).await {
                            L2Lookup::Hit { response, ttl_left } => {
                                self.serve_l2(response, fill, ttl_left);
                                return Planned::Served;
                            }
                            L2Lookup::Miss(g) => fill.l2 = g,
                            L2Lookup::Skipped => {}
                        }
                    }
                    cache.stats.misses.fetch_add(1, Ordering::Relaxed);
                    self.routed = Routed::Miss(Stored::Pending);
                    Some(fill)
                }
                Err(r) => {
                    self.note_bypass(r);
                    None
                }
            },
            (Verdict::Read(_), Some(r)) => {
                self.note_bypass(r);
                None
            }
            (Verdict::Bypass(r), _) => {
                self.note_bypass(*r);
                None
            }
            (Verdict::Write(_), _) => {
                if self.shared.cache.cfg.enabled {
                    self.ensure_schema(c, verdict).await;
                }
                self.routed = Routed::Write(None);
                None
            }
            (Verdict::Commit | Verdict::Rollback, _) => {
                self.routed = Routed::Forward;
                None
            }
        };
        Planned::Forward(fill)
    }

    /// After `Planned::Served`: the backend connection goes back unused.
    pub(super) fn served_from_l2(
        &mut self,
        c: BackendConn,
    ) -> Result<(), super::session::SessionError> {
        let status = self.status;
        self.settle(c, status);
        Ok(())
    }

    /// Answers from a shared-tier hit and keeps it in L1 under the guard
    /// read before the lookup.
    fn serve_l2(&mut self, response: Bytes, fill: Fill, ttl_left: Duration) {
        let cache = self.shared.cache.clone();
        self.conn.write_framed(&response);
        cache.stats.hits.fetch_add(1, Ordering::Relaxed);
        cache.stats.l2_hits.fetch_add(1, Ordering::Relaxed);
        self.routed = Routed::Hit(Tier::L2);
        cache.insert(
            self.keybuf.clone(),
            response,
            fill.guard,
            fill.ttl.min(ttl_left),
            fill.recipe,
        );
    }

    fn note_bypass(&mut self, r: BypassReason) {
        self.shared.cache.stats.bypass(r);
        self.routed = Routed::Bypass(r);
    }

    /// Stores the response just relayed (from `mark` in the write buffer)
    /// if it is whole, cacheable and small enough.
    pub(super) fn store_fill(&mut self, cacheable: bool, mark: usize, flushes: u64, fill: Fill) {
        let cache = self.shared.cache.clone();
        let flushed = self.conn.flushes() != flushes;
        let bytes = &self.conn.buf()[mark..];
        let too_large = flushed || bytes.len() as u64 > cache.cfg.max_result_bytes;
        if !cacheable || too_large {
            let r = if too_large {
                BypassReason::TooLarge
            } else {
                BypassReason::Warnings
            };
            cache.stats.bypass(r);
            self.routed = Routed::Miss(Stored::NotStored(r));
            return;
        }
        let response = Bytes::copy_from_slice(bytes);
        if let Some(g) = fill.l2.filter(|_| cache.tokens.is_fresh(&fill.guard)) {
            cache.fill_l2(&self.keybuf, &response, g, fill.ttl);
        }
        cache.insert(
            self.keybuf.clone(),
            response,
            fill.guard,
            fill.ttl,
            fill.recipe,
        );
        self.routed = Routed::Miss(Stored::Filled);
    }

    /// Joins the miss already running for `self.keybuf`, if any: becomes its
    /// leader, or waits for it and answers from the cache when it filled.
    pub(super) async fn coalesce<'c>(&mut self, cache: &'c Cache) -> Option<Coalesced<'c>> {
        match cache.join_flight(&self.keybuf).await {
            Some(f) => Some(Coalesced::Leader(f)),
            None if self.serve_hit() => Some(Coalesced::Served),
            None => None,
        }
    }

    fn resolve_db(&self, t: &TableName) -> Option<String> {
        t.db.clone().or_else(|| self.vars.db.clone())
    }

    /// Tags and TTL under which a point read may be filled, or why not.
    pub(super) async fn fill_plan(
        &mut self,
        c: &mut BackendConn,
        pr: &PointRead,
        params: &[Value],
    ) -> Result<(Vec<Tag>, Duration, Option<u32>), BypassReason> {
        let db = self
            .resolve_db(&pr.table)
            .ok_or(BypassReason::NotPointRead)?;
        if is_system_schema_name(&db) {
            return Err(BypassReason::SystemSchema);
        }
        let (enabled, ttl) = self.shared.cache.rule(&db, &pr.table.name);
        if !enabled {
            return Err(BypassReason::TableDisabled);
        }
        let info = self
            .shared
            .schema
            .load(&mut c.conn, &db, &pr.table.name)
            .await
            .map_err(|_| BypassReason::NotKey)?
            .filter(|i| i.base && !i.pk.is_empty())
            .ok_or(BypassReason::NotKey)?;
        let table = Tag::table(&db, &pr.table.name);
        let any_write = Tag::any_write(&db, &pr.table.name);
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
            return if by_unique {
                Ok((vec![any_write], ttl, None))
            } else {
                Err(BypassReason::NotKey)
            };
        };
        if !info.integer_key() {
            // String/decimal/date keys: equality depends on collation and
            // conversion rules; any write to the table invalidates.
            return Ok((vec![any_write], ttl, None));
        }
        let key = canonical_key(&values).ok_or(BypassReason::NotKey)?;
        let row = Tag::row_of(&db, &pr.table.name, &key);
        let refresh = self
            .shared
            .cache
            .refreshes(&db, &pr.table.name)
            .then(|| row.slot());
        Ok((vec![row, table], ttl, refresh))
    }

    /// Loads schema facts for the tables a write names (triggers, foreign
    /// keys, views change what it invalidates). Done on the write's own
    /// connection, once per table.
    pub(super) async fn ensure_schema(&mut self, c: &mut BackendConn, verdict: &Verdict) {
        let tables: Vec<&TableName> = match verdict {
            Verdict::Write(Invalidation::Rows { table, .. }) => vec![table],
            Verdict::Write(Invalidation::Tables { tables, ddl: false }) => tables.iter().collect(),
            _ => return,
        };
        for t in tables {
            if let Some(db) = self.resolve_db(t) {
                if self.shared.schema.get(&db, &t.name).is_none() {
                    let _ = self.shared.schema.load(&mut c.conn, &db, &t.name).await;
                }
            }
        }
    }

    /// What a forwarded write invalidates: its change events, resolved as
    /// the feeds resolve theirs (`invalidation/resolve.rs`).
    pub(super) fn write_effect(&self, inv: &Invalidation, params: &[Value]) -> Effect {
        let schema = &self.shared.schema;
        let db = self.vars.db.as_deref();
        let effect = resolve_all(&writes::events(inv, params, db, schema), schema);
        writes::forget(inv, db, schema);
        effect
    }

    /// Applies a statement's invalidation, and flushes or drops what a
    /// transaction had pending once it ends.
    pub(super) async fn invalidate_after(
        &mut self,
        verdict: &Verdict,
        params: &[Value],
        tx_open: bool,
    ) {
        let cache = self.shared.cache.clone();
        if let Verdict::Write(inv) = verdict {
            let resolved = self.write_effect(inv, params);
            apply(&cache, &resolved).await;
            self.routed = Routed::Write(Some(describe(&resolved)));
            if tx_open {
                self.pending.push(resolved);
            }
        }
        if tx_open || self.pending.is_empty() {
            return;
        }
        if matches!(verdict, Verdict::Rollback) {
            self.pending.clear();
        } else {
            for r in std::mem::take(&mut self.pending) {
                apply(&cache, &r).await;
            }
        }
    }
}

async fn apply(cache: &crate::cache::Cache, r: &Effect) {
    match r {
        Effect::Everything => cache.invalidate_writes(&[], true).await,
        Effect::Tags(tags) => cache.invalidate_writes(tags, false).await,
    }
}

fn describe(r: &Effect) -> String {
    match r {
        Effect::Everything => "write(invalidated: everything)".into(),
        Effect::Tags(tags) => {
            let names: Vec<String> = tags
                .iter()
                .map(|t| match t {
                    Tag::Row { db, table, pk } => format!("{db}.{table}[{pk}]"),
                    Tag::Table { db, table } => format!("{db}.{table}"),
                    Tag::AnyWrite { db, table } => format!("{db}.{table}(any)"),
                })
                .collect();
            format!("write(invalidated: {})", names.join(", "))
        }
    }
}

/// The canonical texts of integer key values (`Tag::row_of`'s parts).
fn canonical_key(values: &[Value]) -> Option<Vec<String>> {
    values.iter().map(canonical_int).collect()
}

/// The session state that is part of every cache key.
pub struct KeyState<'a> {
    /// None when entries are shared across users.
    pub user: Option<&'a str>,
    pub db: Option<&'a str>,
    pub names: &'a str,
    pub sql_mode: Option<&'a str>,
    pub time_zone: Option<&'a str>,
    pub deprecate_eof: bool,
}

/// Writes the cache key for a statement into `k` (reused: no allocation
/// once it has grown): a hash of the session state, the protocol byte, the
/// statement bytes, and the type-tagged parameters.
/// `params` are a prepared statement's values and declared types (two bytes
/// each: a BLOB or a DATE parameter gives other results than a VAR_STRING or
/// a DATETIME one of the same value).
pub fn build_key(
    k: &mut Vec<u8>,
    s: &KeyState<'_>,
    proto: u8,
    body: &[u8],
    params: (&[Value], &[u8]),
) {
    let mut h = DefaultHasher::new();
    (
        s.user,
        s.db,
        s.names,
        s.sql_mode,
        s.time_zone,
        s.deprecate_eof,
    )
        .hash(&mut h);
    k.clear();
    k.extend_from_slice(&h.finish().to_le_bytes());
    k.push(proto);
    k.extend_from_slice(&(body.len() as u32).to_le_bytes());
    k.extend_from_slice(body);
    for p in params.0 {
        encode_param(k, p);
    }
    k.extend_from_slice(params.1);
}

/// Appends a binary-protocol parameter, type-tagged, to a key.
fn encode_param(k: &mut Vec<u8>, v: &Value) {
    match v {
        Value::NULL => k.push(0),
        Value::Bytes(b) => {
            k.push(1);
            k.extend_from_slice(&(b.len() as u32).to_le_bytes());
            k.extend_from_slice(b);
        }
        Value::Int(i) => {
            k.push(2);
            k.extend_from_slice(&i.to_le_bytes());
        }
        Value::UInt(u) => {
            k.push(3);
            k.extend_from_slice(&u.to_le_bytes());
        }
        Value::Float(f) => {
            k.push(4);
            k.extend_from_slice(&f.to_le_bytes());
        }
        Value::Double(d) => {
            k.push(5);
            k.extend_from_slice(&d.to_le_bytes());
        }
        Value::Date(y, mo, d, h, mi, s, us) => {
            k.push(6);
            k.extend_from_slice(&y.to_le_bytes());
            k.extend_from_slice(&[*mo, *d, *h, *mi, *s]);
            k.extend_from_slice(&us.to_le_bytes());
        }
        Value::Time(neg, d, h, mi, s, us) => {
            k.push(7);
            k.push(*neg as u8);
            k.extend_from_slice(&d.to_le_bytes());
            k.extend_from_slice(&[*h, *mi, *s]);
            k.extend_from_slice(&us.to_le_bytes());
        }
    }
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
    fn every_part_of_the_state_changes_the_key() {
        let base = KeyState {
            user: Some("a"),
            db: Some("d"),
            names: "utf8mb4",
            sql_mode: None,
            time_zone: None,
            deprecate_eof: true,
        };
        let key = |s: &KeyState<'_>, proto: u8, body: &[u8]| {
            let mut k = Vec::new();
            build_key(&mut k, s, proto, body, (&[], &[]));
            k
        };
        let k0 = key(&base, TEXT, b"SELECT 1");
        let variants = [
            KeyState {
                user: Some("b"),
                ..base
            },
            KeyState { user: None, ..base },
            KeyState {
                db: Some("e"),
                ..base
            },
            KeyState {
                names: "latin1",
                ..base
            },
            KeyState {
                sql_mode: Some("'ANSI'"),
                ..base
            },
            KeyState {
                time_zone: Some("'+01:00'"),
                ..base
            },
            KeyState {
                deprecate_eof: false,
                ..base
            },
        ];
        for v in &variants {
            assert_ne!(key(v, TEXT, b"SELECT 1"), k0);
        }
        assert_ne!(key(&base, BINARY, b"SELECT 1"), k0);
        assert_ne!(key(&base, TEXT, b"SELECT 2"), k0);
        assert_eq!(key(&base, TEXT, b"SELECT 1"), k0);
    }

    #[test]
    fn params_are_type_tagged_in_keys() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode_param(&mut a, &Value::Int(5));
        encode_param(&mut b, &Value::Bytes(b"5".to_vec()));
        assert_ne!(a, b);
    }

    #[test]
    fn declared_types_are_part_of_the_key() {
        let s = KeyState {
            user: None,
            db: None,
            names: "utf8mb4",
            sql_mode: None,
            time_zone: None,
            deprecate_eof: true,
        };
        let a = [Value::Bytes(b"A".to_vec())];
        let key = |types: &[u8]| {
            let mut k = Vec::new();
            build_key(&mut k, &s, BINARY, b"SELECT 'a' = ?", (&a, types));
            k
        };
        // BLOB (compared as binary) and VAR_STRING give different results.
        assert_ne!(key(&[252, 0]), key(&[253, 0]));
        assert_eq!(key(&[253, 0]), key(&[253, 0]));
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
}
