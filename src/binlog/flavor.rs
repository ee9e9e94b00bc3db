//! What differs between MariaDB and MySQL replication, in one place.
//!
//! Policy: the reader speaks the common binlog protocol (COM_REGISTER_SLAVE,
//! COM_BINLOG_DUMP from a file and position, events v4 with CRC32); only the
//! statements around it and the GTID event differ. MariaDB hides its own
//! event types (GTID, GTID list, checkpoint, annotate) from a replica that
//! does not announce `@mariadb_slave_capability=4`, and then rewrites them
//! into MySQL-5.5 look-alikes; we announce it and parse its GTID event here.
//! MySQL 8.4 renamed `SHOW MASTER STATUS` to `SHOW BINARY LOG STATUS`.

/// The server family, from its version string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    /// MySQL, with `(major, minor)`.
    MySql(u16, u16),
}

/// MariaDB's own event types (log_event.h).
pub const MARIADB_ANNOTATE_ROWS: u8 = 160;
pub const MARIADB_BINLOG_CHECKPOINT: u8 = 161;
pub const MARIADB_GTID: u8 = 162;
pub const MARIADB_GTID_LIST: u8 = 163;
pub const MARIADB_START_ENCRYPTION: u8 = 164;
/// 165: QUERY_COMPRESSED; 166–171: compressed row events (v1 and v2).
pub const MARIADB_COMPRESSED: std::ops::RangeInclusive<u8> = 165..=171;

/// A MariaDB GTID: domain-server-sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MariaGtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

impl std::fmt::Display for MariaGtid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

impl Flavor {
    pub fn detect(version: &str) -> Flavor {
        if version.to_ascii_lowercase().contains("mariadb") {
            return Flavor::MariaDb;
        }
        let mut it = version
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|s| s.parse::<u16>().ok());
        Flavor::MySql(it.next().unwrap_or(0), it.next().unwrap_or(0))
    }

    /// The statement that reports the current binlog file and position.
    pub fn status_query(self) -> &'static str {
        match self {
            Flavor::MySql(major, minor) if (major, minor) >= (8, 4) => "SHOW BINARY LOG STATUS",
            _ => "SHOW MASTER STATUS",
        }
    }

    /// Session settings sent before COM_BINLOG_DUMP. `heartbeat_ns` makes an
    /// idle server send a heartbeat, so a dead link is noticed.
    pub fn dump_setup(self, heartbeat_ns: u64) -> Vec<String> {
        let mut v = vec![format!("SET @master_heartbeat_period = {heartbeat_ns}")];
        if self == Flavor::MariaDb {
            // Send GTID events as themselves (parsed by `parse_gtid`).
            v.push("SET @mariadb_slave_capability = 4".into());
        }
        v
    }

    /// The statement that makes the dump start after a GTID position
    /// (MariaDB; MySQL's GTID set goes in COM_BINLOG_DUMP_GTID instead).
    pub fn gtid_start(self, gtid: &str) -> Option<String> {
        let safe = gtid
            .chars()
            .all(|c| c.is_ascii_digit() || c == '-' || c == ',');
        match self {
            Flavor::MariaDb if safe => Some(format!("SET @slave_connect_state = '{gtid}'")),
            _ => None,
        }
    }

    /// How a consistent snapshot learns the binlog position it matches:
    /// MariaDB reports it per transaction (`binlog_snapshot_file/position`
    /// after `START TRANSACTION WITH CONSISTENT SNAPSHOT`, no lock needed);
    /// MySQL needs a global read lock around the start of the transaction.
    pub fn snapshot_needs_lock(self) -> bool {
        !matches!(self, Flavor::MariaDb)
    }

    /// Settings a row-level reader needs: (variable, required value).
    pub fn required_settings(self) -> &'static [(&'static str, &'static str)] {
        &[
            ("log_bin", "ON"),
            ("binlog_format", "ROW"),
            ("binlog_row_image", "FULL"),
            ("binlog_row_metadata", "FULL"),
        ]
    }

    /// Settings that must not hold for this flavour: both can compress
    /// events into a form no decoder here reads (MariaDB's compressed
    /// events, MySQL 8.0.20+'s transaction payloads).
    pub fn forbidden_settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Flavor::MariaDb => &[("log_bin_compress", "ON")],
            Flavor::MySql(..) => &[("binlog_transaction_compression", "ON")],
        }
    }
}

/// Parses the body (after the common header, without checksum) of a MariaDB
/// GTID event: seq_no u64, domain_id u32, flags u8, … (little-endian).
pub fn parse_gtid(body: &[u8], server: u32) -> Option<MariaGtid> {
    let seq = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
    let domain = u32::from_le_bytes(body.get(8..12)?.try_into().ok()?);
    Some(MariaGtid {
        domain,
        server,
        seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_flavour_and_its_status_statement() {
        assert_eq!(
            Flavor::detect("10.11.19-MariaDB-0+deb12u1-log"),
            Flavor::MariaDb
        );
        assert_eq!(Flavor::detect("5.5.5-10.11.19-MariaDB"), Flavor::MariaDb);
        assert_eq!(Flavor::detect("8.0.36"), Flavor::MySql(8, 0));
        assert_eq!(Flavor::MySql(8, 0).status_query(), "SHOW MASTER STATUS");
        assert_eq!(Flavor::MySql(8, 4).status_query(), "SHOW BINARY LOG STATUS");
        assert_eq!(Flavor::MySql(9, 1).status_query(), "SHOW BINARY LOG STATUS");
        assert!(Flavor::MariaDb
            .dump_setup(1)
            .iter()
            .any(|s| s.contains("mariadb_slave_capability")));
    }

    #[test]
    fn parses_a_mariadb_gtid_body() {
        let mut b = 77u64.to_le_bytes().to_vec();
        b.extend(3u32.to_le_bytes());
        b.push(0);
        assert_eq!(
            parse_gtid(&b, 1),
            Some(MariaGtid {
                domain: 3,
                server: 1,
                seq: 77
            })
        );
        assert_eq!(parse_gtid(&b[..5], 1), None);
        assert_eq!(parse_gtid(&b, 1).unwrap().to_string(), "3-1-77");
    }
}
