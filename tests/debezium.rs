//! Real Debezium: its MariaDB connector (3.5, under Kafka Connect
//! standalone) reads the private MariaDB and writes to a private Apache
//! Kafka; one worker for this binary, shared by its tests.
//!
//! * The proxy's Debezium decoder on what Debezium itself publishes, with
//!   and without the JSON converter's schemas: INSERT, UPDATE, primary-key
//!   change, DELETE + tombstone, TRUNCATE (`skipped.operations=none`),
//!   ALTER (schema-change topic), every column type of the cdc matrix, and
//!   BIGINT UNSIGNED keys past 2^63. Each case first shows that a proxy
//!   without the feed keeps serving the old rows.
//! * `sqlcache cdc` beside Debezium: the same writes captured by both into
//!   the same Kafka, compared field by field (`KNOWN_DIFFERENCES` is the
//!   README's list, checked exactly).

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use common::broker::{consume_until, Broker, Msg};
use common::cdc::Cdc;
use common::debezium::{Connector, Debezium};
use common::sqlcache::*;
use common::types::{type_row, TYPES, TYPES_DDL};
use common::*;
use mysql_async::prelude::*;
use mysql_async::{Conn, Value};
use serde_json::Value as Json;

struct Rig {
    broker: Broker,
    _debezium: Debezium,
}

/// Databases: `dbz_plain` (converter without schemas), `dbz_schema` (with),
/// `dbz_cmp` (the comparison with `sqlcache cdc`); each connector's
/// `topic.prefix` is its database's name.
fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let db = mariadb();
        db.sql_socket(&format!(
            "CREATE DATABASE dbz_plain; CREATE DATABASE dbz_schema; CREATE DATABASE dbz_cmp; \
             USE dbz_cmp; {TYPES_DDL};"
        ));
        let broker = Broker::start();
        let connector = |name: &str, schemas: bool| Connector {
            prefix: name.into(),
            databases: name.into(),
            schemas,
            extra: "decimal.handling.mode=string\n".into(),
        };
        let debezium = Debezium::start(
            db,
            &broker,
            &[
                connector("dbz_plain", false),
                connector("dbz_schema", true),
                connector("dbz_cmp", false),
            ],
        );
        Rig {
            broker,
            _debezium: debezium,
        }
    })
}

type Rows = Vec<Vec<Value>>;

async fn rows(c: &mut Conn, sql: &str) -> Rows {
    let r: Vec<mysql_async::Row> = c.query(sql).await.unwrap();
    r.into_iter().map(|r| r.unwrap()).collect()
}

/// Reads `sql` until a read is a hit; returns what it answered.
async fn cached(c: &mut Conn, sql: &str) -> Rows {
    let d = Deadline::new(Duration::from_secs(15), "entry cached");
    loop {
        let r = rows(c, sql).await;
        if last(c).await == "hit" {
            return r;
        }
        d.tick().await;
    }
}

/// A proxy with the Debezium feed (`feed`), one without (`blind`), and a
/// direct connection, all on database `schema`.
struct Clients {
    feed: Conn,
    blind: Conn,
    direct: Conn,
    _proxies: (Proxy, Proxy),
}

impl Clients {
    async fn new(schema: &str) -> Clients {
        let db = mariadb();
        let rig = rig();
        let cfg = format!(
            "[invalidation.kafka]\nbrokers = \"{}\"\ntopics = [\"^{schema}(\\\\..*)?$\"]\nformat = \"debezium\"\nmax_staleness = \"5s\"\n",
            rig.broker.addr()
        );
        let feed = Proxy::start_with(db.port, "", &cfg, "");
        let blind = Proxy::start_with(db.port, "", "", "");
        let mut f = Conn::new(opts(feed.port, schema)).await.unwrap();
        wait_fresh(&mut f).await;
        Clients {
            feed: f,
            blind: Conn::new(opts(blind.port, schema)).await.unwrap(),
            direct: Conn::new(opts(db.port, schema)).await.unwrap(),
            _proxies: (feed, blind),
        }
    }

    /// Caches every read in both proxies, runs `write` directly on
    /// MariaDB, shows the blind proxy still serves the old answers, then
    /// waits until the feed's proxy answers what MariaDB does.
    async fn case(&mut self, what: &'static str, reads: &[String], write: &str) {
        let mut old = Vec::new();
        for r in reads {
            let f = cached(&mut self.feed, r).await;
            assert_eq!(f, cached(&mut self.blind, r).await, "{what}: {r}");
            old.push(f);
        }
        self.direct.query_drop(write).await.unwrap();
        let mut changed = false;
        for (r, old) in reads.iter().zip(&old) {
            let now = rows(&mut self.direct, r).await;
            changed |= &now != old;
            assert_eq!(&rows(&mut self.blind, r).await, old, "{what}: {r}");
            assert_eq!(last(&mut self.blind).await, "hit", "{what}: blind {r}");
            let d = Deadline::new(Duration::from_secs(20), what);
            while rows(&mut self.feed, r).await != now {
                d.tick().await;
            }
        }
        assert!(changed, "{what}: the write changed none of the reads");
    }
}

fn by_id(table: &str, ids: &[&str]) -> Vec<String> {
    ids.iter()
        .map(|id| format!("SELECT * FROM {table} WHERE id = {id}"))
        .collect()
}

async fn debezium_events_invalidate(schema: &str) {
    let db = mariadb();
    tokio::task::block_in_place(rig); // creates the databases
    db.sql_socket(&format!(
        "USE {schema}; \
         CREATE TABLE k (id INT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO k VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four'), (5, 'five'); \
         {TYPES_DDL}; INSERT INTO t VALUES {}, {}, {}; \
         CREATE TABLE ubig (id BIGINT UNSIGNED PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO ubig VALUES (18446744073709551615, 'max'), (9223372036854775808, 'mid'), (5, 'five');",
        type_row(0),
        type_row(1),
        type_row(2)
    ));
    let mut c = Clients::new(schema).await;
    c.case(
        "insert",
        &by_id("k", &["9"]),
        "INSERT INTO k VALUES (9, 'nine')",
    )
    .await;
    c.case(
        "update",
        &by_id("k", &["1"]),
        "UPDATE k SET v = 'uno' WHERE id = 1",
    )
    .await;
    c.case(
        "primary-key change",
        &by_id("k", &["2", "20"]),
        "UPDATE k SET id = 20 WHERE id = 2",
    )
    .await;
    c.case("delete", &by_id("k", &["3"]), "DELETE FROM k WHERE id = 3")
        .await;
    c.case(
        "every column type",
        &by_id("t", &["0", "1", "2"]),
        "UPDATE t SET n = IFNULL(n, 0) + 1",
    )
    .await;
    // Debezium publishes these keys as negative longs (its default
    // bigint.unsigned.handling.mode): each row is changed alone, so only
    // its own event can invalidate it. The table's INSERT events came before
    // its facts were loaded (table tags) and are echoed max_staleness (5 s)
    // later: wait that out first, or an echo could do the event's work.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for id in ["18446744073709551615", "9223372036854775808", "5"] {
        c.case(
            "BIGINT UNSIGNED key",
            &by_id("ubig", &[id]),
            &format!("UPDATE ubig SET v = CONCAT(v, '!') WHERE id = {id}"),
        )
        .await;
    }
    c.case(
        "alter",
        &by_id("k", &["5"]),
        "ALTER TABLE k ADD COLUMN extra INT NOT NULL DEFAULT 7",
    )
    .await;
    // (Rows the blind proxy never read: its older entries are stale by now.)
    c.case("truncate", &by_id("k", &["4"]), "TRUNCATE TABLE k")
        .await;
    assert_eq!(status(&mut c.feed, "feed_malformed").await, "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn debezium_events_without_schemas_invalidate_what_they_change() {
    debezium_events_invalidate("dbz_plain").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn debezium_events_with_schemas_invalidate_what_they_change() {
    debezium_events_invalidate("dbz_schema").await;
}

/// Where `sqlcache cdc`'s events differ from Debezium's, and why (the
/// README's table): (field path, reason). Checked exactly: a difference not
/// listed, or a listed one that did not occur, fails the test.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "value.after.bu",
        "BIGINT UNSIGNED: Debezium's default bigint.unsigned.handling.mode=long \
         wraps values >= 2^63 to negative longs; sqlcache publishes the exact number",
    ),
    ("value.before.bu", "as value.after.bu"),
    (
        "value.source.connector",
        "sqlcache's envelope is the MySQL connector's (\"mysql\", \
         io.debezium.connector.mysql.Source); Debezium's MariaDB connector says \"mariadb\"",
    ),
];

/// Field-by-field differences of two events: path → (Debezium, ours).
fn diff(path: &str, theirs: &Json, ours: &Json, out: &mut BTreeMap<String, (Json, Json)>) {
    match (theirs, ours) {
        (Json::Object(a), Json::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let (x, y) = (a.get(k), b.get(k));
                let sub = format!("{path}.{k}");
                match (x, y) {
                    (Some(x), Some(y)) => diff(&sub, x, y, out),
                    _ => {
                        out.entry(sub).or_insert((
                            x.cloned().unwrap_or(Json::from("<absent>")),
                            y.cloned().unwrap_or(Json::from("<absent>")),
                        ));
                    }
                }
            }
        }
        _ if theirs != ours => {
            out.entry(path.to_string())
                .or_insert((theirs.clone(), ours.clone()));
        }
        _ => {}
    }
}

/// Paths whose values differ by nature, not by encoding: positions,
/// times and connector identity.
fn incidental(path: &str) -> bool {
    let path = path.trim_start_matches('.');
    path.ends_with(".ts_ms")
        || path.ends_with(".ts_us")
        || path.ends_with(".ts_ns")
        || [
            "value.source.name",
            "value.source.version",
            "value.source.file",
            "value.source.pos",
            "value.source.gtid",
            "value.source.server_id",
            "value.source.thread",
        ]
        .contains(&path)
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlcache_cdc_and_debezium_publish_the_same_events() {
    let db = mariadb();
    let rig = rig();
    let cdc = Cdc::start(
        db,
        &rig.broker,
        &tempdir().join("state.json"),
        "topic_prefix = \"sqlc\"\ninclude = [\"dbz_cmp.*\"]\n",
    );
    // Each INSERT of the matrix, an UPDATE of every row, a key change and
    // a delete: 3 c, 3 u, d + tombstone + c, d + tombstone.
    let mut writes: Vec<String> = (0..3)
        .map(|i| format!("INSERT INTO dbz_cmp.t VALUES {}", type_row(i)))
        .collect();
    writes.push("UPDATE dbz_cmp.t SET vc = CONCAT(IFNULL(vc, ''), '+'), n = 1".into());
    writes.push("UPDATE dbz_cmp.t SET id = 10 WHERE id = 1".into());
    writes.push("DELETE FROM dbz_cmp.t WHERE id = 2".into());
    // Our publisher must be streaming before the first write.
    let d = Deadline::new(Duration::from_secs(30), "sqlcache cdc streaming");
    while !cdc.log_text().contains("streaming") {
        d.tick().await;
    }
    for w in &writes {
        db.sql_socket(w);
    }
    let n = 11;
    let read = |topic: &str| {
        tokio::task::block_in_place(|| {
            consume_until(&rig.broker, topic, Duration::from_secs(60), |m| {
                m.len() >= n
            })
        })
    };
    let theirs = read("dbz_cmp.dbz_cmp.t");
    let ours = read("sqlc.dbz_cmp.t");
    assert_eq!(theirs.len(), ours.len());
    let ops = |m: &[Msg]| {
        m.iter()
            .map(|m| m.op().unwrap_or("tombstone").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ops(&theirs),
        ops(&ours),
        "the same events in the same order"
    );
    let mut found = BTreeMap::new();
    for (t, o) in theirs.iter().zip(&ours) {
        let as_json = |m: &Msg| serde_json::json!({"key": m.key, "value": m.value});
        diff("", &as_json(t), &as_json(o), &mut found);
    }
    found.retain(|p, _| !incidental(p));
    for (path, (t, o)) in &found {
        eprintln!("difference {path}: Debezium {t} / sqlcache {o}");
    }
    let listed: Vec<&str> = KNOWN_DIFFERENCES.iter().map(|(p, _)| *p).collect();
    let seen: Vec<&str> = found.keys().map(|p| p.trim_start_matches('.')).collect();
    assert_eq!(
        seen, listed,
        "differences from Debezium changed: update KNOWN_DIFFERENCES and the README"
    );
    // Every column of the matrix was compared.
    let after = ours[0].after();
    for (col, _) in TYPES {
        assert!(after.get(col).is_some(), "column {col} missing");
    }
}

/// `sqlcache sink` on what Debezium publishes (with the JSON converter's
/// schemas): the type matrix inserted, updated, one key changed, one row
/// deleted, applied to a copy that ends identical row for row.
#[tokio::test(flavor = "multi_thread")]
async fn the_sink_applies_what_debezium_publishes() {
    let db = mariadb();
    let rig = rig();
    let ddl = TYPES_DDL.replacen("CREATE TABLE t", "CREATE TABLE dbz_schema.tsink", 1);
    db.sql_socket(&format!(
        "{ddl}; CREATE DATABASE dbz_copy; CREATE TABLE dbz_copy.tsink LIKE dbz_schema.tsink;"
    ));
    let _sink = common::sink::Sink::start(
        db.port,
        &rig.broker.addr(),
        "name = \"from-debezium\"\ntopics = [\"dbz_schema.dbz_schema.tsink\"]\ntable = \"dbz_copy.tsink\"\n",
    );
    let rows_sql: Vec<String> = (0..6).map(type_row).collect();
    db.sql_socket(&format!(
        "INSERT INTO dbz_schema.tsink VALUES {}; \
         UPDATE dbz_schema.tsink SET vc = CONCAT(IFNULL(vc, ''), '+'), n = 1; \
         UPDATE dbz_schema.tsink SET id = 10 WHERE id = 1; DELETE FROM dbz_schema.tsink WHERE id = 2;",
        rows_sql.join(", ")
    ));
    let all = |table: &'static str| async move {
        let mut c = Conn::new(opts(db.port, "test")).await.unwrap();
        rows(&mut c, &format!("SELECT * FROM {table} ORDER BY id")).await
    };
    let t = std::time::Instant::now();
    loop {
        let (src, copy) = (all("dbz_schema.tsink").await, all("dbz_copy.tsink").await);
        if src == copy {
            assert_eq!(src.len(), 5);
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "the copy differs after 90 s:\nsource {src:?}\ncopy {copy:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
