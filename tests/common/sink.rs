//! The real binary running `sqlcache sink` into a MySQL, with its own
//! config and log; killed on drop (its log's tail is printed when a test
//! fails).

use std::path::PathBuf;
use std::process::{Child, Command};

use super::tempdir;

/// The real binary running `sqlcache sink`, killed on drop.
pub struct Sink {
    child: Child,
    pub log: PathBuf,
    pub config: PathBuf,
}

impl Sink {
    /// Applying `brokers`' records to the MySQL on `target_port`, with
    /// `sink_extra` lines in its `[sink]` section.
    pub fn start(target_port: u16, brokers: &str, sink_extra: &str) -> Sink {
        let dir = tempdir();
        let config = dir.join("proxy.toml");
        std::fs::write(
            &config,
            format!(
                "[backend]\nhost = \"127.0.0.1\"\nport = {target_port}\nuser = \"root\"\npassword = \"\"\n\n\
                 [[users]]\nname = \"root\"\n\n\
                 [log]\nlevel = \"info,sqlcache=debug\"\n\n\
                 [sink]\nbrokers = \"{brokers}\"\n{sink_extra}\n"
            ),
        )
        .unwrap();
        Self::run(config, dir.join("sink.log"))
    }

    fn run(config: PathBuf, log: PathBuf) -> Sink {
        let child = Command::new(env!("CARGO_BIN_EXE_sqlcache"))
            .arg("sink")
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
            .expect("start sqlcache sink");
        Sink { child, log, config }
    }

    /// `kill -9`, then the same configuration again.
    pub fn restart(&mut self) {
        self.kill();
        let fresh = Self::run(self.config.clone(), self.log.clone());
        let old = std::mem::replace(self, fresh);
        std::mem::forget(old);
    }

    /// SIGKILL: no chance to finish anything on the way out.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- sqlcache sink log (last lines):\n{}",
                super::tail(&self.log_text(), 40)
            );
        }
        self.kill();
    }
}
