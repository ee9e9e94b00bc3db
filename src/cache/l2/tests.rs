//! Tier logic with an in-memory store (`MemKv`, not Ignite): several
//! `Cache`s sharing one `MemKv` play proxies sharing one cluster. `read`
//! below follows the session's order (L1, L1 guard, L2, backend, fills).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::mem::{Link, MemKv};
use super::*;
use crate::cache::{Cache, Entry, Lookup, Tag};
use crate::config::CacheConfig;

const TTL: Duration = Duration::from_secs(60);

struct Proxy {
    cache: Arc<Cache>,
    link: Arc<Link>,
}

const EVENTS: Coherence = Coherence::Events {
    max_lag: Duration::from_millis(300),
    heartbeat: Duration::from_millis(20),
};

async fn proxy(kv: &Arc<MemKv>) -> Proxy {
    proxy_with(kv, EVENTS).await
}

async fn proxy_with(kv: &Arc<MemKv>, coherence: Coherence) -> Proxy {
    let link = Arc::new(Link::new(kv.clone()));
    let l2 = L2::new(
        link.clone(),
        L2Config {
            timeout: Duration::from_millis(50),
            write_timeout: Duration::from_millis(200),
            ttl: None,
            coherence,
        },
    );
    let p = Proxy {
        cache: Cache::with_l2(CacheConfig::default(), Some(l2)),
        link,
    };
    p.wait_up().await;
    if coherence != Coherence::Strict {
        p.wait_trusted().await;
    }
    p
}

impl Proxy {
    fn l2(&self) -> &Arc<L2> {
        self.cache.l2.as_ref().unwrap()
    }

    async fn wait_trusted(&self) {
        let t = Instant::now();
        while !self.l2().l1_trusted() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "subscription never proven"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn wait_up(&self) {
        let t = Instant::now();
        while !self.l2().is_up() {
            assert!(t.elapsed() < Duration::from_secs(10), "tier never came up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A point read of row `pk`; `mysql` is the backend's current value.
    /// Returns the value served and where it came from.
    async fn read(&self, kv: &MemKv, pk: &str, mysql: &str) -> (String, &'static str) {
        let key = format!("select v from t where id = {pk}").into_bytes();
        let tags = [Tag::row("d", "t", pk), Tag::table("d", "t")];
        let c = &self.cache;
        let text = |b: &Bytes| String::from_utf8(b.to_vec()).unwrap();
        match c.lookup(&key) {
            Lookup::Hit(b, _) => return (text(&b), "l1"),
            Lookup::Confirm(b, g, _, _) if self.l2().confirm(&g).await => {
                return (text(&b), "l1-confirmed")
            }
            Lookup::Confirm(..) => c.remove(&key),
            _ => {}
        }
        let g1 = c.tokens.guard(&tags);
        let slots: Vec<u32> = tags.iter().map(Tag::slot).collect();
        let g2 = match self.l2().lookup(&key, &slots).await {
            L2Lookup::Hit {
                response,
                ttl_left,
                guard,
            } => {
                c.insert_entry(key, entry(response.clone(), g1, Some(guard), ttl_left));
                return (text(&response), "l2");
            }
            L2Lookup::Miss(g) => g,
            L2Lookup::Skipped => None,
        };
        let resp = Bytes::from(mysql.to_owned());
        if let Some(g) = &g2 {
            let before = kv.entries();
            c.fill_l2(&key, &resp, g.clone(), TTL);
            settle(|| kv.entries() > before || kv.has(&key, &resp)).await;
        }
        c.insert_entry(key, entry(resp, g1, g2, TTL));
        (mysql.to_owned(), "mysql")
    }

    async fn applied_at_least(&self, n: u64) {
        let t = Instant::now();
        while self.l2().peers.stats.applied.load(Ordering::Relaxed) < n {
            assert!(t.elapsed() < Duration::from_secs(5), "event never applied");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn write(&self, pk: &str) {
        self.cache
            .invalidate_writes(&[Tag::row("d", "t", pk)], false)
            .await;
    }
}

fn entry(response: Bytes, guard: crate::cache::Guard, l2: Option<L2Guard>, ttl: Duration) -> Entry {
    Entry {
        response,
        guard,
        l2,
        ttl,
        recipe: None,
        shape: crate::cache::UNKNOWN_SHAPE,
        table: None,
    }
}

async fn settle(done: impl Fn() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < Duration::from_secs(5), "fill never landed");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

impl MemKv {
    fn has(&self, key: &[u8], resp: &[u8]) -> bool {
        self.entry(key).is_some_and(|v| v.ends_with(resp))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_proxy_is_served_what_another_filled() {
    let kv = Arc::new(MemKv::default());
    let (a, b) = (proxy(&kv).await, proxy(&kv).await);
    assert_eq!(a.read(&kv, "1", "v1").await, ("v1".into(), "mysql"));
    assert_eq!(b.read(&kv, "1", "v1").await, ("v1".into(), "l2"));
    // The L2 hit filled B's L1.
    assert_eq!(b.read(&kv, "1", "v1").await, ("v1".into(), "l1"));
    assert_eq!(b.l2().stats.hits.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_through_one_proxy_makes_the_entry_stale_for_all() {
    let kv = Arc::new(MemKv::default());
    let (a, b, c) = (proxy(&kv).await, proxy(&kv).await, proxy(&kv).await);
    a.read(&kv, "1", "v1").await;
    b.write("1").await; // MySQL now holds v2
    assert_eq!(c.read(&kv, "1", "v2").await, ("v2".into(), "mysql"));
    // A's L1 copy is dropped by B's invalidation, delivered as an event.
    a.applied_at_least(1).await;
    assert_eq!(a.read(&kv, "1", "v2").await, ("v2".into(), "l2"));
    // Other rows are untouched.
    a.read(&kv, "2", "w").await;
    b.write("1").await;
    assert_eq!(c.read(&kv, "2", "w").await, ("w".into(), "l2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fill_that_raced_an_invalidation_is_never_served_from_l2() {
    let kv = Arc::new(MemKv::default());
    let (a, b, c) = (proxy(&kv).await, proxy(&kv).await, proxy(&kv).await);
    let key = b"select v from t where id = 1";
    let tags = [Tag::row("d", "t", "1"), Tag::table("d", "t")];
    let slots: Vec<u32> = tags.iter().map(Tag::slot).collect();
    // A misses and reads its guard (tokens) before asking MySQL …
    let L2Lookup::Miss(Some(g)) = a.l2().lookup(key, &slots).await else {
        panic!("expected a guarded miss")
    };
    // … B's write commits and invalidates while A's query runs …
    b.write("1").await;
    // … A stores what it read (the old row) under the old tokens.
    a.cache.fill_l2(key, b"old", g, TTL);
    settle(|| kv.has(key, b"old")).await;
    assert_eq!(c.read(&kv, "1", "new").await, ("new".into(), "mysql"));
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_tokens_and_expired_entries_never_match() {
    let kv = Arc::new(MemKv::default());
    let (a, b) = (proxy(&kv).await, proxy(&kv).await);
    a.read(&kv, "1", "v1").await;
    kv.forget_tokens(); // eviction, node loss, cluster restart
    assert_eq!(b.read(&kv, "1", "v1").await.1, "mysql");
    // An entry past its deadline is a miss even if the store kept it.
    let key = b"k";
    let slots = [Tag::table("d", "x").slot()];
    let L2Lookup::Miss(Some(g)) = a.l2().lookup(key, &slots).await else {
        panic!("expected a guarded miss")
    };
    let past = now_ms() - 1;
    kv.put_entry(Bytes::from_static(key), encode(past, &g, b"r"), TTL)
        .await
        .unwrap();
    assert!(matches!(
        b.l2().lookup(key, &slots).await,
        L2Lookup::Miss(Some(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_parks_invalidations_and_delivers_them_before_trusting_l2() {
    let kv = Arc::new(MemKv::default());
    let (a, b) = (proxy(&kv).await, proxy(&kv).await);
    a.read(&kv, "1", "v1").await;
    a.read(&kv, "2", "w1").await;
    // A loses the store; its clients write row 1.
    a.link.set_cut(true);
    a.write("1").await;
    assert!(!a.l2().is_up());
    assert_eq!(a.l2().pending(), (1, false), "the row's slot is parked");
    // A neither reads nor fills L2 meanwhile (its clients see MySQL).
    assert_eq!(a.read(&kv, "1", "v2").await, ("v2".into(), "mysql"));
    assert!(matches!(a.l2().lookup(b"x", &[1]).await, L2Lookup::Skipped));
    // The link heals: the parked invalidation lands before A trusts L2.
    a.link.set_cut(false);
    a.wait_up().await;
    assert_eq!(a.l2().pending(), (0, false));
    assert_eq!(b.read(&kv, "1", "v2").await, ("v2".into(), "mysql"));
    assert!(a.l2().stats.recoveries.load(Ordering::Relaxed) >= 2);
}

/// A proxy that marked the tier down delivers a write's invalidation
/// before the write returns, as soon as the store answers: not at its next
/// recovery attempt, while the other proxy serves L1.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_while_down_delivers_at_once_when_the_store_answers() {
    let kv = Arc::new(MemKv::default());
    let (a, b) = (proxy(&kv).await, proxy(&kv).await);
    assert_eq!(b.read(&kv, "1", "v1").await.1, "mysql");
    assert_eq!(b.read(&kv, "1", "v1").await.1, "l1");
    a.link.set_cut(true);
    a.write("2").await;
    assert!(!a.l2().is_up());
    // Long enough for the recovery back-off to reach its ceiling.
    tokio::time::sleep(MAX_BACKOFF * 2).await;
    a.link.set_cut(false);
    let slot = Tag::row("d", "t", "1").slot() as i64;
    let before = kv.token(slot);
    let applied = b.l2().peers.stats.applied.load(Ordering::Relaxed);
    a.write("1").await;
    assert_ne!(
        kv.token(slot),
        before,
        "delivered by the write, not the back-off"
    );
    // B's L1 learns of it through its subscription (within max_lag).
    b.applied_at_least(applied + 1).await;
    assert_eq!(b.read(&kv, "1", "v2").await, ("v2".into(), "mysql"));
    // What it parked follows with its recovery.
    a.wait_up().await;
    assert_eq!(a.l2().pending(), (0, false));
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_parked_invalidations_become_a_new_epoch() {
    let kv = Arc::new(MemKv::default());
    let (a, b) = (proxy(&kv).await, proxy(&kv).await);
    a.read(&kv, "1", "v1").await;
    let epoch = kv.token(EPOCH);
    a.link.set_cut(true);
    let many: Vec<u32> = (0..MAX_PENDING as u32 + 1).collect();
    a.l2().invalidate(&many, false).await;
    assert_eq!(a.l2().pending(), (0, true));
    a.link.set_cut(false);
    a.wait_up().await;
    assert_ne!(kv.token(EPOCH), epoch);
    assert_eq!(b.read(&kv, "1", "v1").await.1, "mysql", "every entry stale");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_store_costs_the_timeout_then_is_skipped() {
    let kv = Arc::new(MemKv::default());
    let a = proxy(&kv).await;
    kv.set_delay(Duration::from_millis(300));
    for _ in 0..READ_FAILURES_DOWN {
        let t = Instant::now();
        assert!(matches!(
            a.l2().lookup(b"k", &[1]).await,
            L2Lookup::Miss(None)
        ));
        assert!(
            t.elapsed() < Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
    }
    assert!(matches!(a.l2().lookup(b"k", &[1]).await, L2Lookup::Skipped));
    kv.set_delay(Duration::ZERO);
    a.wait_up().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn feed_invalidations_from_a_plain_thread_reach_the_store_first() {
    let kv = Arc::new(MemKv::default());
    let (a, b) = (proxy(&kv).await, proxy(&kv).await);
    a.read(&kv, "1", "v1").await;
    let cache = a.cache.clone();
    let slot = Tag::row("d", "t", "1").slot() as i64;
    let before = kv.token(slot);
    let kv2 = kv.clone();
    std::thread::spawn(move || {
        cache.invalidate_feed(&[Tag::row("d", "t", "1")], false);
        // Returned: the store has the new token already.
        assert_ne!(kv2.token(slot), before);
    })
    .join()
    .unwrap();
    assert_eq!(b.read(&kv, "1", "v2").await.1, "mysql");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_proxys_write_reaches_l1_and_own_echoes_are_skipped() {
    let kv = Arc::new(MemKv::default());
    let (a, b) = (proxy(&kv).await, proxy(&kv).await);
    a.read(&kv, "1", "v1").await;
    a.read(&kv, "2", "w1").await;
    assert_eq!(a.read(&kv, "1", "v1").await.1, "l1");
    let stats = &b.l2().peers.stats;
    let (b_applied, b_own) = (
        stats.applied.load(Ordering::Relaxed),
        stats.own.load(Ordering::Relaxed),
    );
    b.write("1").await;
    a.applied_at_least(1).await;
    assert_eq!(a.read(&kv, "1", "v2").await, ("v2".into(), "mysql"));
    assert_eq!(a.read(&kv, "2", "w1").await.1, "l1", "other rows stay");
    // B's own write came back to B as an event and was skipped.
    let t = Instant::now();
    while stats.own.load(Ordering::Relaxed) == b_own {
        assert!(t.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(stats.applied.load(Ordering::Relaxed), b_applied);
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_mode_confirms_every_l1_hit() {
    let kv = Arc::new(MemKv::default());
    let a = proxy_with(&kv, Coherence::Strict).await;
    let b = proxy(&kv).await;
    a.read(&kv, "1", "v1").await;
    a.read(&kv, "2", "w1").await;
    assert_eq!(a.read(&kv, "1", "v1").await.1, "l1-confirmed");
    b.write("1").await;
    // No waiting: the very next read does not serve the old row.
    assert_eq!(a.read(&kv, "1", "v2").await, ("v2".into(), "mysql"));
    assert_eq!(a.read(&kv, "2", "w1").await.1, "l1-confirmed");
    assert!(!a.l2().l1_trusted());
    assert!(a.l2().stats.confirmed.load(Ordering::Relaxed) >= 2);
    // Unreachable tier: nothing can be confirmed, so nothing is served from L1.
    a.link.set_cut(true);
    assert_eq!(a.read(&kv, "2", "w1").await.1, "mysql");
}

/// The feed's bound runs from when a change is on Kafka, not from another
/// proxy's OK: an open feed gate must not let L1 skip confirmation.
#[tokio::test(flavor = "multi_thread")]
async fn an_open_feed_gate_does_not_stand_in_for_the_subscription() {
    let kv = Arc::new(MemKv::default());
    let (a, b) = (proxy(&kv).await, proxy(&kv).await);
    b.cache
        .gate
        .open_until(Instant::now() + Duration::from_secs(60));
    b.read(&kv, "1", "v1").await;
    assert_eq!(b.read(&kv, "1", "v1").await.1, "l1");
    kv.set_mute(true);
    let t = Instant::now();
    while b.l2().l1_trusted() {
        assert!(t.elapsed() < Duration::from_secs(5), "gate never closed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(b.cache.gate.is_open() && b.cache.gate.has_feed());
    a.write("1").await;
    assert_eq!(b.read(&kv, "1", "v2").await, ("v2".into(), "mysql"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_subscription_closes_the_gate_and_flushes_l1_on_return() {
    let kv = Arc::new(MemKv::default());
    let a = proxy(&kv).await;
    a.read(&kv, "1", "v1").await;
    let flushes = a.l2().peers.stats.flushes.load(Ordering::Relaxed);
    // The event stream stalls: no more events, no more proofs.
    kv.set_mute(true);
    let t = Instant::now();
    while a.l2().l1_trusted() {
        assert!(t.elapsed() < Duration::from_secs(5), "gate never closed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        t.elapsed() <= Duration::from_millis(300 + 100),
        "{:?}",
        t.elapsed()
    );
    // Meanwhile an L1 hit is confirmed against the tier first.
    assert_eq!(a.read(&kv, "1", "v1").await.1, "l1-confirmed");
    // Events flow again: trust returns, after flushing what it may have missed.
    kv.set_mute(false);
    a.wait_trusted().await;
    assert!(a.l2().peers.stats.flushes.load(Ordering::Relaxed) > flushes);
    assert_eq!(a.read(&kv, "1", "v1").await.1, "l2", "L1 was flushed");
    // A subscription that ends is replaced, and L1 flushed again.
    a.read(&kv, "1", "v1").await;
    let flushes = a.l2().peers.stats.flushes.load(Ordering::Relaxed);
    kv.drop_watchers();
    let t = Instant::now();
    while a.l2().peers.stats.subscriptions.load(Ordering::Relaxed) < 2 {
        assert!(t.elapsed() < Duration::from_secs(5), "never resubscribed");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    a.wait_trusted().await;
    assert!(a.l2().peers.stats.flushes.load(Ordering::Relaxed) > flushes);
    assert_eq!(a.read(&kv, "1", "v1").await.1, "l2", "L1 was flushed");
}

#[test]
fn entries_round_trip_and_garbage_is_no_entry() {
    let g = L2Guard(vec![(5, -7), (EPOCH, 9)]);
    let v = encode(123, &g, b"resp");
    let d = decode(&v).unwrap();
    assert_eq!((d.deadline_ms, d.response), (123, &b"resp"[..]));
    assert_eq!(d.tokens, g.0);
    assert!(d.is_fresh(&[5, EPOCH], &[Some(-7), Some(9)], 100));
    assert!(
        !d.is_fresh(&[5, EPOCH], &[Some(-7), Some(9)], 123),
        "expired"
    );
    assert!(
        !d.is_fresh(&[5, EPOCH], &[Some(-7), None], 100),
        "lost token"
    );
    assert!(
        !d.is_fresh(&[6, EPOCH], &[Some(-7), Some(9)], 100),
        "other tags"
    );
    assert!(decode(b"SC1").is_none());
    assert!(decode(&v[..20]).is_none());
    assert!(decode(b"XX1aaaaaaaaaaaaaaaa").is_none());
}
