//! `sqlcache sink` end to end: MariaDB → `sqlcache cdc` → Apache Kafka →
//! `sqlcache sink` → MariaDB, all real. Every type round-trips exactly;
//! kills of the sink, a broker killed and resumed, and the target cut off
//! leave the target identical to the source; bad records are parked in a
//! dead-letter topic (or stop the sink, naming them); tables and columns
//! are made from the envelope schema; two servers synced both ways
//! converge without loop traffic.
//!
//! "Identical" is checked on every row and column as the servers return
//! them (`SELECT *`, text protocol), never against figures of our own.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::broker::Broker;
use common::cdc::Cdc;
use common::relay::Relay;
use common::sink::Sink;
use common::sqlcache::{http_get, Deadline};
use common::types::{type_row, TYPES_DDL};
use common::*;
use mysql_async::prelude::*;
use mysql_async::Conn;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// One broker for the tests that do not stop theirs.
fn broker() -> &'static Broker {
    static B: OnceLock<Broker> = OnceLock::new();
    B.get_or_init(Broker::start)
}

/// Every row of `table` as the server prints it, in key order.
async fn rows(port: u16, table: &str) -> Vec<String> {
    let mut c = Conn::new(opts(port, "test")).await.unwrap();
    let rows: Vec<mysql_async::Row> = c
        .query(format!("SELECT * FROM {table} ORDER BY 1"))
        .await
        .unwrap();
    rows.into_iter()
        .map(|r| format!("{:?}", r.unwrap()))
        .collect()
}

/// Waits until `dst` on `dst_port` holds exactly the rows of `src`.
async fn converge(src_port: u16, src: &str, dst_port: u16, dst: &str, limit: Duration) {
    let t = Instant::now();
    loop {
        let (a, b) = (rows(src_port, src).await, rows(dst_port, dst).await);
        if a == b {
            return;
        }
        if t.elapsed() > limit {
            let diff: Vec<_> = a.iter().filter(|r| !b.contains(r)).take(5).collect();
            let extra: Vec<_> = b.iter().filter(|r| !a.contains(r)).take(5).collect();
            panic!(
                "{dst} differs from {src} after {limit:?}: {} vs {} rows; missing {diff:?}; unexpected {extra:?}",
                a.len(),
                b.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The single value a query returns (the CLI's last line).
fn scalar(db: &MariaDb, sql: &str) -> String {
    db.sql_socket(sql).lines().last().unwrap_or("").to_string()
}

fn cdc_section(prefix: &str, db: &str, extra: &str) -> String {
    format!("topic_prefix = \"{prefix}\"\ninclude = [\"{db}.*\"]\n{extra}")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_type_and_change_round_trips_exactly() {
    let db = mariadb();
    let broker = broker();
    for t in ["sa.sa_src.t", "sa.sa_src.u"] {
        broker.create_topic(t, 1);
    }
    db.sql_socket(&format!(
        "DROP DATABASE IF EXISTS sa_src; CREATE DATABASE sa_src; USE sa_src; {TYPES_DDL}; \
         CREATE TABLE u (id INT PRIMARY KEY, v VARCHAR(10), UNIQUE KEY (v)); \
         DROP DATABASE IF EXISTS sa_dst; CREATE DATABASE sa_dst; \
         CREATE TABLE sa_dst.t LIKE sa_src.t; CREATE TABLE sa_dst.u LIKE sa_src.u;"
    ));
    let state = tempdir().join("state.json");
    let _cdc = Cdc::start(db, broker, &state, &cdc_section("sa", "sa_src", ""));
    let _sink = Sink::start(
        db.port,
        &broker.addr(),
        "name = \"sa\"\ntopic_pattern = \"^sa\\\\.sa_src\\\\.\"\ntable = \"sa_dst.{table}\"\n",
    );
    let rows_sql: Vec<String> = (1..=9).map(type_row).collect();
    db.sql_socket(&format!(
        "USE sa_src; INSERT INTO t VALUES {}; \
         UPDATE t SET vc = 'changed', de = de + 1 WHERE id IN (1, 2); \
         UPDATE t SET id = 40 WHERE id = 4; DELETE FROM t WHERE id = 5; \
         INSERT INTO u VALUES (1, 'a'), (2, 'b'); DELETE FROM u WHERE id = 1; \
         UPDATE u SET v = 'a' WHERE id = 2; INSERT INTO u VALUES (3, 'b'); \
         TRUNCATE u; INSERT INTO u VALUES (7, 'z'), (8, 'y'); UPDATE u SET v = 'x' WHERE id = 7;",
        rows_sql.join(", ")
    ));
    converge(
        db.port,
        "sa_src.t",
        db.port,
        "sa_dst.t",
        Duration::from_secs(60),
    )
    .await;
    converge(
        db.port,
        "sa_src.u",
        db.port,
        "sa_dst.u",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(rows(db.port, "sa_dst.t").await.len(), 8);
    // The offsets the sink resumes from are in the target.
    let saved = scalar(
        db,
        "SELECT COUNT(*) FROM sqlcache.sink_offsets WHERE sink = 'sa'",
    );
    assert_eq!(saved, "2", "one row per partition");
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_and_columns_come_from_the_schema_or_the_sink_stops_naming_them() {
    let db = mariadb();
    let broker = broker();
    broker.create_topic("sb.sb_src.e", 1);
    db.sql_socket(
        "DROP DATABASE IF EXISTS sb_src; CREATE DATABASE sb_src; \
         CREATE TABLE sb_src.e (id BIGINT PRIMARY KEY, v VARCHAR(20), n INT, at DATETIME(6)); \
         DROP DATABASE IF EXISTS sb_auto; DROP DATABASE IF EXISTS sb_strict; CREATE DATABASE sb_strict; \
         CREATE TABLE sb_strict.e LIKE sb_src.e; \
         INSERT INTO sb_src.e VALUES (1, 'one', 1, '2024-01-02 03:04:05.678901'), (2, NULL, NULL, NULL);",
    );
    let state = tempdir().join("state.json");
    let _cdc = Cdc::start(
        db,
        broker,
        &state,
        &cdc_section("sb", "sb_src", "schemas = true"),
    );
    let pattern = "topic_pattern = \"^sb\\\\.sb_src\\\\.\"\n";
    let _auto = Sink::start(
        db.port,
        &broker.addr(),
        &format!("name = \"sb-auto\"\n{pattern}table = \"sb_auto.{{table}}\"\nauto_create = true\nadd_columns = true\n"),
    );
    let mut strict = Sink::start(
        db.port,
        &broker.addr(),
        &format!("name = \"sb-strict\"\n{pattern}table = \"sb_strict.{{table}}\"\n"),
    );
    let d = Deadline::new(Duration::from_secs(60), "sb_auto.e created and filled");
    while scalar(
        db,
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'sb_auto'",
    )
    .as_str()
        != "1"
        || rows(db.port, "sb_auto.e").await.len() != 2
    {
        d.tick().await;
    }
    converge(
        db.port,
        "sb_src.e",
        db.port,
        "sb_strict.e",
        Duration::from_secs(30),
    )
    .await;
    // A column appears at the source.
    db.sql_socket("ALTER TABLE sb_src.e ADD COLUMN w INT; INSERT INTO sb_src.e VALUES (3, 'three', 3, NULL, 33);");
    let d = Deadline::new(Duration::from_secs(60), "column w added to sb_auto.e");
    let has_w = "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'sb_auto' AND COLUMN_NAME = 'w'";
    while scalar(db, has_w) != "1" || scalar(db, "SELECT w FROM sb_auto.e WHERE id = 3") != "33" {
        d.tick().await;
    }
    let same = "SELECT id, v, n, DATE_FORMAT(at, '%Y-%m-%d %H:%i:%s.%f') FROM";
    assert_eq!(
        db.sql_socket(&format!("{same} sb_auto.e ORDER BY id")),
        db.sql_socket(&format!("{same} sb_src.e ORDER BY id"))
    );
    // Without add_columns the sink stops and says which table and column.
    let d = Deadline::new(Duration::from_secs(30), "the strict sink stops");
    while strict.exited().is_none() {
        d.tick().await;
    }
    let log = strict.log_text();
    assert!(
        log.contains("sb_strict.e has no column `w`"),
        "the message names the table and column: {}",
        tail(&log, 10)
    );
    assert_eq!(
        rows(db.port, "sb_strict.e").await.len(),
        2,
        "nothing of the batch applied"
    );
}

/// Sends raw records to `topic`, acknowledged.
fn produce(broker: &Broker, topic: &str, records: &[(Option<&str>, Option<&str>)]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()
        .unwrap();
    for (k, v) in records {
        let mut r: BaseRecord<'_, str, str> = BaseRecord::to(topic);
        if let Some(k) = k {
            r = r.key(*k);
        }
        if let Some(v) = v {
            r = r.payload(*v);
        }
        p.send(r).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// Every record of `topic` partition 0: (headers, payload).
fn read_all(broker: &Broker, topic: &str, want: usize) -> Vec<(Vec<(String, String)>, String)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("group.id", "sink-test-reader")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                headers,
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            ));
        }
    }
    out
}

/// A topic of three good records and three bad ones (not JSON, an
/// unknown op, a value too long for `v VARCHAR(3)`) in `db`.t; returns the
/// too-long record's value.
fn bad_mix(db: &MariaDb, name: &str) -> String {
    let broker = broker();
    broker.create_topic(&format!("{name}.{name}.t"), 1);
    db.sql_socket(&format!(
        "DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}; \
         CREATE TABLE {name}.t (id INT PRIMARY KEY, v VARCHAR(3) NOT NULL);"
    ));
    let good = |id: i64, v: &str| {
        format!("{{\"op\":\"c\",\"before\":null,\"after\":{{\"id\":{id},\"v\":\"{v}\"}}}}")
    };
    let (g1, g2, g3, long) = (
        good(1, "a"),
        good(2, "b"),
        good(3, "c"),
        good(9, "too long"),
    );
    let records = [
        (Some("{\"id\":1}"), Some(g1.as_str())),
        (None, Some("not json at all")),
        (None, Some("{\"op\":\"x\",\"after\":{}}")),
        (Some("{\"id\":9}"), Some(long.as_str())),
        (Some("{\"id\":2}"), Some(g2.as_str())),
        (Some("{\"id\":3}"), Some(g3.as_str())),
    ];
    produce(broker, &format!("{name}.{name}.t"), &records);
    long
}

/// The value of header `k` of parked record `i`.
fn header(parked: &[(Vec<(String, String)>, String)], i: usize, k: &str) -> String {
    parked[i]
        .0
        .iter()
        .find(|(hk, _)| hk == k)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {k} header on {:?}", parked[i]))
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_records_are_parked_with_their_reason() {
    let db = mariadb();
    let broker = broker();
    broker.create_topic("sd-dead", 1);
    let long = bad_mix(db, "sd");
    let _sink = Sink::start(
        db.port,
        &broker.addr(),
        "name = \"sd\"\ntopics = [\"sd.sd.t\"]\ndead_letter_topic = \"sd-dead\"\n",
    );
    let d = Deadline::new(Duration::from_secs(60), "good rows applied");
    while scalar(db, "SELECT GROUP_CONCAT(v ORDER BY id) FROM sd.t").as_str() != "a,b,c" {
        d.tick().await;
    }
    let parked = tokio::task::block_in_place(|| read_all(broker, "sd-dead", 3));
    assert_eq!(parked.len(), 3, "{parked:?}");
    let offsets: Vec<String> = (0..3)
        .map(|i| header(&parked, i, "sqlcache.offset"))
        .collect();
    assert_eq!(offsets, ["1", "2", "3"]);
    let error = |i| header(&parked, i, "sqlcache.error");
    assert!(error(0).contains("not JSON"), "{}", error(0));
    assert!(error(1).contains("unknown op"), "{}", error(1));
    assert!(error(2).contains("Data too long"), "{}", error(2));
    assert_eq!(header(&parked, 2, "sqlcache.topic"), "sd.sd.t");
    assert_eq!(parked[2].1, long, "the record itself is kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_dead_letter_topic_a_bad_record_stops_the_sink() {
    let db = mariadb();
    bad_mix(db, "se");
    let mut stop = Sink::start(
        db.port,
        &broker().addr(),
        "name = \"se\"\ntopics = [\"se.se.t\"]\n",
    );
    let d = Deadline::new(Duration::from_secs(60), "the sink stops");
    while stop.exited().is_none() {
        d.tick().await;
    }
    assert!(!stop.exited().unwrap().success());
    let log = stop.log_text();
    assert!(
        log.contains("record se.se.t/0@1 cannot be applied"),
        "{}",
        tail(&log, 5)
    );
    // Record 0 may have committed in a batch of its own; nothing after it.
    assert_eq!(
        scalar(db, "SELECT COUNT(*) FROM se.t WHERE id <> 1"),
        "0",
        "nothing of the bad record's batch committed"
    );
}

/// Random writes to `table` on `port` (ids 1..=keys, values starting
/// with `tag`) until `stop`. Every change sets `v` unless `tag` is
/// lower-case (then some transactions only bump `n`, across two rows).
async fn writer(
    port: u16,
    table: &'static str,
    keys: i64,
    tag: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> u64 {
    let mut c = Conn::new(opts(port, "test")).await.unwrap();
    let mut n = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let id = 1 + (rand::random::<u64>() % keys as u64) as i64;
        let kinds = if tag.chars().all(|c| c.is_ascii_lowercase()) {
            4
        } else {
            3
        };
        let q = match rand::random::<u8>() % kinds {
            0 => format!("DELETE FROM {table} WHERE id = {id}"),
            1 => format!(
                "INSERT INTO {table} (id, v, n) VALUES ({id}, '{tag}v{n}', {n}) ON DUPLICATE KEY UPDATE v = '{tag}u{n}', n = n + 1"
            ),
            3 => format!(
                "BEGIN; UPDATE {table} SET n = n + 1 WHERE id = {id}; INSERT IGNORE INTO {table} (id, v, n) VALUES ({}, '{tag}t{n}', 0); COMMIT",
                1 + (id % keys)
            ),
            2 => format!("REPLACE INTO {table} (id, v, n) VALUES ({id}, '{tag}r{n}', {n})"),
            _ => unreachable!(),
        };
        if c.query_drop(&q).await.is_ok() {
            n += 1;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    n
}

/// The faults of the kill test, while the writers run: three `kill -9`s
/// of the sink at random moments, the target cut off for two seconds
/// (`/health` must say so), the broker killed (the sink killed too while
/// it is down) and resumed with its data.
async fn faults(sink: &mut Sink, relay: &Relay, broker: &mut Broker, metrics_port: u16) {
    let health = |p: u16| http_get(p, "/health");
    let d = Deadline::new(Duration::from_secs(30), "sink healthy");
    while !health(metrics_port).starts_with("HTTP/1.0 200") {
        d.tick().await;
    }
    // kill -9 of the sink at random moments.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500 + rand::random::<u64>() % 1500)).await;
        sink.restart();
    }
    // The target goes away and comes back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    relay.set_cut(true);
    let d = Deadline::new(Duration::from_secs(30), "/health reports the target gone");
    while !health(metrics_port).starts_with("HTTP/1.0 503") {
        d.tick().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    relay.set_cut(false);
    // The broker is killed and resumed with its data.
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| broker.stop());
    tokio::time::sleep(Duration::from_secs(2)).await;
    sink.restart(); // and the sink killed while Kafka is down
    tokio::task::block_in_place(|| broker.resume());
    tokio::time::sleep(Duration::from_secs(3)).await;
}

/// Every partition of `topics` applied exactly to its end: the offset the
/// target saved for sink `name` is Kafka's high watermark.
async fn offsets_at_the_end(broker: &Broker, target: &MariaDb, name: &str, topics: &[&str]) {
    // Every partition applied exactly to its end, as the target records it.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()
        .unwrap();
    for t in topics {
        for p in 0..3 {
            let high =
                tokio::task::block_in_place(|| c.fetch_watermarks(t, p, Duration::from_secs(10)))
                    .unwrap()
                    .1;
            let d = Deadline::new(Duration::from_secs(20), "offsets at the end");
            let q = format!("SELECT next_offset FROM sqlcache.sink_offsets WHERE sink = '{name}' AND topic = '{t}' AND kafka_partition = {p}");
            while scalar(target, &q) != high.to_string() {
                d.tick().await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kills_and_outages_leave_the_target_identical_to_the_source() {
    let db = mariadb();
    let target = MariaDb::start(&[]);
    let mut broker = Broker::start();
    for t in ["sc.sc.a", "sc.sc.b"] {
        broker.create_topic(t, 3);
    }
    let ddl = "CREATE TABLE sc.a (id INT PRIMARY KEY, v VARCHAR(20), n BIGINT); \
               CREATE TABLE sc.b (id INT PRIMARY KEY, v VARCHAR(20), n BIGINT, UNIQUE KEY (v));";
    db.sql_socket(&format!(
        "DROP DATABASE IF EXISTS sc; CREATE DATABASE sc; {ddl}"
    ));
    target.sql_socket(&format!("CREATE DATABASE sc; {ddl}"));
    let relay = Relay::start(format!("127.0.0.1:{}", target.port)).await;
    let state = tempdir().join("state.json");
    let mut cdc = Cdc::start(
        db,
        &broker,
        &state,
        &cdc_section("sc", "sc", "topic_partitions = 3"),
    );
    let metrics_port = free_port();
    let mut sink = Sink::start(
        relay.port,
        &broker.addr(),
        &format!(
            "name = \"sc\"\ntopics = [\"sc.sc.a\", \"sc.sc.b\"]\nbatch_rows = 200\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n"
        ),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers = [
        tokio::spawn(writer(db.port, "sc.a", 300, "a", stop.clone())),
        tokio::spawn(writer(db.port, "sc.a", 300, "c", stop.clone())),
        tokio::spawn(writer(db.port, "sc.b", 100, "b", stop.clone())),
    ];
    wait_port(
        metrics_port,
        Duration::from_secs(30),
        "sink metrics",
        Some(&sink.log),
    );
    faults(&mut sink, &relay, &mut broker, metrics_port).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut writes = 0;
    for w in writers {
        writes += w.await.unwrap();
    }
    assert!(writes > 300, "the writers made {writes} writes");
    converge(
        db.port,
        "sc.a",
        target.port,
        "sc.a",
        Duration::from_secs(120),
    )
    .await;
    converge(
        db.port,
        "sc.b",
        target.port,
        "sc.b",
        Duration::from_secs(30),
    )
    .await;
    offsets_at_the_end(&broker, &target, "sc", &["sc.sc.a", "sc.sc.b"]).await;
    let metrics = http_get(metrics_port, "/metrics");
    assert!(metrics.contains("sqlcache_sink_records_total"), "{metrics}");
    assert!(
        metrics.contains("sqlcache_sink_lag_records{topic=\"sc.sc.a\",partition=\"2\"}"),
        "{metrics}"
    );
    eprintln!(
        "{writes} source writes, {} rows in sc.a and {} in sc.b identical after 4 sink kills, a target cut and a broker kill",
        rows(target.port, "sc.a").await.len(),
        rows(target.port, "sc.b").await.len()
    );
    assert!(cdc.exited().is_none(), "cdc kept running");
}

/// Once converged nothing more flows, and B's topic carries B's own
/// writes only: what B's sink applied (A's values, and A's echoes of B's)
/// never went back out. Returns the records on A's and B's topics.
async fn no_loop_traffic(broker: &Broker) -> (i64, i64) {
    // No loop: once converged, nothing more flows.
    let high = |t: &str| {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", broker.addr())
            .create()
            .unwrap();
        c.fetch_watermarks(t, 0, Duration::from_secs(10)).unwrap().1
    };
    let before = tokio::task::block_in_place(|| (high("ha.tw.t"), high("hb.tw.t")));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = tokio::task::block_in_place(|| (high("ha.tw.t"), high("hb.tw.t")));
    assert_eq!(
        before, after,
        "records still flowing after convergence: a loop"
    );
    // B's topic carries B's own writes only: what B's sink applied (A's
    // values, and A's echoes of B's) never went back out.
    let from_b = tokio::task::block_in_place(|| read_all(broker, "hb.tw.t", after.1 as usize));
    assert_eq!(from_b.len() as i64, after.1);
    let echoed = from_b
        .iter()
        .filter(|(_, v)| {
            let v: serde_json::Value = serde_json::from_str(v).unwrap_or_default();
            v["after"]["v"].as_str().is_some_and(|s| s.starts_with('A'))
        })
        .count();
    assert_eq!(echoed, 0, "B published rows its sink wrote");
    after
}

#[tokio::test(flavor = "multi_thread")]
async fn two_way_sync_converges_without_loop_traffic() {
    // A is the hub (its cdc publishes everything, the sink's writes too);
    // B the spoke (its cdc leaves out what its sink wrote).
    let a = mariadb();
    let b = MariaDb::start(&[]);
    let broker = broker();
    for t in ["ha.tw.t", "hb.tw.t"] {
        broker.create_topic(t, 1);
    }
    let ddl = "CREATE TABLE tw.t (id INT PRIMARY KEY, v VARCHAR(20), n BIGINT)";
    a.sql_socket(&format!(
        "DROP DATABASE IF EXISTS tw; CREATE DATABASE tw; {ddl}"
    ));
    b.sql_socket(&format!("CREATE DATABASE tw; {ddl}"));
    let (sa, sb) = (tempdir().join("a.json"), tempdir().join("b.json"));
    let _cdc_a = Cdc::start(a, broker, &sa, &cdc_section("ha", "tw", ""));
    let _cdc_b = Cdc::start(
        &b,
        broker,
        &sb,
        &cdc_section("hb", "tw", "skip_sink_writes = true"),
    );
    let _sink_b = Sink::start(
        b.port,
        &broker.addr(),
        "name = \"to-b\"\ntopics = [\"ha.tw.t\"]\n",
    );
    let _sink_a = Sink::start(
        a.port,
        &broker.addr(),
        "name = \"to-a\"\ntopics = [\"hb.tw.t\"]\n",
    );
    // Both sides write the same rows at once.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers = [
        tokio::spawn(writer(a.port, "tw.t", 40, "A", stop.clone())),
        tokio::spawn(writer(b.port, "tw.t", 40, "B", stop.clone())),
    ];
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut local = Vec::new();
    for w in writers {
        local.push(w.await.unwrap());
    }
    converge(a.port, "tw.t", b.port, "tw.t", Duration::from_secs(60)).await;
    let after = no_loop_traffic(broker).await;
    assert_eq!(rows(a.port, "tw.t").await, rows(b.port, "tw.t").await);
    eprintln!(
        "two-way: {} writes on A, {} on B; {} records from A's cdc, {} from B's; {} rows identical",
        local[0],
        local[1],
        after.0,
        after.1,
        rows(a.port, "tw.t").await.len()
    );
}
