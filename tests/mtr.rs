//! MariaDB's own regression tests through the proxy (`bench/mtr.sh`): each
//! test of `tests/mtr/ci.list` passes through sqlcache when it passes
//! directly against the same private MariaDB, unless
//! `tests/mtr/differences.txt` gives the deliberate limit that explains it.
//! The list is small so CI stays short; the note of issue 20 has the
//! figures for `tests/mtr/wide.list`.

use std::process::Command;

#[test]
fn mariadb_regression_tests_pass_through_the_proxy_as_they_do_directly() {
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/mtr.sh"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mtr/ci.list"))
        .env("SQLCACHE_BIN", env!("CARGO_BIN_EXE_sqlcache"))
        .output()
        .expect("run bench/mtr.sh");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let summary = text
        .lines()
        .find(|l| l.starts_with("summary: "))
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    // Something ran and passed, or the harness proves nothing.
    let direct: usize = summary
        .split("pass directly ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(direct >= 5, "{text}");
}
