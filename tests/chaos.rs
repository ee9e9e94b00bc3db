//! Chaos: the whole system at once while its parts fail.
//!
//! Two proxies share a real Ignite node and read the Kafka feed that a real
//! `sqlcache cdc` publishes from a real MariaDB. Clients write through each
//! proxy and directly to MariaDB, and read through both proxies, while a
//! driver kills (`kill -9`) and brings back, one at a time at random
//! moments, MariaDB, the Kafka broker, the Ignite node, `sqlcache cdc` and
//! one of the proxies. Every row has one writer, so its values only grow.
//! The checker records every acknowledged write, every read (value, proxy,
//! when it began) and when each change first appeared on Kafka, and counts:
//! - reads through a proxy older than that proxy's own last acknowledged
//!   write of the row before the read began (README: "no stale read after
//!   an acknowledged write through the proxy") — must be 0;
//! - reads older than the other proxy's write acknowledged more than
//!   `max_lag` before (README "Shared tier") — must be 0;
//! - reads older than a direct write that was on Kafka more than the feed's
//!   `max_staleness` before (README "The guarantee": the bound starts when
//!   the publisher has put the change on Kafka) — must be 0;
//! - acknowledged writes missing from Kafka once cdc has caught up — 0;
//! - statements with no answer within 15 s (a hang) — 0;
//!   and prints client-visible errors by kind and the publisher's lag.
//!
//! `CHAOS_SECS` sets the length (CI: 40 s, every fault at least once; the
//! opt-in long run: `CHAOS_SECS=600 cargo test --test chaos -- --nocapture`).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::broker::Broker;
use common::cdc::Cdc;
use common::ignite::Ignite;
use common::*;
use mysql_async::prelude::*;
use mysql_async::Conn;
use rand::{Rng, SeedableRng};

const ROWS: u32 = 30;
/// The proxies' shared-tier `max_lag`.
const MAX_LAG: Duration = Duration::from_millis(1000);
/// The proxies' Kafka feed `max_staleness`.
const MAX_STALENESS: Duration = Duration::from_secs(2);
/// Longer without an answer is a hang.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(15);
const TOPIC: &str = "chaos.test.chaos";

/// Who writes a row: a proxy (by index) or a client of MariaDB itself.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Writer {
    Proxy(usize),
    Direct,
}

fn owner(row: u32) -> Writer {
    match row % 3 {
        0 => Writer::Proxy(0),
        1 => Writer::Proxy(1),
        _ => Writer::Direct,
    }
}

struct Read {
    proxy: usize,
    row: u32,
    value: u64,
    start: Instant,
}

#[derive(Default)]
struct Log {
    /// Per row: acknowledged values and when their OK arrived.
    acked: Vec<Vec<(u64, Instant)>>,
    reads: Vec<Read>,
    /// Client-visible errors by kind.
    errors: BTreeMap<String, usize>,
    /// (row, value) → when the checker first saw it on Kafka.
    published: HashMap<(u32, u64), Instant>,
}

type Shared = Arc<Mutex<Log>>;

fn kind(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("server error {} ({})", s.code, s.state),
        mysql_async::Error::Io(_) => "connection lost (io)".into(),
        other => {
            let s = other.to_string();
            s.chars().take(70).collect()
        }
    }
}

/// A client of one port that reconnects after an error, noting its kind.
struct Client {
    port: u16,
    conn: Option<Conn>,
    log: Shared,
}

impl Client {
    fn new(port: u16, log: &Shared) -> Client {
        Client {
            port,
            conn: None,
            log: log.clone(),
        }
    }

    fn note(&self, what: String) {
        *self.log.lock().unwrap().errors.entry(what).or_default() += 1;
    }

    /// One statement: `Some(first column of the first row)`, or None on
    /// an error (already noted; the connection is dropped).
    async fn run(&mut self, sql: &str) -> Option<Option<String>> {
        if self.conn.is_none() {
            match tokio::time::timeout(STATEMENT_TIMEOUT, Conn::new(opts(self.port, "test"))).await
            {
                Ok(Ok(c)) => self.conn = Some(c),
                Ok(Err(e)) => return self.failed(format!("connect: {}", kind(&e))).await,
                Err(_) => return self.failed("connect: no answer in 15 s".into()).await,
            }
        }
        let c = self.conn.as_mut()?;
        match tokio::time::timeout(STATEMENT_TIMEOUT, c.query_first::<String, _>(sql)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => self.failed(kind(&e)).await,
            Err(_) => self.failed("statement: no answer in 15 s".into()).await,
        }
    }

    async fn failed(&mut self, what: String) -> Option<Option<String>> {
        self.note(what);
        self.conn = None;
        tokio::time::sleep(Duration::from_millis(100)).await;
        None
    }
}

fn spawn_writer(
    w: Writer,
    port: u16,
    log: &Shared,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let (log, stop) = (log.clone(), stop.clone());
    tokio::spawn(async move {
        let mut c = Client::new(port, &log);
        let rows: Vec<u32> = (1..=ROWS).filter(|&r| owner(r) == w).collect();
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            let row = rows[seq as usize % rows.len()];
            let sql = format!("UPDATE chaos SET v = '{seq}' WHERE id = {row}");
            if c.run(&sql).await.is_some() {
                log.lock().unwrap().acked[row as usize].push((seq, Instant::now()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

fn spawn_reader(
    proxy: usize,
    port: u16,
    log: &Shared,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let (log, stop) = (log.clone(), stop.clone());
    tokio::spawn(async move {
        let mut c = Client::new(port, &log);
        let mut rng = rand::rngs::StdRng::from_entropy();
        while !stop.load(Ordering::Relaxed) {
            let row = rng.gen_range(1..=ROWS);
            let start = Instant::now();
            let sql = format!("SELECT v FROM chaos WHERE id = {row}");
            if let Some(v) = c.run(&sql).await {
                let value = v.and_then(|v| v.parse().ok()).unwrap_or(0);
                log.lock().unwrap().reads.push(Read {
                    proxy,
                    row,
                    value,
                    start,
                });
            }
        }
    })
}

/// Records when each (row, value) first appears on cdc's topic.
fn spawn_watcher(
    broker: String,
    log: &Shared,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let (log, stop) = (log.clone(), stop.clone());
    std::thread::spawn(move || {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", broker)
            .set("group.id", format!("chaos-{}", free_port()))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        c.subscribe(&[TOPIC]).expect("subscribe");
        while !stop.load(Ordering::Relaxed) {
            let Some(Ok(m)) = c.poll(Duration::from_millis(100)) else {
                continue;
            };
            let Some(v) = m
                .payload()
                .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
            else {
                continue;
            };
            let after = &v["after"];
            let row = after["id"].as_u64();
            let value = after["v"].as_str().and_then(|s| s.parse::<u64>().ok());
            if let (Some(row), Some(value)) = (row, value) {
                let mut l = log.lock().unwrap();
                l.published
                    .entry((row as u32, value))
                    .or_insert_with(Instant::now);
            }
        }
    })
}

/// Everything the test starts, and the faults it can inject into it.
struct Rig {
    db: MariaDb,
    broker: Broker,
    ignite: Ignite,
    cdc: Cdc,
    proxies: Vec<Proxy>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    MariaDb,
    Kafka,
    Ignite,
    Cdc,
    Proxy,
}

const FAULTS: [Fault; 5] = [
    Fault::MariaDb,
    Fault::Kafka,
    Fault::Ignite,
    Fault::Cdc,
    Fault::Proxy,
];

impl Rig {
    fn start() -> Rig {
        let db = MariaDb::start_supervised(&[]);
        db.sql_socket(&format!(
            "CREATE TABLE test.chaos (id INT PRIMARY KEY, v VARCHAR(20)); \
             INSERT INTO test.chaos SELECT seq, '0' FROM test.seq_1_to_{ROWS};"
        ));
        let broker = Broker::start();
        // cdc makes its table topics; the schema-change topic the proxies
        // also read is made on the first DDL, so it is made here.
        broker.create_topic("chaos", 1);
        let ignite = Ignite::start();
        let state = tempdir().join("cdc-state.json");
        let cdc = Cdc::start(
            &db,
            &broker,
            &state,
            "topic_prefix = \"chaos\"\ninclude = [\"test.chaos\"]\n",
        );
        let feed = format!(
            "[invalidation.kafka]\nbrokers = \"{}\"\ntopics = [\"{TOPIC}\", \"chaos\"]\nformat = \"debezium\"\n\
             max_staleness = \"{}ms\"\n\n[cache.ignite]\nenabled = true\naddresses = [\"{}\"]\n\
             timeout = \"300ms\"\nwrite_timeout = \"1s\"\ncoherence = \"events\"\nmax_lag = \"{}ms\"\n\
             heartbeat = \"100ms\"\n",
            broker.addr(),
            MAX_STALENESS.as_millis(),
            ignite.addr(),
            MAX_LAG.as_millis()
        );
        let proxies = (0..2)
            .map(|_| Proxy::start_with(db.port, "", &feed, ""))
            .collect();
        Rig {
            db,
            broker,
            ignite,
            cdc,
            proxies,
        }
    }

    fn kill(&mut self, f: Fault) {
        match f {
            Fault::MariaDb => self.db.crash(),
            Fault::Kafka => self.broker.stop(),
            Fault::Ignite => self.ignite.kill(0),
            Fault::Cdc => self.cdc.kill(),
            Fault::Proxy => self.proxies[1].crash(),
        }
    }

    fn recover(&mut self, f: Fault) {
        match f {
            Fault::MariaDb => self.db.recover(),
            Fault::Kafka => self.broker.resume(),
            Fault::Ignite => self.ignite.restart(0),
            Fault::Cdc => self.cdc.restart(),
            Fault::Proxy => self.proxies[1].recover(),
        }
    }
}

/// How long a proxy may take to serve hits again after the last fault.
const SERVING_AGAIN: Duration = Duration::from_secs(60);

/// Waits until a proxy serves hits again (feed proven, shared tier
/// trusted): how long that took, or None if not within `SERVING_AGAIN`
/// (the caller asserts it after printing the checker's report, so a long
/// run's figures are never lost to this one check).
async fn serving(port: u16) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if let Ok(mut c) = Conn::new(opts(port, "test")).await {
            for _ in 0..2 {
                let _ = c.query_drop("SELECT v FROM chaos WHERE id = 1").await;
            }
            if c.query_first::<(String, String), _>("SHOW SQLCACHE LAST")
                .await
                .ok()
                .flatten()
                .map(|r| r.1)
                == Some("hit".into())
            {
                return Some(start.elapsed());
            }
        }
        if start.elapsed() >= SERVING_AGAIN {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the checker found.
#[derive(Default)]
struct Report {
    reads: usize,
    stale_own: Vec<String>,
    stale_peer: Vec<String>,
    stale_direct: Vec<String>,
    /// Acknowledged (row, value)s never seen on Kafka.
    missing: Vec<(u32, u64)>,
    acked: usize,
    /// Direct write OK → seen on Kafka, sorted.
    publish_lag: Vec<Duration>,
}

/// When each acknowledged value of a row became due (its bound passed),
/// sorted by that time, each with the newest value due by then: so the
/// value due at any instant is one binary search away. A 10-minute run
/// records millions of reads, which a scan of every write per read took
/// many minutes to check in a debug build.
type DueTable = Vec<(Instant, u64)>;

fn due_table(mut at: Vec<(Instant, u64)>) -> DueTable {
    at.sort_by_key(|&(t, _)| t);
    let mut newest = 0;
    for (_, v) in &mut at {
        newest = newest.max(*v);
        *v = newest;
    }
    at
}

/// Per row, the due tables of its readers: (own proxy, the other proxy)
/// for a row a proxy writes; for a direct one, the Kafka bound first (the
/// same for both proxies) and the second left empty.
fn due_tables(log: &Log) -> Vec<[DueTable; 2]> {
    (0..log.acked.len())
        .map(|row| {
            let acked = &log.acked[row];
            let at = |f: &dyn Fn(u64, Instant) -> Option<Instant>| {
                due_table(
                    acked
                        .iter()
                        .filter_map(|&(v, ok)| Some((f(v, ok)?, v)))
                        .collect(),
                )
            };
            match owner(row as u32) {
                Writer::Proxy(_) => [at(&|_, ok| Some(ok)), at(&|_, ok| Some(ok + MAX_LAG))],
                Writer::Direct => {
                    let on_kafka = |v: u64, _| {
                        let on = log.published.get(&(row as u32, v))?;
                        Some(*on + MAX_STALENESS)
                    };
                    [at(&on_kafka), Vec::new()]
                }
            }
        })
        .collect()
}

/// The newest acknowledged value of `row` that was due at `start` (its
/// bound passed) for a read through proxy `reader`, if any.
fn due(
    tables: &[[DueTable; 2]],
    row: u32,
    reader: usize,
    start: Instant,
) -> Option<(u64, &'static str)> {
    let (table, label) = match owner(row) {
        Writer::Proxy(p) if p == reader => (&tables[row as usize][0], "own"),
        Writer::Proxy(_) => (&tables[row as usize][1], "peer"),
        Writer::Direct => (&tables[row as usize][0], "direct"),
    };
    let n = table.partition_point(|&(t, _)| t < start);
    n.checked_sub(1).map(|i| (table[i].1, label))
}

/// Acknowledged (row, value)s not seen on Kafka (yet). The catch-up wait
/// asks only this, not the whole `check`, which replays every read.
fn unpublished(log: &Log) -> impl Iterator<Item = (u32, u64)> + '_ {
    log.acked.iter().enumerate().flat_map(move |(row, acked)| {
        acked
            .iter()
            .map(move |&(v, _)| (row as u32, v))
            .filter(|key| !log.published.contains_key(key))
    })
}

fn check(log: &Log, started: Instant) -> Report {
    let mut r = Report {
        reads: log.reads.len(),
        ..Default::default()
    };
    let ms = |t: Instant| t.duration_since(started).as_millis();
    let tables = due_tables(log);
    for read in &log.reads {
        let Some((want, label)) = due(&tables, read.row, read.proxy, read.start) else {
            continue;
        };
        if read.value >= want {
            continue;
        }
        let line = format!(
            "proxy {} row {} read {} at +{} ms but {want} was due ({label})",
            read.proxy,
            read.row,
            read.value,
            ms(read.start)
        );
        match label {
            "own" => r.stale_own.push(line),
            "peer" => r.stale_peer.push(line),
            _ => r.stale_direct.push(line),
        }
    }
    r.missing = unpublished(log).collect();
    for (row, acked) in log.acked.iter().enumerate() {
        r.acked += acked.len();
        if owner(row as u32) != Writer::Direct {
            continue;
        }
        for &(v, ok) in acked {
            if let Some(on) = log.published.get(&(row as u32, v)) {
                r.publish_lag.push(on.saturating_duration_since(ok));
            }
        }
    }
    r.publish_lag.sort();
    r
}

fn print(r: &Report, log: &Log, faults: &[(Fault, u128, u128)]) {
    let pct = |p: usize| {
        r.publish_lag
            .get((r.publish_lag.len().max(1) - 1) * p / 100)
            .copied()
            .unwrap_or_default()
    };
    eprintln!(
        "chaos: {} reads, {} acknowledged writes; stale: {} own, {} peer, {} direct; \
         {} missing from Kafka; publish lag p50 {:?} p99 {:?} max {:?}",
        r.reads,
        r.acked,
        r.stale_own.len(),
        r.stale_peer.len(),
        r.stale_direct.len(),
        r.missing.len(),
        pct(50),
        pct(99),
        pct(100)
    );
    for (f, down, up) in faults {
        eprintln!("  fault {f:?}: down at +{down} ms, back at +{up} ms");
    }
    for (k, n) in &log.errors {
        eprintln!("  client errors: {n} × {k}");
    }
}

/// Injects faults, one at a time, until `secs` have passed: first each
/// kind once, then kinds at random; 1–4 s between faults, 1–3 s down.
fn drive(rig: &mut Rig, started: Instant, secs: u64) -> Vec<(Fault, u128, u128)> {
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut done = Vec::new();
    let ms = || started.elapsed().as_millis();
    while started.elapsed() < Duration::from_secs(secs) || done.len() < FAULTS.len() {
        std::thread::sleep(Duration::from_millis(rng.gen_range(1000..4000)));
        let f = match FAULTS.get(done.len()) {
            Some(f) => *f,
            None => FAULTS[rng.gen_range(0..FAULTS.len())],
        };
        let down = ms();
        rig.kill(f);
        std::thread::sleep(Duration::from_millis(rng.gen_range(1000..3000)));
        rig.recover(f);
        done.push((f, down, ms()));
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_stale_beyond_its_bound_and_nothing_lost_while_every_part_fails() {
    let secs: u64 = std::env::var("CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let mut rig = tokio::task::block_in_place(Rig::start);
    let ports: Vec<u16> = rig.proxies.iter().map(|p| p.port).collect();
    for &port in &ports {
        assert!(serving(port).await.is_some(), "proxy {port} serves no hit");
    }
    let log: Shared = Arc::new(Mutex::new(Log {
        acked: vec![Vec::new(); ROWS as usize + 1],
        ..Default::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let watching = Arc::new(AtomicBool::new(false));
    let watcher = spawn_watcher(rig.broker.addr(), &log, &watching);
    let mut tasks = vec![spawn_writer(Writer::Direct, rig.db.port, &log, &stop)];
    for (p, &port) in ports.iter().enumerate() {
        tasks.push(spawn_writer(Writer::Proxy(p), port, &log, &stop));
        tasks.push(spawn_reader(p, port, &log, &stop));
        tasks.push(spawn_reader(p, port, &log, &stop));
    }
    let started = Instant::now();
    let faults = tokio::task::block_in_place(|| drive(&mut rig, started, secs));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let mut back = Vec::new();
    for &port in &ports {
        back.push(serving(port).await);
    }
    eprintln!("after the last fault, hits again within {back:?}");
    // cdc catches up with what it missed while it or Kafka was down.
    let caught_up = Instant::now();
    while caught_up.elapsed() < Duration::from_secs(60)
        && unpublished(&log.lock().unwrap()).next().is_some()
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    watching.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let log = log.lock().unwrap();
    let report = check(&log, started);
    print(&report, &log, &faults);
    assert!(
        back.iter().all(Option::is_some),
        "a proxy served no hit within {SERVING_AGAIN:?} of the last fault: {back:?}"
    );
    assert_clean(&report, &log, &faults);
    drop(rig);
}

fn assert_clean(r: &Report, log: &Log, faults: &[(Fault, u128, u128)]) {
    let first = |v: &[String]| v.iter().take(10).cloned().collect::<Vec<_>>();
    assert!(r.reads > 1000, "only {} reads", r.reads);
    assert!(r.acked > 300, "only {} acknowledged writes", r.acked);
    for f in FAULTS {
        assert!(
            faults.iter().any(|(g, _, _)| *g == f),
            "{f:?} never injected"
        );
    }
    assert!(
        r.stale_own.is_empty(),
        "stale after own write: {:?}",
        first(&r.stale_own)
    );
    assert!(
        r.stale_peer.is_empty(),
        "stale beyond max_lag: {:?}",
        first(&r.stale_peer)
    );
    assert!(
        r.stale_direct.is_empty(),
        "stale beyond max_staleness: {:?}",
        first(&r.stale_direct)
    );
    assert!(
        r.missing.is_empty(),
        "acknowledged but never on Kafka: {:?}",
        &r.missing[..r.missing.len().min(10)]
    );
    let hangs: Vec<_> = log
        .errors
        .keys()
        .filter(|k| k.contains("no answer"))
        .collect();
    assert!(hangs.is_empty(), "statements that hung: {hangs:?}");
}
