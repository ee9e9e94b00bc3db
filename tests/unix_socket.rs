//! The proxy's Unix socket (`proxy.socket`), with real clients and a real
//! MariaDB: the `mariadb` CLI, PyMySQL and mysql_async reach it and get the
//! same answers and cache hits as over TCP; it counts as secure transport
//! and shares `max_connections`; its file is replaced after a crash,
//! refused while another proxy listens on it, and removed at shutdown.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::sqlcache::{last, warm_as};
use common::*;
use mysql_async::prelude::*;
use mysql_async::Conn;

/// A proxy listening on TCP and on a Unix socket in a fresh directory.
fn socket_proxy(db: &MariaDb, path: &Path, proxy_extra: &str, backend_extra: &str) -> Proxy {
    let keys = format!("socket = \"{}\"\n{proxy_extra}", path.display());
    let proxy = Proxy::start_with(db.port, &keys, backend_extra, "");
    // Both listeners are bound before the proxy accepts on either.
    assert!(path.exists(), "no socket file at {}", path.display());
    proxy
}

fn socket_path() -> PathBuf {
    tempdir().join("sqlcache.sock")
}

fn socket_opts(path: &Path, db: &str) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .socket(Some(path.to_string_lossy()))
        .user(Some("root"))
        .pass(Some(""))
        .db_name(Some(db))
        .into()
}

/// The `mariadb` CLI in batch mode on a Unix socket.
fn cli_socket(path: &Path, sql: &str, extra: &[&str]) -> std::process::Output {
    Command::new("mariadb")
        .args(["--no-defaults", "-uroot", "--batch", "--protocol=SOCKET"])
        .arg(format!("--socket={}", path.display()))
        .args(extra)
        .args(["test", "-e", sql])
        .output()
        .expect("mariadb CLI")
}

/// A table of its own per test (they share one MariaDB).
fn setup(db: &MariaDb, table: &str) {
    db.sql_socket(&format!(
        "CREATE TABLE IF NOT EXISTS test.{table} (id INT PRIMARY KEY, v VARCHAR(20)); \
         REPLACE INTO test.{table} VALUES (1, 'one'), (2, 'two');"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_async_on_the_socket_gets_hits_and_sees_its_own_writes() {
    let db = mariadb();
    setup(db, "us_w");
    let path = socket_path();
    let proxy = socket_proxy(db, &path, "", "");
    let mut c = Conn::new(socket_opts(&path, "test")).await.unwrap();
    let v: Option<String> = warm_as(&mut c, "SELECT v FROM us_w WHERE id = 1").await;
    assert_eq!(v.as_deref(), Some("one"));
    let q = "SELECT v FROM us_w WHERE id = ?";
    for _ in 0..2 {
        let v: Option<String> = c.exec_first(q, (2,)).await.unwrap();
        assert_eq!(v.as_deref(), Some("two"));
    }
    assert_eq!(last(&mut c).await, "hit", "{}", proxy.log_text());
    c.query_drop("UPDATE us_w SET v = 'uno' WHERE id = 1")
        .await
        .unwrap();
    let v: Option<String> = c
        .query_first("SELECT v FROM us_w WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("uno"), "a write is seen at once");
    // The same entries serve a TCP client of the same proxy.
    let mut t = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let v: Option<String> = t.exec_first(q, (2,)).await.unwrap();
    assert_eq!(v.as_deref(), Some("two"));
    assert_eq!(last(&mut t).await, "hit");
}

#[test]
fn the_cli_and_pymysql_on_the_socket_answer_as_over_tcp() {
    let db = mariadb();
    setup(db, "us_t");
    let path = socket_path();
    let proxy = socket_proxy(db, &path, "", "");
    let script = "SELECT * FROM us_t ORDER BY id; SELECT v FROM us_t WHERE id = 2; \
                  SELECT v FROM us_t WHERE id = 2; SHOW SQLCACHE LAST; SELECT * FROM nope";
    let tcp = cli(proxy.port, "test", script, &["--force"]);
    let unix = cli_socket(&path, script, &["--force"]);
    assert_eq!(
        String::from_utf8_lossy(&unix.stdout),
        String::from_utf8_lossy(&tcp.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&unix.stderr),
        String::from_utf8_lossy(&tcp.stderr)
    );
    let out = String::from_utf8_lossy(&unix.stdout);
    assert!(out.contains("\thit") || out.contains("hit\n"), "{out}");
    let py = "import sys, pymysql\n\
              kw = dict(user='root', password='', database='test')\n\
              c = pymysql.connect(unix_socket=sys.argv[1], **kw) if sys.argv[1] else pymysql.connect(host='127.0.0.1', port=int(sys.argv[2]), **kw)\n\
              cur = c.cursor(); cur.execute('SELECT id, v FROM us_t WHERE id = %s', (1,)); print(cur.fetchall())\n";
    let run = |sock: &str| {
        let out = Command::new("python3")
            .args(["-c", py, sock, &proxy.port.to_string()])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let on_socket = run(&path.to_string_lossy());
    assert_eq!(on_socket, run(""));
    assert!(on_socket.contains("'one'"), "{on_socket}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_is_secure_transport_and_shares_max_connections() {
    let db = mariadb();
    let tls = required_tls();
    let path = socket_path();
    let proxy = socket_proxy(db, &path, "max_connections = 2", &tls);
    // TCP without TLS is refused; the socket, like MySQL's, is not.
    let out = cli(proxy.port, "test", "SELECT 1", &["--skip-ssl"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("3159"), "{err}");
    let out = cli_socket(&path, "SELECT 40 + 2", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("42"));
    // One slot pool for both listeners.
    let _a = Conn::new(socket_opts(&path, "test")).await.unwrap();
    let _b = Conn::new(socket_opts(&path, "test")).await.unwrap();
    let err = Conn::new(socket_opts(&path, "test"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("1040"), "{err}");
}

#[test]
fn the_socket_file_is_replaced_after_a_crash_and_removed_at_shutdown() {
    let db = mariadb();
    let path = socket_path();
    let mut first = socket_proxy(db, &path, "", "");
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(path.exists(), "SIGKILL leaves the file behind");
    let mut second = socket_proxy(db, &path, "", "");
    let out = cli_socket(&path, "SELECT 7 * 6", &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("42"));
    // A third proxy on the same path while the second listens: refused,
    // and the second's file is left alone.
    let config = std::fs::read_to_string(&second.config).unwrap();
    let other = second.config.with_file_name("other.toml");
    let listen = format!("listen = \"127.0.0.1:{}\"", second.port);
    let moved = format!("listen = \"127.0.0.1:{}\"", free_port());
    std::fs::write(&other, config.replace(&listen, &moved)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sqlcache"))
        .arg("--config")
        .arg(&other)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("another process listens"), "{err}");
    let out = cli_socket(&path, "SELECT 6 * 7", &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("42"));
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(second.child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    while second.child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(10), "no exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!path.exists(), "a graceful stop removes the file");
}
