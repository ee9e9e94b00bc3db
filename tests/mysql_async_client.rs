//! mysql_async through the proxy vs directly: text and prepared protocol.

mod common;

use common::*;
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

async fn setup(db: &MariaDb) {
    let mut c = Conn::new(opts(db.port, "test")).await.unwrap();
    c.query_drop(
        "CREATE TABLE IF NOT EXISTS ma_t (id INT PRIMARY KEY, u INT UNSIGNED, b BIGINT, d DECIMAL(30,10), \
         f FLOAT, dbl DOUBLE, dt DATE, ts DATETIME(6), tm TIME, y YEAR, s VARCHAR(50), vb VARBINARY(300), \
         j JSON, e ENUM('a','b'), st SET('x','y'), ti TINYINT, sm SMALLINT, md MEDIUMINT)",
    )
    .await
    .unwrap();
    c.query_drop("DELETE FROM ma_t").await.unwrap();
    c.query_drop(
        "INSERT INTO ma_t VALUES (1, 4294967295, -9223372036854775808, 12345678901234567890.0123456789, \
         1.5, 2.25, '2024-02-29', '2024-02-29 12:34:56.123456', '-838:59:59', 2155, 'héllo 😀', x'00ff10', \
         '{\"a\": [1, 2]}', 'b', 'x,y', -128, -32768, 8388607), \
         (2, 0, 0, 0, 0, 0, '1000-01-01', '1000-01-01 00:00:00', '00:00:00', 1901, '', x'', 'null', 'a', '', 127, 32767, -8388608), \
         (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    )
    .await
    .unwrap();
}

fn raw(rows: Vec<Row>) -> Vec<Vec<Value>> {
    rows.into_iter().map(|r| r.unwrap()).collect()
}

#[tokio::test]
async fn text_and_prepared_results_match_direct() {
    let db = mariadb();
    setup(db).await;
    let proxy = Proxy::start(db, "", "");
    let mut direct = Conn::new(opts(db.port, "test")).await.unwrap();
    let mut via = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let queries = [
        "SELECT * FROM ma_t ORDER BY id",
        "SELECT id, s, vb FROM ma_t WHERE id = 1",
        "SELECT 1, 'a', NULL, 1.5e0, CAST(1 AS UNSIGNED)",
        "SELECT * FROM ma_t WHERE id = 42",
    ];
    for q in queries {
        let a: Vec<Row> = direct.query(q).await.unwrap();
        let b: Vec<Row> = via.query(q).await.unwrap();
        assert_eq!(raw(a.clone()), raw(b.clone()), "text: {q}");
        let ac: Vec<_> = a
            .first()
            .map(|r| r.columns_ref().to_vec())
            .unwrap_or_default();
        let bc: Vec<_> = b
            .first()
            .map(|r| r.columns_ref().to_vec())
            .unwrap_or_default();
        assert_eq!(ac, bc, "column definitions: {q}");
        let a: Vec<Row> = direct.exec(q, ()).await.unwrap();
        let b: Vec<Row> = via.exec(q, ()).await.unwrap();
        assert_eq!(raw(a), raw(b), "binary: {q}");
    }
    // Parameters of every kind round-trip through the binary protocol.
    let q = "SELECT ?, ?, ?, ?, ?, ?, ?";
    let params = (
        u64::MAX,
        i64::MIN,
        "héllo 😀",
        vec![0u8, 255, 10],
        Value::NULL,
        2.5f64,
        Value::Date(2024, 2, 29, 1, 2, 3, 4),
    );
    let a: Vec<Row> = direct.exec(q, params.clone()).await.unwrap();
    let b: Vec<Row> = via.exec(q, params).await.unwrap();
    assert_eq!(raw(a), raw(b));
    let a: Vec<Row> = direct
        .exec("SELECT * FROM ma_t WHERE id = ?", (1,))
        .await
        .unwrap();
    let b: Vec<Row> = via
        .exec("SELECT * FROM ma_t WHERE id = ?", (1,))
        .await
        .unwrap();
    assert_eq!(raw(a), raw(b));
}

#[tokio::test]
async fn ok_packets_errors_and_multi_results() {
    let db = mariadb();
    let proxy = Proxy::start(db, "", "");
    let mut via = Conn::new(opts(proxy.port, "test")).await.unwrap();
    via.query_drop("CREATE TABLE IF NOT EXISTS ma_ai (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    via.query_drop("INSERT INTO ma_ai (v) VALUES (1), (2), (3)")
        .await
        .unwrap();
    assert_eq!(via.affected_rows(), 3);
    assert!(via.last_insert_id().unwrap() >= 1);
    assert!(via.info().contains("Records: 3"), "info: {}", via.info());
    via.query_drop("UPDATE ma_ai SET v = v + 1 WHERE v >= 2")
        .await
        .unwrap();
    assert_eq!(via.affected_rows(), 2);
    // LAST_INSERT_ID() answers for this session even when multiplexed.
    let id = via.last_insert_id().unwrap_or(0);
    via.query_drop("INSERT INTO ma_ai (v) VALUES (9)")
        .await
        .unwrap();
    let new_id = via.last_insert_id().unwrap();
    assert!(new_id > id);
    let lid: u64 = via
        .query_first("SELECT LAST_INSERT_ID()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lid, new_id);

    // Server errors keep code, SQLSTATE and message; the session goes on.
    let mut direct = Conn::new(opts(db.port, "test")).await.unwrap();
    for q in [
        "SELECT * FROM no_such_table",
        "SELEC 1",
        "SELECT 1 FROM ma_ai WHERE nope = 1",
    ] {
        let a = direct.query_drop(q).await.unwrap_err();
        let b = via.query_drop(q).await.unwrap_err();
        match (a, b) {
            (mysql_async::Error::Server(a), mysql_async::Error::Server(b)) => {
                assert_eq!(
                    (a.code, &a.state, &a.message),
                    (b.code, &b.state, &b.message)
                );
            }
            other => panic!("{other:?}"),
        }
    }
    let one: i32 = via.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);

    // Multi-statement text query with several result sets.
    let mut r = via
        .query_iter("SELECT 1; SELECT 'a', 'b'; UPDATE ma_ai SET v = v; SELECT 3")
        .await
        .unwrap();
    let s1: Vec<i32> = r.collect().await.unwrap();
    let s2: Vec<(String, String)> = r.collect().await.unwrap();
    let s3: Vec<Row> = r.collect().await.unwrap();
    let s4: Vec<i32> = r.collect().await.unwrap();
    assert_eq!(s1, vec![1]);
    assert_eq!(s2, vec![("a".into(), "b".into())]);
    assert!(s3.is_empty());
    assert_eq!(s4, vec![3]);
    drop(r);

    // A procedure returning two result sets, text and prepared.
    via.query_drop("DROP PROCEDURE IF EXISTS two_sets")
        .await
        .unwrap();
    via.query_drop("CREATE PROCEDURE two_sets() BEGIN SELECT 1 AS a; SELECT 2 AS b, 'x' AS c; END")
        .await
        .unwrap();
    let mut r = via.query_iter("CALL two_sets()").await.unwrap();
    let s1: Vec<i32> = r.collect().await.unwrap();
    let s2: Vec<(i32, String)> = r.collect().await.unwrap();
    assert_eq!((s1, s2), (vec![1], vec![(2, "x".into())]));
    drop(r);
    let mut r = via.exec_iter("CALL two_sets()", ()).await.unwrap();
    let s1: Vec<i32> = r.collect().await.unwrap();
    let s2: Vec<(i32, String)> = r.collect().await.unwrap();
    assert_eq!((s1, s2), (vec![1], vec![(2, "x".into())]));
    drop(r);
    let one: i32 = via.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
}

#[tokio::test]
async fn prefer_socket_does_not_escape_the_proxy() {
    // mysql_async's default prefer_socket=true asks SELECT @@socket and would
    // reconnect to the server's socket; the proxy must not leak it.
    let db = mariadb();
    let proxy = Proxy::start(db, "", "");
    let o = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(proxy.port)
        .user(Some("root"))
        .prefer_socket(true);
    let mut c = Conn::new(o).await.unwrap();
    // Only the proxy answers its own statements: still connected to it.
    let rows: Vec<(String, String)> = c.query("SHOW SQLCACHE STATUS").await.unwrap();
    assert!(!rows.is_empty());
    let id: Option<u32> = c.query_first("SELECT CONNECTION_ID()").await.unwrap();
    assert_eq!(id, Some(c.id()), "the proxy's id");
    let sock: Option<String> = c.query_first("SELECT @@socket").await.unwrap().unwrap();
    assert_eq!(sock, None);
}

#[tokio::test]
async fn large_values_and_results_stream() {
    let db = mariadb();
    let proxy = Proxy::start(db, "", "");
    let mut via = Conn::new(opts(proxy.port, "test")).await.unwrap();
    via.query_drop("CREATE TABLE IF NOT EXISTS big (id INT PRIMARY KEY, b LONGBLOB)")
        .await
        .unwrap();
    via.query_drop("DELETE FROM big").await.unwrap();
    // A 20 MiB value crosses the 16 MiB packet boundary both ways.
    let blob: Vec<u8> = (0..20 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    via.exec_drop("INSERT INTO big VALUES (1, ?)", (blob.clone(),))
        .await
        .unwrap();
    let got: Vec<u8> = via
        .query_first("SELECT b FROM big WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    assert!(got == blob, "text protocol blob differs");
    let got: Vec<u8> = via
        .exec_first("SELECT b FROM big WHERE id = ?", (1,))
        .await
        .unwrap()
        .unwrap();
    assert!(got == blob, "binary protocol blob differs");
    // Many rows stream through.
    let n: Vec<u64> = via.query("SELECT seq FROM seq_1_to_200000").await.unwrap();
    assert_eq!(n.len(), 200000);
    assert_eq!(n.iter().sum::<u64>(), 200000 * 200001 / 2);
}

#[tokio::test]
async fn dropping_the_current_database_leaves_none_selected() {
    let db = mariadb();
    let proxy = Proxy::start(db, "", "");
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    c.query_drop("CREATE DATABASE IF NOT EXISTS dropme")
        .await
        .unwrap();
    c.query_drop("USE dropme").await.unwrap();
    c.query_drop("DROP DATABASE dropme").await.unwrap();
    // As on MySQL itself: no database selected, statements keep working.
    let cur: Option<Option<String>> = c.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(cur, Some(None));
    let one: i32 = c.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
}

/// Peak resident memory of a process, from /proc (kB).
fn vm_hwm_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_large_result_streams_in_bounded_memory() {
    let db = mariadb();
    let proxy = Proxy::start(db, "", "");
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let before = vm_hwm_kb(proxy.child.id());
    // ~400 MB of rows, consumed row by row by the client.
    let mut r = c
        .query_iter("SELECT seq, REPEAT('x', 2000) FROM seq_1_to_200000")
        .await
        .unwrap();
    let mut rows = 0u64;
    let mut bytes = 0u64;
    r.for_each(|row: mysql_async::Row| {
        rows += 1;
        bytes += row.as_ref(1).map_or(0, |v| match v {
            Value::Bytes(b) => b.len() as u64,
            _ => 0,
        });
    })
    .await
    .unwrap();
    drop(r);
    assert_eq!(rows, 200_000);
    assert_eq!(bytes, 400_000_000);
    let peak = vm_hwm_kb(proxy.child.id());
    println!("proxy peak RSS {before} kB before, {peak} kB after a 400 MB result");
    assert!(
        peak < before + 64 * 1024,
        "proxy buffered the result: {before} kB -> {peak} kB"
    );
}

/// A row of 16 MiB or more comes from MariaDB in continuation packets; the
/// relay passes it on verbatim (`src/frontend/relay.rs`) and must re-split
/// it under the client's sequence numbers: text and prepared, with the
/// large column first (its length prefix then starts with 0xFE, as an EOF
/// does) and last, read back equal to what MariaDB answers directly.
#[tokio::test]
async fn rows_of_16_mib_and_more_are_relayed_whole() {
    let db = mariadb();
    db.sql_socket(
        "SET GLOBAL max_allowed_packet = 67108864; \
         CREATE TABLE test.big_rows (id INT PRIMARY KEY, a LONGBLOB, n INT); \
         INSERT INTO test.big_rows VALUES (1, REPEAT('a', 17 * 1024 * 1024 + 5), 1), (2, 'b', 2);",
    );
    let proxy = Proxy::start(db, "", "");
    let mut direct = Conn::new(opts(db.port, "test")).await.unwrap();
    let mut via = Conn::new(opts(proxy.port, "test")).await.unwrap();
    for q in [
        "SELECT a, n, id FROM big_rows ORDER BY id",
        "SELECT id, n, a FROM big_rows ORDER BY id",
    ] {
        let want = raw(direct.query(q).await.unwrap());
        let got = raw(via.query(q).await.unwrap());
        assert_eq!(got.len(), 2, "{q}");
        assert!(got == want, "text result differs: {q}");
        let p = format!("{q} LIMIT ?");
        let want = raw(direct.exec(&p, (5,)).await.unwrap());
        let got = raw(via.exec(&p, (5,)).await.unwrap());
        assert!(got == want, "prepared result differs: {q}");
    }
    // The connection is still in step after it.
    let n: Option<i64> = via.query_first("SELECT 41 + 1").await.unwrap();
    assert_eq!(n, Some(42));
}
