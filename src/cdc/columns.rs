//! Column types and how their values are written in Debezium's JSON.
//!
//! Policy: a value is encoded the way the Debezium MySQL connector encodes
//! it with its default settings (except DECIMAL, which is a string as with
//! `decimal.handling.mode=string`), and a snapshot row (read with the binary
//! protocol, session time zone UTC) and the same row decoded from the binlog
//! encode to the same JSON. The two sources describe columns differently
//! (result-set columns vs the binlog's table map), so each is first turned
//! into a `Kind`; values that the binlog carries in another form (ENUM as an
//! index, SET as a bitmask, TIMESTAMP as epoch seconds, YEAR as text) are
//! normalized by `Kind` in `encode`. A value that cannot be encoded exactly
//! — a text column in a character set this module cannot decode, bytes that
//! are not valid in their character set — is an error, never a guess.
//!
//! | MySQL type | JSON | Debezium semantic type |
//! |---|---|---|
//! | TINYINT…BIGINT (signed or unsigned) | number, exact | |
//! | FLOAT / DOUBLE | number | |
//! | DECIMAL | string | (`decimal.handling.mode=string`) |
//! | DATE | days since 1970-01-01 | `io.debezium.time.Date` |
//! | DATETIME(0–3) | milliseconds since epoch (as if UTC) | `io.debezium.time.Timestamp` |
//! | DATETIME(4–6) | microseconds since epoch (as if UTC) | `io.debezium.time.MicroTimestamp` |
//! | TIMESTAMP | ISO-8601 string in UTC, `Z` | `io.debezium.time.ZonedTimestamp` |
//! | TIME | microseconds | `io.debezium.time.MicroTime` |
//! | YEAR | number | `io.debezium.time.Year` |
//! | CHAR / VARCHAR / TEXT | string (from the column's charset) | |
//! | BINARY / VARBINARY / BLOB / GEOMETRY | base64 string | |
//! | JSON | string holding the JSON text | `io.debezium.data.Json` |
//! | ENUM / SET | string (SET: comma-separated) | `io.debezium.data.Enum` / `EnumSet` |
//! | BIT(1) | boolean | |
//! | BIT(n > 1) | base64, little-endian bytes | `io.debezium.data.Bits` |
//!
//! Zero dates (`0000-00-00`) are `null`, as Debezium writes them.

use std::collections::HashMap;

use base64::Engine;
use mysql_async::binlog::events::{OptionalMetaExtractor, OptionalMetadataField, TableMapEvent};
use mysql_async::binlog::value::BinlogValue;
use mysql_common::constants::{ColumnFlags, ColumnType};
use mysql_common::packets::Column;
use mysql_common::value::Value;
use serde_json::Value as Json;

/// What the encoder needs to know of a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// An integer whose Kafka Connect type has this many bits (Debezium:
    /// TINYINT and SMALLINT 16, SMALLINT UNSIGNED, MEDIUMINT and INT 32,
    /// INT UNSIGNED and BIGINT 64).
    Int(u8),
    Float,
    Double,
    Decimal,
    Date,
    /// DATETIME with its fractional-second precision.
    DateTime(u8),
    Timestamp(u8),
    Time,
    Year,
    /// Text in a character set (`Charset`).
    Text(Charset),
    /// Bytes; `Some(n)`: BINARY(n), whose trailing zero bytes the binlog
    /// leaves out.
    Binary(Option<usize>),
    /// BIT(n).
    Bit(u16),
    /// ENUM / SET with their member names (empty when the values arrive as
    /// text, as in a snapshot).
    Enum(Vec<String>),
    Set(Vec<String>),
    Json,
}

/// Character sets text columns can be decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// utf8mb4, utf8mb3 and ascii: the bytes are UTF-8 already.
    Utf8,
    /// MySQL's latin1, which is Windows-1252.
    Latin1,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMeta {
    pub name: String,
    pub kind: Kind,
    pub pk: bool,
    pub nullable: bool,
}

/// Debezium's Connect integer width for a MySQL integer type.
fn int_bits(ty: ColumnType, unsigned: bool) -> u8 {
    use ColumnType::*;
    match (ty, unsigned) {
        (MYSQL_TYPE_TINY, _) | (MYSQL_TYPE_SHORT, false) => 16,
        (MYSQL_TYPE_SHORT, true) | (MYSQL_TYPE_INT24, _) | (MYSQL_TYPE_LONG, false) => 32,
        _ => 64,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ColumnError {
    #[error("column {column}: character set {charset} is not supported (use utf8mb4, utf8mb3, ascii, latin1 or binary)")]
    Charset { column: String, charset: String },
    #[error("column {column}: unknown collation id {id}")]
    Collation { column: String, id: u16 },
    #[error("column {column}: type {ty:?} is not supported")]
    Type { column: String, ty: ColumnType },
    #[error("column {column}: value {value} does not fit the column type")]
    Value { column: String, value: String },
    #[error("{0}")]
    Metadata(String),
}

/// Collation id → character set name, as the server reports them
/// (`information_schema.COLLATIONS`: MariaDB and MySQL number them apart).
pub type Collations = HashMap<u16, String>;

fn charset_of(
    column: &str,
    id: u16,
    collations: &Collations,
) -> Result<Option<Charset>, ColumnError> {
    let name = collations.get(&id).ok_or(ColumnError::Collation {
        column: column.to_string(),
        id,
    })?;
    match name.as_str() {
        "binary" => Ok(None),
        "utf8mb4" | "utf8mb3" | "utf8" | "ascii" => Ok(Some(Charset::Utf8)),
        "latin1" => Ok(Some(Charset::Latin1)),
        other => Err(ColumnError::Charset {
            column: column.to_string(),
            charset: other.to_string(),
        }),
    }
}

/// Columns of a binlog table map (needs `binlog_row_metadata=FULL`).
pub fn from_table_map(
    tme: &TableMapEvent<'_>,
    collations: &Collations,
) -> Result<Vec<ColumnMeta>, ColumnError> {
    let meta_err = |e: std::io::Error| ColumnError::Metadata(e.to_string());
    let n = tme.columns_count() as usize;
    let mut members = Members::of(tme)?;
    let extract = OptionalMetaExtractor::new(tme.iter_optional_meta()).map_err(meta_err)?;
    let names = extract
        .iter_column_name()
        .map(|c| c.map(|c| c.name().into_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(meta_err)?;
    if names.len() != n {
        return Err(ColumnError::Metadata(format!(
            "{}.{}: the table map names {} of {} columns (binlog_row_metadata must be FULL)",
            tme.database_name(),
            tme.table_name(),
            names.len(),
            n
        )));
    }
    let pks = extract
        .iter_primary_key()
        .collect::<Result<Vec<u64>, _>>()
        .map_err(meta_err)?;
    // Both charset lists are per character (resp. ENUM/SET) column, in
    // order; with a default charset they never end.
    let mut signedness = extract.iter_signedness();
    let nulls = tme.null_bitmask();
    let mut charsets = extract.iter_charset();
    let mut enum_charsets = extract.iter_enum_and_set_charset();
    let mut out = Vec::with_capacity(n);
    for (i, name) in names.into_iter().enumerate() {
        let ty = tme
            .get_column_type(i)
            .map_err(|e| ColumnError::Metadata(e.to_string()))?
            .ok_or_else(|| ColumnError::Metadata(format!("no type for column {name}")))?;
        let meta = tme.get_column_metadata(i).unwrap_or(&[]);
        let m = (
            meta.first().copied().unwrap_or(0),
            meta.get(1).copied().unwrap_or(0),
        );
        let unsigned = ty.is_numeric_type() && signedness.next().unwrap_or(false);
        let charset = if ty.is_character_type() {
            charsets.next()
        } else if ty.is_enum_or_set_type() {
            enum_charsets.next()
        } else {
            None
        };
        let collation = match charset {
            Some(c) => Some(c.map_err(meta_err)?),
            None if ty.is_character_type() || ty.is_enum_or_set_type() => {
                return Err(ColumnError::Metadata(format!(
                    "no character set for column {name}"
                )))
            }
            None => None,
        };
        let text = |pad| match charset_of(&name, collation.unwrap_or(63), collations)? {
            Some(cs) => Ok(Kind::Text(cs)),
            None => Ok(Kind::Binary(pad)),
        };
        let kind = binlog_kind(ty, m, unsigned, &name, &mut members, text)?;
        out.push(ColumnMeta {
            pk: pks.contains(&(i as u64)),
            nullable: nulls.get(i).is_some_and(|b| *b),
            name,
            kind,
        });
    }
    Ok(out)
}

/// The members of a table's ENUM and SET columns, in column order.
struct Members {
    enums: std::vec::IntoIter<Vec<String>>,
    sets: std::vec::IntoIter<Vec<String>>,
}

impl Members {
    fn of(tme: &TableMapEvent<'_>) -> Result<Members, ColumnError> {
        let meta_err = |e: std::io::Error| ColumnError::Metadata(e.to_string());
        let (mut enums, mut sets) = (Vec::new(), Vec::new());
        for field in tme.iter_optional_meta() {
            match field.map_err(meta_err)? {
                OptionalMetadataField::EnumStrValue(e) => {
                    for v in e.iter_values() {
                        let v = v.map_err(meta_err)?;
                        enums.push(v.values().iter().map(|s| s.value().into_owned()).collect());
                    }
                }
                OptionalMetadataField::SetStrValue(e) => {
                    for v in e.iter_values() {
                        let v = v.map_err(meta_err)?;
                        sets.push(v.values().iter().map(|s| s.value().into_owned()).collect());
                    }
                }
                _ => {}
            }
        }
        Ok(Members {
            enums: enums.into_iter(),
            sets: sets.into_iter(),
        })
    }
}

/// The kind of a binlog column from its type and metadata bytes `m`;
/// `text` decides character vs binary strings by the column's collation.
fn binlog_kind(
    ty: ColumnType,
    (m0, m1): (u8, u8),
    unsigned: bool,
    name: &str,
    members: &mut Members,
    text: impl Fn(Option<usize>) -> Result<Kind, ColumnError>,
) -> Result<Kind, ColumnError> {
    use ColumnType::*;
    let no = |what: &str| ColumnError::Metadata(format!("no {what} members for {name}"));
    Ok(match ty {
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG
        | MYSQL_TYPE_LONGLONG => Kind::Int(int_bits(ty, unsigned)),
        MYSQL_TYPE_FLOAT => Kind::Float,
        MYSQL_TYPE_DOUBLE => Kind::Double,
        MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL => Kind::Decimal,
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => Kind::Date,
        MYSQL_TYPE_DATETIME => Kind::DateTime(0),
        MYSQL_TYPE_DATETIME2 => Kind::DateTime(m0),
        MYSQL_TYPE_TIMESTAMP => Kind::Timestamp(0),
        MYSQL_TYPE_TIMESTAMP2 => Kind::Timestamp(m0),
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => Kind::Time,
        MYSQL_TYPE_YEAR => Kind::Year,
        MYSQL_TYPE_BIT => Kind::Bit(u16::from(m1) * 8 + u16::from(m0)),
        MYSQL_TYPE_JSON => Kind::Json,
        MYSQL_TYPE_ENUM => Kind::Enum(members.enums.next().ok_or_else(|| no("ENUM"))?),
        MYSQL_TYPE_SET => Kind::Set(members.sets.next().ok_or_else(|| no("SET"))?),
        MYSQL_TYPE_STRING => {
            // CHAR(n)/BINARY(n): the length in bytes hides in the meta.
            let len = if (m0 & 0x30) != 0x30 {
                usize::from(m1) | ((usize::from(m0 & 0x30) ^ 0x30) << 4)
            } else {
                usize::from(m1)
            };
            text(Some(len))?
        }
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING | MYSQL_TYPE_BLOB => text(None)?,
        MYSQL_TYPE_GEOMETRY => Kind::Binary(None),
        ty => {
            return Err(ColumnError::Type {
                column: name.to_string(),
                ty,
            })
        }
    })
}

/// Columns of a snapshot result set (binary protocol).
pub fn from_result_set(columns: &[Column]) -> Result<Vec<ColumnMeta>, ColumnError> {
    use ColumnType::*;
    columns
        .iter()
        .map(|c| {
            let name = c.name_str().into_owned();
            let flags = c.flags();
            let dec = c.decimals().min(6);
            let kind = match c.column_type() {
                ty @ (MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG
                | MYSQL_TYPE_LONGLONG) => {
                    Kind::Int(int_bits(ty, flags.contains(ColumnFlags::UNSIGNED_FLAG)))
                }
                MYSQL_TYPE_FLOAT => Kind::Float,
                MYSQL_TYPE_DOUBLE => Kind::Double,
                MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL => Kind::Decimal,
                MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => Kind::Date,
                MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => Kind::DateTime(dec),
                MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => Kind::Timestamp(dec),
                MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => Kind::Time,
                MYSQL_TYPE_YEAR => Kind::Year,
                MYSQL_TYPE_BIT => Kind::Bit(c.column_length() as u16),
                MYSQL_TYPE_JSON => Kind::Json,
                _ if flags.contains(ColumnFlags::ENUM_FLAG) => Kind::Enum(Vec::new()),
                _ if flags.contains(ColumnFlags::SET_FLAG) => Kind::Set(Vec::new()),
                MYSQL_TYPE_STRING
                | MYSQL_TYPE_VARCHAR
                | MYSQL_TYPE_VAR_STRING
                | MYSQL_TYPE_TINY_BLOB
                | MYSQL_TYPE_MEDIUM_BLOB
                | MYSQL_TYPE_LONG_BLOB
                | MYSQL_TYPE_BLOB => {
                    // The server converted text to the connection's utf8mb4;
                    // only binary columns keep their bytes.
                    if c.character_set() == 63 {
                        Kind::Binary(None)
                    } else {
                        Kind::Text(Charset::Utf8)
                    }
                }
                MYSQL_TYPE_GEOMETRY => Kind::Binary(None),
                ty => return Err(ColumnError::Type { column: name, ty }),
            };
            Ok(ColumnMeta {
                pk: flags.contains(ColumnFlags::PRI_KEY_FLAG),
                nullable: !flags.contains(ColumnFlags::NOT_NULL_FLAG),
                name,
                kind,
            })
        })
        .collect()
}

/// A value as it arrived: from the binlog or from a snapshot query.
pub enum Raw<'a> {
    Binlog(&'a BinlogValue<'a>),
    Snapshot(&'a Value),
}

fn bad(col: &ColumnMeta, v: impl std::fmt::Debug) -> ColumnError {
    ColumnError::Value {
        column: col.name.clone(),
        value: format!("{v:?}"),
    }
}

/// The Debezium JSON of one value.
pub fn encode(col: &ColumnMeta, raw: Raw<'_>) -> Result<Json, ColumnError> {
    let v = match raw {
        Raw::Binlog(BinlogValue::Value(v)) => v,
        Raw::Binlog(BinlogValue::Jsonb(j)) => {
            let j = serde_json::Value::try_from(j.clone()).map_err(|e| bad(col, e))?;
            return Ok(Json::String(j.to_string()));
        }
        Raw::Binlog(BinlogValue::JsonDiff(_)) => {
            // Only with binlog_row_value_options=PARTIAL_JSON.
            return Err(bad(col, "partial JSON update (binlog_row_value_options)"));
        }
        Raw::Snapshot(v) => v,
    };
    encode_value(col, v)
}

fn encode_value(col: &ColumnMeta, v: &Value) -> Result<Json, ColumnError> {
    match (&col.kind, v) {
        (_, Value::NULL) => Ok(Json::Null),
        (Kind::Int(_) | Kind::Year | Kind::Float | Kind::Double | Kind::Decimal, _) => {
            number(col, v)
        }
        (Kind::Date | Kind::DateTime(_) | Kind::Timestamp(_) | Kind::Time, _) => temporal(col, v),
        _ => string_like(col, v),
    }
}

/// Text a column's bytes must be.
fn utf8(col: &ColumnMeta, b: &[u8]) -> Result<String, ColumnError> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| bad(col, b))
}

/// Integers, YEAR, FLOAT, DOUBLE and DECIMAL.
fn number(col: &ColumnMeta, v: &Value) -> Result<Json, ColumnError> {
    Ok(match (&col.kind, v) {
        (Kind::Int(_) | Kind::Year, Value::Int(i)) => Json::from(*i),
        (Kind::Int(_) | Kind::Year, Value::UInt(u)) => Json::from(*u),
        (Kind::Int(_), Value::Bytes(b)) => {
            let t = utf8(col, b)?;
            t.parse::<i64>()
                .map(Json::from)
                .or_else(|_| t.parse::<u64>().map(Json::from))
                .map_err(|_| bad(col, t))?
        }
        (Kind::Year, Value::Bytes(b)) => {
            // The binlog decoder adds 1900 to the stored byte; 0 is 0000.
            let y: i64 = utf8(col, b)?.parse().map_err(|_| bad(col, b))?;
            Json::from(if y == 1900 { 0 } else { y })
        }
        (Kind::Float, Value::Float(f)) => float32(*f),
        (Kind::Float, Value::Double(d)) => float32(*d as f32),
        (Kind::Double, Value::Double(d)) => Json::from(*d),
        (Kind::Double, Value::Float(f)) => Json::from(f64::from(*f)),
        (Kind::Decimal, Value::Bytes(b)) => Json::String(utf8(col, b)?),
        (_, v) => return Err(bad(col, v)),
    })
}

/// DATE, DATETIME, TIMESTAMP and TIME, as Debezium encodes them.
fn temporal(col: &ColumnMeta, v: &Value) -> Result<Json, ColumnError> {
    Ok(match (&col.kind, v) {
        (Kind::Date, Value::Date(y, m, d, ..)) => match days(*y, *m, *d) {
            Some(days) => Json::from(days),
            None => Json::Null,
        },
        (Kind::DateTime(fsp), Value::Date(y, mo, d, h, mi, s, us)) => {
            let Some(days) = days(*y, *mo, *d) else {
                return Ok(Json::Null);
            };
            let secs = days * 86_400 + i64::from(*h) * 3600 + i64::from(*mi) * 60 + i64::from(*s);
            if *fsp <= 3 {
                Json::from(secs * 1000 + i64::from(*us) / 1000)
            } else {
                Json::from(secs * 1_000_000 + i64::from(*us))
            }
        }
        (Kind::Timestamp(fsp), Value::Date(y, mo, d, h, mi, s, us)) => {
            if days(*y, *mo, *d).is_none() {
                return Ok(Json::Null);
            }
            Json::String(zoned(*y, *mo, *d, *h, *mi, *s, *us, *fsp))
        }
        (Kind::Timestamp(fsp), Value::Int(secs)) => from_epoch(*secs, 0, *fsp),
        (Kind::Timestamp(fsp), Value::Bytes(b)) => {
            // TIMESTAMP2 from the binlog: "seconds[.micros]" since epoch.
            let t = utf8(col, b)?;
            let (s, us) = t.split_once('.').unwrap_or((&t, "0"));
            let s: i64 = s.parse().map_err(|_| bad(col, &t))?;
            let us: u32 = us.parse().map_err(|_| bad(col, &t))?;
            from_epoch(s, us, *fsp)
        }
        (Kind::Time, Value::Time(neg, d, h, m, s, us)) => {
            let micros =
                ((i64::from(*d) * 24 + i64::from(*h)) * 3600 + i64::from(*m) * 60 + i64::from(*s))
                    * 1_000_000
                    + i64::from(*us);
            Json::from(if *neg { -micros } else { micros })
        }
        (_, v) => return Err(bad(col, v)),
    })
}

/// Character and binary strings, BIT, JSON, ENUM and SET.
fn string_like(col: &ColumnMeta, v: &Value) -> Result<Json, ColumnError> {
    Ok(match (&col.kind, v) {
        (Kind::Text(cs), Value::Bytes(b)) => Json::String(match cs {
            Charset::Utf8 => utf8(col, b)?,
            Charset::Latin1 => latin1(b),
        }),
        (Kind::Binary(pad), Value::Bytes(b)) => {
            let mut bytes = b.clone();
            if let Some(n) = pad {
                if bytes.len() < *n {
                    bytes.resize(*n, 0);
                }
            }
            Json::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        (Kind::Bit(n), Value::Bytes(b)) => bits(*n, b),
        (Kind::Bit(n), Value::Int(i)) => bits(*n, &i.to_be_bytes()),
        (Kind::Bit(n), Value::UInt(u)) => bits(*n, &u.to_be_bytes()),
        (Kind::Json, Value::Bytes(b)) => Json::String(utf8(col, b)?),
        (Kind::Enum(names), Value::Int(i)) => {
            // The binlog's 1-based member index; 0 is the '' error value.
            let i = *i as usize;
            match i {
                0 => Json::String(String::new()),
                i => Json::String(names.get(i - 1).ok_or_else(|| bad(col, i))?.clone()),
            }
        }
        (Kind::Enum(_) | Kind::Set(_), Value::Bytes(b)) if !is_set_mask(col) => {
            Json::String(utf8(col, b)?)
        }
        (Kind::Set(names), Value::Bytes(mask)) => {
            let mut out = Vec::new();
            for (i, name) in names.iter().enumerate() {
                if mask
                    .get(i / 8)
                    .is_some_and(|byte| byte & (1 << (i % 8)) != 0)
                {
                    out.push(name.as_str());
                }
            }
            Json::String(out.join(","))
        }
        (_, v) => return Err(bad(col, v)),
    })
}

/// A SET value from the binlog is a bitmask; from a snapshot, text. Binlog
/// columns know their members, snapshot columns do not.
fn is_set_mask(col: &ColumnMeta) -> bool {
    matches!(&col.kind, Kind::Set(names) if !names.is_empty())
}

/// FLOAT is single precision: written with the digits that identify the
/// f32 (`1.1`, not `1.100000023841858`), as Debezium's FLOAT32 is.
fn float32(f: f32) -> Json {
    f.to_string()
        .parse::<f64>()
        .map(Json::from)
        .unwrap_or(Json::Null)
}

/// BIT(1) is a boolean; longer ones are the bits' bytes, least significant
/// byte first (Debezium's `Bits`), `ceil(n/8)` of them.
fn bits(n: u16, big_endian: &[u8]) -> Json {
    let len = usize::from(n).div_ceil(8).max(1);
    let mut le: Vec<u8> = big_endian.iter().rev().copied().collect();
    le.resize(len, 0);
    if n == 1 {
        return Json::Bool(le[0] & 1 == 1);
    }
    Json::String(base64::engine::general_purpose::STANDARD.encode(le))
}

/// Days from 1970-01-01 to a civil date; `None` for zero dates.
pub fn days(y: u16, m: u8, d: u8) -> Option<i64> {
    // Zero dates and dates with a zero part (allowed without NO_ZERO_IN_DATE).
    if m == 0 || d == 0 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// The civil date of a day count (inverse of `days`).
fn civil(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn from_epoch(secs: i64, us: u32, fsp: u8) -> Json {
    if secs == 0 && us == 0 {
        // TIMESTAMP's zero value, '0000-00-00 00:00:00'.
        return Json::Null;
    }
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    Json::String(zoned(
        y as u16,
        m,
        d,
        (t / 3600) as u8,
        (t / 60 % 60) as u8,
        (t % 60) as u8,
        us,
        fsp,
    ))
}

/// `2024-01-02T03:04:05Z`, with `fsp` fraction digits when the column has
/// them (Debezium's ZonedTimestamp).
#[allow(clippy::too_many_arguments)]
fn zoned(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, us: u32, fsp: u8) -> String {
    let mut out = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    if fsp > 0 {
        let frac = format!("{us:06}");
        out.push('.');
        out.push_str(&frac[..usize::from(fsp.min(6))]);
    }
    out.push('Z');
    out
}

/// MySQL's latin1 is Windows-1252: 0x80–0x9F hold typographic characters.
fn latin1(b: &[u8]) -> String {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž',
        '\u{8f}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}',
        'ž', 'Ÿ',
    ];
    b.iter()
        .map(|&c| match c {
            0x80..=0x9f => HIGH[usize::from(c - 0x80)],
            c => char::from(c),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(kind: Kind) -> ColumnMeta {
        ColumnMeta {
            name: "c".into(),
            kind,
            pk: false,
            nullable: true,
        }
    }

    fn enc(kind: Kind, v: Value) -> Json {
        encode_value(&col(kind), &v).unwrap()
    }

    #[test]
    fn dates_count_days_from_the_epoch() {
        assert_eq!(days(1970, 1, 1), Some(0));
        assert_eq!(days(2000, 3, 1), Some(11_017));
        assert_eq!(days(1969, 12, 31), Some(-1));
        assert_eq!(days(0, 0, 0), None);
        for z in [-719_162, -1, 0, 1, 11_017, 2_932_896] {
            let (y, m, d) = civil(z);
            assert_eq!(days(y as u16, m, d), Some(z));
        }
    }

    #[test]
    fn temporal_values_follow_debeziums_default_mode() {
        let dt = Value::Date(2024, 2, 29, 13, 14, 15, 123_456);
        assert_eq!(enc(Kind::Date, dt.clone()), Json::from(19_782));
        assert_eq!(
            enc(Kind::DateTime(0), Value::Date(2024, 2, 29, 13, 14, 15, 0)),
            Json::from(1_709_212_455_000i64)
        );
        assert_eq!(
            enc(Kind::DateTime(3), dt.clone()),
            Json::from(1_709_212_455_123i64)
        );
        assert_eq!(
            enc(Kind::DateTime(6), dt.clone()),
            Json::from(1_709_212_455_123_456i64)
        );
        assert_eq!(
            enc(Kind::Timestamp(3), dt.clone()),
            Json::from("2024-02-29T13:14:15.123Z")
        );
        // The binlog's epoch form gives the same string.
        assert_eq!(
            enc(
                Kind::Timestamp(3),
                Value::Bytes(b"1709212455.123000".to_vec())
            ),
            Json::from("2024-02-29T13:14:15.123Z")
        );
        assert_eq!(
            enc(Kind::Timestamp(0), Value::Bytes(b"1709212455".to_vec())),
            Json::from("2024-02-29T13:14:15Z")
        );
        assert_eq!(
            enc(Kind::Time, Value::Time(true, 1, 2, 3, 4, 5)),
            Json::from(-(((24 + 2) * 3600 + 3 * 60 + 4) * 1_000_000i64 + 5))
        );
        assert_eq!(
            enc(Kind::Date, Value::Date(0, 0, 0, 0, 0, 0, 0)),
            Json::Null
        );
        assert_eq!(
            enc(Kind::Year, Value::Bytes(b"2024".to_vec())),
            Json::from(2024)
        );
        assert_eq!(enc(Kind::Year, Value::Int(2024)), Json::from(2024));
    }

    #[test]
    fn numbers_are_exact() {
        assert_eq!(
            enc(Kind::Int(64), Value::UInt(u64::MAX)),
            Json::from(u64::MAX)
        );
        assert_eq!(
            enc(Kind::Int(64), Value::Int(i64::MIN)),
            Json::from(i64::MIN)
        );
        assert_eq!(enc(Kind::Float, Value::Float(1.1)).to_string(), "1.1");
        assert_eq!(
            enc(Kind::Decimal, Value::Bytes(b"-12.50".to_vec())),
            Json::from("-12.50")
        );
    }

    #[test]
    fn bytes_bits_enums_and_sets() {
        assert_eq!(
            enc(Kind::Binary(Some(4)), Value::Bytes(vec![1, 2])),
            Json::from("AQIAAA==")
        );
        assert_eq!(enc(Kind::Bit(1), Value::Bytes(vec![1])), Json::Bool(true));
        // b'0000000100000010' → bytes 0x02 0x01.
        assert_eq!(
            enc(Kind::Bit(16), Value::Bytes(vec![1, 2])),
            Json::from("AgE=")
        );
        let e = Kind::Enum(vec!["a".into(), "b".into()]);
        assert_eq!(enc(e.clone(), Value::Int(2)), Json::from("b"));
        assert_eq!(
            enc(Kind::Enum(vec![]), Value::Bytes(b"b".to_vec())),
            Json::from("b")
        );
        let s = Kind::Set(vec!["x".into(), "y".into(), "z".into()]);
        assert_eq!(enc(s, Value::Bytes(vec![0b101])), Json::from("x,z"));
        assert_eq!(
            enc(Kind::Set(vec![]), Value::Bytes(b"x,z".to_vec())),
            Json::from("x,z")
        );
        assert_eq!(
            enc(
                Kind::Text(Charset::Latin1),
                Value::Bytes(vec![b'a', 0xe9, 0x80])
            ),
            Json::from("aé€")
        );
        assert!(encode_value(&col(Kind::Text(Charset::Utf8)), &Value::Bytes(vec![0xff])).is_err());
        assert_eq!(enc(Kind::Int(64), Value::NULL), Json::Null);
    }
}
