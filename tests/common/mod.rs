//! Shared test rig: a private MariaDB per test binary and the real
//! `sqlcache` binary per test.
//!
//! The MariaDB is installed into a temp dir (`mariadb-install-db
//! --no-defaults`) and started with `mariadbd --no-defaults` on a free
//! loopback port with the binlog settings the change-feed work needs. A
//! watchdog shell stops it and removes its directory when the test process
//! exits. Nothing here touches a MariaDB on 3306. If the server cannot start,
//! the test panics with the reason (it never skips).
#![allow(dead_code)]

pub mod binary;
pub mod broker;
pub mod cdc;
pub mod crash;
pub mod debezium;
pub mod ignite;
pub mod jvm;
pub mod relay;
pub mod sink;
pub mod sqlcache;
pub mod topic;
pub mod types;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct MariaDb {
    pub port: u16,
    pub socket: PathBuf,
    pub dir: PathBuf,
}

/// A loopback port nobody listens on, never the same twice in this process
/// (two servers started at once could otherwise be handed one port, and
/// the loser's client would silently reach the winner), and below the
/// kernel's ephemeral range: a server that binds seconds after it was
/// handed its port (Ignite, Kafka) must not find it taken by some client's
/// outgoing connection meanwhile, which picks its local port from that range.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let (lo, hi) = below_ephemeral();
    // Start where this process's pid points, so test binaries run one
    // after another rarely try the same ports first.
    let span = u32::from(hi - lo);
    let start = std::process::id() * 7919 % span;
    for i in 0..span {
        let port = lo + ((start + i) % span) as u16;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free loopback port in {lo}..{hi}");
}

/// Ports from 10000 up to the start of the ephemeral range.
fn below_ephemeral() -> (u16, u16) {
    let first = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    assert!(
        first > 12000,
        "ephemeral ports start at {first}: too low for the test rig's servers"
    );
    (10000, first)
}

pub fn wait_port(port: u16, timeout: Duration, what: &str, log: Option<&Path>) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > timeout {
            let tail = log
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            panic!("{what} did not listen on 127.0.0.1:{port} within {timeout:?}\n{tail}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The private MariaDB shared by the tests of this binary.
pub fn mariadb() -> &'static MariaDb {
    static DB: OnceLock<MariaDb> = OnceLock::new();
    DB.get_or_init(|| MariaDb::start(&[]))
}

/// A fresh data directory (`mariadb-install-db`).
/// Its bootstrap gets a temp directory of its own: in a shared `/tmp`,
/// concurrent bootstraps removed each other's temporary tables
/// (`#sql-temptable-…`) and failed with "Unknown table
/// 'mysql.tmp_user_sys'" (2 of 24 installs, three at a time; none of 36
/// with their own `--tmpdir`).
fn install(data: &Path) {
    let tmp = data.with_file_name("install-tmp");
    std::fs::create_dir_all(&tmp).expect("create the install's temp directory");
    let install = Command::new("mariadb-install-db")
        .args([
            "--no-defaults",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ])
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .arg("--user=root")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run mariadb-install-db (apt-get install mariadb-server): {e}")
        });
    assert!(
        install.status.success(),
        "mariadb-install-db failed: {}{}",
        String::from_utf8_lossy(&install.stdout),
        String::from_utf8_lossy(&install.stderr)
    );
}

/// mariadbd's options for a private server in `dir` (the binlog the feeds
/// need, Debian's packaged defaults that --no-defaults drops) plus `extra`.
fn server_args(dir: &Path, port: u16, extra: &[&str]) -> Vec<String> {
    let (data, socket, log, tmp) = (
        dir.join("data"),
        dir.join("mysqld.sock"),
        dir.join("error.log"),
        dir.join("tmp"),
    );
    let mut args: Vec<String> = vec![
        "--no-defaults".into(),
        format!("--datadir={}", data.display()),
        format!("--socket={}", socket.display()),
        format!("--port={port}"),
        "--bind-address=127.0.0.1".into(),
        "--skip-name-resolve".into(),
        format!("--log-bin={}", dir.join("binlog").display()),
        "--binlog-format=ROW".into(),
        "--binlog-row-image=FULL".into(),
        "--binlog-row-metadata=FULL".into(),
        "--server-id=1".into(),
        format!("--pid-file={}", dir.join("mariadbd.pid").display()),
        format!("--log-error={}", log.display()),
        format!("--tmpdir={}", tmp.display()),
        "--innodb-buffer-pool-size=64M".into(),
        "--innodb-log-file-size=16M".into(),
        "--innodb-flush-log-at-trx-commit=2".into(),
        "--user=root".into(),
        // Debian's packaged defaults, which --no-defaults drops.
        "--character-set-server=utf8mb4".into(),
        "--collation-server=utf8mb4_general_ci".into(),
        "--max-allowed-packet=64M".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Where the error log of the server on `port` is kept if it crashes.
fn crash_log(port: u16) -> PathBuf {
    std::env::temp_dir().join(format!(
        "sqlcache-mariadb-crashed-{}-{port}.log",
        std::process::id()
    ))
}

impl MariaDb {
    /// If this server crashed: the end of its error log (which names the
    /// statement it died in), for a failing test's message; else "".
    pub fn crash_report(&self) -> String {
        let kept = crash_log(self.port);
        let start = Instant::now();
        // The watchdog copies the log within its 0.5 s poll of the server.
        while !kept.exists() && self.dir.exists() && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(100));
        }
        match std::fs::read_to_string(&kept) {
            Ok(log) => {
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(60)..].join("\n");
                format!(
                    "\n--- private mariadbd CRASHED; its error log ({}):\n{tail}",
                    kept.display()
                )
            }
            Err(_) => String::new(),
        }
    }

    /// Installs and starts a private server; `extra` are mariadbd options.
    pub fn start(extra: &[&str]) -> MariaDb {
        Self::start_on(free_port(), extra)
    }

    /// Stops the server (its watchdog then removes its files).
    pub fn stop(&self) {
        let _ = Command::new("mariadb-admin")
            .args(["--no-defaults", "-uroot", "shutdown"])
            .arg(format!("--socket={}", self.socket.display()))
            .output();
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && start.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Like `start`, on a given port.
    pub fn start_on(port: u16, extra: &[&str]) -> MariaDb {
        let dir = std::env::temp_dir().join(format!(
            "sqlcache-mariadb-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        install(&dir.join("data"));
        let socket = dir.join("mysqld.sock");
        let log = dir.join("error.log");
        // A temp dir of its own: internal temporary tables are files named
        // by the server's pid, and pids are reused here (pid_max 32768), so
        // a file left behind by a killed server must never meet a new one.
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let args = server_args(&dir, port, extra);
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        // Watchdog: stop the server and remove its files when this process
        // ends; the error log of a server that crashed is kept first.
        let kept = crash_log(port);
        spawn_watched(
            &format!("PATH=$PATH:/usr/sbin:/sbin; mariadbd {}", quoted.join(" ")),
            "",
            &format!(
                "wait $pid; grep -q 'got signal' '{log}' && cp '{log}' '{kept}'; rm -rf '{dir}'",
                log = log.display(),
                kept = kept.display(),
                dir = dir.display()
            ),
            "mariadbd",
        );
        wait_port(
            port,
            Duration::from_secs(60),
            "private mariadbd",
            Some(&log),
        );
        let db = MariaDb { port, socket, dir };
        // Let root in over TCP from 127.0.0.1 (skip-name-resolve: no 'localhost').
        db.sql_socket(
            "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; \
             GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; \
             CREATE DATABASE IF NOT EXISTS test; FLUSH PRIVILEGES;",
        );
        db
    }

    /// Runs SQL as root over the Unix socket with the mariadb CLI.
    pub fn sql_socket(&self, sql: &str) -> String {
        let out = Command::new("mariadb")
            .args([
                "--no-defaults",
                "-uroot",
                "--batch",
                "--default-character-set=utf8mb4",
            ])
            .arg(format!("--socket={}", self.socket.display()))
            .arg("-e")
            .arg(sql)
            .output()
            .expect("mariadb CLI");
        assert!(
            out.status.success(),
            "{sql}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            self.crash_report()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }
}

/// The real `sqlcache` binary, killed on drop.
pub struct Proxy {
    pub port: u16,
    pub child: Child,
    pub log: PathBuf,
    pub config: PathBuf,
}

impl Proxy {
    /// Starts a proxy in front of `db`; `extra` is appended to the config
    /// (it may add keys to `[backend]`, which is the last table before users).
    pub fn start(db: &MariaDb, backend_extra: &str, users: &str) -> Proxy {
        Self::start_with(db.port, "", backend_extra, users)
    }

    /// Full control: backend port, extra `[proxy]` keys, extra `[backend]`
    /// keys (which may be followed by more tables), users.
    pub fn start_with(
        backend_port: u16,
        proxy_extra: &str,
        backend_extra: &str,
        users: &str,
    ) -> Proxy {
        let port = free_port();
        let dir = tempdir();
        let config = dir.join("proxy.toml");
        let users = if users.is_empty() {
            "[[users]]\nname = \"root\"\npassword = \"\"\n"
        } else {
            users
        };
        std::fs::write(
            &config,
            format!(
                "[proxy]\nlisten = \"127.0.0.1:{port}\"\nshutdown_timeout = \"3s\"\n{proxy_extra}\n\n[backend]\nhost = \"127.0.0.1\"\nport = {backend_port}\nuser = \"root\"\npassword = \"\"\nconnect_timeout = \"2s\"\n{backend_extra}\n{users}\n[log]\nlevel = \"info,sqlcache::invalidation=debug\"\n"
            ),
        )
        .unwrap();
        let log = dir.join("proxy.log");
        let child = spawn_proxy(&config, &log);
        wait_port(port, Duration::from_secs(20), "sqlcache", Some(&log));
        Proxy {
            port,
            child,
            log,
            config,
        }
    }

    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// True while the proxy process is alive.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// The proxy binary on `config`, its log appended to `log`.
fn spawn_proxy(config: &Path, log: &Path) -> Child {
    let append = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap()
    };
    Command::new(env!("CARGO_BIN_EXE_sqlcache"))
        .arg("--config")
        .arg(config)
        .env("NO_COLOR", "1")
        .stdout(append())
        .stderr(append())
        .spawn()
        .expect("start sqlcache")
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let exited = self.child.try_wait().ok().flatten();
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- proxy on port {} (exit status: {exited:?}), last log lines:\n{}",
                self.port,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` in the background under a watchdog shell that kills it
/// when this test process exits. `after_start` runs once it started (`$pid`
/// is its process id), `on_exit` after it was killed.
#[allow(clippy::zombie_processes)] // the watchdog outlives this call by design
pub fn spawn_watched(command: &str, after_start: &str, on_exit: &str, what: &str) {
    let script = format!(
        "{command} & pid=$!; {after_start}\n\
         while kill -0 {} 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 0.5; done; kill $pid 2>/dev/null; {on_exit}",
        std::process::id()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
}

/// A `[proxy.tls]` table with `required = true` and a fresh self-signed
/// certificate (for `Proxy::start_with`'s backend_extra, the last table).
pub fn required_tls() -> String {
    let dir = tempdir();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("c.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("k.pem"), cert.key_pair.serialize_pem()).unwrap();
    format!(
        "\n[proxy.tls]\ncert = \"{}\"\nkey = \"{}\"\nrequired = true\n",
        dir.join("c.pem").display(),
        dir.join("k.pem").display()
    )
}

pub fn tempdir() -> PathBuf {
    let d = tempfile::Builder::new()
        .prefix("sqlcache-test-")
        .tempdir()
        .unwrap();
    d.keep()
}

/// mysql_async options for a port (no socket switching, so a test talking to
/// the proxy really talks to the proxy unless the proxy leaks the socket).
pub fn opts(port: u16, db: &str) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("root"))
        .pass(Some(""))
        .db_name(Some(db))
        .into()
}

/// Runs the `mariadb` CLI in batch mode against a port.
pub fn cli(port: u16, db: &str, sql: &str, extra: &[&str]) -> std::process::Output {
    Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h127.0.0.1",
            "-uroot",
            "--batch",
            "--protocol=TCP",
        ])
        .arg(format!("-P{port}"))
        .args(extra)
        .arg(db)
        .arg("-e")
        .arg(sql)
        .output()
        .expect("mariadb CLI")
}

/// Runs `tests/py/<script>` with python3 and asserts it reported
/// `N passed, 0 failed` and exited 0; `context` is shown on failure.
pub fn python_check(script: &str, args: &[&str], context: impl Fn() -> String) {
    let path = format!("{}/tests/py/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("python3");
    cmd.arg(&path).args(args);
    run_check(script, &mut cmd, context);
}

/// Runs a client program that prints `N passed, M failed`, and asserts it
/// reported no failure and exited 0; `context` is shown on failure.
pub fn run_check(what: &str, cmd: &mut Command, context: impl Fn() -> String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({cmd:?}): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains(" passed, 0 failed"),
        "{what} failed:\n{text}\n{}",
        context()
    );
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A root connection straight to MariaDB (database `test`).
pub async fn root(db: &MariaDb) -> mysql_async::Conn {
    mysql_async::Conn::new(opts(db.port, "test")).await.unwrap()
}
