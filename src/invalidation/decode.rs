//! Decoders for change-feed messages → `ChangeEvent`s.
//!
//! Formats (JSON, as the tools publish them by default):
//! * **Debezium** MySQL connector: value with or without the
//!   `schema`/`payload` envelope; `op` c/u/d/r (rows), `t` (truncate); the
//!   message key is the primary-key struct; a key change arrives as a delete
//!   of the old key plus a create of the new one; a tombstone (null value) is
//!   ignored; messages on the schema-change topic (`ddl`, `tableChanges`)
//!   become table events.
//! * **Canal** flat message: `database`, `table`, `type`, `isDdl`,
//!   `pkNames`, `data[]` (every value a string, several rows a message),
//!   `old[]` (changed columns only: a key there is the row's old key).
//! * **Maxwell**: `database`, `table`, `type` (insert / update / delete /
//!   bootstrap-insert / table-* / database-*), `data`, `old`; key
//!   `{"database", "table", "pk.<col>": …}`.
//!
//! Policy: a message that cannot be read is an error the caller turns into a
//! table event (if the table is known) or `Everything` — never ignored.

use serde_json::{Map, Value};

use super::ChangeEvent;

pub use crate::config::Format;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("unexpected message shape: {0}")]
    Shape(&'static str),
}

/// Decodes one message (`key`, `value` as published, `topic` it came from).
pub fn decode(
    format: Format,
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<Vec<ChangeEvent>, DecodeError> {
    let parse =
        |b: &[u8]| serde_json::from_slice::<Value>(b).map_err(|e| DecodeError::Json(e.to_string()));
    let key = match key {
        Some(k) if !k.is_empty() => Some(parse(k)?),
        _ => None,
    };
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        // Debezium tombstone after a delete (the delete itself was applied).
        return Ok(Vec::new());
    };
    let value = parse(value)?;
    match format {
        Format::Debezium => debezium(topic, key.as_ref(), &value),
        Format::Canal => canal(&value),
        Format::Maxwell => maxwell(key.as_ref(), &value),
    }
}

/// What a message that could not be decoded invalidates: its table when the
/// message (or, for Debezium, the `<prefix>.<db>.<table>` topic) still names
/// one, else everything.
pub fn fallback(format: Format, topic: &str, value: Option<&[u8]>) -> ChangeEvent {
    let named = |db: Option<&str>, table: Option<&str>| match (db, table) {
        (Some(db), Some(table)) if !db.is_empty() && !table.is_empty() => {
            Some(ChangeEvent::Table {
                db: db.to_string(),
                table: table.to_string(),
            })
        }
        _ => None,
    };
    let json = value.and_then(|v| serde_json::from_slice::<Value>(v).ok());
    let from_value = json.as_ref().and_then(|v| match format {
        Format::Debezium => {
            let source = payload(v).get("source")?;
            named(
                source.get("db").and_then(Value::as_str),
                source.get("table").and_then(Value::as_str),
            )
        }
        Format::Canal | Format::Maxwell => named(
            v.get("database").and_then(Value::as_str),
            v.get("table").and_then(Value::as_str),
        ),
    });
    let from_topic = || {
        let mut parts = topic.rsplit('.');
        match (format, parts.next(), parts.next(), parts.next()) {
            (Format::Debezium, Some(t), Some(d), Some(_prefix)) => named(Some(d), Some(t)),
            _ => None,
        }
    };
    from_value
        .or_else(from_topic)
        .unwrap_or(ChangeEvent::Everything)
}

/// Column/value pairs of a JSON object, values as text (numbers unquoted).
fn pairs(o: &Map<String, Value>) -> Vec<(String, String)> {
    o.iter()
        .filter_map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => (*b as u8).to_string(),
                _ => return None,
            };
            Some((k.to_ascii_lowercase(), text))
        })
        .collect()
}

/// The key a row had before an update whose changed columns are `changed`.
fn previous_key(key: &[(String, String)], changed: &[(String, String)]) -> Vec<(String, String)> {
    key.iter()
        .map(|(c, v)| {
            changed
                .iter()
                .find(|(oc, _)| oc == c)
                .cloned()
                .unwrap_or((c.clone(), v.clone()))
        })
        .collect()
}

/// Strips Debezium's optional `{schema, payload}` envelope.
fn payload(v: &Value) -> &Value {
    match v.get("payload") {
        Some(p) if v.get("schema").is_some() => p,
        _ => v,
    }
}

fn debezium(
    topic: &str,
    key: Option<&Value>,
    value: &Value,
) -> Result<Vec<ChangeEvent>, DecodeError> {
    let p = payload(value);
    // Schema-change topic: DDL for one or more tables, or a whole database.
    if p.get("ddl").is_some() || p.get("tableChanges").is_some() {
        let mut out = Vec::new();
        for change in p
            .get("tableChanges")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let id = change.get("id").and_then(Value::as_str).unwrap_or("");
            let parts: Vec<String> = id
                .split('.')
                .map(|s| s.trim_matches('"').to_string())
                .collect();
            match parts.as_slice() {
                [db, table] => out.push(ChangeEvent::Table {
                    db: db.clone(),
                    table: table.clone(),
                }),
                _ => return Ok(vec![ChangeEvent::Everything]),
            }
        }
        if out.is_empty() {
            out.push(ChangeEvent::Everything);
        }
        return Ok(out);
    }
    let source = p.get("source").ok_or(DecodeError::Shape("no source"))?;
    let db = source.get("db").and_then(Value::as_str);
    let table = source.get("table").and_then(Value::as_str);
    let (db, table) = match (db, table) {
        (Some(d), Some(t)) => (d.to_string(), t.to_string()),
        _ => {
            // Fall back to the topic: <prefix>.<db>.<table>.
            let mut it = topic.rsplit('.');
            match (it.next(), it.next()) {
                (Some(t), Some(d)) => (d.to_string(), t.to_string()),
                _ => return Err(DecodeError::Shape("no db/table")),
            }
        }
    };
    let op = p
        .get("op")
        .and_then(Value::as_str)
        .ok_or(DecodeError::Shape("no op"))?;
    match op {
        "c" | "u" | "d" | "r" => {
            let key = key.map(payload).and_then(Value::as_object);
            Ok(vec![match key {
                Some(k) => ChangeEvent::Row {
                    db,
                    table,
                    key: pairs(k),
                },
                // No key (a table without primary key): the table changed.
                None => ChangeEvent::Table { db, table },
            }])
        }
        "t" => Ok(vec![ChangeEvent::Table { db, table }]),
        _ => Err(DecodeError::Shape("unknown op")),
    }
}

fn canal(v: &Value) -> Result<Vec<ChangeEvent>, DecodeError> {
    let db = v
        .get("database")
        .and_then(Value::as_str)
        .ok_or(DecodeError::Shape("no database"))?;
    let table = v.get("table").and_then(Value::as_str).unwrap_or("");
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    let is_ddl = v.get("isDdl").and_then(Value::as_bool).unwrap_or(false);
    if table.is_empty() {
        return Ok(vec![ChangeEvent::Everything]);
    }
    let (db, table) = (db.to_string(), table.to_string());
    if is_ddl || !matches!(kind, "INSERT" | "UPDATE" | "DELETE") {
        return Ok(vec![ChangeEvent::Table { db, table }]);
    }
    let pk: Vec<String> = v
        .get("pkNames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default();
    let rows = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or(DecodeError::Shape("no data"))?;
    let old = v.get("old").and_then(Value::as_array);
    if pk.is_empty() {
        return Ok(vec![ChangeEvent::Table { db, table }]);
    }
    let mut out = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let row = row
            .as_object()
            .ok_or(DecodeError::Shape("row not an object"))?;
        let all = pairs(row);
        let key: Vec<(String, String)> = all.into_iter().filter(|(c, _)| pk.contains(c)).collect();
        if key.len() != pk.len() {
            return Ok(vec![ChangeEvent::Table { db, table }]);
        }
        // A key column in `old` is the row's previous key: that row changed too.
        if let Some(prev) = old.and_then(|o| o.get(i)).and_then(Value::as_object) {
            let changed = pairs(prev);
            if changed.iter().any(|(c, _)| pk.contains(c)) {
                let old_key = previous_key(&key, &changed);
                out.push(ChangeEvent::Row {
                    db: db.clone(),
                    table: table.clone(),
                    key: old_key,
                });
            }
        }
        out.push(ChangeEvent::Row {
            db: db.clone(),
            table: table.clone(),
            key,
        });
    }
    Ok(out)
}

fn maxwell(key: Option<&Value>, v: &Value) -> Result<Vec<ChangeEvent>, DecodeError> {
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or(DecodeError::Shape("no type"))?;
    if kind.starts_with("database-") {
        return Ok(vec![ChangeEvent::Everything]);
    }
    let db = v
        .get("database")
        .and_then(Value::as_str)
        .ok_or(DecodeError::Shape("no database"))?
        .to_string();
    let Some(table) = v.get("table").and_then(Value::as_str).map(str::to_string) else {
        return Ok(vec![ChangeEvent::Everything]);
    };
    if kind.starts_with("table-")
        || !matches!(kind, "insert" | "update" | "delete" | "bootstrap-insert")
    {
        return Ok(vec![ChangeEvent::Table { db, table }]);
    }
    // Key: {"database": …, "table": …, "pk.id": 5}.
    let key: Vec<(String, String)> = key
        .and_then(Value::as_object)
        .map(|k| {
            pairs(k)
                .into_iter()
                .filter_map(|(c, v)| c.strip_prefix("pk.").map(|c| (c.to_string(), v)))
                .collect()
        })
        .unwrap_or_default();
    if key.is_empty() {
        return Ok(vec![ChangeEvent::Table { db, table }]);
    }
    let mut out = Vec::new();
    if let Some(old) = v.get("old").and_then(Value::as_object) {
        let changed = pairs(old);
        if changed.iter().any(|(c, _)| key.iter().any(|(k, _)| k == c)) {
            let old_key = previous_key(&key, &changed);
            out.push(ChangeEvent::Row {
                db: db.clone(),
                table: table.clone(),
                key: old_key,
            });
        }
    }
    out.push(ChangeEvent::Row { db, table, key });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_messages_invalidate_their_table_or_everything() {
        let table = |d: &str, t: &str| ChangeEvent::Table {
            db: d.into(),
            table: t.into(),
        };
        // Debezium: the topic still names the table.
        assert_eq!(
            fallback(Format::Debezium, "srv.shop.items", Some(b"{not json")),
            table("shop", "items")
        );
        assert_eq!(
            fallback(
                Format::Debezium,
                "odd",
                Some(br#"{"payload":{"source":{"db":"a","table":"b"}},"schema":{}}"#)
            ),
            table("a", "b")
        );
        assert_eq!(
            fallback(
                Format::Canal,
                "x",
                Some(br#"{"database":"a","table":"b","data":7}"#)
            ),
            table("a", "b")
        );
        assert_eq!(
            fallback(Format::Maxwell, "maxwell", Some(b"garbage")),
            ChangeEvent::Everything
        );
        assert_eq!(
            fallback(Format::Debezium, "two.parts", None),
            ChangeEvent::Everything
        );
    }

    fn row(db: &str, t: &str, key: &[(&str, &str)]) -> ChangeEvent {
        ChangeEvent::Row {
            db: db.into(),
            table: t.into(),
            key: key
                .iter()
                .map(|(c, v)| (c.to_string(), v.to_string()))
                .collect(),
        }
    }

    const DBZ_UPDATE: &str = r#"{"schema":{"type":"struct","fields":[]},"payload":{"before":{"id":5,"v":"a"},"after":{"id":5,"v":"b"},"source":{"version":"2.7.0.Final","connector":"mysql","name":"shop","ts_ms":1700000000000,"snapshot":"false","db":"shop","table":"items","server_id":1,"gtid":null,"file":"binlog.000003","pos":1234,"row":0},"op":"u","ts_ms":1700000000123}}"#;

    #[test]
    fn debezium_with_and_without_envelope() {
        let key = br#"{"schema":{"type":"struct"},"payload":{"id":5}}"#;
        let ev = decode(
            Format::Debezium,
            "shop.shop.items",
            Some(key),
            Some(DBZ_UPDATE.as_bytes()),
        )
        .unwrap();
        assert_eq!(ev, vec![row("shop", "items", &[("id", "5")])]);
        let bare = r#"{"before":null,"after":{"id":7},"source":{"db":"shop","table":"items"},"op":"c","ts_ms":1}"#;
        let ev = decode(
            Format::Debezium,
            "x",
            Some(br#"{"id":7}"#),
            Some(bare.as_bytes()),
        )
        .unwrap();
        assert_eq!(ev, vec![row("shop", "items", &[("id", "7")])]);
        // Tombstone: nothing; truncate: the table; no key: the table.
        assert!(decode(Format::Debezium, "x", Some(br#"{"id":7}"#), None)
            .unwrap()
            .is_empty());
        let t = r#"{"source":{"db":"shop","table":"items"},"op":"t","ts_ms":1}"#;
        let table = ChangeEvent::Table {
            db: "shop".into(),
            table: "items".into(),
        };
        assert_eq!(
            decode(Format::Debezium, "x", None, Some(t.as_bytes())).unwrap(),
            vec![table.clone()]
        );
        let nokey = r#"{"after":{"v":1},"source":{"db":"shop","table":"items"},"op":"c"}"#;
        assert_eq!(
            decode(Format::Debezium, "x", None, Some(nokey.as_bytes())).unwrap(),
            vec![table.clone()]
        );
        // Schema change topic.
        let ddl = r#"{"source":{"db":"shop"},"databaseName":"shop","ddl":"ALTER TABLE items ADD c INT","tableChanges":[{"type":"ALTER","id":"\"shop\".\"items\""}]}"#;
        assert_eq!(
            decode(Format::Debezium, "shop", None, Some(ddl.as_bytes())).unwrap(),
            vec![table]
        );
        let dropdb = r#"{"databaseName":"shop","ddl":"DROP DATABASE shop","tableChanges":[]}"#;
        assert_eq!(
            decode(Format::Debezium, "shop", None, Some(dropdb.as_bytes())).unwrap(),
            vec![ChangeEvent::Everything]
        );
    }

    #[test]
    fn canal_rows_strings_and_key_changes() {
        let msg = r#"{"data":[{"id":"1","v":"x"},{"id":"3","v":"y"}],"database":"shop","es":1700000000000,"id":2,"isDdl":false,"mysqlType":{"id":"int","v":"varchar(10)"},"old":[{"v":"w"},{"id":"2"}],"pkNames":["id"],"sql":"","sqlType":{"id":4,"v":12},"table":"items","ts":1700000000100,"type":"UPDATE"}"#;
        let ev = decode(Format::Canal, "canal", None, Some(msg.as_bytes())).unwrap();
        assert_eq!(
            ev,
            vec![
                row("shop", "items", &[("id", "1")]),
                row("shop", "items", &[("id", "2")]),
                row("shop", "items", &[("id", "3")])
            ]
        );
        let ddl = r#"{"data":null,"database":"shop","isDdl":true,"pkNames":null,"sql":"TRUNCATE items","table":"items","type":"TRUNCATE"}"#;
        assert_eq!(
            decode(Format::Canal, "canal", None, Some(ddl.as_bytes())).unwrap(),
            vec![ChangeEvent::Table {
                db: "shop".into(),
                table: "items".into()
            }]
        );
    }

    #[test]
    fn maxwell_rows_key_changes_and_ddl() {
        let key = br#"{"database":"shop","table":"items","pk.id":2}"#;
        let msg = r#"{"database":"shop","table":"items","type":"update","ts":1700000000,"xid":8249,"commit":true,"data":{"id":2,"v":"b"},"old":{"id":1}}"#;
        let ev = decode(Format::Maxwell, "maxwell", Some(key), Some(msg.as_bytes())).unwrap();
        assert_eq!(
            ev,
            vec![
                row("shop", "items", &[("id", "1")]),
                row("shop", "items", &[("id", "2")])
            ]
        );
        let alter = r#"{"type":"table-alter","database":"shop","table":"items","old":{},"def":{}}"#;
        assert_eq!(
            decode(Format::Maxwell, "maxwell", None, Some(alter.as_bytes())).unwrap(),
            vec![ChangeEvent::Table {
                db: "shop".into(),
                table: "items".into()
            }]
        );
        let dbdrop = r#"{"type":"database-drop","database":"shop","sql":"drop database shop"}"#;
        assert_eq!(
            decode(Format::Maxwell, "maxwell", None, Some(dbdrop.as_bytes())).unwrap(),
            vec![ChangeEvent::Everything]
        );
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        for f in [Format::Debezium, Format::Canal, Format::Maxwell] {
            assert!(matches!(
                decode(f, "t", None, Some(b"{not json")),
                Err(DecodeError::Json(_))
            ));
            // JSON of the wrong shape: an array, an empty object.
            for shape in [&b"[1,2]"[..], b"{}"] {
                assert!(
                    matches!(
                        decode(f, "t", None, Some(shape)),
                        Err(DecodeError::Shape(_))
                    ),
                    "{f:?}"
                );
            }
            // A key that is not JSON fails before the value is looked at.
            assert!(matches!(
                decode(f, "t", Some(b"\xff"), Some(b"{}")),
                Err(DecodeError::Json(_))
            ));
        }
    }
}
