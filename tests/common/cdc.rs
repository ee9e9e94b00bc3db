//! The real binary running `sqlcache cdc` against the private MariaDB and
//! a broker, with its own config and log; killed on drop (its log's tail is
//! printed when a test fails).

use std::path::{Path, PathBuf};

use super::binary::Binary;
use super::broker::Broker;
use super::{tempdir, MariaDb};

/// The real binary running `sqlcache cdc`, killed on drop.
pub struct Cdc(Binary);

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
        Cdc(Binary::run("cdc", config, log))
    }
}

impl std::ops::Deref for Cdc {
    type Target = Binary;
    fn deref(&self) -> &Binary {
        &self.0
    }
}

impl std::ops::DerefMut for Cdc {
    fn deref_mut(&mut self) -> &mut Binary {
        &mut self.0
    }
}
