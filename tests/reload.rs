//! Live reload (`src/frontend/reload.rs`): a changed `proxy.toml` takes
//! effect on SIGHUP or `SQLCACHE RELOAD` while clients stay connected —
//! users, table rules, TTLs, `max_memory`, `max_result_bytes`, the log
//! level; an invalid file changes nothing and says why; keys that need a
//! restart are named. Against the private MariaDB, through mysql_async
//! and the mariadb CLI.

mod common;

use std::time::Duration;

use common::sqlcache::*;
use common::*;
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder};

fn login(port: u16, user: &str, pass: &str) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(pass))
        .db_name(Some("test"))
}

/// Replaces `from` (which must be there) in the proxy's file.
fn edit(proxy: &Proxy, from: &str, to: &str) {
    let text = std::fs::read_to_string(&proxy.config).unwrap();
    assert!(text.contains(from), "{from:?} not in:\n{text}");
    std::fs::write(&proxy.config, text.replacen(from, to, 1)).unwrap();
}

fn sighup(proxy: &Proxy) {
    // SAFETY: kill(2) on the proxy's own pid.
    assert_eq!(
        unsafe { libc::kill(proxy.child.id() as i32, libc::SIGHUP) },
        0
    );
}

async fn wait_reloads(c: &mut Conn, n: u64) {
    let d = Deadline::new(Duration::from_secs(10), "reload applied");
    while status(c, "config_reloads").await.parse::<u64>().unwrap() < n {
        d.tick().await;
    }
}

/// Reads `q` twice; the route of the second read.
async fn second_read(c: &mut Conn, q: &str) -> String {
    let _: Option<String> = c.query_first(q).await.unwrap();
    let _: Option<String> = c.query_first(q).await.unwrap();
    last(c).await
}

const USERS: &str = "[[users]]\nname = \"root\"\npassword = \"\"\n\
                     [[users]]\nname = \"rl_app\"\npassword = \"old\"\n";

const A1: &str = "SELECT v FROM rl_a WHERE id = 1";
const A2: &str = "SELECT v FROM rl_a WHERE id = 2";
const B1: &str = "SELECT v FROM rl_b WHERE id = 1";

/// A client that connects and leaves: a debug line of the frontend
/// ("handshake failed"), not logged at the starting level.
fn probe(proxy: &Proxy) {
    drop(std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap());
}

#[tokio::test]
async fn a_changed_file_applies_live_and_an_invalid_one_changes_nothing() {
    let db = mariadb();
    db.sql_socket(
        "CREATE TABLE IF NOT EXISTS test.rl_a (id INT PRIMARY KEY, v VARCHAR(40)); \
         CREATE TABLE IF NOT EXISTS test.rl_b (id INT PRIMARY KEY, v VARCHAR(40)); \
         REPLACE INTO test.rl_a VALUES (1, 'a'), (2, 'a-two-is-a-longer-value'); \
         REPLACE INTO test.rl_b VALUES (1, 'b'); \
         CREATE USER IF NOT EXISTS 'rl_app'@'%' IDENTIFIED BY 'old'; \
         CREATE USER IF NOT EXISTS 'rl_new'@'%' IDENTIFIED BY 'n3w'; \
         GRANT SELECT ON test.* TO 'rl_app'@'%'; GRANT SELECT ON test.* TO 'rl_new'@'%';",
    );
    let cache = "\n[cache]\nttl = \"60s\"\n\n[[cache.tables]]\nname = \"test.rl_a\"\n";
    let proxy = Proxy::start(db, cache, USERS);
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let id = c.id();
    assert_eq!(second_read(&mut c, A1).await, "hit");
    assert_eq!(second_read(&mut c, B1).await, "hit");
    Conn::new(login(proxy.port, "rl_app", "old"))
        .await
        .unwrap()
        .disconnect()
        .await
        .unwrap();
    probe(&proxy); // not logged at the starting level

    sighup_applies_users_rules_and_the_log_level(db, &proxy, &mut c, id).await;
    let good = an_invalid_file_changes_nothing(&proxy, &mut c).await;
    by_statement_ttl_and_result_limit(&proxy, &mut c, &good).await;
    max_memory_starts_the_cache_empty(&proxy, &mut c).await;
    assert_eq!(c.id(), id, "one connection across every reload");
}

/// (1) SIGHUP: rl_a disabled, rl_app's password changed, a user added, the
/// frontend's debug lines on, and a key that needs a restart.
async fn sighup_applies_users_rules_and_the_log_level(
    db: &MariaDb,
    proxy: &Proxy,
    c: &mut Conn,
    id: u32,
) {
    db.sql_socket("ALTER USER 'rl_app'@'%' IDENTIFIED BY 'new'");
    edit(
        proxy,
        "name = \"test.rl_a\"\n",
        "name = \"test.rl_a\"\nenabled = false\n",
    );
    edit(
        proxy,
        "password = \"old\"",
        "password = \"new\"\n[[users]]\nname = \"rl_new\"\npassword = \"n3w\"",
    );
    edit(
        proxy,
        "level = \"info,",
        "level = \"info,sqlcache::frontend=debug,",
    );
    edit(
        proxy,
        "shutdown_timeout = \"3s\"",
        "shutdown_timeout = \"4s\"",
    );
    sighup(proxy);
    wait_reloads(c, 1).await;
    let log = proxy.log_text();
    assert!(
        log.contains("test.rl_a invalidated (disabled)")
            && log.contains("needs a restart (running value kept): proxy"),
        "{log}"
    );
    assert_eq!(c.id(), id, "the client stayed connected");
    assert_eq!(second_read(c, A1).await, "bypass(table_disabled)");
    assert_eq!(last(c).await, "bypass(table_disabled)");
    assert_eq!(
        second_read(c, B1).await,
        "hit",
        "other tables keep their entries"
    );
    let err = Conn::new(login(proxy.port, "rl_app", "old"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, mysql_async::Error::Server(e) if e.code == 1045),
        "{err:?}"
    );
    let mut app = Conn::new(login(proxy.port, "rl_app", "new")).await.unwrap();
    let v: Option<String> = app.query_first(B1).await.unwrap();
    assert_eq!(v.as_deref(), Some("b"));
    let out = cli(
        proxy.port,
        "test",
        "SELECT CURRENT_USER()",
        &["-url_new", "-pn3w"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("rl_new@%"));
    probe(proxy);
    let d = Deadline::new(Duration::from_secs(5), "debug line logged");
    while !proxy.log_text().contains("handshake failed") {
        d.tick().await;
    }
}

/// (2) Refused with every problem named; the running configuration stays.
/// Returns the last good file.
async fn an_invalid_file_changes_nothing(proxy: &Proxy, c: &mut Conn) -> String {
    let good = std::fs::read_to_string(&proxy.config).unwrap();
    edit(
        proxy,
        "ttl = \"60s\"",
        "ttl = \"60s\"\nmax_memroy = 1\ntll = \"5s\"",
    );
    let err = c.query_drop("SQLCACHE RELOAD").await.unwrap_err();
    let msg = format!("{err:?}");
    assert!(
        matches!(&err, mysql_async::Error::Server(e) if e.code == 1105 && e.state == "HY000")
            && msg.contains("running configuration is kept"),
        "{msg}"
    );
    assert!(
        msg.contains("cache.max_memroy") && msg.contains("cache.tll"),
        "{msg}"
    );
    let log = proxy.log_text();
    assert!(
        log.contains("reload refused") && log.contains("cache.tll"),
        "{log}"
    );
    // A file that does not parse at all.
    std::fs::write(&proxy.config, format!("{good}\n[cache\n")).unwrap();
    sighup(proxy);
    let d = Deadline::new(Duration::from_secs(10), "second refusal");
    while status(c, "config_reload_failures").await != "2" {
        d.tick().await;
    }
    assert_eq!(second_read(c, A1).await, "bypass(table_disabled)");
    Conn::new(login(proxy.port, "rl_app", "new")).await.unwrap();

    good
}

/// (3) By statement: rl_a enabled again with a 1 s TTL, and a result limit
/// that one of its rows exceeds.
async fn by_statement_ttl_and_result_limit(proxy: &Proxy, c: &mut Conn, good: &str) {
    std::fs::write(&proxy.config, good).unwrap();
    edit(proxy, "enabled = false\n", "ttl = \"1s\"\n");
    edit(
        proxy,
        "ttl = \"60s\"",
        "ttl = \"60s\"\nmax_result_bytes = 80",
    );
    c.query_drop("SQLCACHE RELOAD").await.unwrap();
    let info = c.info().into_owned();
    assert!(info.starts_with("applied: cache settings"), "{info}");
    assert!(
        info.contains("needs a restart (running value kept): proxy"),
        "still pending until a restart: {info}"
    );
    assert_eq!(second_read(c, A1).await, "hit");
    let _: Option<String> = c.query_first(A2).await.unwrap();
    assert_eq!(last(c).await, "miss(not stored: too_large)");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _: Option<String> = c.query_first(A1).await.unwrap();
    assert!(last(c).await.starts_with("miss"), "the 1 s TTL expired it");
}

/// (4) max_memory: the in-process cache starts empty, then fills.
async fn max_memory_starts_the_cache_empty(proxy: &Proxy, c: &mut Conn) {
    assert_eq!(second_read(c, B1).await, "hit");
    edit(
        proxy,
        "ttl = \"60s\"",
        "ttl = \"60s\"\nmax_memory = \"8MiB\"",
    );
    c.query_drop("SQLCACHE RELOAD").await.unwrap();
    assert_eq!(status(c, "entries").await, "0");
    assert_eq!(second_read(c, B1).await, "hit");
    assert_eq!(status(c, "config_reloads").await, "3");
}
