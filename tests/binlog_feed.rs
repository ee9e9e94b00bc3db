//! The in-process binlog feed end to end: a private MariaDB (ROW binlog,
//! full images and metadata), the real proxy binary tailing its binlog.
//!
//! Writes are made directly on MariaDB, which the proxy never sees. A second
//! proxy without any feed runs beside it as the control: it keeps serving the
//! old row, so a pass means the binlog feed did the work.

mod common;

use common::sqlcache::*;
use common::*;
use mysql_async::prelude::*;
use mysql_async::Conn;
use std::time::{Duration, Instant};

fn binlog_config(extra: &str) -> String {
    format!("[invalidation.binlog]\n{extra}\n")
}

async fn client(p: &Proxy) -> Conn {
    Conn::new(opts(p.port, "test")).await.unwrap()
}

async fn wait_value(c: &mut Conn, table: &str, id: i64, want: Option<&str>, what: &'static str) {
    let d = Deadline::new(Duration::from_secs(10), what);
    while value(c, table, id).await.as_deref() != want {
        d.tick().await;
    }
}

#[tokio::test]
async fn direct_writes_are_invalidated_from_the_binlog() {
    let db = mariadb();
    let t = "bl_rows";
    db.sql_socket(&format!(
        "DROP TABLE IF EXISTS test.{t}; \
         CREATE TABLE test.{t} (id INT UNSIGNED PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO test.{t} VALUES (1,'one'),(2,'two'),(3,'three'),(4,'four'),(5,'five'),(7,'seven'),(4294967295,'max');"
    ));
    let proxy = Proxy::start(db, &binlog_config("max_staleness = \"5s\""), "");
    let control = Proxy::start(db, "", "");
    let mut c = client(&proxy).await;
    let mut k = client(&control).await;
    wait_fresh(&mut c).await;
    let c = &mut c;

    // UPDATE: the control serves the old row, the feed's proxy the new one.
    warm(c, t, 1).await;
    warm(&mut k, t, 1).await;
    warm(c, t, 3).await;
    db.sql_socket(&format!("UPDATE test.{t} SET v = 'uno' WHERE id = 1"));
    assert_eq!(value(&mut k, t, 1).await.as_deref(), Some("one"));
    assert_eq!(
        last(&mut k).await,
        "hit",
        "without a feed the old row stays"
    );
    wait_value(c, t, 1, Some("uno"), "update applied").await;
    // Row level: another row of the table keeps its entry.
    assert_eq!(value(c, t, 3).await.as_deref(), Some("three"));
    assert_eq!(last(c).await, "hit");

    // An INT UNSIGNED key above i32::MAX (decoded with full metadata).
    warm(c, t, 4294967295).await;
    db.sql_socket(&format!(
        "UPDATE test.{t} SET v = 'MAX' WHERE id = 4294967295"
    ));
    wait_value(c, t, 4294967295, Some("MAX"), "unsigned key applied").await;

    // A primary-key change: the old key disappears, the new one appears
    // (an absent row is cached too).
    warm(c, t, 2).await;
    assert_eq!(warm(c, t, 20).await, None);
    db.sql_socket(&format!("UPDATE test.{t} SET id = 20 WHERE id = 2"));
    wait_value(c, t, 2, None, "old key gone").await;
    wait_value(c, t, 20, Some("two"), "new key present").await;

    // DELETE, and a transaction that changes two rows.
    warm(c, t, 5).await;
    warm(c, t, 3).await;
    db.sql_socket(&format!(
        "DELETE FROM test.{t} WHERE id = 5; \
         START TRANSACTION; UPDATE test.{t} SET v = 'tres' WHERE id = 3; \
         INSERT INTO test.{t} VALUES (6, 'six'); COMMIT;"
    ));
    wait_value(c, t, 5, None, "delete applied").await;
    wait_value(c, t, 3, Some("tres"), "transaction applied").await;

    // ALTER TABLE: the shape of `SELECT *` changes. (Row 7 and its
    // table were not written since the proxy started, so no echo of a
    // write (`echo.rs`) drops the entry between the two reads.)
    let star = format!("SELECT * FROM {t} WHERE id = 7");
    let cols = |rows: Vec<mysql_async::Row>| rows.first().map_or(0, |r| r.columns_ref().len());
    assert_eq!(cols(c.query(&star).await.unwrap()), 2);
    let _: Vec<mysql_async::Row> = c.query(&star).await.unwrap();
    assert_eq!(last(c).await, "hit");
    db.sql_socket(&format!(
        "ALTER TABLE test.{t} ADD COLUMN extra INT NOT NULL DEFAULT 7"
    ));
    let d = Deadline::new(Duration::from_secs(10), "alter applied");
    while cols(c.query(&star).await.unwrap()) != 3 {
        d.tick().await;
    }

    // TRUNCATE (a statement in the binlog).
    warm(c, t, 4).await;
    db.sql_socket(&format!("TRUNCATE TABLE test.{t}"));
    wait_value(c, t, 4, None, "truncate applied").await;

    // Idle for longer than the reader's silence limit (2 heartbeats + 1 s
    // = 3 s here): the server's heartbeats keep the link up.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        status(c, "feed_errors").await,
        "0",
        "no reconnect while idle"
    );
    assert_eq!(status(c, "feed_fresh").await, "true");
    assert_eq!(status(c, "feed_gaps").await, "1", "startup only");
    assert_eq!(status(c, "feed_malformed").await, "0");
    assert!(status(c, "feed_events").await.parse::<u64>().unwrap() >= 8);
}

/// The replica connection's thread id on the server.
async fn dump_threads(root: &mut Conn) -> Vec<u64> {
    root.query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
        .await
        .unwrap()
}

/// Kills the replica connection (every KILL must succeed); returns the
/// thread ids killed.
async fn kill_dump(root: &mut Conn) -> Vec<u64> {
    let d = Deadline::new(Duration::from_secs(10), "binlog dump thread");
    loop {
        let ids = dump_threads(root).await;
        if !ids.is_empty() {
            for id in &ids {
                root.query_drop(format!("KILL {id}")).await.unwrap();
            }
            return ids;
        }
        d.tick().await;
    }
}

/// Replica connections other than the killed ones.
async fn new_dump_threads(root: &mut Conn, killed: &[u64]) -> Vec<u64> {
    let mut ids = dump_threads(root).await;
    ids.retain(|id| !killed.contains(id));
    ids
}

#[tokio::test]
async fn link_loss_resumes_in_place_lost_access_stops_hits_reset_flushes() {
    let db = MariaDb::start(&[]);
    let t = "bl_fail";
    db.sql_socket(&format!(
        "CREATE TABLE test.{t} (id INT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO test.{t} VALUES (1,'one'),(2,'two'),(3,'three'); \
         CREATE USER 'feeder'@'127.0.0.1' IDENTIFIED BY 'pw'; \
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'feeder'@'127.0.0.1';"
    ));
    let proxy = Proxy::start(
        &db,
        &binlog_config("user = \"feeder\"\npassword = \"pw\"\nmax_staleness = \"1s\""),
        "",
    );
    let mut c = client(&proxy).await;
    let mut root = Conn::new(opts(db.port, "test")).await.unwrap();
    wait_fresh(&mut c).await;
    let c = &mut c;

    // (a) The replica link breaks; a write lands while it is down. The
    // reader resumes where it stopped: the write is applied, and nothing
    // else is flushed (no gap).
    warm(c, t, 1).await;
    warm(c, t, 3).await;
    assert_eq!(status(c, "feed_errors").await, "0");
    let killed = kill_dump(&mut root).await;
    // The reader sees the break, then backs off for its check interval
    // (250 ms here) before it reconnects: the write lands in that window.
    let d = Deadline::new(Duration::from_secs(10), "break seen");
    while status(c, "feed_errors").await != "1" {
        d.tick().await;
    }
    root.query_drop(format!("UPDATE {t} SET v = 'uno' WHERE id = 1"))
        .await
        .unwrap();
    assert_eq!(
        new_dump_threads(&mut root, &killed).await,
        Vec::<u64>::new(),
        "the write landed while the link was down"
    );
    wait_value(c, t, 1, Some("uno"), "write during the break applied").await;
    assert_eq!(
        new_dump_threads(&mut root, &killed).await.len(),
        1,
        "resumed"
    );
    assert_eq!(value(c, t, 3).await.as_deref(), Some("three"));
    assert_eq!(last(c).await, "hit", "a resumed link is not a gap");
    assert_eq!(status(c, "feed_gaps").await, "1");
    assert_eq!(status(c, "feed_errors").await, "1", "one break, one resume");

    // (b) The feed loses its access: no proof, so hits stop within
    // max_staleness, and answers come from MariaDB.
    root.query_drop("REVOKE REPLICATION SLAVE ON *.* FROM 'feeder'@'127.0.0.1'")
        .await
        .unwrap();
    kill_dump(&mut root).await;
    let cut = Instant::now();
    let d = Deadline::new(Duration::from_secs(5), "hits stop");
    loop {
        let _ = value(c, t, 3).await;
        if last(c).await == "bypass(feed_unhealthy)" {
            break;
        }
        d.tick().await;
    }
    let stopped = cut.elapsed();
    assert!(
        stopped < Duration::from_millis(1500),
        "hits stopped {stopped:?} after the link was cut (max_staleness 1s)"
    );
    root.query_drop(format!("UPDATE {t} SET v = 'tres' WHERE id = 3"))
        .await
        .unwrap();
    assert_eq!(value(c, t, 3).await.as_deref(), Some("tres"));
    assert_eq!(status(c, "feed_fresh").await, "false");
    assert!(proxy.log_text().contains("REPLICATION SLAVE"));

    // Access back: longer than max_staleness without proof is a gap, so
    // the cache is flushed before hits resume.
    warm_after_gap(c, &mut root, t).await;

    // (c) RESET MASTER: the binlog went backwards, another gap.
    warm(c, t, 2).await;
    root.query_drop("RESET MASTER").await.unwrap();
    let d = Deadline::new(Duration::from_secs(10), "reset seen");
    while status(c, "feed_gaps").await != "3" {
        d.tick().await;
    }
    wait_fresh(c).await;
    let _ = value(c, t, 2).await;
    assert!(
        last(c).await.starts_with("miss"),
        "entries from before RESET MASTER dropped"
    );
    root.query_drop(format!("UPDATE {t} SET v = 'dos' WHERE id = 2"))
        .await
        .unwrap();
    wait_value(c, t, 2, Some("dos"), "feed works after the reset").await;
}

async fn warm_after_gap(c: &mut Conn, root: &mut Conn, t: &str) {
    root.query_drop("GRANT REPLICATION SLAVE ON *.* TO 'feeder'@'127.0.0.1'")
        .await
        .unwrap();
    wait_fresh(c).await;
    assert_eq!(status(c, "feed_gaps").await, "2");
    let _ = value(c, t, 1).await;
    assert!(
        last(c).await.starts_with("miss"),
        "entries from before the gap dropped"
    );
    assert_eq!(value(c, t, 1).await.as_deref(), Some("uno"));
    assert_eq!(last(c).await, "hit");
}

#[tokio::test]
async fn a_binlog_without_full_metadata_is_refused_and_never_trusted() {
    let db = MariaDb::start(&["--binlog-row-metadata=MINIMAL"]);
    db.sql_socket(
        "CREATE TABLE test.bl_meta (id INT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO test.bl_meta VALUES (1,'one');",
    );
    let proxy = Proxy::start(&db, &binlog_config(""), "");
    let mut c = client(&proxy).await;
    for _ in 0..3 {
        assert_eq!(value(&mut c, "bl_meta", 1).await.as_deref(), Some("one"));
    }
    assert_eq!(last(&mut c).await, "bypass(feed_unhealthy)");
    let d = Deadline::new(Duration::from_secs(10), "settings error logged");
    while !proxy
        .log_text()
        .contains("binlog_row_metadata = MINIMAL (needs FULL)")
    {
        d.tick().await;
    }
}

#[tokio::test]
async fn refresh_tables_refill_hot_rows_and_forget_cold_ones() {
    let db = mariadb();
    let t = "bl_hot";
    db.sql_socket(&format!(
        "DROP TABLE IF EXISTS test.{t}; \
         CREATE TABLE test.{t} (id INT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO test.{t} VALUES (1,'one'),(2,'two'),(3,'three');"
    ));
    let proxy = Proxy::start(
        db,
        &binlog_config(&format!(
            "max_staleness = \"5s\"\n[[cache.tables]]\nname = \"test.{t}\"\non_change = \"refresh\""
        )),
        "",
    );
    let mut c = client(&proxy).await;
    wait_fresh(&mut c).await;
    let c = &mut c;
    let num = |s: String| s.parse::<u64>().unwrap();

    // A hot row (text protocol) and a hot row read by a prepared statement.
    warm(c, t, 1).await;
    let sql = format!("SELECT v FROM {t} WHERE id = ?");
    let _: Option<String> = c.exec_first(&sql, (3,)).await.unwrap();
    let v: Option<String> = c.exec_first(&sql, (3,)).await.unwrap();
    assert_eq!(v.as_deref(), Some("three"));
    assert_eq!(last(c).await, "hit");
    // A cold row: filled, never hit.
    assert_eq!(value(c, t, 2).await.as_deref(), Some("two"));

    db.sql_socket(&format!(
        "UPDATE test.{t} SET v = CONCAT(v, '!') WHERE id IN (1, 2, 3)"
    ));
    let d = Deadline::new(Duration::from_secs(10), "refreshes");
    while num(status(c, "refresh_done").await) < 2 {
        d.tick().await;
    }
    // Hot rows are served fresh from the cache at once: no miss.
    assert_eq!(value(c, t, 1).await.as_deref(), Some("one!"));
    assert_eq!(last(c).await, "hit", "refreshed entry served");
    let v: Option<String> = c.exec_first(&sql, (3,)).await.unwrap();
    assert_eq!(v.as_deref(), Some("three!"));
    assert_eq!(last(c).await, "hit", "refreshed prepared entry served");
    // The cold one was forgotten: the next read goes to MariaDB.
    assert!(num(status(c, "refresh_cold").await) >= 1);
    assert_eq!(value(c, t, 2).await.as_deref(), Some("two!"));
    assert!(last(c).await.starts_with("miss"));
    assert_eq!(status(c, "refresh_failed").await, "0");
}

/// InnoDB applies foreign-key cascades inside the storage engine: the
/// binlog carries the parent's row only. The feed must still drop what the
/// cascade changed (tables whose foreign keys reference the changed one).
#[tokio::test]
async fn foreign_key_cascades_are_invalidated_though_the_binlog_omits_them() {
    let db = mariadb();
    db.sql_socket(
        "DROP TABLE IF EXISTS test.bl_child, test.bl_parent; \
         CREATE TABLE test.bl_parent (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB; \
         CREATE TABLE test.bl_child (id INT PRIMARY KEY, pid INT, v VARCHAR(20), \
           FOREIGN KEY (pid) REFERENCES test.bl_parent(id) ON DELETE CASCADE ON UPDATE CASCADE) ENGINE=InnoDB; \
         INSERT INTO test.bl_parent VALUES (1, 'p1'), (2, 'p2'); \
         INSERT INTO test.bl_child VALUES (1, 1, 'c1'), (2, 2, 'c2');",
    );
    let proxy = Proxy::start(db, &binlog_config("max_staleness = \"5s\""), "");
    let control = Proxy::start(db, "", "");
    let (mut c, mut k) = (client(&proxy).await, client(&control).await);
    wait_fresh(&mut c).await;
    let c = &mut c;
    let pid = "SELECT pid FROM bl_child WHERE id = 2";

    // ON UPDATE CASCADE: parent 2 becomes 20, child 2 follows.
    assert_eq!(warm_as::<i32>(c, pid).await, Some(2));
    assert_eq!(warm_as::<i32>(&mut k, pid).await, Some(2));
    db.sql_socket("UPDATE test.bl_parent SET id = 20 WHERE id = 2");
    let d = Deadline::new(Duration::from_secs(10), "cascaded update applied");
    while c.query_first::<i32, _>(pid).await.unwrap() != Some(20) {
        d.tick().await;
    }
    assert_eq!(k.query_first::<i32, _>(pid).await.unwrap(), Some(2));
    assert_eq!(
        last(&mut k).await,
        "hit",
        "without a feed the child is stale"
    );

    // ON DELETE CASCADE: parent 1 goes, child 1 with it.
    warm(c, "bl_child", 1).await;
    db.sql_socket("DELETE FROM test.bl_parent WHERE id = 1");
    wait_value(c, "bl_child", 1, None, "cascaded delete applied").await;
}
