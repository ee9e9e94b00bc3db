//! The real `sqlcache` binary running one subcommand (`cdc`, `sink`) with
//! its own config and log; `kill -9` on drop, and the log's tail printed
//! when a test fails.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};

pub struct Binary {
    child: Child,
    subcommand: &'static str,
    pub log: PathBuf,
    pub config: PathBuf,
}

impl Binary {
    pub fn run(subcommand: &'static str, config: PathBuf, log: PathBuf) -> Binary {
        let child = Command::new(env!("CARGO_BIN_EXE_sqlcache"))
            .arg(subcommand)
            .arg("--config")
            .arg(&config)
            .env("NO_COLOR", "1")
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("start sqlcache {subcommand}: {e}"));
        Binary {
            child,
            subcommand,
            log,
            config,
        }
    }

    /// `kill -9`, then the same configuration (and state) again.
    pub fn restart(&mut self) {
        self.kill();
        let fresh = Self::run(self.subcommand, self.config.clone(), self.log.clone());
        let old = std::mem::replace(self, fresh);
        std::mem::forget(old);
    }

    /// SIGKILL: no chance to save or finish anything on the way out.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- sqlcache {} log (last lines):\n{}",
                self.subcommand,
                super::tail(&self.log_text(), 40)
            );
        }
        self.kill();
    }
}
