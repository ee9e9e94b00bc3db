//! The column-type matrix the cdc and Debezium tests share: a table with
//! every MySQL type `sqlcache cdc` publishes, rows covering extremes and
//! NULLs, and for each column the SQL with which MariaDB itself computes
//! the value Debezium's JSON should carry (the independent oracle).

use serde_json::Value as Json;

/// (column, SQL computing Debezium's value as text) for the type table.
pub const TYPES: &[(&str, &str)] = &[
    ("id", "id"),
    ("ti", "ti"),
    ("tu", "tu"),
    ("si", "si"),
    ("mu", "mu"),
    ("iu", "iu"),
    ("bi", "bi"),
    ("bu", "bu"),
    ("f", "f"),
    ("d", "d"),
    ("de", "de"),
    ("dt", "DATEDIFF(dt, '1970-01-01')"),
    ("dtm", "TIMESTAMPDIFF(SECOND, '1970-01-01', dtm) * 1000"),
    (
        "dtm3",
        "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', dtm3) DIV 1000",
    ),
    ("dtm6", "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', dtm6)"),
    (
        "ts",
        "CONCAT(DATE_FORMAT(ts, '%Y-%m-%dT%H:%i:%s.'), LEFT(DATE_FORMAT(ts, '%f'), 3), 'Z')",
    ),
    ("tm", "CAST(TIME_TO_SEC(tm) * 1000000 AS SIGNED)"),
    ("tm2", "CAST(TIME_TO_SEC(tm2) * 1000000 AS SIGNED)"),
    ("yr", "yr + 0"),
    ("c", "c"),
    ("vc", "vc"),
    ("tx", "tx"),
    ("l1", "CONVERT(l1 USING utf8mb4)"),
    ("bn", "TO_BASE64(bn)"),
    ("vb", "TO_BASE64(vb)"),
    ("bl", "TO_BASE64(bl)"),
    ("js", "js"),
    ("en", "en"),
    ("st", "st"),
    ("b1", "IF(b1 IS NULL, NULL, IF(b1 = 1, 'true', 'false'))"),
    ("b12", "TO_BASE64(REVERSE(CAST(b12 AS BINARY)))"),
    ("n", "n"),
];

pub const TYPES_DDL: &str = "CREATE TABLE t (
    id INT PRIMARY KEY, ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, mu MEDIUMINT UNSIGNED,
    iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED, f FLOAT, d DOUBLE, de DECIMAL(24,6),
    dt DATE, dtm DATETIME, dtm3 DATETIME(3), dtm6 DATETIME(6), ts TIMESTAMP(3) NULL,
    tm TIME(6), tm2 TIME(2), yr YEAR, c CHAR(5), vc VARCHAR(50), tx TEXT,
    l1 VARCHAR(20) CHARACTER SET latin1, bn BINARY(4), vb VARBINARY(10), bl BLOB, js JSON,
    en ENUM('a','b','c'), st SET('x','y','z'), b1 BIT(1), b12 BIT(12), n INT NULL)";

pub fn type_row(id: i64) -> String {
    match id % 3 {
        0 => format!(
            "({id}, -128, 255, -32768, 16777215, 4294967295, -9223372036854775808, \
             18446744073709551615, -1.5, 0.001, '-123456789012345678.123456', '1969-07-20', \
             '2038-01-19 03:14:08', '1999-12-31 23:59:59.999', '2024-02-29 13:14:15.123456', \
             '2024-02-29 13:14:15.5', '-838:59:59.000000', '-01:02:03.45', 1901, 'ab', 'héllo wörld ✓', \
             'a long text', 'café €', x'0102', x'00ff10', x'deadbeef', '{{\"a\": [1, 2, {{\"b\": null}}]}}', \
             'c', 'x,z', b'1', b'100000000001', NULL)"
        ),
        1 => format!(
            "({id}, 127, 0, 32767, 0, 0, 9223372036854775807, 0, 3.25, -2.5e-10, '0.000001', \
             '2000-03-01', '1970-01-01 00:00:00', '1970-01-01 00:00:00.001', \
             '1970-01-01 00:00:00.000001', '1970-01-01 00:00:01.000', '00:00:00.000001', '00:00:00.01', 2155, \
             '', '', '', '', x'', x'', x'', '[]', 'a', '', b'0', b'000000000000', 7)"
        ),
        _ => format!(
            "({id}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
             NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
             NULL, NULL, NULL, NULL)"
        ),
    }
}

/// Debezium's JSON value as the text MariaDB prints for the same value.
pub fn as_text(v: &Json) -> Option<String> {
    match v {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}
