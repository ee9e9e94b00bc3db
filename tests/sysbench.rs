//! sysbench oltp_read_write through the proxy, prepared and text protocol.

mod common;

use common::*;
use std::process::Command;

fn sysbench(port: u16, args: &[&str]) -> (bool, String) {
    let out = Command::new("sysbench")
        .arg("oltp_read_write")
        .args([
            "--mysql-host=127.0.0.1",
            "--mysql-user=root",
            "--mysql-password=",
            "--mysql-db=test",
        ])
        .arg(format!("--mysql-port={port}"))
        // Only deadlocks (1213) may be ignored: any other error is fatal.
        .args([
            "--tables=2",
            "--table-size=10000",
            "--db-driver=mysql",
            "--mysql-ignore-errors=1213",
        ])
        .args(args)
        .output()
        .expect("sysbench (apt-get install sysbench)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn field(text: &str, label: &str) -> u64 {
    text.lines()
        .find(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `{label}` in sysbench output:\n{text}"))
}

#[test]
fn oltp_read_write_runs_without_errors_in_both_protocols() {
    let db = mariadb();
    let proxy = Proxy::start(db, "", "");
    let (ok, text) = sysbench(proxy.port, &["prepare"]);
    assert!(ok, "prepare through the proxy failed:\n{text}");
    for mode in ["--db-ps-mode=auto", "--db-ps-mode=disable"] {
        let (ok, text) = sysbench(
            proxy.port,
            &[
                "--threads=4",
                "--time=8",
                "--report-interval=0",
                mode,
                "run",
            ],
        );
        assert!(
            ok,
            "{mode}: sysbench failed:\n{text}\nproxy log:\n{}",
            proxy.log_text()
        );
        let transactions = field(&text, "transactions:");
        let errors = field(&text, "ignored errors:");
        let reconnects = field(&text, "reconnects:");
        println!(
            "{mode}: {transactions} transactions, {errors} ignored errors, {reconnects} reconnects"
        );
        assert!(transactions > 0, "{text}");
        // A deadlock is MariaDB's own answer under concurrency (it happens
        // direct too); every other error would have failed the run above.
        assert!(
            errors * 100 <= transactions,
            "{mode}: too many deadlocks:\n{text}"
        );
        assert_eq!(reconnects, 0, "{mode}:\n{text}");
    }
    let (ok, text) = sysbench(proxy.port, &["cleanup"]);
    assert!(ok, "{text}");
}
