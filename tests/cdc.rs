//! `sqlcache cdc` end to end: what it publishes (every type, row changes,
//! TRUNCATE and DDL), that the proxy invalidates from it, and a purged
//! position. A private MariaDB (ROW binlog, full images and metadata), the
//! real binary publishing to a private Apache Kafka, read back with rdkafka
//! and with kafka-python. Delivery guarantees: `cdc_delivery.rs`.
//!
//! Expected values never come from our encoder: they are computed by
//! MariaDB itself (DATEDIFF, TIMESTAMPDIFF, TO_BASE64 …) from a SELECT of
//! the row, so "the `after` image equals the row" is checked against an
//! independent oracle.

mod common;

use std::time::{Duration, Instant};

use common::broker::{consume_until, Broker};
use common::cdc::Cdc;
use common::sqlcache::*;
use common::topic::blocking;
use common::types::{as_text, type_row, TYPES, TYPES_DDL};
use common::*;
use mysql_async::prelude::*;
use mysql_async::Conn;
use serde_json::Value as Json;

/// Asserts `after` equals what MariaDB computes for row `id` of `db`.t.
async fn assert_row_matches(c: &mut Conn, db: &str, id: i64, after: &Json, what: &str) {
    c.query_drop("SET time_zone = '+00:00'").await.unwrap();
    let exprs: Vec<&str> = TYPES.iter().map(|(_, e)| *e).collect();
    let row: mysql_async::Row = c
        .query_first(format!(
            "SELECT {} FROM {db}.t WHERE id = {id}",
            exprs.join(", ")
        ))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{what}: row {id} not in the table"));
    let obj = after
        .as_object()
        .unwrap_or_else(|| panic!("{what}: no after image"));
    assert_eq!(obj.len(), TYPES.len(), "{what}: columns of {after}");
    for (i, (col, _)) in TYPES.iter().enumerate() {
        let want: Option<String> = row.get(i).unwrap();
        let got = as_text(&obj[*col]);
        // MariaDB prints FLOAT/DOUBLE in its own shortest form.
        let same = match (&got, &want) {
            (Some(g), Some(w)) if ["f", "d"].contains(col) => {
                g.parse::<f64>().unwrap() == w.parse::<f64>().unwrap()
            }
            _ => got == want,
        };
        assert!(
            same,
            "{what}: row {id} column {col}: published {got:?}, MariaDB says {want:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_type_round_trips_through_snapshot_and_stream() {
    let db = mariadb();
    let broker = Broker::start();
    let prefix = "ty";
    let topic = format!("{prefix}.cdc_types.t");
    broker.create_topic(&topic, 1);
    db.sql_socket(&format!(
        "DROP DATABASE IF EXISTS cdc_types; CREATE DATABASE cdc_types; USE cdc_types; {TYPES_DDL}; \
         INSERT INTO t VALUES {}, {}, {};",
        type_row(0),
        type_row(1),
        type_row(2)
    ));
    let state = tempdir().join("state.json");
    let mut cdc = Cdc::start(
        db,
        &broker,
        &state,
        &format!("topic_prefix = \"{prefix}\"\ninclude = [\"cdc_types.*\"]\n"),
    );
    // Snapshot: three `r` rows, the last one marked "last".
    let snap =
        blocking(|| consume_until(&broker, &topic, Duration::from_secs(60), |m| m.len() >= 3));
    assert!(snap.iter().all(|m| m.op() == Some("r")), "{snap:#?}");
    let marks: Vec<_> = snap
        .iter()
        .map(|m| m.value.as_ref().unwrap()["source"]["snapshot"].clone())
        .collect();
    assert_eq!(marks, ["true", "true", "last"]);
    let mut c = root(db).await;
    for m in &snap {
        let id = m.after()["id"].as_i64().unwrap();
        assert_eq!(m.key, Some(serde_json::json!({ "id": id })));
        assert_row_matches(&mut c, "cdc_types", id, m.after(), "snapshot").await;
    }
    // Stream: the same values inserted and updated after the snapshot.
    db.sql_socket(&format!(
        "INSERT INTO cdc_types.t VALUES {}, {}, {}; \
         UPDATE cdc_types.t SET vc = 'changed', yr = 2000 WHERE id = 4;",
        type_row(3),
        type_row(4),
        type_row(5)
    ));
    let all =
        blocking(|| consume_until(&broker, &topic, Duration::from_secs(30), |m| m.len() >= 7));
    let stream = &all[3..];
    assert_eq!(
        stream.iter().map(|m| m.op().unwrap()).collect::<Vec<_>>(),
        ["c", "c", "c", "u"]
    );
    for m in &stream[..3] {
        let id = m.after()["id"].as_i64().unwrap();
        // Row 3 was inserted with row 0's values: same JSON apart from id.
        let mut twin = snap
            .iter()
            .find(|s| s.after()["id"].as_i64() == Some(id - 3))
            .unwrap()
            .after()
            .clone();
        twin["id"] = Json::from(id);
        assert_eq!(m.after(), &twin, "binlog and snapshot encode alike");
    }
    let upd = &stream[3];
    assert_eq!(upd.before()["vc"], snap[1].after()["vc"]);
    assert_row_matches(&mut c, "cdc_types", 4, upd.after(), "update").await;
    for id in [3, 5] {
        let m = stream.iter().find(|m| m.after()["id"] == id).unwrap();
        assert_row_matches(&mut c, "cdc_types", id, m.after(), "insert").await;
    }
    let src = &upd.value.as_ref().unwrap()["source"];
    assert_eq!(src["connector"], "mysql");
    assert_eq!(src["name"], prefix);
    assert_eq!(src["db"], "cdc_types");
    assert_eq!(src["table"], "t");
    assert_eq!(src["snapshot"], "false");
    assert!(
        src["gtid"].as_str().is_some_and(|g| g.starts_with("0-1-")),
        "{src}"
    );
    assert!(src["file"]
        .as_str()
        .is_some_and(|f| f.starts_with("binlog.")));
    assert!(src["pos"].as_u64().unwrap() > 4);

    // A third-party consumer reads the same messages.
    let out = tempdir().join("kafka-python.jsonl");
    python_check(
        "kafka_consume.py",
        &[&broker.addr(), &topic, "7", &out.display().to_string()],
        || cdc.log_text(),
    );
    let py: Vec<Json> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (p, m) in py.iter().zip(&all) {
        assert_eq!(p["key"], m.key.clone().unwrap_or(Json::Null));
        assert_eq!(p["value"], m.value.clone().unwrap_or(Json::Null));
    }
    assert!(cdc.exited().is_none(), "cdc still running");
}

#[tokio::test(flavor = "multi_thread")]
async fn row_changes_truncate_and_ddl_are_published() {
    let db = mariadb();
    let broker = Broker::start();
    let prefix = "ch";
    let topic = format!("{prefix}.cdc_changes.items");
    broker.create_topic(&topic, 1);
    broker.create_topic(prefix, 1);
    db.sql_socket(
        "DROP DATABASE IF EXISTS cdc_changes; CREATE DATABASE cdc_changes; \
         CREATE TABLE cdc_changes.items (id INT PRIMARY KEY, v VARCHAR(20)); \
         CREATE TABLE cdc_changes.skipped (id INT PRIMARY KEY);",
    );
    let state = tempdir().join("state.json");
    let _cdc = Cdc::start(
        db,
        &broker,
        &state,
        &format!(
            "topic_prefix = \"{prefix}\"\ninclude = [\"cdc_changes.*\"]\nexclude = [\"cdc_changes.skipped\"]\nsnapshot = \"never\"\n"
        ),
    );
    // `never`: the state file is written at once, at the current position.
    let d = std::time::Instant::now();
    while !state.exists() {
        assert!(d.elapsed() < Duration::from_secs(20), "no state file");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    db.sql_socket(
        "INSERT INTO cdc_changes.items VALUES (1, 'a'), (2, 'b'); \
         INSERT INTO cdc_changes.skipped VALUES (1); \
         UPDATE cdc_changes.items SET v = 'a2' WHERE id = 1; \
         UPDATE cdc_changes.items SET id = 20 WHERE id = 2; \
         DELETE FROM cdc_changes.items WHERE id = 1; \
         TRUNCATE TABLE cdc_changes.items; \
         ALTER TABLE cdc_changes.items ADD COLUMN w INT; \
         INSERT INTO cdc_changes.items VALUES (3, 'c', 33);",
    );
    let msgs = blocking(|| {
        consume_until(&broker, &topic, Duration::from_secs(30), |m| {
            m.iter()
                .any(|m| m.op() == Some("c") && m.after()["id"] == 3)
        })
    });
    let ops: Vec<String> = msgs
        .iter()
        .map(|m| m.op().unwrap_or("tombstone").to_string())
        .collect();
    assert_eq!(
        ops,
        [
            "c",
            "c",
            "u",
            "d",
            "tombstone",
            "c",
            "d",
            "tombstone",
            "t",
            "c"
        ],
        "{msgs:#?}"
    );
    let key = |i: usize| msgs[i].key.clone();
    assert_eq!(key(2), Some(serde_json::json!({"id": 1})));
    assert_eq!(msgs[2].before()["v"], "a");
    assert_eq!(msgs[2].after()["v"], "a2");
    // The key change: delete of id 2 (+ tombstone), create of id 20.
    assert_eq!(key(3), Some(serde_json::json!({"id": 2})));
    assert_eq!(key(4), Some(serde_json::json!({"id": 2})));
    assert_eq!(key(5), Some(serde_json::json!({"id": 20})));
    assert_eq!(msgs[6].before()["id"], 1);
    assert_eq!(msgs[8].key, None, "truncate has no key");
    assert_eq!(
        msgs[9].after(),
        &serde_json::json!({"id": 3, "v": "c", "w": 33})
    );
    // Excluded table: no topic was ever created for it, nothing was sent.
    let ddl = blocking(|| {
        consume_until(&broker, prefix, Duration::from_secs(30), |m| {
            m.iter().any(|m| {
                m.value.as_ref().unwrap()["ddl"]
                    .as_str()
                    .is_some_and(|d| d.contains("ADD COLUMN w"))
            })
        })
    });
    let alter = ddl.last().unwrap().value.clone().unwrap();
    assert_eq!(alter["databaseName"], "cdc_changes");
    assert_eq!(alter["tableChanges"][0]["id"], "\"cdc_changes\".\"items\"");
    assert_eq!(
        ddl.last().unwrap().key,
        Some(serde_json::json!({"databaseName": "cdc_changes"}))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_invalidates_from_our_events() {
    let db = mariadb();
    let broker = Broker::start();
    let prefix = "e2e";
    let topic = format!("{prefix}.test.cdc_e2e");
    broker.create_topic(&topic, 1);
    broker.create_topic(prefix, 1);
    db.sql_socket(
        "DROP TABLE IF EXISTS test.cdc_e2e_child, test.cdc_e2e; \
         CREATE TABLE test.cdc_e2e (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB; \
         INSERT INTO test.cdc_e2e VALUES (1, 'one'), (2, 'two'); \
         CREATE TABLE test.cdc_e2e_child (id INT PRIMARY KEY, pid INT, v VARCHAR(20), \
           FOREIGN KEY (pid) REFERENCES test.cdc_e2e(id) ON DELETE CASCADE) ENGINE=InnoDB; \
         INSERT INTO test.cdc_e2e_child VALUES (1, 2, 'child of two');",
    );
    let state = tempdir().join("state.json");
    let metrics = free_port();
    let _cdc = Cdc::start(
        db,
        &broker,
        &state,
        &format!(
            "topic_prefix = \"{prefix}\"\ninclude = [\"test.cdc_e2e\"]\nmetrics_listen = \"127.0.0.1:{metrics}\"\n"
        ),
    );
    // The snapshot's rows are published before the proxy starts reading
    // (from the end of the topic): only the writes below reach it.
    blocking(|| consume_until(&broker, &topic, Duration::from_secs(30), |m| m.len() >= 2));
    let proxy = Proxy::start(
        db,
        &format!(
            "[invalidation.kafka]\nbrokers = \"{}\"\ntopics = [\"{topic}\", \"{prefix}\"]\nformat = \"debezium\"\nmax_staleness = \"5s\"\n",
            broker.addr()
        ),
        "",
    );
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    wait_fresh(&mut c).await;
    let t = "cdc_e2e";
    warm(&mut c, t, 1).await;
    warm(&mut c, t, 2).await;
    db.sql_socket("UPDATE test.cdc_e2e SET v = 'uno' WHERE id = 1");
    let d = Deadline::new(Duration::from_secs(10), "update reached the proxy");
    while value(&mut c, t, 1).await.as_deref() != Some("uno") {
        d.tick().await;
    }
    // (Row-level precision of the proxy's Debezium decoding is tested in
    // feed.rs; here: right answers end to end.)
    assert_eq!(value(&mut c, t, 2).await.as_deref(), Some("two"));
    // The delete cascades to the child inside InnoDB: only the parent's row
    // is in the binlog (and on Kafka), yet the child's entry must go.
    warm(&mut c, "cdc_e2e_child", 1).await;
    db.sql_socket("DELETE FROM test.cdc_e2e WHERE id = 2");
    let d = Deadline::new(Duration::from_secs(10), "delete reached the proxy");
    while value(&mut c, t, 2).await.is_some() {
        d.tick().await;
    }
    assert_eq!(value(&mut c, "cdc_e2e_child", 1).await, None, "cascade");
    // The publisher's own /metrics: two snapshot rows, the update and the
    // delete, each acknowledged once (the delete's tombstone is no row).
    let d = Deadline::new(Duration::from_secs(10), "acks counted");
    loop {
        let body = scrape(metrics);
        if body.contains("\nsqlcache_cdc_row_events_total 4\n") {
            assert!(body.contains("# TYPE sqlcache_cdc_ack_latency_seconds histogram"));
            break;
        }
        assert!(
            !body.contains("\nsqlcache_cdc_row_events_total 5"),
            "{body}"
        );
        d.tick().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purged_position_stops_with_a_clear_error() {
    let db = mariadb();
    let broker = Broker::start();
    let state = tempdir().join("state.json");
    std::fs::write(
        &state,
        r#"{"file": "binlog.000000", "pos": 4, "gtid": "", "snapshot_done": true}"#,
    )
    .unwrap();
    let mut cdc = Cdc::start(db, &broker, &state, "topic_prefix = \"pg\"\n");
    let d = Instant::now();
    let status = loop {
        if let Some(s) = cdc.exited() {
            break s;
        }
        assert!(d.elapsed() < Duration::from_secs(20), "cdc did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success());
    let log = cdc.log_text();
    assert!(
        log.contains("no longer on the server") && log.contains("re-snapshot"),
        "{log}"
    );
}
