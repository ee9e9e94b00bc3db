//! Cross-proxy coherence of L1: every invalidation any proxy writes to the
//! shared tokens reaches every other proxy's in-process tokens.
//!
//! Policy (`coherence = "events"`):
//! * **Subscription.** The tier subscribes to every change of the tokens
//!   cache (`Kv::watch`: an Ignite continuous query). A changed slot bumps
//!   that L1 slot; a changed epoch bumps everything. A change this proxy
//!   wrote itself (same key, same random value) is skipped: L1 was bumped
//!   when it was written.
//! * **Proof.** Every `heartbeat` the proxy writes a round of its own beat
//!   keys — one per node that is primary for tokens when the partition map
//!   is known (`Kv::beat_keys`) — and notes when. A round is proven when
//!   the subscription has delivered every key of it. Ignite delivers one
//!   partition's events in order and a node sends them as it applies the
//!   writes, so once a round written at `t` is echoed from every node, every
//!   token write those nodes acknowledged before `t` has been applied here.
//!   L1 may then serve hits until `t + max_lag` (`gate`); past it, hits must
//!   be confirmed against the tier (`L2::confirm`) or go to MySQL.
//! * **Gaps flush.** A new subscription, its first proof, a topology change
//!   (a lost node's unsent events are gone) and trust regained after it
//!   lapsed each bump every L1 token first: events that may have been
//!   missed cost hit rate, never a stale row. The first proof flushes again
//!   because Ignite drops a new continuous query's events until it has sent
//!   the query's response (`ClientCacheQueryContinuousHandle` starts
//!   notifying only then), so writes just after the subscription returned
//!   may never arrive; a proven round shows notifying had begun before it.
//!
//! `coherence = "strict"` never opens the gate: every L1 hit is confirmed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{EPOCH, L2};
use crate::cache::gate::FeedGate;
use crate::cache::tokens::{TagTokens, SLOTS};

/// Beat keys live far below every slot and the epoch: a proxy's keys are
/// `BEAT_BASE + id * BEAT_SPAN + j`.
const BEAT_BASE: i64 = i64::MIN / 2;
pub const BEAT_SPAN: i64 = 4096;
/// Own writes remembered for echo suppression before the memory is reset.
const MAX_OWN: usize = 100_000;
/// Rounds awaiting their echoes before the oldest is dropped.
const MAX_ROUNDS: usize = 64;

/// How L1 hits stay coherent across proxies sharing the tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coherence {
    /// Invalidations arrive as events; hits are served while the
    /// subscription is proven at most `max_lag` old.
    Events {
        max_lag: Duration,
        heartbeat: Duration,
    },
    /// Every L1 hit re-reads its tokens from the tier (one round trip).
    Strict,
}

/// What a subscription to the tokens cache reports (`Kv::watch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Token keys written by any proxy, with their new values (None:
    /// removed or expired).
    Tokens(Vec<(i64, Option<i64>)>),
    /// The cluster's topology changed.
    Topology,
}

#[derive(Default)]
pub struct PeerStats {
    /// L1 slots (or everything) bumped for another proxy's write.
    pub applied: AtomicU64,
    /// This proxy's own writes seen again and skipped.
    pub own: AtomicU64,
    /// Times every L1 token was bumped for a gap (subscribe, topology, lapse).
    pub flushes: AtomicU64,
    /// Heartbeat rounds proven.
    pub proofs: AtomicU64,
    /// Subscriptions established.
    pub subscriptions: AtomicU64,
}

pub struct Peers {
    /// Open while L1 hits need no confirmation.
    pub gate: FeedGate,
    /// This proxy's beat-key block.
    id: i64,
    own: Mutex<HashMap<i64, i64>>,
    pub stats: PeerStats,
}

impl Default for Peers {
    fn default() -> Self {
        Self::new()
    }
}

impl Peers {
    pub fn new() -> Peers {
        let gate = FeedGate::open();
        gate.close();
        Peers {
            gate,
            id: rand::random::<u32>() as i64 % ((i64::MAX / 2) / BEAT_SPAN),
            own: Mutex::default(),
            stats: PeerStats::default(),
        }
    }

    /// The first of this proxy's beat keys.
    pub fn beat_base(&self) -> i64 {
        BEAT_BASE + self.id * BEAT_SPAN
    }

    /// Remembers token values this proxy is about to write.
    pub fn wrote(&self, tokens: &[(i64, i64)]) {
        let mut own = self.own.lock().unwrap();
        if own.len() + tokens.len() > MAX_OWN {
            own.clear();
        }
        own.extend(tokens.iter().copied());
    }

    /// True (and forgotten) if this change is one this proxy wrote.
    fn is_own(&self, key: i64, value: Option<i64>) -> bool {
        let mut own = self.own.lock().unwrap();
        match (own.get(&key), value) {
            (Some(mine), Some(v)) if *mine == v => {
                own.remove(&key);
                true
            }
            _ => false,
        }
    }
}

/// What a token key is to this proxy.
#[derive(Debug, PartialEq, Eq)]
enum Key {
    Slot(u32),
    Epoch,
    /// One of this proxy's beat keys.
    Beat,
    /// Another proxy's beat key, or nothing we know.
    Other,
}

fn key_kind(key: i64, beat_base: i64) -> Key {
    match key {
        EPOCH => Key::Epoch,
        k if (0..SLOTS as i64).contains(&k) => Key::Slot(k as u32),
        k if (beat_base..beat_base + BEAT_SPAN).contains(&k) => Key::Beat,
        _ => Key::Other,
    }
}

/// Heartbeat rounds in flight: which keys each still waits for.
#[derive(Default)]
struct Rounds(VecDeque<Round>);

struct Round {
    seq: i64,
    sent: Instant,
    waiting: HashSet<i64>,
}

impl Rounds {
    fn start(&mut self, seq: i64, sent: Instant, keys: &[i64]) {
        if self.0.len() >= MAX_ROUNDS {
            self.0.pop_front();
        }
        self.0.push_back(Round {
            seq,
            sent,
            waiting: keys.iter().copied().collect(),
        });
    }

    /// Records an echo of beat `key` with value `seq`; when that completes
    /// a round, returns its send time and drops it and every older round.
    fn echo(&mut self, key: i64, seq: i64) -> Option<Instant> {
        let pos = self.0.iter().position(|r| r.seq == seq)?;
        let r = &mut self.0[pos];
        r.waiting.remove(&key);
        if !r.waiting.is_empty() {
            return None;
        }
        let sent = r.sent;
        self.0.drain(..=pos);
        Some(sent)
    }
}

/// Runs the subscription for as long as the tier lives: subscribe, apply,
/// prove; on loss, close the gate and subscribe again with back-off.
pub(super) async fn run(l2: Arc<L2>, tokens: Arc<TagTokens>, max_lag: Duration, every: Duration) {
    let mut backoff = Duration::from_millis(50);
    loop {
        l2.peers.gate.close();
        match l2.kv.watch().await {
            Ok(rx) => {
                backoff = Duration::from_millis(50);
                l2.peers.stats.subscriptions.fetch_add(1, Ordering::Relaxed);
                info!("shared tier: subscribed to other proxies' invalidations");
                follow(&l2, &tokens, rx, max_lag, every).await;
                l2.peers.gate.close();
                warn!("shared tier: invalidation subscription lost; L1 hits are confirmed until it is back");
            }
            Err(e) => {
                warn!(error = %e, "shared tier: cannot subscribe to invalidations; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn flush(l2: &L2, tokens: &TagTokens) {
    tokens.invalidate_all();
    l2.peers.stats.flushes.fetch_add(1, Ordering::Relaxed);
}

/// One subscription's life: apply its events and beat until it ends.
async fn follow(
    l2: &Arc<L2>,
    tokens: &TagTokens,
    mut rx: mpsc::UnboundedReceiver<Notice>,
    max_lag: Duration,
    every: Duration,
) {
    // Whatever others wrote before the subscription began is unknown here.
    flush(l2, tokens);
    let base = l2.peers.beat_base();
    let mut rounds = Rounds::default();
    let mut seq = 0i64;
    let mut proven_once = false;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            n = rx.recv() => match n {
                None => return,
                Some(Notice::Topology) => {
                    l2.peers.gate.close();
                    flush(l2, tokens);
                    proven_once = false;
                }
                Some(Notice::Tokens(changes)) => {
                    for (key, value) in changes {
                        let Some(sent) = apply(l2, tokens, base, key, value, &mut rounds) else {
                            continue;
                        };
                        // The first proof of a subscription, or trust regained
                        // after a lapse: flush what may have been missed.
                        if !proven_once || !l2.peers.gate.is_open() {
                            flush(l2, tokens);
                        }
                        proven_once = true;
                        l2.peers.stats.proofs.fetch_add(1, Ordering::Relaxed);
                        l2.peers.gate.open_until(sent + max_lag);
                    }
                }
            },
            _ = tick.tick() => {
                seq += 1;
                let keys = l2.kv.beat_keys(base);
                rounds.start(seq, Instant::now(), &keys);
                let (me, budget) = (l2.clone(), l2.cfg.write_timeout);
                tokio::spawn(async move {
                    let beat = me.kv.beat(keys.into_iter().map(|k| (k, seq)).collect());
                    let _ = tokio::time::timeout(budget, beat).await;
                });
            }
        }
    }
}

/// Applies one change; returns the send time of a round it completed.
fn apply(
    l2: &L2,
    tokens: &TagTokens,
    base: i64,
    key: i64,
    value: Option<i64>,
    rounds: &mut Rounds,
) -> Option<Instant> {
    let stats = &l2.peers.stats;
    match key_kind(key, base) {
        Key::Beat => return rounds.echo(key, value?),
        Key::Other => {}
        _ if l2.peers.is_own(key, value) => {
            stats.own.fetch_add(1, Ordering::Relaxed);
        }
        Key::Slot(s) => {
            tokens.invalidate_slot(s);
            stats.applied.fetch_add(1, Ordering::Relaxed);
        }
        Key::Epoch => {
            tokens.invalidate_all();
            stats.applied.fetch_add(1, Ordering::Relaxed);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_told_apart() {
        let p = Peers::new();
        let b = p.beat_base();
        assert_eq!(key_kind(EPOCH, b), Key::Epoch);
        assert_eq!(key_kind(0, b), Key::Slot(0));
        assert_eq!(key_kind(SLOTS as i64 - 1, b), Key::Slot(SLOTS as u32 - 1));
        assert_eq!(key_kind(SLOTS as i64, b), Key::Other);
        assert_eq!(key_kind(b, b), Key::Beat);
        assert_eq!(key_kind(b + BEAT_SPAN - 1, b), Key::Beat);
        assert_eq!(key_kind(b + BEAT_SPAN, b), Key::Other);
        assert_eq!(key_kind(b - 1, b), Key::Other);
        assert!(b < EPOCH && b + BEAT_SPAN < EPOCH);
    }

    #[test]
    fn a_round_is_proven_by_all_its_echoes_and_proves_older_ones() {
        let mut r = Rounds::default();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(100);
        r.start(1, t0, &[10, 11]);
        r.start(2, t1, &[10, 11]);
        assert_eq!(r.echo(10, 1), None);
        assert_eq!(r.echo(10, 2), None);
        assert_eq!(r.echo(11, 2), Some(t1), "round 2 complete");
        assert_eq!(r.echo(11, 1), None, "round 1 was dropped with it");
        assert_eq!(r.echo(10, 7), None, "unknown round");
    }

    #[test]
    fn own_writes_are_skipped_once_and_only_with_their_value() {
        let p = Peers::new();
        p.wrote(&[(5, 42)]);
        assert!(!p.is_own(5, Some(41)));
        assert!(!p.is_own(5, None));
        assert!(p.is_own(5, Some(42)));
        assert!(!p.is_own(5, Some(42)), "forgotten after its echo");
    }
}
