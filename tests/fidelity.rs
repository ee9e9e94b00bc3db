//! What a client sees of its own session is what MySQL would show it,
//! though its statements run on shared connections: `CONNECTION_ID()` is
//! the id `KILL` takes (the proxy's), text and prepared; a session that
//! starts after a `SET GLOBAL` sees the new global values, even on a
//! pooled connection opened before it; the schema facts a write loads
//! after DDL read only their table. Against the private MariaDB.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::*;
use mysql_async::{Conn, Row};

#[tokio::test]
async fn connection_id_is_the_id_kill_takes() {
    let db = mariadb();
    let proxy = Proxy::start(db, "", "");
    let mut a = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let mut b = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let id = a.id();

    // Text, with the column name MySQL gives it, and prepared.
    let rows: Vec<Row> = a.query("SELECT CONNECTION_ID()").await.unwrap();
    assert_eq!(rows[0].columns_ref()[0].name_str(), "CONNECTION_ID()");
    assert_eq!(rows[0].get::<u32, _>(0), Some(id));
    let rows: Vec<Row> = a.query("SELECT CONNECTION_ID() + 0").await.unwrap();
    assert_eq!(rows[0].columns_ref()[0].name_str(), "CONNECTION_ID() + 0");
    assert_eq!(rows[0].get::<u32, _>(0), Some(id));
    let p: Option<u32> = a.exec_first("SELECT CONNECTION_ID()", ()).await.unwrap();
    assert_eq!(p, Some(id));
    a.query_drop("SELECT CONNECTION_ID() INTO @me")
        .await
        .unwrap();
    let me: Option<u32> = a.query_first("SELECT @me").await.unwrap();
    assert_eq!(me, Some(id));
    let other: Option<u32> = b.query_first("SELECT CONNECTION_ID()").await.unwrap();
    assert_eq!(other, Some(b.id()));
    assert_ne!(other, Some(id));
    // A statement naming PROCESSLIST keeps MySQL's id, so it finds the row
    // of the connection running it (as MariaDB's user_var.test relies on).
    let own_row: Option<u64> = a
        .query_first(
            "SELECT memory_used FROM information_schema.processlist \
             WHERE id = connection_id()",
        )
        .await
        .unwrap();
    assert!(own_row.is_some_and(|m| m > 0), "{own_row:?}");

    // KILL QUERY with the id the client saw interrupts its statement.
    for prepared in [false, true] {
        let started = Instant::now();
        let sleeper = tokio::spawn(async move {
            let r: Result<Option<i64>, _> = match prepared {
                true => a.exec_first("SELECT SLEEP(20)", ()).await,
                false => a.query_first("SELECT SLEEP(20)").await,
            };
            (a, r)
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        b.query_drop(format!("KILL QUERY {id}")).await.unwrap();
        let (back, r) = sleeper.await.unwrap();
        a = back;
        // MariaDB ends an interrupted SLEEP early with 1 (or error 1317).
        assert!(
            matches!(&r, Ok(Some(1)))
                || matches!(&r, Err(mysql_async::Error::Server(e)) if e.code == 1317),
            "prepared={prepared}: {r:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "interrupted");
    }
    // The session survives KILL QUERY; KILL CONNECTION ends it.
    let still: Option<u32> = a.query_first("SELECT CONNECTION_ID()").await.unwrap();
    assert_eq!(still, Some(id));
    b.query_drop(format!("KILL {id}")).await.unwrap();
    assert!(a.query_drop("SELECT 1").await.is_err(), "killed");
    let err = b.query_drop("KILL 999999").await.unwrap_err();
    assert!(
        matches!(&err, mysql_async::Error::Server(e) if e.code == 1094),
        "{err:?}"
    );
}

/// A server of its own: the test changes global variables.
#[tokio::test]
async fn a_new_session_sees_the_current_globals() {
    let db = MariaDb::start(&[]);
    let proxy = Proxy::start(&db, "", "");
    // A pooled connection opened now copies today's globals.
    let mut old = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let before = read(&mut old).await;
    assert_ne!(before, (1024, 1234));
    drop(old.disconnect().await);

    let mut admin = Conn::new(opts(proxy.port, "test")).await.unwrap();
    admin
        .query_drop("SET GLOBAL net_buffer_length = 1024")
        .await
        .unwrap();
    admin
        .query_drop("SET @@global.wait_timeout = 1234")
        .await
        .unwrap();
    for round in 0..3 {
        let mut fresh = Conn::new(opts(proxy.port, "test")).await.unwrap();
        assert_eq!(read(&mut fresh).await, (1024, 1234), "new session {round}");
        let p: Option<u64> = fresh
            .exec_first("SELECT @@net_buffer_length", ())
            .await
            .unwrap();
        assert_eq!(p, Some(1024));
        fresh.disconnect().await.unwrap();
    }
    // A session's own SET still wins over the globals.
    let mut own = Conn::new(opts(proxy.port, "test")).await.unwrap();
    own.query_drop("SET SESSION wait_timeout = 77")
        .await
        .unwrap();
    let w: Option<u64> = own.query_first("SELECT @@wait_timeout").await.unwrap();
    assert_eq!(w, Some(77));
    let resets: u64 = scrape_counter(&proxy);
    assert!(resets >= 1, "a pooled connection was reset: {resets}");
}

/// The session values of two variables a session copies from the globals.
async fn read(c: &mut Conn) -> (u64, u64) {
    let v: Option<(u64, u64)> = c
        .query_first("SELECT @@net_buffer_length, @@wait_timeout")
        .await
        .unwrap();
    v.unwrap()
}

/// `sqlcache_backend_globals_resets_total`, from SHOW SQLCACHE STATUS.
fn scrape_counter(proxy: &Proxy) -> u64 {
    let out = cli(proxy.port, "test", "SHOW SQLCACHE STATUS", &[]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("backend_globals_resets\t"))
        .and_then(|v| v.trim().parse().ok())
        .expect("backend_globals_resets in SHOW SQLCACHE STATUS")
}

/// The schema facts loaded after each DDL read only the table they name
/// (MariaDB's EXPLAIN says how many databases an information_schema table
/// scans): joined on columns, COLUMNS used to scan every table of every
/// database, 23 ms per load, a 50 ms stall per write after an ALTER in
/// MariaDB's lock_multi_bug38499.test. Only the lookup of the tables whose
/// foreign keys reference this one has to scan them all.
#[tokio::test]
async fn schema_facts_read_only_the_table_they_name() {
    let db = mariadb();
    let mut c = Conn::new(opts(db.port, "test")).await.unwrap();
    c.query_drop("CREATE TABLE IF NOT EXISTS facts_t (id INT PRIMARY KEY, u INT NOT NULL UNIQUE)")
        .await
        .unwrap();
    let q = ::sqlcache::backend::schema::FactQueries::new("test", "facts_t");
    for (name, sql) in [
        ("kind", &q.kind),
        ("pk", &q.pk),
        ("unique", &q.unique),
        ("triggers", &q.triggers),
        ("references", &q.references),
        ("referenced_by", &q.referenced_by),
    ] {
        let plan: Vec<Row> = c.query(format!("EXPLAIN {sql}")).await.unwrap();
        let extras: Vec<String> = plan
            .iter()
            .map(|r| {
                r.get::<Option<String>, _>("Extra")
                    .flatten()
                    .unwrap_or_default()
            })
            .collect();
        assert!(!extras.is_empty(), "{name}: no plan");
        let scans_all = extras.iter().any(|e| e.contains("Scanned all databases"));
        assert_eq!(scans_all, name == "referenced_by", "{name}: {extras:?}");
    }
}
