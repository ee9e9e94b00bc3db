//! Where the publisher stands: the binlog position (and GTID state) up to
//! which every event has been acknowledged by Kafka.
//!
//! Policy: the state file is only ever replaced whole (write a temporary
//! file, fsync, rename, fsync the directory), so a crash leaves either the
//! old or the new state, never a torn one. It is written *after* Kafka
//! acknowledged everything before the position, which makes delivery
//! at-least-once: a restart may publish again what was acknowledged after
//! the last write, never skip anything. A snapshot that did not finish is
//! recorded as such and is redone from the start.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::binlog::Position;

/// The saved state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub file: String,
    pub pos: u64,
    /// The GTID state matching `file:pos` (`binlog::Gtids`): MariaDB's GTID
    /// position (`domain-server-seq,…`) or MySQL's executed GTID set
    /// (`uuid:1-9,…`); empty when unknown (a MySQL without GTIDs).
    #[serde(default)]
    pub gtid: String,
    /// False while an initial snapshot is being published.
    pub snapshot_done: bool,
}

impl State {
    pub fn position(&self) -> Position {
        Position {
            file: self.file.clone(),
            pos: self.pos,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the state file {0}: {1}")]
    Read(String, std::io::Error),
    #[error("the state file {0} is corrupt: {1} (delete it to snapshot again)")]
    Corrupt(String, serde_json::Error),
    #[error("cannot write the state file {0}: {1}")]
    Write(String, std::io::Error),
    #[error("the state file {0} holds a GTID state this server cannot read: {1:?} (delete it to snapshot again)")]
    BadGtid(String, String),
}

/// The saved state, `None` when there is none yet.
pub fn load(path: &Path) -> Result<Option<State>, StateError> {
    let name = || path.display().to_string();
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| StateError::Corrupt(name(), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::Read(name(), e)),
    }
}

/// Replaces the state file atomically and durably.
pub fn save(path: &Path, state: &State) -> Result<(), StateError> {
    let err = |e| StateError::Write(path.display().to_string(), e);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    let body = serde_json::to_vec_pretty(state).expect("state serializes");
    f.write_all(&body).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_are_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdc.json");
        assert_eq!(load(&path).unwrap(), None);
        let s = State {
            file: "bin.000002".into(),
            pos: 1234,
            gtid: "0-1-9".into(),
            snapshot_done: true,
        };
        save(&path, &s).unwrap();
        assert_eq!(load(&path).unwrap(), Some(s));
        assert!(!path.with_extension("tmp").exists());
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(load(&path), Err(StateError::Corrupt(..))));
    }
}
