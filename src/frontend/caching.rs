//! The session's side of the cache: it translates session state into the
//! cache's terms (`cache/key.rs`, `cache/plan.rs`) and their answers into
//! replies, route records and counters.
//!
//! Policy: a hit parses nothing — the key is built from the session's state
//! and the statement bytes (or the prepared statement's SQL and parameter
//! values), looked up, its tokens checked, and the stored bytes written. A
//! miss of a point read is planned by `cache::plan` (its guard read *before*
//! the backend query) and its response stored only if it is exactly one row
//! set without warnings, small enough. Writes invalidate after MySQL
//! acknowledged them and before the client sees the OK (the response is
//! flushed after this runs) — immediately, and again at COMMIT when inside a
//! transaction (a second bump costs only hit rate and covers
//! non-transactional tables); ROLLBACK drops what was pending.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use mysql_async::EncodedParams;
use mysql_common::constants::CapabilityFlags;
use mysql_common::value::Value;

use super::route::{Routed, Stored, Tier};
use super::session::Session;
use crate::backend::BackendConn;
use crate::cache::key::{build_key_with, KeyState};
use crate::cache::plan::{self, Fill, Started};
use crate::cache::{Cache, Entry, Flight, Lookup, Recipe, Tag};
use crate::classify::{BypassReason, Invalidation, Verdict};
use crate::invalidation::{writes, Effect};

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

impl Session {
    pub(super) fn cache_bypass(&self) -> Option<BypassReason> {
        plan::session_bypass(
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
        let hash = self.state_hash.get(&state);
        build_key_with(&mut self.keybuf, hash, proto, body, (params, types));
    }

    /// Answers from the cache if `self.keybuf` is a fresh entry (confirmed
    /// by the shared tier first when this proxy cannot vouch for it).
    pub(super) async fn serve_hit(&mut self) -> bool {
        let cache = &self.shared.cache;
        match cache.lookup(&self.keybuf) {
            Lookup::Hit(bytes, shape) => {
                self.conn.write_framed(&bytes);
                self.shape = shape;
                cache
                    .stats
                    .hits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.routed = Routed::Hit(Tier::L1);
                true
            }
            Lookup::Confirm(bytes, guard, shape, table) => {
                let Some(l2) = &cache.l2 else { return false };
                if !l2.confirm(&guard).await {
                    cache.remove(&self.keybuf);
                    return false;
                }
                self.conn.write_framed(&bytes);
                self.shape = shape;
                cache.stats.hits.fetch_add(1, Ordering::Relaxed);
                if let Some(t) = table {
                    t.hit();
                }
                self.routed = Routed::Hit(Tier::L1Confirmed);
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
            (Verdict::Read(pr), None) => {
                let (cache, schema) = (self.shared.cache.clone(), self.shared.schema.clone());
                let db = self.vars.db.as_deref();
                match plan::read_plan(&cache, &schema, &mut c.conn, pr, params, db).await {
                    Ok(p) => {
                        let recipe = p.refresh.map(|slot| self.recipe(&p, slot, stmt));
                        match plan::start_fill(&cache, &self.keybuf, &p, recipe).await {
                            Started::L2Hit(hit, fill) => {
                                self.serve_l2(hit, fill);
                                return Planned::Served;
                            }
                            Started::Fill(fill) => {
                                cache.stats.misses.fetch_add(1, Ordering::Relaxed);
                                self.routed = Routed::Miss(Stored::Pending);
                                Some(fill)
                            }
                        }
                    }
                    Err(r) => {
                        self.note_bypass(r);
                        None
                    }
                }
            }
            (Verdict::Read(_), Some(r)) => {
                self.note_bypass(r);
                None
            }
            (Verdict::Bypass(r), _) => {
                self.note_bypass(*r);
                None
            }
            (Verdict::Write(inv), _) => {
                if self.shared.cache.cfg.enabled {
                    let db = self.vars.db.as_deref();
                    plan::load_write_facts(&self.shared.schema, &mut c.conn, inv, db).await;
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

    /// How a `refresh` table's entry is read again: the statement as run
    /// (`stmt`: its text or SQL, and a prepared one's encoded parameters)
    /// and the session state it ran under.
    fn recipe(
        &self,
        p: &plan::ReadPlan,
        slot: u32,
        stmt: (&[u8], Option<&EncodedParams>),
    ) -> Arc<Recipe> {
        let mut recipe = Recipe::new(
            self.keybuf.clone(),
            self.key.user.clone(),
            self.login.password.clone(),
            self.key.found_rows,
            self.vars.clone(),
            stmt.0.to_vec(),
            stmt.1.cloned(),
            self.login.caps,
            self.status,
            p.tags.clone(),
            p.ttl,
            slot,
        );
        recipe.generation = p.generation;
        recipe.table = Some(self.shared.cache.tables.get(&p.table.0, &p.table.1));
        Arc::new(recipe)
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
    /// read before the lookup (and the tier's tokens it was filled under).
    fn serve_l2(&mut self, hit: plan::L2Hit, fill: Fill) {
        let cache = self.shared.cache.clone();
        self.conn.write_framed(&hit.response);
        cache.stats.hits.fetch_add(1, Ordering::Relaxed);
        cache.stats.l2_hits.fetch_add(1, Ordering::Relaxed);
        self.routed = Routed::Hit(Tier::L2);
        if let Some(t) = &fill.table {
            t.hit();
        }
        let entry = Entry {
            response: hit.response,
            guard: fill.guard,
            l2: Some(hit.guard),
            ttl: fill.ttl.min(hit.ttl_left),
            recipe: fill.recipe,
            shape: self.shape,
            table: fill.table,
        };
        cache.insert_entry(self.keybuf.clone(), entry);
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
        let too_large = flushed || bytes.len() as u64 > cache.max_result_bytes();
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
        if let Some(g) = fill
            .l2
            .as_ref()
            .filter(|_| cache.tokens.is_fresh(&fill.guard))
        {
            cache.fill_l2(&self.keybuf, &response, g.clone(), fill.ttl);
        }
        let entry = Entry {
            response,
            guard: fill.guard,
            l2: fill.l2,
            ttl: fill.ttl,
            recipe: fill.recipe,
            shape: self.shape,
            table: fill.table,
        };
        cache.insert_entry(self.keybuf.clone(), entry);
        self.routed = Routed::Miss(Stored::Filled);
    }

    /// Joins the miss already running for `self.keybuf`, if any: becomes its
    /// leader, or waits for it and answers from the cache when it filled.
    pub(super) async fn coalesce<'c>(&mut self, cache: &'c Cache) -> Option<Coalesced<'c>> {
        match cache.join_flight(&self.keybuf).await {
            Some(f) => Some(Coalesced::Leader(f)),
            None if self.serve_hit().await => Some(Coalesced::Served),
            None => None,
        }
    }

    /// What a forwarded write invalidates: its change events, resolved as
    /// the feeds resolve theirs (`invalidation/resolve.rs`).
    pub(super) fn write_effect(&self, inv: &Invalidation, params: &[Value]) -> Effect {
        writes::effect(inv, params, self.vars.db.as_deref(), &self.shared.schema)
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
