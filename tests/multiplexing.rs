//! Connection multiplexing: idle clients hold no MySQL connection, and session
//! state stays correct while sessions interleave on shared connections.

mod common;

use common::*;
use mysql_async::prelude::*;
use mysql_async::Conn;

async fn status(db: &MariaDb, var: &str) -> u64 {
    let mut c = Conn::new(opts(db.port, "test")).await.unwrap();
    let row: Option<(String, u64)> = c
        .query_first(format!("SHOW GLOBAL STATUS LIKE '{var}'"))
        .await
        .unwrap();
    row.unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_clients_share_a_small_pool() {
    // MariaDB keeps its default max_connections = 151: 2,000 clients could
    // never connect directly.
    let db = mariadb();
    let max: u64 = {
        let mut c = Conn::new(opts(db.port, "test")).await.unwrap();
        c.query_first("SELECT @@max_connections")
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(max, 151);
    let proxy = Proxy::start_with(
        db.port,
        "workers = 2",
        "pool_max = 20\nacquire_timeout = \"60s\"",
        "",
    );
    let mut tasks = Vec::new();
    for i in 0..2000u32 {
        let port = proxy.port;
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::new(opts(port, "test"))
                .await
                .unwrap_or_else(|e| panic!("client {i} could not connect: {e}"));
            let v: u32 = c.query_first(format!("SELECT {i}")).await.unwrap().unwrap();
            assert_eq!(v, i);
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    // All 2,000 are connected at once and idle; each can still run a query.
    let peak = status(db, "Max_used_connections").await;
    assert!(
        peak <= 40,
        "MariaDB saw {peak} connections for 2,000 clients"
    );
    for (i, c) in clients.iter_mut().enumerate().step_by(97) {
        let v: usize = c
            .query_first(format!("SELECT {i} + 0"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v, i);
    }
    let threads = status(db, "Threads_connected").await;
    assert!(threads <= 25, "{threads} backend threads for idle clients");
    for c in clients {
        drop(c);
    }
}

async fn scalar(c: &mut Conn, q: &str) -> Option<String> {
    c.query_first::<Option<String>, _>(q)
        .await
        .unwrap()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_survives_interleaving_on_shared_connections() {
    let db = mariadb();
    db.sql_socket("CREATE DATABASE IF NOT EXISTS mux_a; CREATE DATABASE IF NOT EXISTS mux_b; \
                   CREATE TABLE IF NOT EXISTS test.mux_t (id INT PRIMARY KEY) ENGINE=InnoDB; DELETE FROM test.mux_t;");
    // Two backend connections for many sessions: they must share.
    let proxy = Proxy::start_with(db.port, "workers = 2", "pool_max = 2", "");
    let mut a = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let mut b = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();

    // Tracked state: database, SET NAMES, sql_mode, time_zone.
    a.query_drop("USE mux_a").await.unwrap();
    b.query_drop("USE mux_b").await.unwrap();
    a.query_drop("SET NAMES latin1").await.unwrap();
    b.query_drop("SET sql_mode = 'ANSI_QUOTES', time_zone = '+03:00'")
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            scalar(&mut a, "SELECT DATABASE()").await.as_deref(),
            Some("mux_a")
        );
        assert_eq!(
            scalar(&mut b, "SELECT DATABASE()").await.as_deref(),
            Some("mux_b")
        );
        assert_eq!(
            scalar(&mut c, "SELECT DATABASE()").await.as_deref(),
            Some("test")
        );
        assert_eq!(
            scalar(&mut a, "SELECT @@character_set_client")
                .await
                .as_deref(),
            Some("latin1")
        );
        assert_eq!(
            scalar(&mut c, "SELECT @@character_set_client")
                .await
                .as_deref(),
            Some("utf8mb4")
        );
        assert_eq!(
            scalar(&mut b, "SELECT @@sql_mode").await.as_deref(),
            Some("ANSI_QUOTES")
        );
        assert_ne!(
            scalar(&mut c, "SELECT @@sql_mode").await.as_deref(),
            Some("ANSI_QUOTES")
        );
        assert_eq!(
            scalar(&mut b, "SELECT @@time_zone").await.as_deref(),
            Some("+03:00")
        );
        assert_eq!(
            scalar(&mut a, "SELECT @@time_zone").await.as_deref(),
            Some("SYSTEM")
        );
    }
    a.query_drop("USE test").await.unwrap();
    b.query_drop("USE test").await.unwrap();

    // A transaction pins: uncommitted rows are invisible elsewhere, and the
    // session keeps seeing its own.
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("INSERT INTO mux_t VALUES (1)").await.unwrap();
    assert_eq!(
        scalar(&mut b, "SELECT COUNT(*) FROM mux_t")
            .await
            .as_deref(),
        Some("0")
    );
    assert_eq!(
        scalar(&mut a, "SELECT COUNT(*) FROM mux_t")
            .await
            .as_deref(),
        Some("1")
    );
    a.query_drop("ROLLBACK").await.unwrap();
    assert_eq!(
        scalar(&mut a, "SELECT COUNT(*) FROM mux_t")
            .await
            .as_deref(),
        Some("0")
    );
    // autocommit = 0 pins too, until COMMIT makes it visible.
    b.query_drop("SET autocommit = 0").await.unwrap();
    b.query_drop("INSERT INTO mux_t VALUES (2)").await.unwrap();
    assert_eq!(
        scalar(&mut c, "SELECT COUNT(*) FROM mux_t")
            .await
            .as_deref(),
        Some("0")
    );
    b.query_drop("COMMIT").await.unwrap();
    assert_eq!(
        scalar(&mut c, "SELECT COUNT(*) FROM mux_t")
            .await
            .as_deref(),
        Some("1")
    );
    b.query_drop("SET autocommit = 1").await.unwrap();

    // User variables and temporary tables stay with their session.
    a.query_drop("SET @v = 'mine'").await.unwrap();
    a.query_drop("CREATE TEMPORARY TABLE tmp_a (x INT)")
        .await
        .unwrap();
    a.query_drop("INSERT INTO tmp_a VALUES (5)").await.unwrap();
    assert_eq!(scalar(&mut c, "SELECT @v").await, None);
    assert!(c.query_drop("SELECT * FROM tmp_a").await.is_err());
    assert_eq!(scalar(&mut a, "SELECT @v").await.as_deref(), Some("mine"));
    assert_eq!(
        scalar(&mut a, "SELECT x FROM tmp_a").await.as_deref(),
        Some("5")
    );
    // a holds one connection; b and c share the other.
    for _ in 0..5 {
        assert_eq!(scalar(&mut b, "SELECT 'b'").await.as_deref(), Some("b"));
        assert_eq!(scalar(&mut c, "SELECT 'c'").await.as_deref(), Some("c"));
    }
    // COM_RESET_CONNECTION releases a's pinned state.
    a.reset().await.unwrap();
    assert_eq!(scalar(&mut a, "SELECT @v").await, None);
    assert!(a.query_drop("SELECT * FROM tmp_a").await.is_err());
    // LAST_INSERT_ID follows the session across connections.
    db.sql_socket(
        "CREATE TABLE IF NOT EXISTS test.mux_ai (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
    );
    b.query_drop("INSERT INTO mux_ai (v) VALUES (1)")
        .await
        .unwrap();
    let b_id = b.last_insert_id().unwrap();
    c.query_drop("INSERT INTO mux_ai (v) VALUES (2)")
        .await
        .unwrap();
    let c_id = c.last_insert_id().unwrap();
    assert_ne!(b_id, c_id);
    assert_eq!(
        scalar(&mut b, "SELECT LAST_INSERT_ID()").await,
        Some(b_id.to_string())
    );
    assert_eq!(
        scalar(&mut c, "SELECT LAST_INSERT_ID()").await,
        Some(c_id.to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_follow_the_session_across_connections() {
    let db = mariadb();
    db.sql_socket("CREATE DATABASE IF NOT EXISTS ps_a; CREATE DATABASE IF NOT EXISTS ps_b; \
                   CREATE TABLE IF NOT EXISTS ps_a.t (v VARCHAR(5)); CREATE TABLE IF NOT EXISTS ps_b.t (v VARCHAR(5)); \
                   DELETE FROM ps_a.t; DELETE FROM ps_b.t; INSERT INTO ps_a.t VALUES ('a'); INSERT INTO ps_b.t VALUES ('b');");
    let proxy = Proxy::start(db, "pool_max = 1", "");
    let mut a = Conn::new(opts(proxy.port, "ps_a")).await.unwrap();
    let mut b = Conn::new(opts(proxy.port, "ps_b")).await.unwrap();
    // Same SQL text under two databases over one backend connection: each
    // session must read its own table.
    let sa = a.prep("SELECT v FROM t").await.unwrap();
    let sb = b.prep("SELECT v FROM t").await.unwrap();
    for _ in 0..3 {
        let va: String = a.exec_first(&sa, ()).await.unwrap().unwrap();
        let vb: String = b.exec_first(&sb, ()).await.unwrap().unwrap();
        assert_eq!((va.as_str(), vb.as_str()), ("a", "b"));
    }
    a.close(sa).await.unwrap();
    let vb: String = b.exec_first(&sb, ()).await.unwrap().unwrap();
    assert_eq!(vb, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_authenticates_and_resets() {
    let db = mariadb();
    db.sql_socket("CREATE USER IF NOT EXISTS 'alice'@'127.0.0.1' IDENTIFIED BY 'secret'; GRANT SELECT ON test.* TO 'alice'@'127.0.0.1';");
    let users = "[[users]]\nname = \"root\"\npassword = \"\"\n[[users]]\nname = \"alice\"\npassword = \"secret\"\n";
    let proxy = Proxy::start(db, "", users);
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    c.query_drop("SET @x = 1").await.unwrap();
    let ok = mysql_async::ChangeUserOpts::default()
        .with_user(Some("alice".into()))
        .with_pass(Some("secret".into()))
        .with_db_name(Some("test".into()));
    c.change_user(ok).await.unwrap();
    let who: String = c
        .query_first("SELECT CURRENT_USER()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(who, "alice@127.0.0.1");
    let x: Option<Option<i32>> = c.query_first("SELECT @x").await.unwrap();
    assert_eq!(
        x,
        Some(None),
        "user variables must not survive COM_CHANGE_USER"
    );
    // MySQL's grants apply to the proxied user.
    assert!(c
        .query_drop("CREATE TABLE test.alice_no (a INT)")
        .await
        .is_err());
    // A wrong password is refused, and the proxy keeps serving others.
    let bad = mysql_async::ChangeUserOpts::default()
        .with_user(Some("root".into()))
        .with_pass(Some("wrong".into()));
    let err = c.change_user(bad).await.unwrap_err();
    assert!(
        err.to_string().contains("1045") || err.to_string().contains("Access denied"),
        "{err}"
    );
    let mut d = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let one: i32 = d.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preparing_inside_a_transaction_keeps_the_transaction() {
    let db = mariadb();
    db.sql_socket("CREATE TABLE IF NOT EXISTS test.ptx (id INT PRIMARY KEY) ENGINE=InnoDB; DELETE FROM test.ptx;");
    let proxy = Proxy::start_with(db.port, "workers = 1", "pool_max = 2", "");
    let mut a = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let mut b = Conn::new(opts(proxy.port, "test")).await.unwrap();
    a.query_drop("BEGIN").await.unwrap();
    // A fresh PREPARE (and EXECUTE) inside the transaction.
    a.exec_drop("INSERT INTO ptx VALUES (?)", (1,))
        .await
        .unwrap();
    a.exec_drop("INSERT INTO ptx VALUES (?)", (2,))
        .await
        .unwrap();
    let mine: u64 = a
        .exec_first("SELECT COUNT(*) FROM ptx WHERE id > ?", (0,))
        .await
        .unwrap()
        .unwrap();
    let theirs: u64 = b
        .query_first("SELECT COUNT(*) FROM ptx")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((mine, theirs), (2, 0));
    a.query_drop("ROLLBACK").await.unwrap();
    let after: u64 = b
        .query_first("SELECT COUNT(*) FROM ptx")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after, 0,
        "the transaction must have been rolled back as a whole"
    );
}
