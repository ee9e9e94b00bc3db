//! The point-read cache against a real MariaDB, through real clients.

mod common;

use common::sqlcache::{scrape, timed, warm_as};
use common::*;
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};
use std::time::Duration;

async fn last(c: &mut Conn) -> String {
    let r: Option<(String, String)> = c.query_first("SHOW SQLCACHE LAST").await.unwrap();
    r.unwrap().1
}

async fn setup(db: &MariaDb, table: &str) {
    db.sql_socket(&format!(
        "DROP TABLE IF EXISTS test.{table}; CREATE TABLE test.{table} (id INT PRIMARY KEY, v VARCHAR(20), n INT); \
         INSERT INTO test.{table} VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3);"
    ));
}

fn vals(rows: Vec<Row>) -> Vec<Vec<Value>> {
    rows.into_iter().map(|r| r.unwrap()).collect()
}

#[tokio::test]
async fn hits_are_identical_to_direct_in_both_protocols() {
    let db = mariadb();
    db.sql_socket(
        "DROP TABLE IF EXISTS test.ct; CREATE TABLE test.ct (id BIGINT UNSIGNED PRIMARY KEY, u INT UNSIGNED, b BIGINT, \
         d DECIMAL(30,10), f FLOAT, dbl DOUBLE, dt DATE, ts DATETIME(6), tm TIME, y YEAR, s VARCHAR(50), vb VARBINARY(300), \
         bl BLOB, j JSON, e ENUM('a','b'), st SET('x','y'), bt BIT(8), ti TINYINT, n INT); \
         INSERT INTO test.ct VALUES (18446744073709551615, 4294967295, -9223372036854775808, 12345678901234567890.0123456789, \
         1.5, 2.25, '2024-02-29', '2024-02-29 12:34:56.123456', '-838:59:59', 2155, 'héllo 😀', x'00ff10', x'000102', \
         '{\"a\": [1, 2]}', 'b', 'x,y', b'10000001', -128, NULL);",
    );
    let proxy = Proxy::start(db, "", "");
    let mut direct = Conn::new(opts(db.port, "test")).await.unwrap();
    let mut via = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let q = "SELECT * FROM ct WHERE id = 18446744073709551615";
    let want: Vec<Row> = direct.query(q).await.unwrap();
    let fill: Vec<Row> = via.query(q).await.unwrap();
    assert_eq!(last(&mut via).await, "miss(filled)");
    let hit: Vec<Row> = via.query(q).await.unwrap();
    assert_eq!(last(&mut via).await, "hit");
    assert_eq!(vals(want.clone()), vals(hit.clone()));
    assert_eq!(vals(fill), vals(hit.clone()));
    assert_eq!(want[0].columns_ref(), hit[0].columns_ref());
    // Binary protocol, with the key as a parameter.
    let q = "SELECT * FROM ct WHERE id = ?";
    let key = (18446744073709551615u64,);
    let want: Vec<Row> = direct.exec(q, key).await.unwrap();
    let _: Vec<Row> = via.exec(q, key).await.unwrap();
    assert_eq!(last(&mut via).await, "miss(filled)");
    let hit: Vec<Row> = via.exec(q, key).await.unwrap();
    assert_eq!(last(&mut via).await, "hit");
    assert_eq!(vals(want.clone()), vals(hit.clone()));
    assert_eq!(want[0].columns_ref(), hit[0].columns_ref());
    // An empty result is cached too, and a later INSERT of that key is seen.
    let none: Vec<Row> = via.exec(q, (7u64,)).await.unwrap();
    assert!(none.is_empty());
    let _: Vec<Row> = via.exec(q, (7u64,)).await.unwrap();
    assert_eq!(last(&mut via).await, "hit");
    via.exec_drop("INSERT INTO ct (id, s) VALUES (?, 'seven')", (7u64,))
        .await
        .unwrap();
    let rows: Vec<Row> = via.exec(q, (7u64,)).await.unwrap();
    assert_eq!(last(&mut via).await, "miss(filled)");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<String, _>("s").as_deref(), Some("seven"));
}

/// Reads `q` (text) once.
async fn get(c: &mut Conn, q: &str) -> Option<String> {
    c.query_first(q).await.unwrap()
}

async fn warm(c: &mut Conn, q: &str) -> Option<String> {
    warm_as(c, q).await
}

#[tokio::test]
async fn writes_through_the_proxy_are_read_back_immediately() {
    let db = mariadb();
    setup(db, "rw").await;
    let proxy = Proxy::start(db, "", "");
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    const V1: &str = "SELECT v FROM rw WHERE id = 1";
    let s = |v: &str| Some(v.to_string());
    // Row-level: UPDATE/DELETE by key (text and prepared), INSERT with it.
    assert_eq!(warm(&mut c, V1).await, s("one"));
    c.query_drop("UPDATE rw SET v = 'uno' WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(get(&mut c, V1).await, s("uno"));
    assert_eq!(warm(&mut c, V1).await, s("uno"));
    c.exec_drop("UPDATE rw SET v = ? WHERE id = ?", ("ein", 1))
        .await
        .unwrap();
    assert_eq!(get(&mut c, V1).await, s("ein"));
    warm(&mut c, V1).await;
    c.query_drop("DELETE FROM rw WHERE id = 1").await.unwrap();
    assert_eq!(get(&mut c, V1).await, None);
    // The empty result is cached too, and the INSERT of its key removes it.
    assert_eq!(warm(&mut c, V1).await, None);
    c.query_drop("INSERT INTO rw VALUES (1, 'back', 0)")
        .await
        .unwrap();
    assert_eq!(get(&mut c, V1).await, s("back"));
    // Table-level (non-key WHERE, multi-table), REPLACE and upsert.
    for (write, want) in [
        ("UPDATE rw SET v = 'bulk' WHERE n >= 0", "bulk"),
        (
            "UPDATE rw a JOIN rw b ON a.id = b.id SET a.v = 'joined'",
            "joined",
        ),
        ("REPLACE INTO rw VALUES (1, 'replaced', 0)", "replaced"),
        (
            "INSERT INTO rw VALUES (1, 'x', 0) ON DUPLICATE KEY UPDATE v = 'upserted'",
            "upserted",
        ),
    ] {
        warm(&mut c, V1).await;
        c.query_drop(write).await.unwrap();
        assert_eq!(get(&mut c, V1).await, s(want), "after {write}");
    }
    // A key change: the old key's entry and the new key's (empty) one.
    const V2: &str = "SELECT v FROM rw WHERE id = 2";
    const V10: &str = "SELECT v FROM rw WHERE id = 10";
    assert_eq!(warm(&mut c, V2).await, s("joined"));
    assert_eq!(warm(&mut c, V10).await, None);
    c.query_drop("UPDATE rw SET id = 10 WHERE id = 2")
        .await
        .unwrap();
    assert_eq!(get(&mut c, V2).await, None);
    assert_eq!(get(&mut c, V10).await, s("joined"));
    // An IN list names its rows: theirs go, a row it does not name stays.
    const V3: &str = "SELECT v FROM rw WHERE id = 3";
    warm(&mut c, V3).await;
    warm(&mut c, V10).await;
    assert_eq!(warm(&mut c, V1).await, s("upserted"));
    c.query_drop("UPDATE rw SET v = 'listed' WHERE id IN (3, 10)")
        .await
        .unwrap();
    assert_eq!(get(&mut c, V3).await, s("listed"));
    assert_eq!(get(&mut c, V10).await, s("listed"));
    assert_eq!(c.query_first::<String, _>(V1).await.unwrap(), s("upserted"));
    assert_eq!(last(&mut c).await, "hit", "row 1 was not named");
    transactions_and_ddl(&proxy, &mut c).await;
}

/// The rest of `writes_through_the_proxy_are_read_back_immediately`, on row
/// 1 = 'upserted'.
async fn transactions_and_ddl(proxy: &Proxy, c: &mut Conn) {
    const V1: &str = "SELECT v FROM rw WHERE id = 1";
    let s = |v: &str| Some(v.to_string());
    // A transaction: invisible to another session until COMMIT, even when
    // that session fills the entry again meanwhile (invalidated again at
    // COMMIT); the writer sees its own change at once.
    let mut other = Conn::new(opts(proxy.port, "test")).await.unwrap();
    assert_eq!(warm(&mut other, V1).await, s("upserted"));
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("UPDATE rw SET v = 'tx' WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(get(c, V1).await, s("tx"));
    assert_eq!(get(&mut other, V1).await, s("upserted"));
    assert_eq!(get(&mut other, V1).await, s("upserted"));
    c.query_drop("COMMIT").await.unwrap();
    assert_eq!(get(&mut other, V1).await, s("tx"));
    assert_eq!(get(c, V1).await, s("tx"));
    // ROLLBACK leaves the row, and the cache, as they were.
    warm(c, V1).await;
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("UPDATE rw SET v = 'rolled' WHERE id = 1")
        .await
        .unwrap();
    c.query_drop("ROLLBACK").await.unwrap();
    assert_eq!(get(c, V1).await, s("tx"));
    assert_eq!(get(&mut other, V1).await, s("tx"));
    // DDL: ALTER changes the shape of a cached `SELECT *`; TRUNCATE.
    const ALL: &str = "SELECT * FROM rw WHERE id = 1";
    let before: Row = c.query_first(ALL).await.unwrap().unwrap();
    let _: Option<Row> = c.query_first(ALL).await.unwrap();
    assert_eq!(last(c).await, "hit");
    assert_eq!(before.len(), 3);
    c.query_drop("ALTER TABLE rw ADD COLUMN extra INT DEFAULT 5")
        .await
        .unwrap();
    let row: Option<(i32, String, i32, i32)> = c.query_first(ALL).await.unwrap();
    assert_eq!(row.map(|r| r.3), Some(5));
    warm(c, V1).await;
    c.query_drop("TRUNCATE TABLE rw").await.unwrap();
    assert_eq!(get(c, V1).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_under_concurrency() {
    let db = mariadb();
    db.sql_socket(
        "DROP TABLE IF EXISTS test.ryw; CREATE TABLE test.ryw (id INT PRIMARY KEY, v INT); \
         INSERT INTO test.ryw SELECT seq, 0 FROM test.seq_1_to_16;",
    );
    let proxy = Proxy::start_with(db.port, "workers = 2", "", "");
    let mut tasks = Vec::new();
    for t in 0..16i32 {
        let port = proxy.port;
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::new(opts(port, "test")).await.unwrap();
            let id = t + 1;
            let mut neighbour = 0;
            for i in 1..=60i32 {
                if i % 3 == 0 {
                    c.query_drop("BEGIN").await.unwrap();
                    c.exec_drop("UPDATE ryw SET v = ? WHERE id = ?", (i, id))
                        .await
                        .unwrap();
                    c.query_drop("COMMIT").await.unwrap();
                } else if i % 3 == 1 {
                    c.query_drop(format!("UPDATE ryw SET v = {i} WHERE id = {id}"))
                        .await
                        .unwrap();
                } else {
                    c.exec_drop("UPDATE ryw SET v = ? WHERE id = ?", (i, id))
                        .await
                        .unwrap();
                }
                let text: i32 = c
                    .query_first(format!("SELECT v FROM ryw WHERE id = {id}"))
                    .await
                    .unwrap()
                    .unwrap();
                let bin: i32 = c
                    .exec_first("SELECT v FROM ryw WHERE id = ?", (id,))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!((text, bin), (i, i), "task {t} read an old value");
                // Read a neighbour's row too: it must never go backwards
                // (its writer only counts up).
                let theirs: i32 = c
                    .exec_first("SELECT v FROM ryw WHERE id = ?", ((id % 16) + 1,))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(
                    theirs >= neighbour,
                    "task {t}: row {} went back from {neighbour} to {theirs}",
                    (id % 16) + 1
                );
                neighbour = theirs;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Another session sees every final value.
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    for id in 1..=16 {
        let v: i32 = c
            .exec_first("SELECT v FROM ryw WHERE id = ?", (id,))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v, 60);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_racing_an_invalidation_is_never_served() {
    let db = mariadb();
    setup(db, "race").await;
    // Every fill waits 700 ms between MySQL's answer and storing it.
    let proxy = Proxy::start_with(db.port, "", "\n[cache]\nfill_delay = \"700ms\"\n", "");
    let mut reader = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let mut writer = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let fill = tokio::spawn(async move {
        let v: String = reader
            .query_first("SELECT v FROM race WHERE id = 1")
            .await
            .unwrap()
            .unwrap();
        (v, reader)
    });
    // The reader has its (old) answer and sits in the window; write now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    writer
        .query_drop("UPDATE race SET v = 'new' WHERE id = 1")
        .await
        .unwrap();
    let (old, mut reader) = fill.await.unwrap();
    assert_eq!(old, "one", "the racing fill read before the write");
    assert_eq!(last(&mut reader).await, "miss(filled)");
    // The fill was stored under tokens from before the write: never served.
    let v: String = reader
        .query_first("SELECT v FROM race WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, "new");
}

#[tokio::test]
async fn bypass_reasons_are_reported() {
    let db = mariadb();
    setup(db, "bp").await;
    let proxy = Proxy::start(db, "", "");
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let cases = [
        (
            "SELECT v FROM bp WHERE id = 1 FOR UPDATE",
            "bypass(locking_read)",
        ),
        (
            "SELECT v FROM bp WHERE id = 1 LOCK IN SHARE MODE",
            "bypass(unparsable)",
        ),
        (
            "SELECT v, NOW() FROM bp WHERE id = 1",
            "bypass(non_deterministic)",
        ),
        (
            "SELECT v FROM bp WHERE id = 1 + RAND()",
            "bypass(non_deterministic)",
        ),
        (
            "SELECT SQL_NO_CACHE v FROM bp WHERE id = 1",
            "bypass(sql_no_cache)",
        ),
        (
            "SELECT table_name FROM information_schema.tables WHERE table_name = 'bp'",
            "bypass(system_schema)",
        ),
        ("SELECT v FROM bp WHERE n = 1", "bypass(not_primary_key)"),
        ("SELECT v FROM bp WHERE id > 1", "bypass(not_point_read)"),
    ];
    for (q, want) in cases {
        c.query_drop(q).await.unwrap();
        assert_eq!(last(&mut c).await, want, "{q}");
    }
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("SELECT v FROM bp WHERE id = 1").await.unwrap();
    assert_eq!(last(&mut c).await, "bypass(in_transaction)");
    c.query_drop("COMMIT").await.unwrap();
    c.query_drop("SET autocommit = 0").await.unwrap();
    c.query_drop("SELECT v FROM bp WHERE id = 1").await.unwrap();
    assert_eq!(last(&mut c).await, "bypass(autocommit_off)");
    c.query_drop("COMMIT").await.unwrap();
    c.query_drop("SET autocommit = 1").await.unwrap();
    c.query_drop("LOCK TABLES bp READ").await.unwrap();
    c.query_drop("SELECT v FROM bp WHERE id = 1").await.unwrap();
    assert_eq!(last(&mut c).await, "bypass(lock_tables)");
    c.query_drop("UNLOCK TABLES").await.unwrap();
    // A temporary table shadowing bp lives on one connection: no cache.
    c.query_drop("CREATE TEMPORARY TABLE bp (id INT PRIMARY KEY, v VARCHAR(20))")
        .await
        .unwrap();
    c.query_drop("INSERT INTO bp VALUES (1, 'temp')")
        .await
        .unwrap();
    let v: String = c
        .query_first("SELECT v FROM bp WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, "temp");
    assert_eq!(last(&mut c).await, "bypass(pinned_session)");
    // Other sessions still read (and cache) the real table.
    let mut d = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let v: String = d
        .query_first("SELECT v FROM bp WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, "one");
}

#[tokio::test]
async fn entries_are_per_user_unless_shared_and_expire() {
    let db = mariadb();
    setup(db, "pu").await;
    db.sql_socket("CREATE USER IF NOT EXISTS 'bob'@'127.0.0.1' IDENTIFIED BY 'pw'; GRANT SELECT ON test.* TO 'bob'@'127.0.0.1';");
    let users = "[[users]]\nname = \"root\"\npassword = \"\"\n[[users]]\nname = \"bob\"\npassword = \"pw\"\n";
    let bob = |port| {
        mysql_async::OptsBuilder::from_opts(opts(port, "test"))
            .user(Some("bob"))
            .pass(Some("pw"))
    };
    for (shared, want) in [(false, "miss(filled)"), (true, "hit")] {
        let cache = format!("\n[cache]\nshare_across_users = {shared}\nttl = \"1s\"\n");
        let proxy = Proxy::start_with(db.port, "", &cache, users);
        let mut root = Conn::new(opts(proxy.port, "test")).await.unwrap();
        let mut b = Conn::new(bob(proxy.port)).await.unwrap();
        root.query_drop("SELECT v FROM pu WHERE id = 1")
            .await
            .unwrap();
        b.query_drop("SELECT v FROM pu WHERE id = 1").await.unwrap();
        assert_eq!(last(&mut b).await, want, "share_across_users = {shared}");
        // TTL: after it passes the entry is gone.
        root.query_drop("SELECT v FROM pu WHERE id = 2")
            .await
            .unwrap();
        root.query_drop("SELECT v FROM pu WHERE id = 2")
            .await
            .unwrap();
        assert_eq!(last(&mut root).await, "hit");
        tokio::time::sleep(Duration::from_millis(1300)).await;
        root.query_drop("SELECT v FROM pu WHERE id = 2")
            .await
            .unwrap();
        assert_eq!(last(&mut root).await, "miss(filled)");
    }
}

async fn status(c: &mut Conn) -> Vec<(String, String)> {
    c.query("SHOW SQLCACHE STATUS").await.unwrap()
}

fn stat(rows: &[(String, String)], k: &str) -> u64 {
    rows.iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.parse::<u64>().unwrap())
        .unwrap_or_else(|| panic!("no {k} in {rows:?}"))
}

#[tokio::test]
async fn status_and_metrics_count_routes() {
    let db = mariadb();
    setup(db, "st").await;
    let admin = free_port();
    let proxy = Proxy::start_with(
        db.port,
        "",
        &format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n"),
        "",
    );
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    // Counted as differences, so the driver's own connect-time statements
    // do not matter.
    let (rows0, body0) = (status(&mut c).await, scrape(admin));
    for _ in 0..3 {
        c.query_drop("SELECT v FROM st WHERE id = 3").await.unwrap();
    }
    assert_eq!(last(&mut c).await, "hit");
    c.query_drop("SELECT v FROM st WHERE n = 3").await.unwrap();
    assert_eq!(last(&mut c).await, "bypass(not_primary_key)");
    c.query_drop("UPDATE st SET v = 'x' WHERE id = 3")
        .await
        .unwrap();
    c.ping().await.unwrap();
    let (rows, body) = (status(&mut c).await, scrape(admin));
    let delta = |k: &str| stat(&rows, k) - stat(&rows0, k);
    assert_eq!(
        (
            delta("hits"),
            delta("misses"),
            delta("invalidations_proxy_row")
        ),
        (2, 1, 1),
        "{rows:?}"
    );
    assert!(body.contains("sqlcache_hits_total"), "{body}");
    let dt = |route: &str| timed(&body, route) - timed(&body0, route);
    // L1 hits are timed as hits (they used to land under "other").
    assert_eq!(dt("hit"), 2, "{body}");
    assert_eq!(dt("miss"), 1, "{body}");
    assert_eq!(dt("bypass"), 1, "{body}");
    assert_eq!(dt("write"), 1, "{body}");
    // Two SHOW SQLCACHE LAST, the ping and the second SHOW SQLCACHE STATUS:
    // a statement is timed before its reply is sent.
    assert_eq!(dt("other"), 4, "{body}");
}

#[tokio::test]
async fn triggers_views_and_cascades_invalidate_what_they_change() {
    let db = mariadb();
    db.sql_socket(
        "DROP TABLE IF EXISTS test.child, test.parent, test.audit, test.src; DROP VIEW IF EXISTS test.vsrc; \
         CREATE TABLE test.parent (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=InnoDB; \
         CREATE TABLE test.child (id INT PRIMARY KEY, pid INT, v VARCHAR(10), FOREIGN KEY (pid) REFERENCES test.parent(id) ON DELETE CASCADE ON UPDATE CASCADE) ENGINE=InnoDB; \
         CREATE TABLE test.audit (id INT PRIMARY KEY, n INT); CREATE TABLE test.src (id INT PRIMARY KEY, v VARCHAR(10)); \
         INSERT INTO test.parent VALUES (1, 'p'); INSERT INTO test.child VALUES (1, 1, 'c'); \
         INSERT INTO test.audit VALUES (1, 0); INSERT INTO test.src VALUES (1, 's'); \
         CREATE TRIGGER test.src_upd AFTER UPDATE ON test.src FOR EACH ROW UPDATE test.audit SET n = n + 1 WHERE id = 1; \
         CREATE VIEW test.vsrc AS SELECT id, v FROM test.parent;",
    );
    let proxy = Proxy::start(db, "", "");
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let audit = "SELECT n FROM audit WHERE id = 1";
    let child = "SELECT pid FROM child WHERE id = 1";
    // A trigger on src changes audit.
    assert_eq!(warm_as::<i32>(&mut c, audit).await, Some(0));
    c.query_drop("UPDATE src SET v = 't' WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(c.query_first::<i32, _>(audit).await.unwrap(), Some(1));
    // ON UPDATE CASCADE changes child.pid.
    assert_eq!(warm_as::<i32>(&mut c, child).await, Some(1));
    c.query_drop("UPDATE parent SET id = 2 WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(c.query_first::<i32, _>(child).await.unwrap(), Some(2));
    // A write through a view changes its base table.
    let parent2 = "SELECT v FROM parent WHERE id = 2";
    assert_eq!(warm(&mut c, parent2).await.as_deref(), Some("p"));
    c.query_drop("UPDATE vsrc SET v = 'viaview' WHERE id = 2")
        .await
        .unwrap();
    assert_eq!(get(&mut c, parent2).await.as_deref(), Some("viaview"));
    // ON DELETE CASCADE removes the child row.
    assert_eq!(warm_as::<i32>(&mut c, child).await, Some(2));
    c.query_drop("DELETE FROM parent WHERE id = 2")
        .await
        .unwrap();
    assert_eq!(c.query_first::<i32, _>(child).await.unwrap(), None);
    // A stored procedure may change anything.
    c.query_drop("DROP PROCEDURE IF EXISTS bump").await.unwrap();
    c.query_drop("CREATE PROCEDURE bump() UPDATE audit SET n = 100 WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(warm_as::<i32>(&mut c, audit).await, Some(1));
    c.query_drop("CALL bump()").await.unwrap();
    assert_eq!(c.query_first::<i32, _>(audit).await.unwrap(), Some(100));
}

#[tokio::test]
async fn remaining_bypass_reasons() {
    let db = mariadb();
    setup(db, "bp2").await;
    db.sql_socket("INSERT INTO test.bp2 VALUES (9, REPEAT('x', 20), 9);");
    let proxy = Proxy::start_with(db.port, "", "\n[cache]\nmax_result_bytes = 150\n", "");
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    // Warnings: never stored (SHOW WARNINGS after a hit would be empty).
    c.query_drop("SELECT CAST(v AS UNSIGNED) FROM bp2 WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(last(&mut c).await, "miss(not stored: warnings)");
    // Larger than max_result_bytes.
    c.query_drop("SELECT v, v AS a, v AS b, v AS c, v AS d FROM bp2 WHERE id = 9")
        .await
        .unwrap();
    assert_eq!(last(&mut c).await, "miss(not stored: too_large)");
    // Several statements in one text.
    let mut r = c
        .query_iter("SELECT v FROM bp2 WHERE id = 1; SELECT v FROM bp2 WHERE id = 2")
        .await
        .unwrap();
    let _: Vec<String> = r.collect().await.unwrap();
    let _: Vec<String> = r.collect().await.unwrap();
    drop(r);
    assert_eq!(last(&mut c).await, "bypass(multi_statement)");
    // A table rule.
    let off = Proxy::start_with(
        db.port,
        "",
        "\n[[cache.tables]]\nname = \"test.bp2\"\nenabled = false\n",
        "",
    );
    let mut c = Conn::new(opts(off.port, "test")).await.unwrap();
    c.query_drop("SELECT v FROM bp2 WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(last(&mut c).await, "bypass(table_disabled)");
    // The cache switched off.
    let off = Proxy::start_with(db.port, "", "\n[cache]\nenabled = false\n", "");
    let mut c = Conn::new(opts(off.port, "test")).await.unwrap();
    c.query_drop("SELECT v FROM bp2 WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(last(&mut c).await, "bypass(cache_disabled)");
}

#[tokio::test]
async fn unique_and_string_keys_use_table_level_freshness() {
    let db = mariadb();
    db.sql_socket(
        "DROP TABLE IF EXISTS test.uk; CREATE TABLE test.uk (id INT PRIMARY KEY, email VARCHAR(50) NOT NULL UNIQUE, v INT); \
         INSERT INTO test.uk VALUES (1, 'a@x', 1), (2, 'b@x', 2); \
         DROP TABLE IF EXISTS test.sk; CREATE TABLE test.sk (code VARCHAR(10) PRIMARY KEY, v INT); INSERT INTO test.sk VALUES ('abc', 1);",
    );
    let proxy = Proxy::start(db, "", "");
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let by_email = "SELECT v FROM uk WHERE email = 'a@x'";
    c.query_drop(by_email).await.unwrap();
    c.query_drop(by_email).await.unwrap();
    assert_eq!(last(&mut c).await, "hit");
    // A write by primary key invalidates the unique-key entry (table level).
    c.query_drop("UPDATE uk SET v = 10 WHERE id = 1")
        .await
        .unwrap();
    let v: i32 = c.query_first(by_email).await.unwrap().unwrap();
    assert_eq!(v, 10);
    // String primary key: 'ABC' and 'abc ' are the same row under the
    // default collation; a write naming it either way must invalidate.
    let read = "SELECT v FROM sk WHERE code = 'abc'";
    c.query_drop(read).await.unwrap();
    c.query_drop(read).await.unwrap();
    assert_eq!(last(&mut c).await, "hit");
    c.query_drop("UPDATE sk SET v = 7 WHERE code = 'ABC '")
        .await
        .unwrap();
    let v: i32 = c.query_first(read).await.unwrap().unwrap();
    assert_eq!(v, 7);
}

/// Text statements of one shape are classified from the verdict memo after
/// their second sighting, and what the memo says is right: its reads are
/// hits of their own rows, its writes invalidate exactly the rows they name.
#[tokio::test]
async fn memoized_verdicts_serve_and_invalidate_the_rows_they_name() {
    let db = mariadb();
    let values: Vec<String> = (1..=50).map(|i| format!("({i}, 'v{i}')")).collect();
    db.sql_socket(&format!(
        "DROP TABLE IF EXISTS test.memo; CREATE TABLE test.memo (id INT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO test.memo VALUES {};",
        values.join(", ")
    ));
    let proxy = Proxy::start(db, "", "");
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let rows0 = status(&mut c).await;
    let read = |id: u32| format!("SELECT v FROM memo WHERE id={id}");
    for id in 1..=50 {
        assert_eq!(get(&mut c, &read(id)).await, Some(format!("v{id}")));
        assert_eq!(get(&mut c, &read(id)).await, Some(format!("v{id}")));
        assert_eq!(last(&mut c).await, "hit", "{}", read(id));
    }
    // Writes of one shape, each naming one row: that row is read back new,
    // its neighbours stay hits with their old values.
    for id in (2..=48).step_by(3) {
        c.query_drop(format!("UPDATE memo SET v='w{id}' WHERE id={id}"))
            .await
            .unwrap();
        assert_eq!(get(&mut c, &read(id)).await, Some(format!("w{id}")));
        assert_eq!(last(&mut c).await, "miss(filled)", "{}", read(id));
        assert_eq!(
            get(&mut c, &read(id + 1)).await,
            Some(format!("v{}", id + 1))
        );
        assert_eq!(last(&mut c).await, "hit", "{}", read(id + 1));
    }
    let rows = status(&mut c).await;
    let delta = |k: &str| stat(&rows, k) - stat(&rows0, k);
    // Of 50 + 16 + 16 misses and writes of three shapes, each shape is
    // parsed at its first two sightings only.
    assert!(delta("classify_memoized") >= 50 + 16 + 16 - 6, "{rows:?}");
    assert!(delta("classify_parsed") <= 6 + 3, "{rows:?}");
}
