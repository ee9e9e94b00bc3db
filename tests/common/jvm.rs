//! The JVM engines of the test rig (Apache Kafka, Kafka Connect with
//! Debezium, Apache Ignite) and the JDBC clients: their jars are fetched
//! from Maven Central, pinned by the POMs under `tests/jvm/`, into
//! `.tools/jvm/<component>/` by `.ci/install-jvm`. A test that needs one and
//! cannot find Java or the jars panics with what to run — it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::spawn_watched;

/// The classpath (`dir/*`) of one component, checked to exist.
pub fn classpath(component: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".tools/jvm")
        .join(component);
    let has_jars = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "jar"))
        })
        .unwrap_or(false);
    assert!(
        has_jars,
        "no jars in {}: run .ci/install-jvm (Maven fetches the pinned {component} jars)",
        dir.display()
    );
    format!("{}/*", dir.display())
}

/// The `java` on PATH, checked once to run.
pub fn java() -> &'static str {
    static CHECKED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    CHECKED.get_or_init(|| {
        let ok = Command::new("java")
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "java (17 or newer) is not on PATH: the JVM engines cannot start"
        );
    });
    "java"
}

/// A file under `tests/jvm/`.
pub fn source(name: &str) -> String {
    format!("{}/tests/jvm/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Quotes a word for `sh -c`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Flags shared by every JVM the tests start: a bounded heap and a quick,
/// frugal start on two cores (serial GC, C1 only).
pub fn test_jvm_flags(heap_mb: u32) -> Vec<String> {
    vec![
        format!("-Xmx{heap_mb}m"),
        "-XX:+UseSerialGC".into(),
        "-XX:TieredStopAtLevel=1".into(),
        "-Djava.awt.headless=true".into(),
    ]
}

/// Waits until `log` contains `ready`, panicking with the log if `pidfile`'s
/// process died or `timeout` passed first.
pub fn wait_log(log: &Path, pidfile: &Path, ready: &str, what: &str) {
    if let Err(why) = try_wait_log(log, pidfile, ready, what) {
        panic!("{why}");
    }
}

/// `wait_log` that returns why the process did not start instead.
pub fn try_wait_log(log: &Path, pidfile: &Path, ready: &str, what: &str) -> Result<(), String> {
    let timeout = Duration::from_secs(90);
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(ready) {
            return Ok(());
        }
        let dead = exited(pidfile);
        if dead || start.elapsed() > timeout {
            return Err(format!(
                "{what} did not start ({}; {:?}), log {}:\n{}",
                if dead { "it exited" } else { "timed out" },
                start.elapsed(),
                log.display(),
                super::tail(&text, 80)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `java <args>` under the test-process watchdog, output appended
/// to `log`, its pid written to `pidfile`.
pub fn spawn(args: &[String], log: &Path, pidfile: &Path, what: &str) {
    let _ = std::fs::remove_file(pidfile);
    let mut words = vec![sh_quote(java())];
    words.extend(args.iter().map(|a| sh_quote(a)));
    spawn_watched(
        &format!(
            "{} >>{} 2>&1",
            words.join(" "),
            sh_quote(&log.display().to_string())
        ),
        // Written whole (rename), so a reader never sees an empty file.
        &format!(
            "echo $pid > {tmp} && mv {tmp} {file}",
            tmp = sh_quote(&format!("{}.tmp", pidfile.display())),
            file = sh_quote(&pidfile.display().to_string())
        ),
        "",
        what,
    );
}

/// The pid `pidfile` holds, once it holds one: the watcher's shell creates
/// the file before it writes the number, and an empty read is not a pid.
fn pid(pidfile: &Path) -> Option<u32> {
    std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()
}

/// `kill -9` of the process whose pid `pidfile` holds, if any.
pub fn kill(pidfile: &Path) {
    if let Some(pid) = pid(pidfile) {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    }
}

/// True once the process whose pid `pidfile` holds has exited (false while
/// the pid is not written yet).
pub fn exited(pidfile: &Path) -> bool {
    pid(pidfile).is_some_and(|pid| {
        !Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    })
}
