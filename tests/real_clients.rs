//! Third-party clients through the proxy vs directly: the `mariadb` CLI and
//! PyMySQL (types, errors, transactions, multiple result sets).

mod common;

use common::*;

fn setup_cli_table(db: &MariaDb) {
    db.sql_socket(
        "CREATE TABLE IF NOT EXISTS test.cli_t (id INT PRIMARY KEY, s VARCHAR(20), b VARBINARY(10), d DECIMAL(10,3), t DATETIME(3), n INT); \
         REPLACE INTO test.cli_t VALUES (1, 'héllo', x'00ff', 1.5, '2024-01-01 10:00:00.123', NULL), (2, 'tab\there', NULL, -2, NULL, 7);",
    );
}

#[test]
fn mariadb_cli_batch_output_is_identical() {
    let db = mariadb();
    setup_cli_table(db);
    let proxy = Proxy::start(db, "", "");
    let script = "SELECT * FROM cli_t ORDER BY id; SELECT 1+1, 'x', NULL; SHOW TABLES LIKE 'cli%'; \
                  SELECT COUNT(*) FROM cli_t; UPDATE cli_t SET n = n WHERE id = 2; SELECT DATABASE();";
    for extra in [
        &[][..],
        &["--column-type-info"][..],
        &["-vvv"][..],
        &["--xml"][..],
    ] {
        let a = cli(db.port, "test", script, extra);
        let b = cli(proxy.port, "test", script, extra);
        assert!(
            a.status.success(),
            "direct: {}",
            String::from_utf8_lossy(&a.stderr)
        );
        assert!(
            b.status.success(),
            "proxy: {}",
            String::from_utf8_lossy(&b.stderr)
        );
        let norm = |o: &[u8]| {
            // Timings differ ("(0.001 sec)"); everything else must not.
            let s = String::from_utf8_lossy(o).into_owned();
            s.lines()
                .map(|l| match l.find(" sec)") {
                    Some(_) => l.split(" (").next().unwrap_or(l).to_string(),
                    None => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            norm(&a.stdout),
            norm(&b.stdout),
            "cli output with {extra:?}"
        );
    }
    // Errors: same text, same exit status.
    let a = cli(db.port, "test", "SELECT * FROM nope", &[]);
    let b = cli(proxy.port, "test", "SELECT * FROM nope", &[]);
    assert_eq!(a.status.code(), b.status.code());
    assert_eq!(
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    // Unknown database at connect.
    let b = cli(proxy.port, "no_such_db", "SELECT 1", &[]);
    assert!(!b.status.success());
    assert!(
        String::from_utf8_lossy(&b.stderr).contains("1049"),
        "{}",
        String::from_utf8_lossy(&b.stderr)
    );
}

#[test]
fn pymysql_types_errors_and_result_sets_match() {
    let db = mariadb();
    let proxy = Proxy::start(db, "", "");
    let (d, p) = (db.port.to_string(), proxy.port.to_string());
    python_check("pymysql_compare.py", &[&d, &p], || proxy.log_text());
}

#[test]
fn hostile_and_unusual_input_gets_errors_and_the_proxy_survives() {
    let db = mariadb();
    let mut proxy = Proxy::start(db, "", "");
    python_check("negative.py", &[&proxy.port.to_string()], || {
        proxy.log_text()
    });
    assert!(proxy.alive(), "proxy died");
    assert!(
        !proxy.log_text().contains("panicked"),
        "{}",
        proxy.log_text()
    );
}
