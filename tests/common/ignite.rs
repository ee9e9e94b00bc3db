//! The pyignite-codec conformance server (`tests/py/ignite_server.py`) per
//! test — NOT Apache Ignite: an in-memory store whose every frame is parsed
//! and encoded by pyignite, Apache Ignite's Python thin client. A test that
//! cannot start it panics (pyignite is installed by `.ci/run`).

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{free_port, tempdir};

pub struct Conformance {
    pub port: u16,
    pub log: PathBuf,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Conformance {
    pub fn start(args: &[&str]) -> Conformance {
        let mut c = Conformance {
            port: free_port(),
            dir: tempdir(),
            log: PathBuf::new(),
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        c.log = c.dir.join("requests.jsonl");
        c.spawn();
        c
    }

    fn spawn(&mut self) {
        let port_file = self.dir.join(format!("port.{}", self.port));
        let _ = std::fs::remove_file(&port_file);
        let script = format!("{}/tests/py/ignite_server.py", env!("CARGO_MANIFEST_DIR"));
        let child = Command::new("python3")
            .arg(script)
            .arg(&port_file)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--log")
            .arg(&self.log)
            .args(&self.args)
            .stderr(std::fs::File::create(self.dir.join("server.err")).unwrap())
            .spawn()
            .expect("python3 for the conformance server");
        self.child = Some(child);
        let t = Instant::now();
        while !port_file.exists() {
            if t.elapsed() > Duration::from_secs(20) || self.exited() {
                panic!(
                    "conformance server did not start (pyignite installed? .ci/run does): {}",
                    std::fs::read_to_string(self.dir.join("server.err")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| !matches!(c.try_wait(), Ok(None)))
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A new, empty server on the same port (a restarted cluster).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Every request the server parsed, as logged.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("log line"))
            .collect()
    }

    /// Panics if pyignite failed to parse any frame.
    pub fn assert_all_parsed(&self) {
        let errors: Vec<_> = self
            .requests()
            .into_iter()
            .filter(|r| r.get("error").is_some())
            .collect();
        assert!(errors.is_empty(), "pyignite could not parse: {errors:?}");
    }
}

impl Drop for Conformance {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- conformance server stderr:\n{}",
                std::fs::read_to_string(self.dir.join("server.err")).unwrap_or_default()
            );
        }
        self.stop();
    }
}
