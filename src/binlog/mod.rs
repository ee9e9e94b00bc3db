//! Binlog reader: a replica connection that turns MySQL/MariaDB binlog
//! events into decoded items, each with the position just after it.
//!
//! Policy: refuse to start unless the server logs full row images with full
//! metadata (`binlog_format=ROW`, `binlog_row_image=FULL`,
//! `binlog_row_metadata=FULL`): without them column names are missing and
//! unsigned integers decode as negative, so rows could not be named. Every
//! event yields an item; one this reader cannot decode (a compressed event,
//! rows of a table whose map is missing or whose values do not parse) is an
//! explicit `Item::Unreadable`, never silently skipped — callers decide what
//! "unknown change" means for them (the cache invalidates; `cdc` stops).
//! Positions are (file, offset) pairs; `Position::key` orders them across
//! files, which is what freshness proofs compare. Flavour differences
//! (MariaDB vs MySQL) live in `flavor`.

pub mod changes;
mod decode;
pub mod flavor;
pub mod gtid;

use std::time::Duration;

use futures_util::StreamExt;
use mysql_async::binlog::events::TableMapEvent;
use mysql_async::binlog::row::BinlogRow;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Opts, Row};

pub use decode::{read_file, Decoder, TableMaps};
pub use flavor::{Flavor, MariaGtid};
pub use gtid::{Gtid, GtidPos, GtidSet, Gtids, MySqlGtid};

#[derive(Debug, thiserror::Error)]
pub enum BinlogError {
    #[error("cannot connect to MySQL for the binlog: {0}")]
    Connect(mysql_async::Error),
    #[error("binlog settings unusable: {0}")]
    Settings(String),
    #[error(
        "the binlog position {0} is no longer on the server (purged?): {1}; \
         start again from the current position (and re-snapshot if events must not be lost)"
    )]
    Purged(Position, String),
    #[error(
        "the binlog account lacks a privilege: {0} (needs REPLICATION SLAVE, and on \
         MariaDB BINLOG MONITOR (REPLICATION CLIENT on MySQL) for the status query)"
    )]
    Grants(String),
    #[error("binlog stream: {0}")]
    Stream(mysql_async::Error),
    #[error("the server closed the binlog stream")]
    Closed,
    #[error("no binlog event or heartbeat for {0:?}")]
    Silent(Duration),
    #[error("no answer from MySQL within {0:?}")]
    Timeout(Duration),
}

/// A point in the binlog: the offset of the next event in `file`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Position {
    pub file: String,
    pub pos: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

impl Position {
    /// A number that orders positions of one server's binlog: the file's
    /// sequence number (its numeric extension) above 40 bits of offset.
    pub fn key(&self) -> i64 {
        let seq: i64 = self
            .file
            .rsplit_once('.')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0);
        (seq << 40) | (self.pos as i64 & ((1 << 40) - 1))
    }
}

/// Which rows event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    Insert,
    Update,
    Delete,
}

/// One decoded event.
#[derive(Debug)]
pub enum Item {
    /// Rows of one table, each as (before image, after image).
    Rows {
        db: String,
        table: String,
        /// The table map's id (`Reader::table_map`).
        table_id: u64,
        kind: RowKind,
        rows: Vec<(Option<BinlogRow>, Option<BinlogRow>)>,
    },
    /// A statement (DDL, TRUNCATE, BEGIN/COMMIT of non-transactional
    /// engines …) run with `schema` as the current database.
    Query { schema: String, sql: String },
    /// Start of a transaction: its GTID (MariaDB, or MySQL with
    /// `gtid_mode = ON`).
    Gtid(Gtid),
    /// Commit of a transaction.
    Xid,
    /// The server is alive and has nothing new.
    Heartbeat,
    /// An event that changes data but cannot be decoded here; `table` when
    /// the affected table is known.
    Unreadable {
        table: Option<(String, String)>,
        why: String,
    },
    /// Anything else (format description, rotate, table map, GTID lists …).
    Other,
}

/// An item, where the binlog is after it, and the event's timestamp.
#[derive(Debug)]
pub struct Event {
    pub item: Item,
    pub pos: Position,
    pub timestamp: u32,
    /// The server that wrote the event.
    pub server_id: u32,
}

/// Where to start reading.
#[derive(Debug, Clone)]
pub enum Start {
    /// The server's current end of binlog.
    Current,
    At(Position),
    /// After the transactions named by `gtid` (MariaDB: a GTID position,
    /// MySQL: a GTID set), on whichever server holds them; at `or_at` on a
    /// MySQL that runs without GTIDs (`gtid_mode` not ON).
    Gtid {
        gtid: Gtids,
        or_at: Position,
    },
}

/// A connection that reads the binlog.
pub struct Reader {
    stream: BinlogStream,
    decoder: Decoder,
    flavor: Flavor,
    silence: Duration,
    /// When the server last sent anything (events or heartbeats).
    heard: tokio::time::Instant,
}

/// The server's current end of binlog (needs BINLOG MONITOR / REPLICATION
/// CLIENT).
pub async fn current_position(conn: &mut Conn, flavor: Flavor) -> Result<Position, BinlogError> {
    Ok(current_status(conn, flavor).await?.pos)
}

/// Where the binlog ends, with MySQL's executed GTID set at that point
/// (the same status row, so the two agree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub pos: Position,
    /// MySQL `Executed_Gtid_Set` as printed (empty on MariaDB, whose GTID
    /// position is asked for by file/offset, and on MySQL without GTIDs).
    pub gtid_set: String,
}

pub async fn current_status(conn: &mut Conn, flavor: Flavor) -> Result<Status, BinlogError> {
    let row: Option<Row> = conn
        .query_first(flavor.status_query())
        .await
        .map_err(classify_error)?;
    let row = row.ok_or_else(|| {
        BinlogError::Settings("the server reports no binary log (is log_bin on?)".into())
    })?;
    let file: Option<String> = row.get(0);
    let pos: Option<u64> = row.get(1);
    let gtid_set = match flavor {
        Flavor::MySql(..) => row.get::<Option<String>, _>(4).flatten(),
        Flavor::MariaDb => None,
    };
    match (file, pos) {
        (Some(file), Some(pos)) => Ok(Status {
            pos: Position { file, pos },
            gtid_set: gtid_set.unwrap_or_default(),
        }),
        _ => Err(BinlogError::Settings(
            "unexpected reply to the binlog status query".into(),
        )),
    }
}

/// The server's flavour and whether its binlog meets `Flavor::required_settings`.
pub async fn check_settings(conn: &mut Conn) -> Result<Flavor, BinlogError> {
    let version: Option<String> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(BinlogError::Stream)?;
    let flavor = Flavor::detect(&version.unwrap_or_default());
    let vars: Vec<(String, String)> = conn
        .query(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN \
             ('log_bin','binlog_format','binlog_row_image','binlog_row_metadata',\
              'log_bin_compress','binlog_transaction_compression')",
        )
        .await
        .map_err(BinlogError::Stream)?;
    let get = |name: &str| {
        vars.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let mut wrong = Vec::new();
    for (name, want) in flavor.required_settings() {
        match get(name) {
            Some(v) if v.eq_ignore_ascii_case(want) => {}
            v => wrong.push(format!("{name} = {} (needs {want})", v.unwrap_or("unset"))),
        }
    }
    for (name, bad) in flavor.forbidden_settings() {
        if get(name).is_some_and(|v| v.eq_ignore_ascii_case(bad)) {
            wrong.push(format!(
                "{name} = {bad} (compressed events cannot be decoded; set it OFF)"
            ));
        }
    }
    if wrong.is_empty() {
        Ok(flavor)
    } else {
        Err(BinlogError::Settings(format!(
            "{}; start the server with --log-bin --binlog-format=ROW \
             --binlog-row-image=FULL --binlog-row-metadata=FULL",
            wrong.join(", ")
        )))
    }
}

fn classify_error(e: mysql_async::Error) -> BinlogError {
    match &e {
        // ER_SPECIFIC_ACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR,
        // ER_DBACCESS_DENIED_ERROR, ER_TABLEACCESS_DENIED_ERROR
        mysql_async::Error::Server(se) if [1227, 1045, 1044, 1142].contains(&se.code) => {
            BinlogError::Grants(se.message.clone())
        }
        _ => BinlogError::Stream(e),
    }
}

/// How a GTID start is made on this server.
enum GtidStart {
    /// Dump from file "" offset 4; with a GTID set on MySQL
    /// (COM_BINLOG_DUMP_GTID), after `@slave_connect_state` on MariaDB.
    Ready(Option<Vec<mysql_common::packets::Sid<'static>>>),
    /// MySQL without GTIDs: fall back to file/offset.
    Unsupported,
}

async fn gtid_start(
    conn: &mut Conn,
    flavor: Flavor,
    gtid: &Gtids,
) -> Result<GtidStart, BinlogError> {
    match (flavor, gtid) {
        (Flavor::MariaDb, Gtids::MariaDb(pos)) => {
            let set = flavor
                .gtid_start(&pos.to_string())
                .expect("a parsed GTID position prints only digits, '-' and ','");
            conn.query_drop(set).await.map_err(BinlogError::Stream)?;
            Ok(GtidStart::Ready(None))
        }
        (Flavor::MySql(..), Gtids::MySql(set)) => {
            let mode: Option<String> = conn
                .query_first("SELECT @@GLOBAL.gtid_mode")
                .await
                .map_err(BinlogError::Stream)?;
            if !mode.is_some_and(|m| m.eq_ignore_ascii_case("ON")) {
                return Ok(GtidStart::Unsupported);
            }
            Ok(GtidStart::Ready(Some(set.to_sids())))
        }
        _ => Err(BinlogError::Settings(format!(
            "the saved GTID state {gtid} is of the other server family than this {flavor:?}"
        ))),
    }
}

impl Reader {
    /// Connects as a replica with `server_id` (unique among the server's
    /// replicas) and starts reading at `start`. An idle server sends a
    /// heartbeat every `heartbeat`; `next` fails after twice that plus a
    /// second without any event.
    pub async fn connect(
        opts: Opts,
        server_id: u32,
        start: Start,
        heartbeat: Duration,
    ) -> Result<Reader, BinlogError> {
        let mut conn = Conn::new(opts).await.map_err(BinlogError::Connect)?;
        let flavor = check_settings(&mut conn).await?;
        let crc: Option<String> = conn
            .query_first("SELECT @@global.binlog_checksum")
            .await
            .map_err(BinlogError::Stream)?;
        let crc = crc.is_some_and(|c| !c.eq_ignore_ascii_case("NONE"));
        for stmt in flavor.dump_setup(heartbeat.as_nanos() as u64) {
            conn.query_drop(stmt).await.map_err(BinlogError::Stream)?;
        }
        let (pos, sids) = match &start {
            Start::At(p) => (p.clone(), None),
            Start::Current => (current_position(&mut conn, flavor).await?, None),
            Start::Gtid { gtid, or_at } => match gtid_start(&mut conn, flavor, gtid).await? {
                // The server names the file in its first (artificial) ROTATE.
                GtidStart::Ready(sids) => (
                    Position {
                        file: String::new(),
                        pos: 4,
                    },
                    sids,
                ),
                GtidStart::Unsupported => (or_at.clone(), None),
            },
        };
        let mut request = BinlogStreamRequest::new(server_id)
            .with_filename(pos.file.as_bytes())
            .with_pos(pos.pos);
        if let Some(sids) = sids {
            request = request.with_gtid().with_gtid_set(sids);
        }
        let stream = conn
            .get_binlog_stream(request)
            .await
            .map_err(classify_error)?;
        Ok(Reader {
            stream,
            decoder: Decoder::new(pos, crc),
            flavor,
            silence: heartbeat * 2 + Duration::from_secs(1),
            heard: tokio::time::Instant::now(),
        })
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The table map a rows event refers to (`Item::Rows::table_id`).
    pub fn table_map(&self, id: u64) -> Option<&TableMapEvent<'static>> {
        self.stream.get_tme(id)
    }

    /// Position after the last event returned.
    pub fn position(&self) -> &Position {
        self.decoder.position()
    }

    /// The next event; errors end the stream (reconnect to go on).
    pub async fn next(&mut self) -> Result<Event, BinlogError> {
        // A deadline from the last thing heard, not from this call: callers
        // may drop this future for other work (cancel-safe: the stream keeps
        // its partial read) and call again.
        let deadline = self.heard + self.silence;
        let ev = match tokio::time::timeout_at(deadline, self.stream.next()).await {
            Err(_) => return Err(BinlogError::Silent(self.silence)),
            Ok(None) => return Err(BinlogError::Closed),
            Ok(Some(Err(mysql_async::Error::Server(se)))) if se.code == 1236 => {
                // ER_MASTER_FATAL_ERROR_READING_BINLOG: position gone.
                return Err(BinlogError::Purged(self.position().clone(), se.message));
            }
            Ok(Some(Err(e))) => return Err(classify_error(e)),
            Ok(Some(Ok(ev))) => ev,
        };
        self.heard = tokio::time::Instant::now();
        let stream = &self.stream;
        Ok(self.decoder.event(&ev, &|id| stream.get_tme(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_whose_event_header_disagrees_with_its_size_is_refused() {
        // fuzz/binlog_events: an event header stating 3 GB in a short
        // packet made mysql_common allocate it and panic on the short read.
        let mut packet = vec![0u8; 40];
        packet[9..13].copy_from_slice(&3_233_857_709u32.to_le_bytes());
        assert!(mysql_async::check_event_packet(&packet).is_err());
        packet[9..13].copy_from_slice(&40u32.to_le_bytes());
        assert!(mysql_async::check_event_packet(&packet).is_ok());
        assert!(mysql_async::check_event_packet(&packet[..12]).is_err());
    }

    #[test]
    fn position_keys_order_across_files() {
        let p = |f: &str, pos| Position {
            file: f.into(),
            pos,
        };
        assert!(p("bin.000001", 900_000).key() < p("bin.000002", 4).key());
        assert!(p("bin.000002", 4).key() < p("bin.000002", 5).key());
        assert_eq!(p("bin.000010", 7).key(), (10 << 40) | 7);
    }
}
