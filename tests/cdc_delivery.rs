//! `sqlcache cdc` delivery guarantees end to end: the snapshot meets the
//! stream without loss or duplicates; kills, Kafka and MySQL outages and
//! timed-out deliveries lose no committed value and (where promised) keep
//! order per key. A private MariaDB, a private Apache Kafka, the real
//! binary; topics read back with kafka-python.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use common::broker::{consume_until, Broker, Msg};
use common::cdc::Cdc;
use common::relay::Relay;
use common::sqlcache::*;
use common::topic::{blocking, read_until};
use common::*;
use mysql_async::prelude::*;
use mysql_async::Conn;

/// Per key, the `v` values of the events in topic order, and duplicate
/// (key, file, pos, row) streaming positions.
fn per_key(msgs: &[Msg]) -> (BTreeMap<i64, Vec<i64>>, usize) {
    let mut seq: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut dups = 0;
    for m in msgs {
        let Some(v) = &m.value else { continue };
        let after = &v["after"];
        if after.is_null() {
            continue;
        }
        let id = after["id"].as_i64().unwrap();
        seq.entry(id)
            .or_default()
            .push(after["v"].as_i64().unwrap());
        let s = &v["source"];
        if s["snapshot"] == "false"
            && !seen.insert((
                id,
                s["file"].to_string(),
                s["pos"].to_string(),
                s["row"].to_string(),
            ))
        {
            dups += 1;
        }
    }
    (seq, dups)
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_and_stream_meet_without_loss_or_duplicates() {
    let db = mariadb();
    let broker = Broker::start();
    let prefix = "sb";
    let topic = format!("{prefix}.cdc_boundary.c");
    broker.create_topic(&topic, 1);
    let rows = 3000;
    db.sql_socket(&format!(
        "DROP DATABASE IF EXISTS cdc_boundary; CREATE DATABASE cdc_boundary; \
         USE cdc_boundary; CREATE TABLE c (id INT PRIMARY KEY, v INT NOT NULL, pad CHAR(200)); \
         INSERT INTO c (id, v, pad) SELECT seq, 0, REPEAT('x', 200) FROM seq_1_to_{rows};"
    ));
    // Writers bump counters while the snapshot runs: every update adds 1,
    // so per row the published values must count up without a gap.
    let writer = tokio::spawn(async move {
        let mut c = Conn::new(opts(db.port, "cdc_boundary")).await.unwrap();
        let mut n = 0;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(4) {
            let id = 1 + (n * 7919) % rows;
            c.query_drop(format!("UPDATE c SET v = v + 1 WHERE id = {id}"))
                .await
                .unwrap();
            n += 1;
        }
        n
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let state = tempdir().join("state.json");
    let cdc = Cdc::start(
        db,
        &broker,
        &state,
        &format!("topic_prefix = \"{prefix}\"\ninclude = [\"cdc_boundary.c\"]\n"),
    );
    let updates = writer.await.unwrap();
    let mut c = root(db).await;
    let finals: HashMap<i64, i64> = c
        .query::<(i64, i64), _>("SELECT id, v FROM cdc_boundary.c")
        .await
        .unwrap()
        .into_iter()
        .collect();
    let total: i64 = finals.values().sum();
    assert_eq!(total, updates as i64);
    let done = |m: &[Msg]| {
        let (seq, _) = per_key(m);
        seq.len() == rows as usize
            && finals
                .iter()
                .all(|(id, v)| seq.get(id).and_then(|s| s.last()) == Some(v))
    };
    let msgs = read_until(&broker, &topic, Duration::from_secs(90), done).await;
    {
        if !done(&msgs) {
            let (seq, _) = per_key(&msgs);
            let wrong: Vec<_> = finals
                .iter()
                .filter(|(id, v)| seq.get(id).and_then(|s| s.last()) != Some(v))
                .take(5)
                .map(|(id, v)| (id, v, seq.get(id)))
                .collect();
            panic!(
                "{} messages, {} of {rows} rows; last values differ from the table: {wrong:?}\n{}",
                msgs.len(),
                seq.len(),
                cdc.log_text()
            );
        }
    }
    let (seq, dups) = per_key(&msgs);
    assert_eq!(dups, 0, "duplicate streaming events");
    let snapshot: Vec<i64> = msgs
        .iter()
        .filter(|m| m.op() == Some("r"))
        .map(|m| m.after()["v"].as_i64().unwrap())
        .collect();
    assert_eq!(snapshot.len(), rows as usize, "one snapshot row per row");
    // Writes on both sides of the snapshot's point: some rows were read
    // already updated, and updates were streamed after it.
    let pre = snapshot.iter().filter(|v| **v > 0).count();
    assert!(pre > 0, "no write before the snapshot read its rows");
    let mut streamed = 0;
    for (id, vs) in &seq {
        for w in vs.windows(2) {
            assert_eq!(w[1], w[0] + 1, "row {id}: values {vs:?} skip or repeat");
        }
        streamed += vs.len() - 1;
    }
    assert!(
        updates > 50 && streamed > 0,
        "writes during the snapshot: {updates} updates, {streamed} streamed"
    );
    drop(cdc);
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_publisher_resumes_without_losing_rows() {
    let db = mariadb();
    let broker = Broker::start();
    let prefix = "kr";
    let topic = format!("{prefix}.cdc_kill.k");
    broker.create_topic(&topic, 1);
    let rows = 50;
    db.sql_socket(&format!(
        "DROP DATABASE IF EXISTS cdc_kill; CREATE DATABASE cdc_kill; \
         USE cdc_kill; CREATE TABLE k (id INT PRIMARY KEY, v INT NOT NULL); \
         INSERT INTO k SELECT seq, 0 FROM seq_1_to_{rows};"
    ));
    let state = tempdir().join("state.json");
    let mut cdc = Cdc::start(
        db,
        &broker,
        &state,
        &format!("topic_prefix = \"{prefix}\"\ninclude = [\"cdc_kill.*\"]\n"),
    );
    blocking(|| {
        consume_until(&broker, &topic, Duration::from_secs(30), |m| {
            m.len() >= rows
        })
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = spawn_writer(db, "cdc_kill", rows, Duration::ZERO, stop.clone());
    // Kill -9 twice while the writes go on (the writer runs until told to
    // stop, so each kill lands between two of its updates).
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!writer.is_finished(), "the writer stopped early");
        cdc.restart();
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let updates = writer.await.unwrap();
    let mut c = root(db).await;
    let finals: HashMap<i64, i64> = c
        .query::<(i64, i64), _>("SELECT id, v FROM cdc_kill.k")
        .await
        .unwrap()
        .into_iter()
        .collect();
    let msgs = read_until(&broker, &topic, Duration::from_secs(60), |m| {
        let (seq, _) = per_key(m);
        finals
            .iter()
            .all(|(id, v)| seq.get(id).is_some_and(|s| s.contains(v)))
    })
    .await;
    assert_eq!(finals.values().sum::<i64>(), updates as i64);
    let (events, dups) = assert_every_value_in_order(&msgs, &finals);
    eprintln!("kill/restart: {events} events for {updates} updates, {dups} published twice");
    assert!(
        dups < updates,
        "a restart replayed more than everything ({dups} duplicates)"
    );
    assert!(cdc.log_text().contains("streaming the binlog"));
}

/// Rows count up from 0 (`v = v + 1`), so at-least-once in order per key
/// means: every value from 0 to the row's final one arrived, and replays
/// only go back to a point and count up again. Returns (events, events
/// published twice).
fn assert_every_value_in_order(msgs: &[Msg], finals: &HashMap<i64, i64>) -> (usize, usize) {
    let (seq, dups) = assert_every_value(msgs, finals);
    for (id, vs) in &seq {
        let mut first_seen = Vec::new();
        for v in vs {
            if !first_seen.contains(v) {
                first_seen.push(*v);
            }
        }
        assert!(
            first_seen.windows(2).all(|w| w[1] == w[0] + 1),
            "row {id}: out of order {vs:?}"
        );
    }
    (seq.values().map(Vec::len).sum(), dups)
}

/// Every value from 0 to each row's final one arrived (at least once, in
/// any order); returns the values per row and how many were published twice.
fn assert_every_value(
    msgs: &[Msg],
    finals: &HashMap<i64, i64>,
) -> (BTreeMap<i64, Vec<i64>>, usize) {
    let (seq, dups) = per_key(msgs);
    assert_eq!(seq.len(), finals.len(), "every row has messages");
    for (id, want) in finals {
        let vs = &seq[id];
        for v in 0..=*want {
            assert!(vs.contains(&v), "row {id}: value {v} lost; got {vs:?}");
        }
    }
    (seq, dups)
}

/// Kafka, then MySQL, cut off from a running publisher (relays; both
/// servers keep running and keep their data) while writes go on. With the
/// default settings deliveries never time out: the Kafka outage stalls the
/// publisher and librdkafka retries in order; the MySQL outage ends the
/// session, which restarts with back-off and resumes by GTID. Every
/// committed value of every row arrives, in order per key.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_and_mysql_outages_lose_nothing_and_keep_order() {
    let mut run = Outage::start("cdc_out1", "").await;
    let health = |run: &Outage| http_get(run.metrics_port, "/health");
    assert!(health(&run).starts_with("HTTP/1.0 200"), "{}", health(&run));
    run.kafka.set_cut(true);
    // Changes wait for Kafka longer than `max_unacked_age` (1 s): /health
    // says so while the broker is away.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let h = health(&run);
    assert!(
        h.starts_with("HTTP/1.0 503") && h.contains("stalled"),
        "{h}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    run.kafka.set_cut(false);
    let d = Deadline::new(
        Duration::from_secs(20),
        "/health healthy once Kafka is back",
    );
    while !health(&run).starts_with("HTTP/1.0 200") {
        d.tick().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_mysql_cut = run.restarts();
    assert_eq!(before_mysql_cut, 0, "the Kafka outage stalls the session");
    run.mysql.set_cut(true);
    let d = Deadline::new(
        Duration::from_secs(20),
        "a session ended by the MySQL outage",
    );
    while run.restarts() == before_mysql_cut {
        d.tick().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let h = health(&run);
    assert!(
        h.starts_with("HTTP/1.0 503") && h.contains("failing"),
        "{h}"
    );
    run.mysql.set_cut(false);
    let (msgs, finals, updates) = run.finish().await;
    let h = health(&run);
    assert!(h.starts_with("HTTP/1.0 200"), "{h}");
    let (events, dups) = assert_every_value_in_order(&msgs, &finals);
    eprintln!("outages: {updates} updates, {events} events, {dups} published twice");
    assert!(
        dups < updates,
        "replayed more than everything ({dups} duplicates)"
    );
    let log = run.cdc.log_text();
    assert!(
        log.matches("streaming the binlog start=Gtid").count() >= 2,
        "sessions after the first resume by GTID:\n{log}"
    );
    assert!(!log.contains("Kafka delivery failed"), "{log}");
}

/// With a delivery timeout configured (`message.timeout.ms`), a longer
/// Kafka outage makes deliveries fail: the session ends, and everything
/// from the last checkpoint before the first failure is published again.
/// Messages after a failed one must never complete a checkpoint (they did
/// before the publisher was poisoned on failure: values were lost). Order
/// across such a failure is not promised (README), so only loss is checked.
#[tokio::test(flavor = "multi_thread")]
async fn deliveries_that_time_out_are_published_again() {
    let mut run = Outage::start("cdc_out2", "\"message.timeout.ms\" = \"1500\"\n").await;
    run.kafka.set_cut(true);
    let d = Deadline::new(
        Duration::from_secs(20),
        "a session ended by failed deliveries",
    );
    while run.restarts() == 0 {
        d.tick().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    run.kafka.set_cut(false);
    let (msgs, finals, updates) = run.finish().await;
    let (_, dups) = assert_every_value(&msgs, &finals);
    eprintln!("timed-out deliveries: {updates} updates, {dups} published twice");
    let log = run.cdc.log_text();
    assert!(log.contains("Kafka delivery failed"), "{log}");
}

/// A publisher behind two relays (to MySQL, to the broker) while a writer
/// bumps `v` of 20 rows, one `UPDATE` every few milliseconds.
struct Outage {
    db: &'static MariaDb,
    kafka: Relay,
    mysql: Relay,
    broker: Broker,
    cdc: Cdc,
    /// `/metrics` and `/health` of the publisher.
    metrics_port: u16,
    topic: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    writer: tokio::task::JoinHandle<usize>,
}

impl Outage {
    async fn start(schema: &str, kafka_extra: &str) -> Outage {
        let db = mariadb();
        let broker_port = free_port();
        let kafka = Relay::start(format!("127.0.0.1:{broker_port}")).await;
        let broker = Broker::start_advertising(broker_port, kafka.port);
        let mysql = Relay::start(format!("127.0.0.1:{}", db.port)).await;
        let topic = format!("out.{schema}.k");
        broker.create_topic(&topic, 1);
        let rows = 20;
        db.sql_socket(&format!(
            "DROP DATABASE IF EXISTS {schema}; CREATE DATABASE {schema}; \
             USE {schema}; CREATE TABLE k (id INT PRIMARY KEY, v INT NOT NULL); \
             INSERT INTO k SELECT seq, 0 FROM seq_1_to_{rows};"
        ));
        let metrics_port = free_port();
        let cdc = Cdc::start_to(
            mysql.port,
            &format!("127.0.0.1:{}", kafka.port),
            &tempdir().join("state.json"),
            &format!(
                "topic_prefix = \"out\"\ninclude = [\"{schema}.*\"]\n\
                 metrics_listen = \"127.0.0.1:{metrics_port}\"\nmax_unacked_age = \"1s\"\n\
                 [cdc.kafka]\n{kafka_extra}"
            ),
        );
        blocking(|| {
            consume_until(&broker, &topic, Duration::from_secs(30), |m| {
                m.len() >= rows
            })
        });
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = spawn_writer(db, schema, rows, Duration::from_millis(3), stop.clone());
        tokio::time::sleep(Duration::from_secs(1)).await;
        Outage {
            db,
            kafka,
            mysql,
            broker,
            cdc,
            metrics_port,
            topic,
            stop,
            writer,
        }
    }

    fn restarts(&self) -> usize {
        self.cdc.log_text().matches("cdc session ended").count()
    }

    /// Stops the writer after a second more of writes; returns what the
    /// topic holds once every row's final value arrived (or after 60 s),
    /// the final values, and how many updates were made.
    async fn finish(&mut self) -> (Vec<Msg>, HashMap<i64, i64>, usize) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Joined, so a writer that panicked fails the test here.
        (&mut self.writer).await.unwrap();
        let schema = self.topic.split('.').nth(1).unwrap();
        let mut c = root(self.db).await;
        let finals: HashMap<i64, i64> = c
            .query::<(i64, i64), _>(format!("SELECT id, v FROM {schema}.k"))
            .await
            .unwrap()
            .into_iter()
            .collect();
        let updates = finals.values().sum::<i64>() as usize;
        let msgs = read_until(&self.broker, &self.topic, Duration::from_secs(60), |m| {
            let (seq, _) = per_key(m);
            finals
                .iter()
                .all(|(id, v)| seq.get(id).is_some_and(|s| s.contains(v)))
        })
        .await;
        (msgs, finals, updates)
    }
}

/// Bumps `v` of rows 1..=`rows` of `schema`.k round-robin, one UPDATE per
/// `pause`, until `stop`; returns how many updates it made.
fn spawn_writer(
    db: &'static MariaDb,
    schema: &str,
    rows: usize,
    pause: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    let schema = schema.to_string();
    tokio::spawn(async move {
        let mut c = Conn::new(opts(db.port, &schema)).await.unwrap();
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            c.query_drop(format!(
                "UPDATE k SET v = v + 1 WHERE id = {}",
                1 + n % rows
            ))
            .await
            .unwrap();
            n += 1;
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        n
    })
}
