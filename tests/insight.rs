//! `SHOW SQLCACHE QUERIES` through real clients: every statement shape the
//! application sent, how the cache routed it and why not when it did not.

mod common;

use common::*;
use mysql_async::prelude::*;
use mysql_async::{Conn, Row};

/// The QUERIES row of the shape whose text is `query`, as name → value.
fn shape<'a>(rows: &'a [Vec<(String, String)>], query: &str) -> &'a [(String, String)] {
    rows.iter()
        .find(|r| r[0].1 == query)
        .unwrap_or_else(|| panic!("no shape {query:?} in {rows:#?}"))
}

fn get<'a>(row: &'a [(String, String)], col: &str) -> &'a str {
    &row.iter().find(|(k, _)| k == col).unwrap().1
}

async fn queries(c: &mut Conn) -> Vec<Vec<(String, String)>> {
    named_rows(c, "SHOW SQLCACHE QUERIES").await
}

/// The rows of `stmt`, each as column name → value.
async fn named_rows(c: &mut Conn, stmt: &str) -> Vec<Vec<(String, String)>> {
    let rows: Vec<Row> = c.query(stmt).await.unwrap();
    rows.into_iter()
        .map(|r| {
            let names: Vec<String> = r
                .columns_ref()
                .iter()
                .map(|c| c.name_str().into())
                .collect();
            let vals: Vec<String> = (0..names.len()).map(|i| r.get(i).unwrap()).collect();
            names.into_iter().zip(vals).collect()
        })
        .collect()
}

#[tokio::test]
async fn queries_show_each_shape_with_its_route_and_reason() {
    let db = mariadb();
    db.sql_socket("CREATE TABLE test.qi (id INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO test.qi VALUES (1, 'a'), (2, 'b'), (3, 'c');");
    let proxy = Proxy::start(db, "", "");
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    // Three misses, then three hits, of one text shape; one more in a
    // transaction (a bypass: in_transaction).
    for id in [1, 2, 3, 1, 2, 3] {
        let _: Option<String> = c
            .query_first(format!("SELECT v FROM qi WHERE id = {id}"))
            .await
            .unwrap();
    }
    c.query_drop("BEGIN").await.unwrap();
    let _: Option<String> = c.query_first("select v from qi where id=2").await.unwrap();
    c.query_drop("COMMIT").await.unwrap();
    // A prepared shape: one miss, three hits.
    for _ in 0..4 {
        let _: Option<(i32, String)> = c
            .exec_first("SELECT id, v FROM qi WHERE id = ?", (1,))
            .await
            .unwrap();
    }
    for id in [1, 2] {
        let _: Option<String> = c
            .query_first(format!("SELECT SQL_NO_CACHE v FROM qi WHERE id = {id}"))
            .await
            .unwrap();
    }
    c.query_drop("UPDATE qi SET v = 'z' WHERE id = 3")
        .await
        .unwrap();

    let rows = queries(&mut c).await;
    let point = shape(&rows, "select v from qi where id=?");
    assert_eq!(
        ["count", "hits", "misses", "uncached", "cacheable"].map(|k| get(point, k)),
        ["7", "3", "3", "1", "partly: in_transaction"]
    );
    let p50: u64 = get(point, "p50_us").parse().unwrap();
    let p99: u64 = get(point, "p99_us").parse().unwrap();
    assert!(p50 > 0 && p50 <= p99, "p50 {p50} p99 {p99}");
    let prepared = shape(&rows, "select id, v from qi where id=?");
    assert_eq!(
        ["count", "hits", "misses", "cacheable"].map(|k| get(prepared, k)),
        ["4", "3", "1", "yes"]
    );
    let no_cache = shape(&rows, "select sql_no_cache v from qi where id=?");
    assert_eq!(get(no_cache, "cacheable"), "no: sql_no_cache");
    assert_eq!(get(no_cache, "uncached"), "2");
    let update = shape(&rows, "update qi set v=? where id=?");
    assert_eq!(
        (get(update, "count"), get(update, "cacheable")),
        ("1", "no: write")
    );
    assert_eq!(get(shape(&rows, "commit"), "cacheable"), "no: not a read");
    assert!(
        rows.iter().all(|r| !r[0].1.starts_with("show sqlcache")),
        "the proxy's own statements are not recorded: {rows:#?}"
    );
    // Most run first.
    assert_eq!(rows[0][0].1, "select v from qi where id=?");

    // The mariadb CLI shows it as an ordinary table.
    let out = cli(proxy.port, "test", "SHOW SQLCACHE QUERIES", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with(
            "query\tcount\thits\tmisses\tuncached\tcacheable\tp50_us\tp99_us\tshare_pct\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("select id, v from qi where id=?\t4\t3\t1\t0\tyes\t"),
        "{text}"
    );
}

/// Reads row 1 of `table` and says how the proxy routed it.
async fn route_of(c: &mut Conn, table: &str) -> String {
    let q = format!("SELECT v FROM {table} WHERE id = 1");
    let _: Option<String> = c.query_first(q).await.unwrap();
    common::sqlcache::last(c).await
}

#[tokio::test]
async fn flush_empties_a_table_everything_or_the_statistics() {
    let db = mariadb();
    db.sql_socket("CREATE TABLE test.qf (id INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO test.qf VALUES (1, 'a'); CREATE TABLE test.qg (id INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO test.qg VALUES (1, 'g');");
    let proxy = Proxy::start(db, "", "");
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    for t in ["qf", "qg"] {
        route_of(&mut c, t).await;
        assert_eq!(route_of(&mut c, t).await, "hit");
    }
    // One table, named in the current database or with its own.
    c.query_drop("SQLCACHE FLUSH qf").await.unwrap();
    assert_eq!(route_of(&mut c, "qf").await, "miss(filled)");
    assert_eq!(route_of(&mut c, "qg").await, "hit", "another table kept");
    c.query_drop("SQLCACHE FLUSH `test`.`qf`").await.unwrap();
    assert_eq!(route_of(&mut c, "qf").await, "miss(filled)");
    // Everything.
    c.query_drop("sqlcache flush;").await.unwrap();
    assert_eq!(route_of(&mut c, "qf").await, "miss(filled)");
    assert_eq!(route_of(&mut c, "qg").await, "miss(filled)");
    assert_eq!(route_of(&mut c, "qg").await, "hit");
    // The statistics.
    assert!(!queries(&mut c).await.is_empty());
    c.query_drop("SQLCACHE FLUSH QUERIES").await.unwrap();
    assert!(queries(&mut c).await.is_empty());
    // Anything else is a syntax error naming what is accepted; no
    // database for a bare table name is MySQL's own error.
    let err = c.query_drop("SQLCACHE FLUSH a.b.c").await.unwrap_err();
    assert!(
        matches!(&err, mysql_async::Error::Server(e) if e.code == 1064 && e.state == "42000" && e.message.contains("SQLCACHE FLUSH")),
        "{err:?}"
    );
    let mut nodb = Conn::new(opts(proxy.port, "")).await.unwrap();
    let err = nodb.query_drop("SQLCACHE FLUSH qf").await.unwrap_err();
    assert!(
        matches!(&err, mysql_async::Error::Server(e) if e.code == 1046 && e.state == "3D000"),
        "{err:?}"
    );
    // The mariadb CLI gets an OK.
    let out = cli(proxy.port, "test", "SQLCACHE FLUSH qg", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(route_of(&mut c, "qg").await, "miss(filled)");
}

/// `SHOW SQLCACHE TABLES`: per table, what it holds now (walking the
/// cache) and its hits, fills and invalidations by source — a write
/// through the proxy and one made directly in MariaDB (the binlog feed).
#[tokio::test]
async fn tables_show_what_each_table_holds_and_what_happened_to_it() {
    let db = mariadb();
    db.sql_socket("CREATE TABLE test.tt_a (id INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO test.tt_a VALUES (1, 'a'), (2, 'b'); CREATE TABLE test.tt_b (id INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO test.tt_b VALUES (1, 'c');");
    let proxy = Proxy::start(db, "\n[invalidation.binlog]\nmax_staleness = \"5s\"\n", "");
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    common::sqlcache::wait_fresh(&mut c).await;
    let table = |rows: &[Vec<(String, String)>], name: &str| -> Vec<(String, String)> {
        rows.iter()
            .find(|r| r[0].1 == name)
            .unwrap_or_else(|| panic!("no {name} in {rows:#?}"))
            .clone()
    };
    for q in [
        "SELECT v FROM tt_a WHERE id = 1",
        "SELECT v FROM tt_a WHERE id = 2",
        "SELECT v FROM tt_b WHERE id = 1",
    ] {
        common::sqlcache::warm_as::<String>(&mut c, q).await;
    }
    // Three more hits on tt_a.
    for _ in 0..3 {
        let _: Option<String> = c
            .query_first("SELECT v FROM tt_a WHERE id = 1")
            .await
            .unwrap();
    }
    let rows = named_rows(&mut c, "SHOW SQLCACHE TABLES").await;
    let a = table(&rows, "test.tt_a");
    assert_eq!(get(&a, "Entries"), "2", "{a:?}");
    assert!(get(&a, "Bytes").parse::<u64>().unwrap() > 2 * 592, "{a:?}");
    assert!(get(&a, "Hits").parse::<u64>().unwrap() >= 5, "{a:?}");
    assert!(get(&a, "Fills").parse::<u64>().unwrap() >= 2, "{a:?}");
    assert_eq!(get(&table(&rows, "test.tt_b"), "Entries"), "1");

    // A write through the proxy (row tags), then one made directly.
    c.query_drop("UPDATE tt_a SET v = 'x' WHERE id = 1")
        .await
        .unwrap();
    db.sql_socket("UPDATE test.tt_b SET v = 'y' WHERE id = 1");
    let d = common::sqlcache::Deadline::new(
        std::time::Duration::from_secs(10),
        "feed invalidation counted",
    );
    loop {
        let rows = named_rows(&mut c, "SHOW SQLCACHE TABLES").await;
        let (a, b) = (table(&rows, "test.tt_a"), table(&rows, "test.tt_b"));
        if get(&b, "Invalidations_feed_row") != "0" {
            assert!(
                get(&a, "Invalidations_proxy_row").parse::<u64>().unwrap() >= 1,
                "{a:?}"
            );
            // (the proxy's own write reaches the feed too: its echo)
            assert_eq!(get(&b, "Invalidations_proxy_row"), "0", "{b:?}");
            assert_eq!(get(&b, "Entries"), "0", "{b:?}");
            assert_eq!(get(&b, "Stale_entries"), "1", "{b:?}");
            break;
        }
        d.tick().await;
    }
    // The mariadb CLI shows it too.
    let out = cli(proxy.port, "test", "SHOW SQLCACHE TABLES", &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("test.tt_a"),
        "{out:?}"
    );
}
