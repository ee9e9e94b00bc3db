//! Clients nobody here wrote, each compared through the proxy with the same
//! calls straight to MariaDB (values, column metadata the client exposes,
//! errors with code and SQLSTATE) and shown to get cache hits for its point
//! reads (`SHOW SQLCACHE LAST`):
//! * JDBC: MariaDB Connector/J and MySQL Connector/J, client-side and
//!   `useServerPrepStmts=true`, a HikariCP pool, a rolled-back transaction
//!   (`tests/jvm/JdbcCompare.java`);
//! * Go `database/sql` with go-sql-driver/mysql, `interpolateParams` off
//!   and on (`tests/go/`);
//! * Node `mysql2`, `query` and `execute` (`tests/node/compare.js`).
//!
//! Go and Node run twice: over TCP and on the proxy's Unix socket
//! (`proxy.socket`). Each program prints `N passed, M failed`; the test asserts no failure.

mod common;

use std::process::Command;
use std::sync::Once;

use common::*;

fn setup() -> &'static MariaDb {
    static TABLE: Once = Once::new();
    let db = mariadb();
    TABLE.call_once(|| {
        db.sql_socket(
            "CREATE TABLE test.jt (id INT PRIMARY KEY, v VARCHAR(20), d DECIMAL(20,6), \
             bu BIGINT UNSIGNED, f DOUBLE, dt DATE, dtm DATETIME(6), tm TIME, vb VARBINARY(8), \
             en ENUM('a','b'), b1 BIT(1), tf TINYINT(1), n INT NULL); \
             INSERT INTO test.jt VALUES \
             (1, 'héllo ✓', -12345678901234.5, 18446744073709551615, -1.5, '2024-02-29', \
              '2024-02-29 13:14:15.123456', '-838:59:59', x'00ff', 'b', b'1', 1, NULL), \
             (2, '', 0, 0, 0.001, '1970-01-01', '1970-01-01 00:00:00', '00:00:00', x'', 'a', b'0', 0, 7), \
             (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
        );
    });
    db
}

/// Runs a client program against a fresh proxy and MariaDB: over TCP, and
/// with `on_socket` once more on the proxy's Unix socket (the program is
/// given its path in place of the port).
fn client_check(what: &str, cmd: impl Fn() -> Command, on_socket: bool) {
    let db = setup();
    let socket = tempdir().join("sqlcache.sock");
    let keys = format!("socket = \"{}\"", socket.display());
    let proxy = Proxy::start_with(db.port, &keys, "", "");
    let mut targets = vec![proxy.port.to_string()];
    if on_socket {
        targets.push(socket.display().to_string());
    }
    for to in targets {
        let mut c = cmd();
        c.arg(&to).arg(db.port.to_string());
        run_check(&format!("{what} via {to}"), &mut c, || proxy.log_text());
    }
}

#[test]
fn jdbc_connectors_hikari_and_transactions_match_direct() {
    let cmd = || {
        let mut cmd = Command::new(jvm::java());
        cmd.arg("-cp")
            .arg(jvm::classpath("clients"))
            .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
            .arg(jvm::source("JdbcCompare.java"));
        cmd
    };
    // TCP only: MySQL Connector/J reaches a Unix socket only through an
    // extra library (junixsocket).
    client_check("JdbcCompare.java", cmd, false);
}

#[test]
fn go_sql_driver_matches_direct_with_and_without_interpolation() {
    let cmd = || {
        let mut cmd = Command::new("go");
        cmd.args(["run", "."])
            .current_dir(format!("{}/tests/go", env!("CARGO_MANIFEST_DIR")));
        cmd
    };
    client_check("tests/go (go-sql-driver/mysql)", cmd, true);
}

#[test]
fn node_mysql2_query_and_execute_match_direct() {
    let dir = format!("{}/tests/node", env!("CARGO_MANIFEST_DIR"));
    assert!(
        std::path::Path::new(&dir)
            .join("node_modules/mysql2")
            .is_dir(),
        "mysql2 is not installed in {dir}: run `npm ci --prefix tests/node` (.ci/run does)"
    );
    let cmd = || {
        let mut cmd = Command::new("node");
        cmd.arg(format!("{dir}/compare.js"));
        cmd
    };
    client_check("tests/node/compare.js (mysql2)", cmd, true);
}
