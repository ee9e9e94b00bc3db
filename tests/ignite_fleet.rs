//! A fleet of proxies sharing real Apache Ignite: every proxy's L1 learns
//! of every other proxy's writes (events mode, bounded by `max_lag`; strict
//! mode, at once), requests go to each key's primary node, and node loss or
//! a cluster restart costs hit rate only. Clients are mysql_async; the
//! checker records every acknowledged write and every read.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::sqlcache::cache::ignite::codec::{self, Obj, Request};
use ::sqlcache::cache::ignite::{Conn, Dial, IgniteKv, Target};
use ::sqlcache::cache::l2::Kv;
use bytes::Bytes;
use common::ignite::{proxy_section, rows_table, Ignite, IgniteOpts};
use common::sqlcache::*;
use common::*;
use mysql_async::prelude::*;
use mysql_async::Conn as MyConn;

/// The proxies' `max_lag` here: the bound a read may lag another proxy's write.
const MAX_LAG: Duration = Duration::from_millis(1000);

fn section(addrs: &[String], mode: &str) -> String {
    proxy_section(addrs, mode, MAX_LAG)
}

async fn wait_trusted(c: &mut MyConn, strict: bool) {
    let d = Deadline::new(Duration::from_secs(30), "shared tier up and proven");
    while status(c, "l2_up").await != "true"
        || (!strict && status(c, "l2_l1_trusted").await != "true")
    {
        d.tick().await;
    }
}

async fn fills(c: &mut MyConn) -> u64 {
    status(c, "l2_fills").await.parse().unwrap()
}

/// The sequence: A fills, B is served from L2 then L1, A writes,
/// and B (events) sees the new row within `max_lag`; S (strict) at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_through_one_proxy_reaches_every_other_proxys_l1() {
    let db = mariadb();
    rows_table("fl1", 40);
    let ignite = Ignite::start();
    let addrs = ignite.addrs();
    let a = Proxy::start_with(db.port, "", &section(&addrs, "events"), "");
    let b = Proxy::start_with(db.port, "", &section(&addrs, "events"), "");
    let s = Proxy::start_with(db.port, "", &section(&addrs, "strict"), "");
    let mut ca = MyConn::new(opts(a.port, "test")).await.unwrap();
    let mut cb = MyConn::new(opts(b.port, "test")).await.unwrap();
    let mut cs = MyConn::new(opts(s.port, "test")).await.unwrap();
    wait_trusted(&mut ca, false).await;
    wait_trusted(&mut cb, false).await;
    wait_trusted(&mut cs, true).await;

    let mut lags = Vec::new();
    for round in 1..=20 {
        let id = round;
        assert_eq!(value(&mut ca, "fl1", id).await.as_deref(), Some("0"));
        assert_eq!(last(&mut ca).await, "miss(filled)");
        let d = Deadline::new(Duration::from_secs(10), "A's fill");
        while fills(&mut ca).await < round as u64 {
            d.tick().await;
        }
        for (c, warm) in [(&mut cb, "hit"), (&mut cs, "hit(confirmed)")] {
            value(c, "fl1", id).await;
            assert_eq!(last(c).await, "hit(l2)", "row {id}");
            value(c, "fl1", id).await;
            assert_eq!(last(c).await, warm, "row {id}");
        }
        let new = format!("new{id}");
        ca.query_drop(format!("UPDATE fl1 SET v = '{new}' WHERE id = {id}"))
            .await
            .unwrap();
        let acked = Instant::now();
        // Events: B stops serving the old row within max_lag.
        let mut stale = 0;
        loop {
            let got = value(&mut cb, "fl1", id).await;
            let lag = acked.elapsed();
            if got.as_deref() == Some(new.as_str()) {
                lags.push((lag, stale));
                break;
            }
            stale += 1;
            assert!(lag <= MAX_LAG, "B served the old row {lag:?} after A's OK");
        }
        // Strict: S's first read after A's OK is the new row.
        assert_eq!(
            value(&mut cs, "fl1", id).await.as_deref(),
            Some(new.as_str())
        );
    }
    lags.sort();
    eprintln!(
        "A's OK -> B serves the new row: p50 {:?}, max {:?} over {} writes ((lag, old rows B served first))",
        lags[lags.len() / 2],
        lags[lags.len() - 1],
        lags.len()
    );
    assert_eq!(status(&mut cb, "l2_l1_trusted").await, "true");
    assert_ne!(status(&mut cb, "l2_peer_applied").await, "0");
    assert_ne!(status(&mut cs, "l2_confirmed").await, "0");
    drop((a, b, s));
}

/// One observation of the checker.
#[derive(Clone)]
struct Read {
    proxy: usize,
    row: u32,
    value: u64,
    start: Instant,
}

#[derive(Default)]
struct Log {
    /// Per row: (value, proxy that wrote it, when its OK arrived).
    writes: Vec<Vec<(u64, usize, Instant)>>,
    reads: Vec<Read>,
    errors: Vec<String>,
}

/// Runs writers (one per proxy, each owning its rows) and readers on every
/// proxy until `stop`; then counts reads that broke their bound.
struct Checker {
    started: Instant,
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

const ROWS: u32 = 20;

impl Checker {
    fn start(table: &'static str, ports: &[u16]) -> Checker {
        let started = Instant::now();
        let log = Arc::new(Mutex::new(Log {
            writes: vec![Vec::new(); ROWS as usize + 1],
            ..Default::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let n = ports.len() as u32;
        for (p, &port) in ports.iter().enumerate() {
            let (wlog, wstop) = (log.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let (log, stop) = (wlog, wstop);
                let mut c = MyConn::new(opts(port, "test")).await.unwrap();
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let row = 1 + (seq as u32 * n + p as u32) % ROWS;
                    let v = seq * 100 + p as u64;
                    let r = c
                        .query_drop(format!("UPDATE {table} SET v = '{v}' WHERE id = {row}"))
                        .await;
                    {
                        let mut l = log.lock().unwrap();
                        match r {
                            Ok(()) => l.writes[row as usize].push((v, p, Instant::now())),
                            Err(e) => l.errors.push(format!("write via {p}: {e}")),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
            for r in 0..2u32 {
                let (log, stop) = (log.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    let mut c = MyConn::new(opts(port, "test")).await.unwrap();
                    let mut i = r;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let row = 1 + (i * 7) % ROWS;
                        let start = Instant::now();
                        let got = value(&mut c, table, row as i64).await;
                        let value = got.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                        log.lock().unwrap().reads.push(Read {
                            proxy: p,
                            row,
                            value,
                            start,
                        });
                    }
                }));
            }
        }
        Checker {
            started,
            log,
            stop,
            tasks,
        }
    }

    /// Stops the clients and reports (reads, violations, client errors).
    async fn finish(self) -> (usize, Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let log = self.log.lock().unwrap();
        let mut bad = Vec::new();
        for r in &log.reads {
            // The newest value of the row whose OK came before this read
            // began (own proxy) or more than MAX_LAG before (another proxy).
            let due = log.writes[r.row as usize]
                .iter()
                .filter(|(_, p, at)| {
                    let bound = if *p == r.proxy {
                        Duration::ZERO
                    } else {
                        MAX_LAG
                    };
                    *at + bound < r.start
                })
                .max_by_key(|(v, _, _)| *v);
            // One writer per row, so a row's values only grow.
            if let Some((due, by, at)) = due.filter(|(v, _, _)| r.value < *v) {
                // Times from the checker's start, to place the read against
                // the faults the test injected.
                let ms = |t: &Instant| t.duration_since(self.started).as_millis();
                bad.push(format!(
                    "proxy {} row {} read {} at +{} ms but {} was due (OK via proxy {} at +{} ms)",
                    r.proxy,
                    r.row,
                    r.value,
                    ms(&r.start),
                    due,
                    by,
                    ms(at)
                ));
            }
        }
        (log.reads.len(), bad, log.errors.clone())
    }
}

/// Reads and writes through both proxies, concurrently, for `secs`.
async fn load(table: &'static str, ports: &[u16], secs: u64) -> (usize, Vec<String>, Vec<String>) {
    let c = Checker::start(table, ports);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    c.finish().await
}

fn assert_clean(what: &str, (reads, bad, errors): (usize, Vec<String>, Vec<String>)) {
    eprintln!(
        "{what}: {reads} reads, {} beyond the bound, {} client errors",
        bad.len(),
        errors.len()
    );
    assert!(reads > 100, "{what}: only {reads} reads");
    assert!(
        bad.is_empty(),
        "{what}: stale reads: {:?}",
        &bad[..bad.len().min(10)]
    );
    assert!(errors.is_empty(), "{what}: client errors: {errors:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_and_readers_on_two_proxies_see_nothing_staler_than_the_bound() {
    let db = mariadb();
    rows_table("fl2", ROWS);
    let ignite = Ignite::start();
    let a = Proxy::start_with(db.port, "", &section(&ignite.addrs(), "events"), "");
    let b = Proxy::start_with(db.port, "", &section(&ignite.addrs(), "events"), "");
    for p in [&a, &b] {
        wait_trusted(&mut MyConn::new(opts(p.port, "test")).await.unwrap(), false).await;
    }
    assert_clean("one node", load("fl2", &[a.port, b.port], 6).await);
    drop((a, b));
}

/// Three nodes, tokens with one backup and FULL_SYNC writes: a node killed
/// under load and started again, then the whole cluster restarted empty.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_loses_a_node_under_load_and_restarts_without_a_stale_read() {
    let db = mariadb();
    rows_table("fl3", ROWS);
    let ignite = tokio::task::block_in_place(|| {
        Ignite::start_with(IgniteOpts {
            nodes: 3,
            tokens_cache: Some("sqlcache_tokens".into()),
            ..Default::default()
        })
    });
    let addrs = ignite.addrs();
    let a = Proxy::start_with(db.port, "", &section(&addrs, "events"), "");
    let b = Proxy::start_with(
        db.port,
        "",
        &section(
            &[addrs[2].clone(), addrs[1].clone(), addrs[0].clone()],
            "events",
        ),
        "",
    );
    let mut ca = MyConn::new(opts(a.port, "test")).await.unwrap();
    let mut cb = MyConn::new(opts(b.port, "test")).await.unwrap();
    wait_trusted(&mut ca, false).await;
    wait_trusted(&mut cb, false).await;

    let checker = Checker::start("fl3", &[a.port, b.port]);
    let at = |c: &Checker| c.started.elapsed().as_millis();
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!("node 1 killed at +{} ms", at(&checker));
    tokio::task::block_in_place(|| ignite.kill(1));
    tokio::time::sleep(Duration::from_secs(4)).await;
    eprintln!("node 1 restarting at +{} ms", at(&checker));
    tokio::task::block_in_place(|| ignite.restart(1));
    eprintln!("node 1 back at +{} ms", at(&checker));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_clean("node lost and back", checker.finish().await);
    wait_trusted(&mut ca, false).await;
    assert_ne!(
        status(&mut ca, "l2_routed").await,
        "0",
        "requests went to primaries"
    );

    // Warm both L1s, then restart every node: tokens and subscriptions
    // are gone, so nothing filled before may be served from L1 again.
    for id in 1..=ROWS as i64 {
        value(&mut cb, "fl3", id).await;
        value(&mut cb, "fl3", id).await;
    }
    assert_eq!(last(&mut cb).await, "hit");
    tokio::task::block_in_place(|| {
        for i in 0..3 {
            ignite.kill(i);
        }
        for i in 0..3 {
            ignite.restart(i);
        }
    });
    wait_trusted(&mut cb, false).await;
    for id in 1..=ROWS as i64 {
        let want: Option<String> = db_value(db, id);
        assert_eq!(value(&mut cb, "fl3", id).await, want);
        assert_ne!(
            last(&mut cb).await,
            "hit",
            "row {id} served from L1 filled before the restart"
        );
    }
    assert_clean(
        "after the cluster restart",
        load("fl3", &[a.port, b.port], 3).await,
    );
    drop((a, b));
}

fn db_value(db: &MariaDb, id: i64) -> Option<String> {
    let out = db.sql_socket(&format!("SELECT v FROM test.fl3 WHERE id = {id}"));
    out.lines().last().map(|l| l.trim().to_owned())
}

fn kv_target(addrs: Vec<String>) -> Target {
    Target {
        addresses: addrs,
        dial: Dial {
            timeout: Duration::from_secs(5),
            auth: None,
            tls: None,
        },
        cache_name: "fleet_entries".into(),
        tokens_cache_name: "fleet_tokens".into(),
        pool_size: 1,
    }
}

/// Which nodes hold `key` in the entries cache (OP_CACHE_LOCAL_PEEK on each).
async fn holders(nodes: &[(String, Conn)], key: &[u8]) -> Vec<String> {
    let id = codec::java_hash("fleet_entries");
    let mut out = Vec::new();
    for (addr, c) in nodes {
        let r = Request::cache(codec::OP_CACHE_LOCAL_PEEK, id, None).bytes(key);
        let payload = c.call(r).await.unwrap();
        if codec::object(&mut &payload[..]).unwrap() != Obj::Null {
            out.push(addr.clone());
        }
    }
    out
}

async fn wait_map(kv: &IgniteKv) {
    let t = Instant::now();
    while !kv.has_partition_map() {
        assert!(t.elapsed() < Duration::from_secs(20), "no partition map");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each entry is sent to the node the partition map names, and that node
/// is where Ignite keeps it (no backups: only the primary holds it); after
/// a node leaves, the map follows.
#[tokio::test(flavor = "multi_thread")]
async fn requests_go_to_each_keys_primary_across_a_topology_change() {
    let ignite = tokio::task::block_in_place(|| {
        Ignite::start_with(IgniteOpts {
            nodes: 3,
            ..Default::default()
        })
    });
    let kv = IgniteKv::new(kv_target(ignite.addrs()));
    let t = Instant::now();
    // Connected to every node, and the caches there (its ping creates
    // them once the nodes have settled).
    while kv.live_connections() < 3 || kv.ping().await.is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "not connected to every node"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_map(&kv).await;
    let mut peek = Vec::new();
    for a in ignite.addrs() {
        let c = Conn::connect(&a, &kv_target(vec![]).dial, Default::default())
            .await
            .unwrap();
        peek.push((a, c));
    }
    check(&kv, &peek, "three nodes", 0..60).await;
    let (routed, unrouted) = kv.routing();
    assert!(
        routed >= 60 && unrouted == 0,
        "routed {routed}, unrouted {unrouted}"
    );

    tokio::task::block_in_place(|| ignite.kill(2));
    peek.pop();
    // The survivors report the new topology (a major version, then minor
    // ones as affinity settles); the map is read again each time. Check
    // once it has held still for two seconds.
    let t = Instant::now();
    let mut stable = (None, Instant::now());
    loop {
        let _ = kv
            .put_entry(
                Bytes::from_static(b"nudge"),
                Bytes::new(),
                Duration::from_secs(1),
            )
            .await;
        let v = kv.partition_map_version();
        if v != stable.0 {
            stable = (v, Instant::now());
        }
        let moved = kv
            .entry_primary(b"two nodes key 0")
            .is_some_and(|p| p != ignite.node_addr(2));
        if v.is_some() && moved && stable.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "the map never followed the topology"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "map after losing a node: version {:?}",
        kv.partition_map_version()
    );
    check(&kv, &peek, "two nodes", 0..40).await;
}

/// Puts entries and checks that each lands on the node it was sent to.
async fn check(kv: &IgniteKv, peek: &[(String, Conn)], round: &str, keys: std::ops::Range<u32>) {
    let mut per_node = std::collections::BTreeMap::new();
    for i in keys {
        let key = Bytes::from(format!("{round} key {i}"));
        kv.put_entry(key.clone(), key.clone(), Duration::from_secs(60))
            .await
            .unwrap();
        let primary = kv.entry_primary(&key).expect("a known, connected primary");
        assert_eq!(
            holders(peek, &key).await,
            vec![primary.clone()],
            "{round} key {i}"
        );
        *per_node.entry(primary).or_insert(0) += 1;
    }
    eprintln!("{round}: entries per primary {per_node:?}");
    assert!(per_node.len() >= 2, "keys spread over the nodes");
}
