//! Where the publisher stands: the binlog position (and MariaDB GTID state)
//! up to which every event has been acknowledged by Kafka.
//!
//! Policy: the state file is only ever replaced whole (write a temporary
//! file, fsync, rename, fsync the directory), so a crash leaves either the
//! old or the new state, never a torn one. It is written *after* Kafka
//! acknowledged everything before the position, which makes delivery
//! at-least-once: a restart may publish again what was acknowledged after
//! the last write, never skip anything. A snapshot that did not finish is
//! recorded as such and is redone from the start.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::binlog::{MariaGtid, Position};

/// The saved state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub file: String,
    pub pos: u64,
    /// MariaDB GTID position (`domain-server-seq,…`) matching `file:pos`;
    /// empty when unknown (MySQL, or a MariaDB without GTIDs).
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

/// A MariaDB GTID position: the last GTID of each replication domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidPos(BTreeMap<u32, MariaGtid>);

impl GtidPos {
    /// Parses `domain-server-seq[,…]` (as `@@gtid_binlog_pos` prints it).
    pub fn parse(s: &str) -> Option<GtidPos> {
        let mut m = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.split('-');
            let g = MariaGtid {
                domain: it.next()?.parse().ok()?,
                server: it.next()?.parse().ok()?,
                seq: it.next()?.parse().ok()?,
            };
            if it.next().is_some() {
                return None;
            }
            m.insert(g.domain, g);
        }
        Some(GtidPos(m))
    }

    /// A transaction with this GTID was passed.
    pub fn advance(&mut self, g: MariaGtid) {
        self.0.insert(g.domain, g);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for GtidPos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.values().map(|g| g.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_positions_parse_advance_and_print() {
        let mut p = GtidPos::parse("0-1-10,2-5-7").unwrap();
        p.advance(MariaGtid {
            domain: 0,
            server: 1,
            seq: 11,
        });
        p.advance(MariaGtid {
            domain: 1,
            server: 3,
            seq: 1,
        });
        assert_eq!(p.to_string(), "0-1-11,1-3-1,2-5-7");
        assert_eq!(GtidPos::parse("").unwrap(), GtidPos::default());
        assert!(GtidPos::parse("0-1").is_none());
        assert!(GtidPos::parse("a-1-2").is_none());
    }

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
