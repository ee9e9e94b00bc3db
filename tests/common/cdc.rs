//! The real binary running `sqlcache cdc` against the private MariaDB and
//! a broker, with its own config and log; killed on drop (its log's tail is
//! printed when a test fails).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use super::broker::Broker;
use super::{tempdir, MariaDb};

/// The real binary running `sqlcache cdc`, killed on drop.
pub struct Cdc {
    child: Child,
    log: PathBuf,
    config: PathBuf,
}

impl Cdc {
    pub fn start(db: &MariaDb, broker: &Broker, state: &Path, cdc_extra: &str) -> Cdc {
        Self::start_to(db.port, &broker.addr(), state, cdc_extra)
    }

    /// Publishing from the MySQL on `backend_port` to `brokers` (relays, say).
    pub fn start_to(backend_port: u16, brokers: &str, state: &Path, cdc_extra: &str) -> Cdc {
        let dir = tempdir();
        let config = dir.join("proxy.toml");
        std::fs::write(
            &config,
            format!(
                "[backend]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\npassword = \"\"\n\n\
                 [[users]]\nname = \"root\"\n\n\
                 [log]\nlevel = \"info,sqlcache=debug\"\n\n\
                 [cdc]\nbrokers = \"{}\"\nstate = \"{}\"\n{cdc_extra}\n",
                backend_port,
                brokers,
                state.display()
            ),
        )
        .unwrap();
        Self::run(config, dir.join("cdc.log"))
    }

    pub fn run(config: PathBuf, log: PathBuf) -> Cdc {
        let child = Command::new(env!("CARGO_BIN_EXE_sqlcache"))
            .arg("cdc")
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
            .expect("start sqlcache cdc");
        Cdc { child, log, config }
    }

    /// Starts it again with the same configuration and state.
    pub fn restart(&mut self) {
        self.kill();
        let fresh = Self::run(self.config.clone(), self.log.clone());
        let old = std::mem::replace(self, fresh);
        std::mem::forget(old);
    }

    /// SIGKILL: no chance to save anything on the way out.
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

impl Drop for Cdc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- sqlcache cdc log (last lines):\n{}",
                super::tail(&self.log_text(), 40)
            );
        }
        self.kill();
    }
}
