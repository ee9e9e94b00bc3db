//! Load with faults: thousands of concurrent client connections (10,000 by
//! default, `LOAD_CONNS` to change), a share of them running statements,
//! while MariaDB is killed (`kill -9`) and comes back.
//!
//! Checked: the proxy stays up; its memory does not grow with the fault
//! (RSS after the outage within 1.5× of before, plus 64 MiB); every
//! statement of every client gets a result or a MySQL error packet — no
//! connection dropped by the proxy, no statement without an answer within
//! 15 s; every idle client still gets an answer after the outage; and
//! statements that need MariaDB are answered again within 10 s of its
//! return. Printed: RSS, answers and errors by kind, time to serve again.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::*;
use mysql_async::Conn;

const TIMEOUT: Duration = Duration::from_secs(15);
/// One client in this many runs statements; the others stay idle.
const ACTIVE_EVERY: usize = 20;

type Kinds = Arc<Mutex<BTreeMap<String, usize>>>;

fn note(kinds: &Kinds, k: impl Into<String>) {
    *kinds.lock().unwrap().entry(k.into()).or_default() += 1;
}

/// What one statement got: a result, a MySQL error (code), or a failure of
/// the connection itself.
fn outcome<T>(r: Result<Result<T, mysql_async::Error>, tokio::time::error::Elapsed>) -> String {
    match r {
        Ok(Ok(_)) => "result".into(),
        Ok(Err(mysql_async::Error::Server(e))) => format!("MySQL error {}", e.code),
        Ok(Err(e)) => format!(
            "connection failed: {}",
            e.to_string().chars().take(60).collect::<String>()
        ),
        Err(_) => "no answer within 15 s".into(),
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Opens `n` connections, 200 at a time.
async fn open(port: u16, n: usize) -> Vec<Conn> {
    use futures_util::stream::{self, StreamExt};
    let conns: Vec<Conn> = stream::iter(0..n)
        .map(|_| async move {
            tokio::time::timeout(TIMEOUT, Conn::new(opts(port, "test")))
                .await
                .expect("a login within 15 s")
                .expect("a login")
        })
        .buffer_unordered(200)
        .collect()
        .await;
    conns
}

/// Runs point reads and writes on `c` until `stop`, noting each outcome.
fn spawn_active(
    mut c: Conn,
    i: usize,
    kinds: &Kinds,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Conn> {
    let (kinds, stop) = (kinds.clone(), stop.clone());
    tokio::spawn(async move {
        let mut n = i;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let id = 1 + n % 100;
            let sql = if n.is_multiple_of(5) {
                format!("UPDATE lf SET v = v + 1 WHERE id = {id}")
            } else {
                format!("SELECT v FROM lf WHERE id = {id}")
            };
            let r = tokio::time::timeout(TIMEOUT, c.query_drop(sql)).await;
            let o = outcome(r);
            let failed = o.starts_with("connection") || o.starts_with("no answer");
            note(&kinds, o);
            if failed {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        c
    })
}

/// Until a statement that needs MariaDB succeeds through the proxy.
async fn serves_again(port: u16) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok(Ok(mut c)) = tokio::time::timeout(TIMEOUT, Conn::new(opts(port, "test"))).await {
            if c.query_drop("UPDATE lf SET v = v WHERE id = 1")
                .await
                .is_ok()
            {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not serving 60 s after MariaDB's return"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_clients_get_answers_or_errors_while_mariadb_restarts() {
    let n: usize = std::env::var("LOAD_CONNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let db = tokio::task::block_in_place(|| MariaDb::start_supervised(&["--max-connections=500"]));
    db.sql_socket(
        "CREATE TABLE test.lf (id INT PRIMARY KEY, v INT); \
         INSERT INTO test.lf SELECT seq, 0 FROM test.seq_1_to_100;",
    );
    let proxy = Proxy::start_with(db.port, &format!("max_connections = {}", n + 100), "", "");
    let pid = proxy.child.id();
    let started = Instant::now();
    let mut conns = open(proxy.port, n).await;
    eprintln!(
        "{n} connections open in {:?}; proxy RSS {} MiB",
        started.elapsed(),
        rss_kib(pid) / 1024
    );
    let kinds: Kinds = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let idle: Vec<Conn> = conns.split_off(n / ACTIVE_EVERY);
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, c)| spawn_active(c, i, &kinds, &stop))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = rss_kib(pid);
    tokio::task::block_in_place(|| db.crash());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = rss_kib(pid);
    tokio::task::block_in_place(|| db.recover());
    let back = serves_again(proxy.port).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let mut active = Vec::new();
    for t in tasks {
        active.push(t.await.unwrap());
    }
    let after = rss_kib(pid);
    let idle_answers = ask_all(idle, &kinds).await;
    report_and_check(&kinds, (before, during, after), back, idle_answers, n);
    drop(active);
    let mut proxy = proxy;
    assert!(proxy.alive(), "the proxy died");
}

/// One statement on each idle connection, 500 at a time: how many got a
/// result.
async fn ask_all(idle: Vec<Conn>, kinds: &Kinds) -> usize {
    use futures_util::stream::{self, StreamExt};
    let outcomes: Vec<String> = stream::iter(idle)
        .map(|mut c| async move {
            outcome(
                tokio::time::timeout(TIMEOUT, c.query_drop("SELECT v FROM lf WHERE id = 7")).await,
            )
        })
        .buffer_unordered(500)
        .collect()
        .await;
    let results = outcomes.iter().filter(|o| *o == "result").count();
    for o in outcomes {
        note(kinds, format!("idle client afterwards: {o}"));
    }
    results
}

fn report_and_check(
    kinds: &Kinds,
    (before, during, after): (u64, u64, u64),
    back: Duration,
    idle_ok: usize,
    n: usize,
) {
    let kinds = kinds.lock().unwrap();
    eprintln!(
        "proxy RSS MiB: before the outage {}, during {}, after {}; statements need MariaDB again {back:?} after its return",
        before / 1024,
        during / 1024,
        after / 1024
    );
    for (k, v) in kinds.iter() {
        eprintln!("  {v} × {k}");
    }
    let bad: Vec<_> = kinds
        .iter()
        .filter(|(k, _)| k.contains("connection failed") || k.contains("no answer"))
        .collect();
    assert!(bad.is_empty(), "clients without a proper answer: {bad:?}");
    assert!(
        kinds.get("result").copied().unwrap_or(0) > n / ACTIVE_EVERY,
        "too few results: {kinds:?}"
    );
    assert!(
        after <= before * 3 / 2 + 64 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    assert!(
        back < Duration::from_secs(10),
        "serving again took {back:?}"
    );
    assert_eq!(
        idle_ok,
        n - n / ACTIVE_EVERY,
        "every idle client answered after the outage"
    );
}
