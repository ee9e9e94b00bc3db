//! Crash and come back: a MariaDB under a supervisor that `kill -9` can
//! take down and bring back on the same data, port and binlog, and a proxy
//! started again on its own configuration after `kill -9`.
//!
//! The supervisor is a shell loop under the usual watchdog: whenever
//! mariadbd dies it starts it again, unless a `hold` file is present (then
//! it waits for the file to go). So `crash` is: hold, `kill -9`, wait for
//! the port to close; `recover` is: remove the hold, wait for the port.
//! InnoDB recovers what was committed (`innodb_flush_log_at_trx_commit=2`
//! writes the log to the OS at every commit, and a process crash loses
//! nothing the OS has).

use std::process::Command;
use std::time::{Duration, Instant};

use super::{
    free_port, install, server_args, spawn_proxy, spawn_watched, wait_port, MariaDb, Proxy,
};

impl MariaDb {
    /// A private server that `crash` and `recover` can stop and start.
    pub fn start_supervised(extra: &[&str]) -> MariaDb {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "sqlcache-mariadb-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        install(&dir.join("data"));
        let args: Vec<String> = server_args(&dir, port, extra)
            .iter()
            .map(|a| format!("'{a}'"))
            .collect();
        let (hold, pid) = (dir.join("hold"), dir.join("mariadbd.pid"));
        spawn_watched(
            &format!(
                "PATH=$PATH:/usr/sbin:/sbin; (while :; do while [ -f '{hold}' ]; do sleep 0.05; done; \
                 mariadbd {args} >/dev/null 2>&1; done)",
                hold = hold.display(),
                args = args.join(" ")
            ),
            "",
            &format!(
                "touch '{hold}'; kill -9 $(cat '{pid}') 2>/dev/null; sleep 1; rm -rf '{dir}'",
                hold = hold.display(),
                pid = pid.display(),
                dir = dir.display()
            ),
            "supervised mariadbd",
        );
        let log = dir.join("error.log");
        wait_port(
            port,
            Duration::from_secs(60),
            "supervised mariadbd",
            Some(&log),
        );
        let db = MariaDb {
            port,
            socket: dir.join("mysqld.sock"),
            dir,
        };
        db.sql_socket(
            "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; \
             GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; \
             CREATE DATABASE IF NOT EXISTS test; FLUSH PRIVILEGES;",
        );
        db
    }

    /// `kill -9` of a supervised server, which stays down until `recover`.
    pub fn crash(&self) {
        std::fs::write(self.dir.join("hold"), b"").unwrap();
        let pid = std::fs::read_to_string(self.dir.join("mariadbd.pid")).unwrap_or_default();
        let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "mariadbd did not die"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lets the supervisor start the server again; returns once it listens.
    pub fn recover(&self) {
        std::fs::remove_file(self.dir.join("hold")).unwrap();
        let log = self.dir.join("error.log");
        wait_port(
            self.port,
            Duration::from_secs(60),
            "recovered mariadbd",
            Some(&log),
        );
    }
}

impl Proxy {
    /// `kill -9`: no shutdown, no goodbye to clients or to the shared tier.
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the proxy again on the configuration it was started with.
    pub fn recover(&mut self) {
        self.child = spawn_proxy(&self.config, &self.log);
        wait_port(
            self.port,
            Duration::from_secs(20),
            "restarted sqlcache",
            Some(&self.log),
        );
    }
}
