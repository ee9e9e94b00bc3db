//! One binlog event's bytes → an `Item`, and the position after it.
//!
//! Policy: pure — no I/O. The table maps a rows event needs come from the
//! caller (the stream that read them), so the same decoding serves the live
//! replica connection and the fuzzer, which feeds arbitrary event bytes.
//! Every event yields an item: one that cannot be decoded (unknown type,
//! compressed, rows whose table map is missing or whose values do not
//! parse, more rows than the event has bytes) is `Item::Unreadable`, never
//! a panic, a hang or a silent skip. Artificial
//! events (log_pos 0) and rotations' own headers do not move the position;
//! a rotation sets it from its body.

use mysql_async::binlog::events::{Event as RawEvent, EventData, RowsEventData, TableMapEvent};
use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::EventStreamReader;

use super::{Event, Gtid, Item, MySqlGtid, Position, RowKind};

const ROTATE_EVENT: u8 = 4;

/// Where a rows event's table map is found.
pub type TableMaps<'a> = &'a dyn Fn(u64) -> Option<&'a TableMapEvent<'static>>;

/// Decoding state carried from event to event.
#[derive(Debug, Clone)]
pub struct Decoder {
    pos: Position,
    /// The next ROTATE is the artificial one sent before the first format
    /// description, which carries a checksum the parser does not strip.
    first_rotate: bool,
    /// The server writes CRC32 checksums.
    crc: bool,
}

impl Decoder {
    pub fn new(pos: Position, crc: bool) -> Decoder {
        Decoder {
            pos,
            first_rotate: true,
            crc,
        }
    }

    /// Position after the last event decoded.
    pub fn position(&self) -> &Position {
        &self.pos
    }

    /// Decodes one event read by a stream whose table maps `maps` finds.
    pub fn event(&mut self, ev: &RawEvent, maps: TableMaps<'_>) -> Event {
        let header = ev.header();
        let raw_type = header.event_type_raw();
        let item = match ev.read_data() {
            Ok(Some(data)) => self.decode(data, maps),
            Ok(None) => Self::unknown(raw_type, ev.data(), header.server_id()),
            Err(e) => Item::Unreadable {
                table: None,
                why: format!("event type {raw_type}: {e}"),
            },
        };
        if header.log_pos() != 0 && raw_type != ROTATE_EVENT {
            self.pos.pos = u64::from(header.log_pos());
        }
        Event {
            item,
            pos: self.pos.clone(),
            timestamp: header.timestamp(),
            server_id: header.server_id(),
        }
    }

    fn decode(&mut self, data: EventData<'_>, maps: TableMaps<'_>) -> Item {
        match data {
            EventData::RotateEvent(r) => {
                let mut name = r.name_raw().to_vec();
                if std::mem::take(&mut self.first_rotate) && self.crc && name.len() > 4 {
                    // Sent before any format description: its CRC32 is
                    // still attached to the name.
                    name.truncate(name.len() - 4);
                }
                self.pos = Position {
                    file: String::from_utf8_lossy(&name).into_owned(),
                    pos: r.position(),
                };
                Item::Other
            }
            EventData::FormatDescriptionEvent(_) => {
                self.first_rotate = false;
                Item::Other
            }
            EventData::QueryEvent(q) => Item::Query {
                schema: q.schema().into_owned(),
                sql: q.query().into_owned(),
            },
            EventData::XidEvent(_) => Item::Xid,
            EventData::GtidEvent(g) => Item::Gtid(Gtid::MySql(MySqlGtid::from_event(&g))),
            // MySQL's binlog_transaction_compression: the rows are inside,
            // compressed (refused at connect; never skipped if met).
            EventData::TransactionPayloadEvent(_) => Item::Unreadable {
                table: None,
                why: "compressed transaction payload (binlog_transaction_compression)".into(),
            },
            EventData::HeartbeatEvent => Item::Heartbeat,
            EventData::RowsEvent(re) => Self::rows(&re, maps),
            EventData::IncidentEvent(i) => Item::Unreadable {
                table: None,
                why: format!("incident event: {}", i.message()),
            },
            EventData::UserVarEvent(_)
            | EventData::IntvarEvent(_)
            | EventData::RandEvent(_)
            | EventData::TableMapEvent(_)
            | EventData::RowsQueryEvent(_)
            | EventData::AnonymousGtidEvent(_)
            | EventData::PreviousGtidsEvent(_)
            | EventData::IgnorableEvent(_)
            | EventData::StopEvent
            | EventData::TransactionContextEvent(_)
            | EventData::ViewChangeEvent(_) => Item::Other,
            other => Item::Unreadable {
                table: None,
                why: format!("unsupported event {:?}", std::mem::discriminant(&other)),
            },
        }
    }

    fn rows(re: &RowsEventData<'_>, maps: TableMaps<'_>) -> Item {
        let Some(tme) = maps(re.table_id()) else {
            return Item::Unreadable {
                table: None,
                why: format!("rows event for unknown table id {}", re.table_id()),
            };
        };
        let db = tme.database_name().into_owned();
        let table = tme.table_name().into_owned();
        let kind = match re {
            RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_) => {
                RowKind::Insert
            }
            RowsEventData::DeleteRowsEvent(_) | RowsEventData::DeleteRowsEventV1(_) => {
                RowKind::Delete
            }
            _ => RowKind::Update,
        };
        // A row takes at least a byte (its NULL bitmap), so an event holds
        // no more rows than bytes; mysql_common's iterator yields empty rows
        // forever for an event that claims no columns (fuzz/binlog_events).
        let most = re.rows_data().len();
        let mut rows = Vec::new();
        for row in re.rows(tme) {
            let why = match row {
                Ok(_) if rows.len() >= most => "more rows than bytes".to_string(),
                Ok(r) => {
                    rows.push(r);
                    continue;
                }
                Err(e) => e.to_string(),
            };
            return Item::Unreadable {
                why: format!("rows of {db}.{table}: {why}"),
                table: Some((db, table)),
            };
        }
        Item::Rows {
            db,
            table,
            table_id: re.table_id(),
            kind,
            rows,
        }
    }

    /// Event types mysql_common does not know: MariaDB's own.
    fn unknown(raw_type: u8, body: &[u8], server: u32) -> Item {
        use super::flavor::*;
        match raw_type {
            MARIADB_GTID => match parse_gtid(body, server) {
                Some(g) => Item::Gtid(Gtid::MariaDb(g)),
                None => Item::Unreadable {
                    table: None,
                    why: "short MariaDB GTID event".into(),
                },
            },
            MARIADB_ANNOTATE_ROWS
            | MARIADB_BINLOG_CHECKPOINT
            | MARIADB_GTID_LIST
            | MARIADB_START_ENCRYPTION => Item::Other,
            t if MARIADB_COMPRESSED.contains(&t) => Item::Unreadable {
                table: None,
                why: format!("compressed event type {t} (log_bin_compress)"),
            },
            t => Item::Unreadable {
                table: None,
                why: format!("unknown event type {t}"),
            },
        }
    }
}

/// The events of a binlog file's bytes (the 4-byte magic optional), each
/// cut out and checked as one packet of the replication stream would carry
/// it (its stated size, or what is left) and decoded as `Reader` does.
/// What the stream would refuse ends the file. For tests and `fuzz/`.
pub fn read_file(bytes: &[u8]) -> Vec<Event> {
    let mut input = bytes.strip_prefix(b"\xfebin").unwrap_or(bytes);
    let mut reader = EventStreamReader::new(BinlogVersion::Version4);
    let mut decoder = Decoder::new(Position::default(), false);
    let mut out = Vec::new();
    while !input.is_empty() {
        let stated = input.get(9..13).map_or(input.len(), |b| {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
        });
        let (packet, rest) = input.split_at(stated.clamp(1, input.len()));
        input = rest;
        if mysql_async::check_event_packet(packet).is_err() {
            break;
        }
        let Ok(Some(ev)) = reader.read(packet) else {
            break;
        };
        let r = &reader;
        out.push(decoder.event(&ev, &|id| r.get_tme(id)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &[u8] = include_bytes!("../../fuzz/seeds/binlog_events/binlog.000001-CRC32.bin");

    #[test]
    fn a_real_binlog_file_decodes_to_rows_statements_and_commits() {
        let events = read_file(SEED);
        let rows = events
            .iter()
            .filter(|e| matches!(e.item, Item::Rows { .. }))
            .count();
        let xids = events
            .iter()
            .filter(|e| matches!(e.item, Item::Xid))
            .count();
        assert!(rows >= 5 && xids >= 5, "{rows} rows events, {xids} commits");
        assert!(!events
            .iter()
            .any(|e| matches!(e.item, Item::Unreadable { .. })));
        // Positions grow through the file; its last event rotates to the next.
        let (last, before) = events.split_last().unwrap();
        assert!(before.windows(2).all(|w| w[0].pos.pos <= w[1].pos.pos));
        assert_eq!((last.pos.file.as_str(), last.pos.pos), ("binlog.000002", 4));
    }

    /// What a fuzz finding must now come to.
    enum Outcome {
        /// An item `Unreadable` whose reason says this.
        Unreadable(&'static str),
        /// The file ends at the refused event: this many events before it.
        EndsAfter(usize),
        /// It decodes, with at least one rows item.
        Rows,
    }

    macro_rules! finding {
        ($file:literal) => {
            include_bytes!(concat!("../../fuzz/regressions/binlog_events/", $file))
        };
    }
    use self::Outcome::*;

    /// Each input `fuzz/` found in `binlog_events`, and what it comes to now.
    const FINDINGS: [(&str, &[u8], Outcome); 12] = [
        // mysql_common's row iterator yielded empty rows forever for an
        // event claiming no columns (a hang, then 2 GB of memory).
        (
            "rows of no columns",
            finding!("rows-of-no-columns.bin"),
            Unreadable("more rows than bytes"),
        ),
        // A header stating 3 GB: mysql_common allocated it and panicked
        // on the short read; the stream refuses the packet.
        (
            "event states 3 GB",
            finding!("event-states-3gb.bin"),
            EndsAfter(1),
        ),
        // Shorter than the CRC32 its format description promises:
        // `len - 4` underflowed and the slice panicked, release too
        // (its 44th event, a USER_VAR of 22 bytes).
        (
            "shorter than its checksum",
            finding!("event-shorter-than-checksum.bin"),
            EndsAfter(43),
        ),
        // A DATETIME2 of zero bytes packs to i64::MIN, whose negation
        // overflowed; it decodes (to a nonsense date) as release did.
        (
            "DATETIME2 of zero bytes",
            finding!("datetime2-of-zero-bytes.bin"),
            Rows,
        ),
        // A DATETIME2 whose integer part shifted to the edge of i64:
        // adding its fraction overflowed.
        (
            "DATETIME2 at the edge of i64",
            finding!("datetime2-packed-at-the-edge.bin"),
            Rows,
        ),
        // A negative TIME(1)/TIME(2) with a fraction: mysql_common
        // held the fraction unsigned and `frac -= 0x100` wrapped (a
        // wrong value in release builds; tests/cdc.rs has the real one).
        (
            "negative TIME(2) with a fraction",
            finding!("time2-negative-with-fraction.bin"),
            Rows,
        ),
        // A PREVIOUS_GTIDS event counting 2^56 sources: mysql_common
        // allocated room for them all up front and the process aborted.
        (
            "previous GTIDs counting 2^56",
            finding!("previous-gtids-count-2-to-the-56.bin"),
            Unreadable("unexpected EOF"),
        ),
        // A table map's DECIMAL scale above its precision underflowed.
        (
            "decimal scale above precision",
            finding!("decimal-scale-above-precision.bin"),
            Unreadable("scale above its precision"),
        ),
        // A DECIMAL whose last digit group holds more digits than it
        // can: scaling it overflowed (MySQL refuses it too).
        (
            "decimal digits out of range",
            finding!("decimal-digits-out-of-range.bin"),
            Unreadable("decimal digits out of range"),
        ),
        // A TRANSACTION_PAYLOAD header field longer than the event:
        // mysql_common skipped past its end and panicked slicing.
        (
            "payload header field longer than the event",
            finding!("payload-field-longer-than-event.bin"),
            Unreadable("longer than the event"),
        ),
        // A TRANSACTION_PAYLOAD naming a compression algorithm past 255:
        // mysql_common's conversion to its error `unwrap`ped.
        (
            "payload compression past 255",
            finding!("payload-compression-past-255.bin"),
            Unreadable("unknown payload compression"),
        ),
        // A table map's metadata shorter than its column type needs
        // was indexed past its end.
        (
            "column metadata too short",
            finding!("column-metadata-too-short.bin"),
            Unreadable("metadata shorter"),
        ),
    ];

    #[test]
    fn fuzz_findings_end_as_unreadable_or_refused_not_a_hang_or_a_panic() {
        for (name, bytes, outcome) in FINDINGS {
            let events = read_file(bytes);
            match outcome {
                Unreadable(why) => assert!(
                    events.iter().any(|e| matches!(
                        &e.item, Item::Unreadable { why: w, .. } if w.contains(why))),
                    "{name}: no unreadable item saying {why:?}"
                ),
                EndsAfter(n) => assert_eq!(events.len(), n, "{name}"),
                Rows => assert!(
                    events.iter().any(|e| matches!(e.item, Item::Rows { .. })),
                    "{name}: no rows"
                ),
            }
        }
    }
}
