//! The real binary running `sqlcache sink` into a MySQL, with its own
//! config and log; killed on drop (its log's tail is printed when a test
//! fails).

use std::path::PathBuf;

use super::binary::Binary;
use super::tempdir;

/// The real binary running `sqlcache sink`, killed on drop.
pub struct Sink(Binary);

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
        Sink(Binary::run("sink", config, log))
    }
}

impl std::ops::Deref for Sink {
    type Target = Binary;
    fn deref(&self) -> &Binary {
        &self.0
    }
}

impl std::ops::DerefMut for Sink {
    fn deref_mut(&mut self) -> &mut Binary {
        &mut self.0
    }
}
