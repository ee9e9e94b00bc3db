//! A JSON value of a change event as an exact SQL literal for its target
//! column.
//!
//! Policy: the target column's type decides how a value is read (the
//! inverse of `cdc/columns.rs`, which writes what Debezium's MySQL
//! connector writes), and the field's semantic type, when the envelope
//! carries a schema, settles what the column type cannot: the unit of an
//! epoch number (`Timestamp` ms, `MicroTimestamp` µs, `NanoTimestamp` ns;
//! without a schema DATETIME(0–3) is ms and DATETIME(4–6) µs, as Debezium
//! writes them) and a DECIMAL sent as Connect `Decimal` bytes. Literals are
//! written so no server setting changes them: text as `_utf8mb4 X'…'`,
//! bytes as `X'…'`, DECIMAL as an exact-value numeric literal, temporal
//! values as strings (the sink's session runs with `time_zone = '+00:00'`,
//! so a TIMESTAMP's UTC instant is kept). A value that does not fit its
//! column is a `ValueError` naming the column — never rounded or guessed.

use base64::Engine;
use serde_json::Value as Json;
use std::fmt::Write;

use super::record::Field;

/// How a target column takes values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColType {
    Int,
    /// BIGINT UNSIGNED: Debezium's default `bigint.unsigned.handling.mode
    /// = long` sends values past 2^63 as negative longs (two's complement).
    UnsignedBigInt,
    Float,
    Double,
    Decimal,
    Date,
    /// DATETIME with its fractional-second precision.
    DateTime(u8),
    Timestamp,
    Time,
    Year,
    /// CHAR, VARCHAR, TEXT, ENUM, SET, JSON.
    Text,
    /// BINARY, VARBINARY, BLOB, spatial types.
    Binary,
    Bit,
}

impl ColType {
    /// From `information_schema.COLUMNS`: `DATA_TYPE`, `COLUMN_TYPE` and
    /// `DATETIME_PRECISION`.
    pub fn from_schema(data_type: &str, column_type: &str, precision: u8) -> Option<ColType> {
        let data_type = data_type.to_ascii_lowercase();
        if data_type == "bigint" && column_type.to_ascii_lowercase().contains("unsigned") {
            return Some(ColType::UnsignedBigInt);
        }
        Some(match data_type.as_str() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => ColType::Int,
            "float" => ColType::Float,
            "double" | "real" => ColType::Double,
            "decimal" | "numeric" => ColType::Decimal,
            "date" => ColType::Date,
            "datetime" => ColType::DateTime(precision),
            "timestamp" => ColType::Timestamp,
            "time" => ColType::Time,
            "year" => ColType::Year,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum"
            | "set" | "json" => ColType::Text,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob"
            | "geometry" | "point" | "linestring" | "polygon" | "multipoint"
            | "multilinestring" | "multipolygon" | "geometrycollection" => ColType::Binary,
            "bit" => ColType::Bit,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column `{column}`: {reason}")]
pub struct ValueError {
    pub column: String,
    pub reason: String,
}

fn bad(column: &str, reason: impl Into<String>) -> ValueError {
    ValueError {
        column: column.to_string(),
        reason: reason.into(),
    }
}

/// The literal for `v` in a column `name` of type `ty`.
pub fn literal(
    name: &str,
    ty: &ColType,
    v: &Json,
    field: Option<&Field>,
) -> Result<String, ValueError> {
    if v.is_null() {
        return Ok("NULL".into());
    }
    let semantic = field.and_then(|f| f.semantic.as_deref());
    let wrong = || bad(name, format!("{v} does not fit a {ty:?} column"));
    match ty {
        ColType::Int | ColType::Year => int(v, field).ok_or_else(wrong),
        ColType::UnsignedBigInt => match v.as_i64() {
            Some(n) if n < 0 => Ok((n as u64).to_string()),
            _ => int(v, field).ok_or_else(wrong),
        },
        ColType::Float | ColType::Double => match v.as_f64() {
            Some(f) if v.is_number() => Ok(format!("{f:e}")),
            _ => Err(wrong()),
        },
        ColType::Decimal => decimal(v, field).ok_or_else(wrong),
        ColType::Date => match v {
            Json::Number(_) => v
                .as_i64()
                .and_then(date_of_days)
                .map(quote)
                .ok_or_else(wrong),
            Json::String(s) if is_temporal(s) => Ok(quote(s.clone())),
            _ => Err(wrong()),
        },
        ColType::DateTime(p) => {
            let unit = match semantic {
                Some("io.debezium.time.Timestamp") => 1_000,
                Some("io.debezium.time.NanoTimestamp") => 1_000_000_000,
                Some("io.debezium.time.MicroTimestamp") => 1_000_000,
                _ if *p <= 3 => 1_000,
                _ => 1_000_000,
            };
            epoch_or_iso(v, unit).ok_or_else(wrong)
        }
        ColType::Timestamp => epoch_or_iso(v, 1_000).ok_or_else(wrong),
        ColType::Time => {
            let unit = match semantic {
                Some("io.debezium.time.Time") => 1_000,
                Some("io.debezium.time.NanoTime") => 1_000_000_000,
                _ => 1_000_000,
            };
            match v {
                Json::Number(_) => v
                    .as_i64()
                    .and_then(|n| time_of(n, unit))
                    .map(quote)
                    .ok_or_else(wrong),
                Json::String(s) if is_temporal(s) => Ok(quote(s.clone())),
                _ => Err(wrong()),
            }
        }
        ColType::Text => Ok(match v {
            Json::String(s) => text(s),
            other => text(&other.to_string()),
        }),
        ColType::Binary => match v {
            Json::String(s) => base64(s).map(|b| hex("X", &b)).ok_or_else(wrong),
            _ => Err(wrong()),
        },
        ColType::Bit => match v {
            Json::Bool(b) => Ok(if *b { "1" } else { "0" }.into()),
            Json::Number(_) => int(v, None).ok_or_else(wrong),
            Json::String(s) => {
                let b = base64(s).filter(|b| b.len() <= 8).ok_or_else(wrong)?;
                let n = b.iter().rev().fold(0u64, |n, &x| (n << 8) | u64::from(x));
                Ok(n.to_string())
            }
            _ => Err(wrong()),
        },
    }
}

fn int(v: &Json, field: Option<&Field>) -> Option<String> {
    match v {
        // Connect `Decimal` bytes (Debezium's precise unsigned handling).
        Json::String(_) if field.is_some_and(is_connect_decimal) => decimal(v, field),
        Json::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Json::Bool(b) => Some(if *b { "1" } else { "0" }.into()),
        Json::String(s) if is_integer(s) => Some(s.clone()),
        _ => None,
    }
}

fn is_integer(s: &str) -> bool {
    let d = s.strip_prefix('-').unwrap_or(s);
    !d.is_empty() && d.len() <= 40 && d.bytes().all(|b| b.is_ascii_digit())
}

fn is_decimal(s: &str) -> bool {
    match s.split_once('.') {
        Some((i, f)) => is_integer(i) && !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()),
        None => is_integer(s),
    }
}

fn is_connect_decimal(f: &Field) -> bool {
    f.semantic.as_deref() == Some("org.apache.kafka.connect.data.Decimal") && f.ty == "bytes"
}

fn decimal(v: &Json, field: Option<&Field>) -> Option<String> {
    let connect_decimal = field.is_some_and(is_connect_decimal);
    match v {
        Json::String(s) if connect_decimal => {
            let scale: u32 = match field?.params.get("scale")? {
                Json::String(s) => s.parse().ok()?,
                Json::Number(n) => u32::try_from(n.as_u64()?).ok()?,
                _ => return None,
            };
            unscaled(&base64(s)?, scale)
        }
        Json::String(s) if is_decimal(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Connect `Decimal`: a big-endian two's-complement unscaled value.
fn unscaled(b: &[u8], scale: u32) -> Option<String> {
    if b.is_empty() || b.len() > 16 || scale > 38 {
        return None;
    }
    let mut n: i128 = if b[0] & 0x80 != 0 { -1 } else { 0 };
    for &x in b {
        n = (n << 8) | i128::from(x);
    }
    let digits = n.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (i, f) = padded.split_at(padded.len() - scale);
    let sign = if n < 0 { "-" } else { "" };
    Some(if scale == 0 {
        format!("{sign}{i}")
    } else {
        format!("{sign}{i}.{f}")
    })
}

fn base64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// `prefix'…'` in hex.
fn hex(prefix: &str, b: &[u8]) -> String {
    let mut s = String::with_capacity(prefix.len() + 3 + b.len() * 2);
    s.push_str(prefix);
    s.push('\'');
    for x in b {
        let _ = write!(s, "{x:02X}");
    }
    s.push('\'');
    s
}

fn text(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    hex("_utf8mb4 X", s.as_bytes())
}

/// A temporal string of digits and `-: .`, safe to quote as it is.
fn is_temporal(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b"-: .".contains(&b))
}

fn quote(s: String) -> String {
    format!("'{s}'")
}

/// An epoch number in `per_second` units, or an ISO-8601 UTC string.
fn epoch_or_iso(v: &Json, per_second: i64) -> Option<String> {
    match v {
        Json::Number(_) => {
            let n = v.as_i64()?;
            let secs = n.div_euclid(per_second);
            let frac = n.rem_euclid(per_second);
            let micros = match per_second {
                1_000 => frac * 1_000,
                1_000_000 => frac,
                _ => frac / 1_000,
            };
            datetime_of(secs, micros).map(quote)
        }
        Json::String(s) => {
            let t = s.strip_suffix('Z')?.replacen('T', " ", 1);
            is_temporal(&t).then(|| quote(t))
        }
        _ => None,
    }
}

/// Days since 1970-01-01 as `YYYY-MM-DD` (proleptic Gregorian).
pub fn date_of_days(days: i64) -> Option<String> {
    let (y, m, d) = civil(days)?;
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

fn civil(days: i64) -> Option<(i64, i64, i64)> {
    let z = days.checked_add(719_468)?;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (0..=9999).contains(&y).then_some((y, m, d))
}

fn datetime_of(secs: i64, micros: i64) -> Option<String> {
    let (y, m, d) = civil(secs.div_euclid(86_400))?;
    let s = secs.rem_euclid(86_400);
    Some(format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{micros:06}",
        s / 3600,
        s / 60 % 60,
        s % 60
    ))
}

/// A TIME in `per_second` units as `[-]HHH:MM:SS.ffffff`.
fn time_of(n: i64, per_second: i64) -> Option<String> {
    let micros = n.checked_mul(1_000_000)? / per_second;
    let sign = if micros < 0 { "-" } else { "" };
    let a = micros.unsigned_abs();
    let s = a / 1_000_000;
    (s / 3600 <= 838).then(|| {
        format!(
            "{sign}{:02}:{:02}:{:02}.{:06}",
            s / 3600,
            s / 60 % 60,
            s % 60,
            a % 1_000_000
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lit(ty: ColType, v: Json) -> String {
        literal("c", &ty, &v, None).unwrap()
    }

    fn field(semantic: &str, ty: &str, params: Json) -> Field {
        Field {
            name: "c".into(),
            ty: ty.into(),
            semantic: Some(semantic.into()),
            optional: true,
            params: params.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn numbers_are_exact() {
        assert_eq!(
            lit(ColType::Int, json!(18446744073709551615u64)),
            "18446744073709551615"
        );
        assert_eq!(
            lit(ColType::Int, json!(-9223372036854775808i64)),
            "-9223372036854775808"
        );
        assert_eq!(
            lit(ColType::Decimal, json!("-12345678901234567890.0001")),
            "-12345678901234567890.0001"
        );
        assert_eq!(lit(ColType::Double, json!(0.1)), "1e-1");
        assert_eq!(lit(ColType::Float, json!(3.4028235e38)), "3.4028235e38");
        assert!(literal("c", &ColType::Decimal, &json!("1; DROP"), None).is_err());
        assert!(literal("c", &ColType::Int, &json!(1.5), None).is_err());
    }

    #[test]
    fn debezium_unsigned_bigints_in_either_mode() {
        // long mode: 2^64 - 1 arrives as -1; precise mode: Decimal bytes.
        assert_eq!(
            lit(ColType::UnsignedBigInt, json!(-1)),
            "18446744073709551615"
        );
        assert_eq!(lit(ColType::UnsignedBigInt, json!(7)), "7");
        let f = field(
            "org.apache.kafka.connect.data.Decimal",
            "bytes",
            json!({"scale": "0"}),
        );
        // 0x00FFFFFFFFFFFFFFFF = 2^64 - 1.
        assert_eq!(
            literal(
                "c",
                &ColType::UnsignedBigInt,
                &json!("AP//////////"),
                Some(&f)
            )
            .unwrap(),
            "18446744073709551615"
        );
    }

    #[test]
    fn connect_decimal_bytes_use_the_scale() {
        // 1.00 with scale 2 is unscaled 100 = 0x64; -1.5 scale 1 is -15 = 0xF1.
        let f = field(
            "org.apache.kafka.connect.data.Decimal",
            "bytes",
            json!({"scale": "2"}),
        );
        assert_eq!(
            literal("c", &ColType::Decimal, &json!("ZA=="), Some(&f)).unwrap(),
            "1.00"
        );
        let f = field(
            "org.apache.kafka.connect.data.Decimal",
            "bytes",
            json!({"scale": "1"}),
        );
        assert_eq!(
            literal("c", &ColType::Decimal, &json!("8Q=="), Some(&f)).unwrap(),
            "-1.5"
        );
        assert_eq!(unscaled(&[0x05], 3).unwrap(), "0.005");
    }

    #[test]
    fn temporal_values_by_unit() {
        assert_eq!(lit(ColType::Date, json!(19723)), "'2024-01-01'");
        assert_eq!(lit(ColType::Date, json!(-719528)), "'0000-01-01'");
        assert_eq!(
            lit(ColType::DateTime(6), json!(1704067200123456i64)),
            "'2024-01-01 00:00:00.123456'"
        );
        assert_eq!(
            lit(ColType::DateTime(3), json!(1704067200123i64)),
            "'2024-01-01 00:00:00.123000'"
        );
        assert_eq!(
            lit(ColType::DateTime(0), json!(-1000)),
            "'1969-12-31 23:59:59.000000'"
        );
        let nano = field("io.debezium.time.NanoTimestamp", "int64", json!({}));
        assert_eq!(
            literal(
                "c",
                &ColType::DateTime(6),
                &json!(1704067200123456789i64),
                Some(&nano)
            )
            .unwrap(),
            "'2024-01-01 00:00:00.123456'"
        );
        assert_eq!(
            lit(ColType::Timestamp, json!("2024-01-01T10:20:30.5Z")),
            "'2024-01-01 10:20:30.5'"
        );
        assert!(literal(
            "c",
            &ColType::Timestamp,
            &json!("2024-01-01T10:20:30+02:00"),
            None
        )
        .is_err());
        assert_eq!(
            lit(ColType::Time, json!(-3020399000000i64)),
            "'-838:59:59.000000'"
        );
        assert_eq!(
            lit(ColType::Time, json!(45296000001i64)),
            "'12:34:56.000001'"
        );
        assert!(literal("c", &ColType::Time, &json!(3020400000000i64), None).is_err());
        assert_eq!(lit(ColType::Year, json!(2155)), "2155");
    }

    #[test]
    fn text_bytes_and_bits() {
        assert_eq!(lit(ColType::Text, json!("é'")), "_utf8mb4 X'C3A927'");
        assert_eq!(lit(ColType::Text, json!("")), "''");
        assert_eq!(
            lit(ColType::Text, json!({"a": 1})),
            "_utf8mb4 X'7B2261223A317D'"
        );
        assert_eq!(lit(ColType::Binary, json!("AP8=")), "X'00FF'");
        assert_eq!(lit(ColType::Bit, json!(true)), "1");
        // BIT(n > 1): little-endian bytes, 0x0102 = 258.
        assert_eq!(lit(ColType::Bit, json!("AgE=")), "258");
        assert_eq!(lit(ColType::Int, json!(null)), "NULL");
        assert!(literal("c", &ColType::Binary, &json!("not base64!"), None).is_err());
    }

    #[test]
    fn column_types_from_the_schema() {
        assert_eq!(
            ColType::from_schema("BIGINT", "bigint(20)", 0),
            Some(ColType::Int)
        );
        assert_eq!(
            ColType::from_schema("bigint", "bigint(20) unsigned", 0),
            Some(ColType::UnsignedBigInt)
        );
        assert_eq!(
            ColType::from_schema("datetime", "datetime(6)", 6),
            Some(ColType::DateTime(6))
        );
        assert_eq!(
            ColType::from_schema("longtext", "longtext", 0),
            Some(ColType::Text)
        );
        assert_eq!(ColType::from_schema("vector", "vector(3)", 0), None);
    }
}
