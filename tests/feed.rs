//! The Kafka change feed end to end: a private MariaDB, a private Apache
//! Kafka, the real proxy binary consuming with rdkafka.
//!
//! Writes are made directly on MariaDB (the proxy never sees them), then
//! published the way Debezium, Canal and Maxwell publish them (what
//! Debezium itself publishes is tested in `tests/debezium.rs`); the proxy must
//! stop serving the old row. Each test first shows the cache *would* serve
//! the old row (a hit after the direct write), so a pass means the feed did it.

mod common;

use common::broker::Broker;
use common::sqlcache::*;
use common::*;
use mysql_async::prelude::*;
use mysql_async::Conn;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
enum Fmt {
    Debezium { wrapped: bool },
    Canal,
    Maxwell,
}

/// One change as the tool would publish it: (topic, key, value) messages.
struct Publisher {
    fmt: Fmt,
    table: String,
}

type Msg = (String, Option<String>, Option<String>);

impl Publisher {
    fn topic(&self) -> String {
        match self.fmt {
            Fmt::Debezium { .. } => format!("srv.test.{}", self.table),
            Fmt::Canal => "canal_test".into(),
            Fmt::Maxwell => "maxwell".into(),
        }
    }

    fn wrap(&self, payload: serde_json::Value) -> String {
        match self.fmt {
            Fmt::Debezium { wrapped: true } => serde_json::json!({
                "schema": {"type": "struct", "optional": false, "name": "srv.Envelope", "fields": []},
                "payload": payload,
            })
            .to_string(),
            _ => payload.to_string(),
        }
    }

    fn debezium(&self, op: &str, before: serde_json::Value, after: serde_json::Value) -> Msg {
        let id = if after.is_null() {
            &before["id"]
        } else {
            &after["id"]
        };
        let key = self.wrap(serde_json::json!({ "id": id }));
        let value = self.wrap(serde_json::json!({
            "before": before,
            "after": after,
            "source": {
                "version": "2.7.3.Final", "connector": "mysql", "name": "srv",
                "ts_ms": 1_732_000_000_000u64, "snapshot": "false", "db": "test",
                "table": self.table, "server_id": 1, "gtid": null,
                "file": "binlog.000001", "pos": 4321, "row": 0, "thread": 7, "query": null
            },
            "op": op,
            "ts_ms": 1_732_000_000_001u64,
            "transaction": null
        }));
        (self.topic(), Some(key), Some(value))
    }

    fn canal(&self, kind: &str, data: serde_json::Value, old: serde_json::Value) -> Msg {
        let value = serde_json::json!({
            "data": data, "database": "test", "es": 1_732_000_000_000u64, "id": 3,
            "isDdl": false, "mysqlType": {"id": "int", "v": "varchar(20)"}, "old": old,
            "pkNames": ["id"], "sql": "", "sqlType": {"id": 4, "v": 12},
            "table": self.table, "ts": 1_732_000_000_001u64, "type": kind
        });
        (self.topic(), None, Some(value.to_string()))
    }

    fn maxwell(&self, kind: &str, data: serde_json::Value, old: serde_json::Value) -> Msg {
        let id = &data["id"];
        let key = serde_json::json!({"database": "test", "table": self.table, "pk.id": id});
        let mut value = serde_json::json!({
            "database": "test", "table": self.table, "type": kind,
            "ts": 1_732_000_000u64, "xid": 8, "commit": true, "data": data
        });
        if !old.is_null() {
            value["old"] = old;
        }
        (self.topic(), Some(key.to_string()), Some(value.to_string()))
    }

    /// `UPDATE … SET v = new WHERE id = id`.
    fn update(&self, id: i64, old: &str, new: &str) -> Vec<Msg> {
        use serde_json::json;
        match self.fmt {
            Fmt::Debezium { .. } => vec![self.debezium(
                "u",
                json!({"id": id, "v": old}),
                json!({"id": id, "v": new}),
            )],
            Fmt::Canal => vec![self.canal(
                "UPDATE",
                json!([{"id": id.to_string(), "v": new}]),
                json!([{"v": old}]),
            )],
            Fmt::Maxwell => {
                vec![self.maxwell("update", json!({"id": id, "v": new}), json!({"v": old}))]
            }
        }
    }

    /// `UPDATE … SET id = to WHERE id = from`.
    fn key_change(&self, from: i64, to: i64, v: &str) -> Vec<Msg> {
        use serde_json::json;
        match self.fmt {
            // Debezium: a delete of the old key, its tombstone, a create.
            Fmt::Debezium { .. } => {
                let del = self.debezium("d", json!({"id": from, "v": v}), json!(null));
                let tomb = (del.0.clone(), del.1.clone(), None);
                let create = self.debezium("c", json!(null), json!({"id": to, "v": v}));
                vec![del, tomb, create]
            }
            Fmt::Canal => vec![self.canal(
                "UPDATE",
                json!([{"id": to.to_string(), "v": v}]),
                json!([{"id": from.to_string()}]),
            )],
            Fmt::Maxwell => {
                vec![self.maxwell("update", json!({"id": to, "v": v}), json!({"id": from}))]
            }
        }
    }

    fn truncate(&self) -> Vec<Msg> {
        match self.fmt {
            // Debezium publishes truncates only with skipped.operations=none.
            Fmt::Debezium { .. } => {
                let value = self.wrap(serde_json::json!({
                    "before": null, "after": null,
                    "source": {"connector": "mysql", "name": "srv", "db": "test", "table": self.table,
                               "server_id": 1, "file": "binlog.000001", "pos": 99, "row": 0, "snapshot": "false"},
                    "op": "t", "ts_ms": 1_732_000_000_002u64
                }));
                vec![(self.topic(), None, Some(value))]
            }
            Fmt::Canal => {
                let value = serde_json::json!({
                    "data": null, "database": "test", "es": 1, "id": 4, "isDdl": true,
                    "mysqlType": null, "old": null, "pkNames": null,
                    "sql": format!("TRUNCATE TABLE {}", self.table), "sqlType": null,
                    "table": self.table, "ts": 2, "type": "TRUNCATE"
                });
                vec![(self.topic(), None, Some(value.to_string()))]
            }
            // Maxwell publishes no event for TRUNCATE (README): nothing to send.
            Fmt::Maxwell => vec![],
        }
    }

    fn alter(&self, sql: &str) -> Vec<Msg> {
        match self.fmt {
            Fmt::Debezium { .. } => {
                let value = self.wrap(serde_json::json!({
                    "source": {"connector": "mysql", "name": "srv", "db": "test", "table": self.table,
                               "server_id": 1, "file": "binlog.000001", "pos": 120, "row": 0, "snapshot": "false"},
                    "ts_ms": 1_732_000_000_003u64, "databaseName": "test", "schemaName": null,
                    "ddl": sql,
                    "tableChanges": [{"type": "ALTER", "id": format!("\"test\".\"{}\"", self.table),
                                      "table": {"defaultCharsetName": "utf8mb4", "primaryKeyColumnNames": ["id"], "columns": []}}]
                }));
                let key = self.wrap(serde_json::json!({"databaseName": "test"}));
                vec![("srv".into(), Some(key), Some(value))]
            }
            Fmt::Canal => {
                let value = serde_json::json!({
                    "data": null, "database": "test", "es": 1, "id": 5, "isDdl": true,
                    "mysqlType": null, "old": null, "pkNames": null, "sql": sql, "sqlType": null,
                    "table": self.table, "ts": 2, "type": "ALTER"
                });
                vec![(self.topic(), None, Some(value.to_string()))]
            }
            Fmt::Maxwell => {
                let value = serde_json::json!({
                    "type": "table-alter", "database": "test", "table": self.table,
                    "old": {"database": "test", "charset": "utf8mb4", "table": self.table, "columns": []},
                    "def": {"database": "test", "charset": "utf8mb4", "table": self.table, "columns": []},
                    "ts": 1_732_000_000_004u64, "sql": sql
                });
                vec![(self.topic(), None, Some(value.to_string()))]
            }
        }
    }
}

fn feed_config(broker: &Broker, fmt: Fmt, max_staleness: &str) -> String {
    let (topics, format) = match fmt {
        Fmt::Debezium { .. } => (r#"["^srv(\\..*)?$"]"#, "debezium"),
        Fmt::Canal => (r#"["canal_test"]"#, "canal"),
        Fmt::Maxwell => (r#"["maxwell"]"#, "maxwell"),
    };
    format!(
        "[invalidation.kafka]\nbrokers = \"{}\"\ntopics = {topics}\nformat = \"{format}\"\nmax_staleness = \"{max_staleness}\"\n",
        broker.addr()
    )
}

fn topics_for(fmt: Fmt, table: &str) -> Vec<String> {
    match fmt {
        Fmt::Debezium { .. } => vec!["srv".into(), format!("srv.test.{table}")],
        Fmt::Canal => vec!["canal_test".into()],
        Fmt::Maxwell => vec!["maxwell".into()],
    }
}

/// A table `test.<table>` holding `rows`, a private broker with the
/// format's topics, a proxy consuming them, a client once the feed is fresh.
async fn rig(
    db: &MariaDb,
    fmt: Fmt,
    table: &str,
    rows: &str,
    max_staleness: &str,
) -> (Broker, Proxy, Conn, Publisher) {
    db.sql_socket(&format!(
        "DROP TABLE IF EXISTS test.{table}; CREATE TABLE test.{table} (id INT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO test.{table} VALUES {rows};"
    ));
    let broker = Broker::start();
    for t in topics_for(fmt, table) {
        broker.create_topic(&t, 1);
    }
    let proxy = Proxy::start_with(db.port, "", &feed_config(&broker, fmt, max_staleness), "");
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    wait_fresh(&mut c).await;
    let p = Publisher {
        fmt,
        table: table.into(),
    };
    (broker, proxy, c, p)
}

async fn direct_writes_are_invalidated_by_the_feed(fmt: Fmt, table: &str) {
    let db = mariadb();
    let (mut broker, proxy, mut c, p) = rig(
        db,
        fmt,
        table,
        "(1, 'one'), (2, 'two'), (3, 'three'), (4, 'four')",
        "5s",
    )
    .await;
    let mut publish = |msgs: Vec<Msg>| {
        for (t, k, v) in msgs {
            broker.send(&t, k.as_deref(), v.as_deref());
        }
    };
    let limit = Duration::from_secs(10);

    // An UPDATE made directly on MariaDB (row 3 cached too: its entry
    // must survive row 1's invalidation).
    assert_eq!(warm(&mut c, table, 3).await.as_deref(), Some("three"));
    assert_eq!(warm(&mut c, table, 1).await.as_deref(), Some("one"));
    db.sql_socket(&format!("UPDATE test.{table} SET v = 'uno' WHERE id = 1"));
    assert_eq!(value(&mut c, table, 1).await.as_deref(), Some("one"));
    assert_eq!(
        last(&mut c).await,
        "hit",
        "the cache cannot see direct writes by itself"
    );
    publish(p.update(1, "one", "uno"));
    let d = Deadline::new(limit, "update applied");
    while value(&mut c, table, 1).await.as_deref() != Some("uno") {
        d.tick().await;
    }
    let c = &mut c;
    // Other rows keep their entries (a row tag, not the table's): row 3,
    // cached before the change, is still a hit.
    assert_eq!(value(c, table, 3).await.as_deref(), Some("three"));
    assert_eq!(last(c).await, "hit");

    // A primary-key change: both the old and the new key change.
    warm(c, table, 2).await;
    assert_eq!(warm(c, table, 20).await, None);
    db.sql_socket(&format!("UPDATE test.{table} SET id = 20 WHERE id = 2"));
    publish(p.key_change(2, 20, "two"));
    let d = Deadline::new(limit, "key change applied");
    while value(c, table, 2).await.is_some() || value(c, table, 20).await.as_deref() != Some("two")
    {
        d.tick().await;
    }

    // TRUNCATE.
    if !matches!(fmt, Fmt::Maxwell) {
        warm(c, table, 3).await;
        db.sql_socket(&format!("TRUNCATE TABLE test.{table}"));
        publish(p.truncate());
        let d = Deadline::new(limit, "truncate applied");
        while value(c, table, 3).await.is_some() {
            d.tick().await;
        }
        db.sql_socket(&format!(
            "INSERT INTO test.{table} VALUES (1, 'uno'), (3, 'three'), (4, 'four')"
        ));
        publish(p.update(1, "", "uno"));
        publish(p.update(3, "", "three"));
        publish(p.update(4, "", "four"));
    }

    // ALTER TABLE: the shape of `SELECT *` changes.
    let star = format!("SELECT * FROM {table} WHERE id = 4");
    let cols = |rows: Vec<mysql_async::Row>| rows[0].columns_ref().len();
    // Row 4 is back and `SELECT *` is cached in its old shape. The feed's
    // events for the re-inserted rows, and the echoes of them and of the
    // TRUNCATE (100 ms and max_staleness later), may each drop the entry
    // once more, so retry until a read is a hit.
    let d = Deadline::new(limit, "row 4 back and cached");
    let before = loop {
        let rows: Vec<mysql_async::Row> = c.query(&star).await.unwrap();
        if rows.len() == 1 && last(c).await == "hit" {
            break rows;
        }
        d.tick().await;
    };
    assert_eq!(cols(before), 2);
    let alter = format!("ALTER TABLE test.{table} ADD COLUMN extra INT NOT NULL DEFAULT 7");
    db.sql_socket(&alter);
    publish(p.alter(&alter));
    let d = Deadline::new(limit, "alter applied");
    while cols(c.query(&star).await.unwrap()) != 3 {
        d.tick().await;
    }

    // A malformed message: no crash, and the table (or everything) is invalid.
    assert_eq!(warm(c, table, 4).await.as_deref(), Some("four"));
    db.sql_socket(&format!(
        "UPDATE test.{table} SET v = 'cuatro' WHERE id = 4"
    ));
    publish(vec![(
        p.topic(),
        Some("{".into()),
        Some("{\"op\": \"u\", garbage".into()),
    )]);
    let d = Deadline::new(limit, "malformed message invalidates");
    while value(c, table, 4).await.as_deref() != Some("cuatro") {
        d.tick().await;
    }
    assert_eq!(status(c, "feed_malformed").await, "1");
    assert!(proxy.log_text().contains("undecodable change-feed message"));
    // Still consuming after it.
    warm(c, table, 1).await;
    db.sql_socket(&format!("UPDATE test.{table} SET v = 'eins' WHERE id = 1"));
    publish(p.update(1, "uno", "eins"));
    let d = Deadline::new(limit, "feed alive after a bad message");
    while value(c, table, 1).await.as_deref() != Some("eins") {
        d.tick().await;
    }
    let mut proxy = proxy;
    assert!(proxy.alive());
}

#[tokio::test]
async fn debezium_feed_invalidates_direct_writes() {
    direct_writes_are_invalidated_by_the_feed(Fmt::Debezium { wrapped: false }, "feed_dbz").await;
}

#[tokio::test]
async fn debezium_feed_with_schema_envelope_invalidates_direct_writes() {
    direct_writes_are_invalidated_by_the_feed(Fmt::Debezium { wrapped: true }, "feed_dbzw").await;
}

#[tokio::test]
async fn canal_feed_invalidates_direct_writes() {
    direct_writes_are_invalidated_by_the_feed(Fmt::Canal, "feed_canal").await;
}

#[tokio::test]
async fn maxwell_feed_invalidates_direct_writes() {
    direct_writes_are_invalidated_by_the_feed(Fmt::Maxwell, "feed_maxwell").await;
}

/// Broker gone: hits stop within `max_staleness` and answers stay correct;
/// broker back (empty: its storage was formatted afresh, so events were lost):
/// every entry from before is dropped and hits resume.
#[tokio::test]
async fn broker_outage_stops_hits_and_recovery_drops_entries_from_before_the_gap() {
    let db = mariadb();
    let table = "feed_outage";
    let fmt = Fmt::Debezium { wrapped: false };
    let max_staleness = Duration::from_secs(1);
    let (mut broker, _proxy, mut c, p) = rig(db, fmt, table, "(1, 'one'), (2, 'two')", "1s").await;
    // An idle feed stays fresh (silence is not lag).
    warm(&mut c, table, 1).await;
    tokio::time::sleep(max_staleness * 3).await;
    value(&mut c, table, 1).await;
    assert_eq!(last(&mut c).await, "hit", "an idle feed must keep serving");
    warm(&mut c, table, 2).await;

    broker.stop();
    let stopped = Instant::now();
    let d = Deadline::new(Duration::from_secs(10), "hits stop");
    loop {
        value(&mut c, table, 1).await;
        if last(&mut c).await == "bypass(feed_unhealthy)" {
            break;
        }
        d.tick().await;
    }
    let took = stopped.elapsed();
    let c = &mut c;
    assert!(
        took <= max_staleness + Duration::from_millis(500),
        "hits went on for {took:?} after the broker stopped (max_staleness {max_staleness:?})"
    );
    let errors: u64 = status(c, "feed_errors").await.parse().unwrap();
    assert!(errors >= 1, "failed freshness checks are counted");
    // The feed starts a fresh Kafka client after the gap; the broker comes
    // back after that (librdkafka 2.12.1 crashed when its old client met a
    // broker that came back empty: README, "Change feed").
    let d = Deadline::new(Duration::from_secs(10), "new Kafka client");
    while status(c, "feed_client_restarts").await == "0" {
        d.tick().await;
    }
    // Clients still get correct answers, from MariaDB.
    db.sql_socket(&format!("UPDATE test.{table} SET v = 'dos' WHERE id = 2"));
    assert_eq!(value(c, table, 2).await.as_deref(), Some("dos"));

    // The broker comes back empty: the event for row 2 is lost for good.
    broker.restart();
    for t in topics_for(fmt, table) {
        broker.create_topic(&t, 1);
    }
    let d = Deadline::new(Duration::from_secs(30), "hits resume");
    loop {
        value(c, table, 1).await;
        if last(c).await == "hit" {
            break;
        }
        d.tick().await;
    }
    assert_eq!(
        value(c, table, 2).await.as_deref(),
        Some("dos"),
        "an entry filled before the gap was served after it"
    );
    let gaps: u64 = status(c, "feed_gaps").await.parse().unwrap();
    assert!(
        gaps >= 2,
        "startup and the re-created topic are gaps: {gaps}"
    );
    // And the feed works again.
    warm(c, table, 1).await;
    db.sql_socket(&format!("UPDATE test.{table} SET v = 'uno' WHERE id = 1"));
    for (t, k, v) in p.update(1, "one", "uno") {
        broker.send(&t, k.as_deref(), v.as_deref());
    }
    let d = Deadline::new(Duration::from_secs(10), "feed applies after recovery");
    while value(c, table, 1).await.as_deref() != Some("uno") {
        d.tick().await;
    }
}

/// A proxy whose feed cannot start (no broker) never serves a hit, and
/// still answers every query from MariaDB.
#[tokio::test]
async fn no_broker_means_no_hits() {
    let db = mariadb();
    let table = "feed_nobroker";
    db.sql_socket(&format!(
        "DROP TABLE IF EXISTS test.{table}; CREATE TABLE test.{table} (id INT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO test.{table} VALUES (1, 'one');"
    ));
    let dead = free_port();
    let cfg = format!(
        "[invalidation.kafka]\nbrokers = \"127.0.0.1:{dead}\"\ntopics = [\"t\"]\nformat = \"canal\"\nmax_staleness = \"500ms\"\n"
    );
    let proxy = Proxy::start_with(db.port, "", &cfg, "");
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    for _ in 0..3 {
        assert_eq!(value(&mut c, table, 1).await.as_deref(), Some("one"));
        assert_eq!(last(&mut c).await, "bypass(feed_unhealthy)");
    }
    assert_eq!(status(&mut c, "feed_fresh").await, "false");
}
