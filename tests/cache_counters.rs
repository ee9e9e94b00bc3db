//! A cache hit never reaches MariaDB: its own statement counters stay still.
//! (Alone in this binary so no other test moves the global counters.)

mod common;

use common::*;
use mysql_async::prelude::*;
use mysql_async::Conn;

async fn counter(db: &MariaDb, name: &str) -> u64 {
    // Over the socket with the CLI, so this probe is not itself a Com_select
    // on a connection the proxy uses; the probe's own SHOW is not a SELECT.
    let out = db.sql_socket(&format!("SHOW GLOBAL STATUS LIKE '{name}'"));
    out.lines()
        .nth(1)
        .and_then(|l| l.split('\t').nth(1))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn hits_do_not_touch_mariadb() {
    let db = mariadb();
    db.sql_socket("CREATE TABLE test.cc (id INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO test.cc VALUES (1, 'a'), (2, 'b');");
    let proxy = Proxy::start(db, "", "");
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    // Fill both protocols.
    let _: Option<String> = c
        .query_first("SELECT v FROM cc WHERE id = 1")
        .await
        .unwrap();
    let _: Option<String> = c
        .exec_first("SELECT v FROM cc WHERE id = ?", (2,))
        .await
        .unwrap();
    let stmt = c.prep("SELECT v FROM cc WHERE id = ?").await.unwrap();
    let (sel, exe) = (
        counter(db, "Com_select").await,
        counter(db, "Com_stmt_execute").await,
    );
    for _ in 0..50 {
        let a: String = c
            .query_first("SELECT v FROM cc WHERE id = 1")
            .await
            .unwrap()
            .unwrap();
        let b: String = c.exec_first(&stmt, (2,)).await.unwrap().unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("a", "b"));
    }
    assert_eq!(
        counter(db, "Com_select").await,
        sel,
        "a text hit reached MariaDB"
    );
    assert_eq!(
        counter(db, "Com_stmt_execute").await,
        exe,
        "a binary hit reached MariaDB"
    );
    // Control: a bypassed read does reach it.
    let _: Option<String> = c
        .query_first("SELECT SQL_NO_CACHE v FROM cc WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(counter(db, "Com_select").await, sel + 1);
}
