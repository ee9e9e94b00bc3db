//! The proxy as a process: config checking, TLS, backend outages, limits,
//! graceful shutdown.

mod common;

use common::sqlcache::Deadline;
use common::*;
use mysql_async::prelude::*;
use mysql_async::Conn;
use std::process::Command;
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sqlcache"))
}

#[test]
fn check_config_accepts_the_shipped_file_and_names_every_bad_key() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/proxy.toml");
    let out = bin()
        .args(["--check-config", "--config", shipped])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempdir();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[proxy]\nlisten = \"x\"\nlistn = 1\n[backend]\nprot = 3\n[[users]]\nname = \"a\"\n",
    )
    .unwrap();
    let out = bin()
        .args(["--check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("proxy.listn") && err.contains("backend.prot"),
        "{err}"
    );
    std::fs::write(
        &bad,
        "[proxy]\nlisten = \"x\"\n[backend]\npool_max = 0\n[accounts]\nsource = \"config\"\n",
    )
    .unwrap();
    let out = bin()
        .args(["--check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("proxy.listen") && err.contains("backend.pool_max") && err.contains("users"),
        "{err}"
    );
    // SQLCACHE_CONFIG names the file when --config is absent.
    let out = bin()
        .arg("--check-config")
        .env("SQLCACHE_CONFIG", shipped)
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn tls_is_offered_and_can_be_required() {
    let db = mariadb();
    let tls = required_tls();
    let proxy = Proxy::start_with(db.port, "", &tls, "");
    let out = cli(
        proxy.port,
        "test",
        "status; SELECT 1",
        &["--ssl", "--skip-ssl-verify-server-cert"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Cipher in use"), "no TLS in: {text}");
    let out = cli(proxy.port, "test", "SELECT 1", &["--skip-ssl"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3159") || err.contains("insecure"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_outage_gives_errors_and_recovery_needs_no_restart() {
    let port = free_port();
    let proxy = Proxy::start_with(port, "", "", "");
    // No settings probe at connect (it would need the backend).
    let o = mysql_async::OptsBuilder::from_opts(opts(proxy.port, "test"))
        .db_name(None::<String>)
        .prefer_socket(false)
        .max_allowed_packet(Some(16 << 20))
        .wait_timeout(Some(28800));
    // No MariaDB yet: login works (the proxy is up), statements get 2003.
    let mut c = Conn::new(o.clone()).await.unwrap();
    let err = c.query_drop("SELECT 1").await.unwrap_err().to_string();
    assert!(err.contains("2003"), "{err}");
    // Backend comes up: the same client recovers.
    let db = MariaDb::start_on(port, &[]);
    let one: i32 = c.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    // Backend goes away: a clear error, no hang, and the proxy stays up.
    db.stop();
    let started = Instant::now();
    let err = c.query_drop("SELECT 1").await.unwrap_err().to_string();
    assert!(err.contains("2013") || err.contains("2003"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut d = Conn::new(o).await.unwrap();
    let err = d.query_drop("SELECT 1").await.unwrap_err().to_string();
    assert!(err.contains("2003"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_is_enforced_with_error_1040() {
    let db = mariadb();
    let proxy = Proxy::start_with(db.port, "max_connections = 2", "", "");
    let a = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let b = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let err = Conn::new(opts(proxy.port, "test"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("1040"), "{err}");
    drop(a);
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    Conn::new(opts(proxy.port, "test")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_sessions_then_exits_zero() {
    let db = mariadb();
    let mut proxy = Proxy::start(db, "", "");
    let mut idle = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let mut busy = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let _ = idle.query_drop("SELECT 1").await;
    let running = tokio::spawn(async move {
        let v: i32 = busy
            .query_first("SELECT SLEEP(1) + 5")
            .await
            .unwrap()
            .unwrap();
        v
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(proxy.child.id() as i32, libc::SIGTERM) };
    // The statement in flight completes.
    assert_eq!(running.await.unwrap(), 5);
    let started = Instant::now();
    let status = loop {
        if let Some(s) = proxy.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "proxy did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    // New connections are refused once it has stopped accepting.
    assert!(std::net::TcpStream::connect(("127.0.0.1", proxy.port)).is_err());
}

#[test]
fn caching_sha2_clients_are_switched_to_native_password() {
    let db = mariadb();
    let users = "[[users]]\nname = \"root\"\npassword = \"\"\n[[users]]\nname = \"carol\"\npassword = \"s3cret\"\n";
    let proxy = Proxy::start(db, "", users);
    python_check(
        "auth_switch.py",
        &[&proxy.port.to_string(), "carol", "s3cret"],
        || proxy.log_text(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_have_a_span_per_connection() {
    let db = mariadb();
    let dir = tempdir();
    let proxy = Proxy::start_with(db.port, "", "", "");
    drop(proxy);
    // Same config with JSON logs at debug level for sqlcache.
    let port = free_port();
    let cfg = dir.join("json.toml");
    std::fs::write(
        &cfg,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:{port}\"\n[backend]\nport = {}\n[[users]]\nname = \"root\"\n[log]\nformat = \"json\"\nlevel = \"sqlcache=debug,info\"\n",
            db.port
        ),
    )
    .unwrap();
    let log = dir.join("json.log");
    let mut child = bin()
        .arg("--config")
        .arg(&cfg)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut c = loop {
        match Conn::new(opts(port, "test")).await {
            Ok(c) => break c,
            Err(_) if start.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    c.query_drop("SELECT 1").await.unwrap();
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let statement = text
        .lines()
        .find(|l| l.contains("\"statement\""))
        .unwrap_or_else(|| panic!("no statement event in:\n{text}"));
    assert!(
        statement.starts_with('{') && statement.contains("\"conn\""),
        "{statement}"
    );
    assert!(
        statement.contains("\"route\"") && statement.contains("elapsed_us"),
        "{statement}"
    );
}

/// `backend.query_timeout` bounds text and prepared statements alike: the
/// client gets 1969, the backend statement is killed, the session goes on.
#[tokio::test]
async fn query_timeout_interrupts_text_and_prepared_statements() {
    let db = mariadb();
    let proxy = Proxy::start(db, "query_timeout = \"400ms\"", "");
    let mut c = Conn::new(opts(proxy.port, "test")).await.unwrap();
    let mut root = Conn::new(opts(db.port, "test")).await.unwrap();
    for prepared in [false, true] {
        let started = Instant::now();
        let r = if prepared {
            c.exec_drop("SELECT SLEEP(?)", (30,)).await
        } else {
            c.query_drop("SELECT SLEEP(30)").await
        };
        match r {
            Err(mysql_async::Error::Server(se)) => {
                assert_eq!((se.code, se.state.as_str()), (1969, "70100"), "{se:?}");
            }
            other => panic!("prepared={prepared}: {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        // The statement was killed on MariaDB, not left running.
        let d = Deadline::new(Duration::from_secs(10), "backend statement killed");
        loop {
            let sleeping: Vec<u64> = root
                .query("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(%'")
                .await
                .unwrap();
            if sleeping.is_empty() {
                break;
            }
            d.tick().await;
        }
        let one: Option<i32> = c.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1), "the session goes on");
    }
}
