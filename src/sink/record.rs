//! A Kafka record read as a Debezium change event.
//!
//! Policy: keys and values are JSON, with or without the `{schema,
//! payload}` wrapper (Debezium's `schemas.enable`). A value with `op`
//! `c`/`u`/`r` is an upsert of `after`, `d` a delete, `t` a truncate; a null
//! value is a tombstone; a value carrying `ddl` (a schema-change event) is
//! skipped by name. Anything else — bytes that are not JSON, an unknown
//! `op`, an upsert without `after`, a delete with neither `before` nor a
//! key — is a `BadRecord` with its reason: never guessed at, never dropped
//! silently (the caller parks it or stops). Field schemas are kept when
//! present: they name the semantic types (`io.debezium.time.…`) the value
//! conversion and table creation need.

use serde_json::{Map, Value as Json};

/// One field's Kafka Connect schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    /// Connect type: `int16`, `string`, `bytes`, …
    pub ty: String,
    /// Semantic name: `io.debezium.time.MicroTimestamp`, …
    pub semantic: Option<String>,
    pub optional: bool,
    /// `parameters` (Decimal `scale`, Enum `allowed`, Bits `length`).
    pub params: Map<String, Json>,
}

/// A row image: column → JSON value.
pub type Image = Map<String, Json>;

/// What a record asks of the target.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Insert or replace the row `after`; `before` is the old image of an
    /// update (its key may differ from `after`'s).
    Upsert {
        after: Image,
        before: Option<Image>,
    },
    /// Delete the row: by `before` when present, else by the record key.
    Delete {
        before: Option<Image>,
        key: Option<Image>,
    },
    Truncate,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub change: Change,
    /// The `after` (or `before`) fields' schemas, when the value had one.
    pub fields: Option<Vec<Field>>,
    /// `source.ts_ms`, when present.
    pub source_ms: Option<i64>,
}

/// What a record is.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Event(Event),
    /// A tombstone: the record key's columns.
    Tombstone(Option<Image>),
    /// A record the sink has nothing to do for, and why.
    Skip(&'static str),
}

/// Why a record cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRecord {
    #[error("the value is not JSON: {0}")]
    NotJson(String),
    #[error("the key is not a JSON object")]
    Key,
    #[error("not a Debezium change event: {0}")]
    Envelope(&'static str),
    #[error("unknown op `{0}`")]
    Op(String),
}

/// Strips the `{schema, payload}` wrapper; returns (payload, schema).
fn unwrap(v: Json) -> (Json, Option<Json>) {
    match v {
        Json::Object(mut m)
            if m.len() == 2 && m.contains_key("schema") && m.contains_key("payload") =>
        {
            let payload = m.remove("payload").unwrap_or(Json::Null);
            (payload, m.remove("schema"))
        }
        other => (other, None),
    }
}

fn object(v: Option<Json>) -> Option<Image> {
    match v {
        Some(Json::Object(m)) => Some(m),
        _ => None,
    }
}

/// The record key's columns (`None`: no key or a null key).
pub fn decode_key(key: Option<&[u8]>) -> Result<Option<Image>, BadRecord> {
    let Some(bytes) = key else { return Ok(None) };
    let v: Json = serde_json::from_slice(bytes).map_err(|_| BadRecord::Key)?;
    match unwrap(v).0 {
        Json::Null => Ok(None),
        Json::Object(m) => Ok(Some(m)),
        _ => Err(BadRecord::Key),
    }
}

/// Decodes a record's key and value.
pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Decoded, BadRecord> {
    let key = decode_key(key)?;
    let Some(bytes) = value else {
        return Ok(Decoded::Tombstone(key));
    };
    let v: Json = serde_json::from_slice(bytes).map_err(|e| BadRecord::NotJson(e.to_string()))?;
    let (payload, schema) = unwrap(v);
    let Json::Object(mut p) = payload else {
        return match payload {
            Json::Null => Ok(Decoded::Tombstone(key)),
            _ => Err(BadRecord::Envelope("the payload is not an object")),
        };
    };
    if p.contains_key("ddl") || p.contains_key("tableChanges") {
        return Ok(Decoded::Skip("schema change event"));
    }
    let op = match p.remove("op") {
        Some(Json::String(s)) => s,
        Some(_) => return Err(BadRecord::Envelope("`op` is not a string")),
        None => return Err(BadRecord::Envelope("no `op`")),
    };
    let before = object(p.remove("before"));
    let after = object(p.remove("after"));
    let change = match op.as_str() {
        "c" | "u" | "r" => Change::Upsert {
            after: after.ok_or(BadRecord::Envelope("an upsert without `after`"))?,
            before,
        },
        "d" => {
            if before.is_none() && key.is_none() {
                return Err(BadRecord::Envelope(
                    "a delete with neither `before` nor a key",
                ));
            }
            Change::Delete { before, key }
        }
        "t" => Change::Truncate,
        _ => return Err(BadRecord::Op(op)),
    };
    let source_ms = p
        .get("source")
        .and_then(|s| s.get("ts_ms"))
        .and_then(Json::as_i64);
    Ok(Decoded::Event(Event {
        change,
        fields: schema.as_ref().and_then(row_fields),
        source_ms,
    }))
}

/// The fields of the envelope schema's `after` (else `before`) struct.
fn row_fields(schema: &Json) -> Option<Vec<Field>> {
    let fields = schema.get("fields")?.as_array()?;
    let row = ["after", "before"].iter().find_map(|n| {
        fields
            .iter()
            .find(|f| f.get("field") == Some(&Json::from(*n)))
    })?;
    row.get("fields")?
        .as_array()?
        .iter()
        .map(|f| {
            Some(Field {
                name: f.get("field")?.as_str()?.to_string(),
                ty: f.get("type")?.as_str()?.to_string(),
                semantic: f.get("name").and_then(Json::as_str).map(str::to_string),
                optional: f.get("optional").and_then(Json::as_bool).unwrap_or(true),
                params: f
                    .get("parameters")
                    .and_then(Json::as_object)
                    .cloned()
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The target of a topic by the `table` rule: `{db}` and `{table}` are the
/// topic's last two dot-separated parts.
pub fn table_for_topic(rule: &str, topic: &str) -> Option<String> {
    let mut parts = topic.rsplitn(3, '.');
    let table = parts.next()?;
    let db = parts.next()?;
    Some(rule.replace("{db}", db).replace("{table}", table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bytes(v: Json) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn plain_and_wrapped_envelopes_decode_alike() {
        let payload = json!({"before": null, "after": {"id": 1, "v": "a"}, "op": "c",
                             "source": {"ts_ms": 1700000000000i64}});
        let plain = decode(
            Some(&bytes(json!({"id": 1}))),
            Some(&bytes(payload.clone())),
        )
        .unwrap();
        let schema = json!({"type": "struct", "fields": [
            {"field": "before", "type": "struct", "fields": []},
            {"field": "after", "type": "struct", "fields": [
                {"field": "id", "type": "int32", "optional": false},
                {"field": "v", "type": "string", "optional": true}]}]});
        let wrapped = decode(
            Some(&bytes(json!({"schema": {}, "payload": {"id": 1}}))),
            Some(&bytes(json!({"schema": schema, "payload": payload}))),
        )
        .unwrap();
        let (Decoded::Event(a), Decoded::Event(b)) = (plain, wrapped) else {
            panic!("events expected")
        };
        assert_eq!(a.change, b.change);
        assert_eq!(a.source_ms, Some(1700000000000));
        assert!(a.fields.is_none());
        let f = b.fields.unwrap();
        assert_eq!(
            (f[0].name.as_str(), f[0].ty.as_str(), f[0].optional),
            ("id", "int32", false)
        );
    }

    #[test]
    fn tombstones_deletes_truncates_and_ddl() {
        let k = bytes(json!({"id": 7}));
        assert_eq!(
            decode(Some(&k), None).unwrap(),
            Decoded::Tombstone(Some(json!({"id": 7}).as_object().unwrap().clone()))
        );
        let d = decode(
            Some(&k),
            Some(&bytes(json!({"op": "d", "before": {"id": 7}}))),
        )
        .unwrap();
        assert!(matches!(
            d,
            Decoded::Event(Event {
                change: Change::Delete { .. },
                ..
            })
        ));
        let t = decode(None, Some(&bytes(json!({"op": "t"})))).unwrap();
        assert!(matches!(
            t,
            Decoded::Event(Event {
                change: Change::Truncate,
                ..
            })
        ));
        let ddl = decode(
            None,
            Some(&bytes(json!({"ddl": "ALTER TABLE t", "databaseName": "d"}))),
        );
        assert_eq!(ddl.unwrap(), Decoded::Skip("schema change event"));
    }

    #[test]
    fn bad_records_say_why() {
        assert!(matches!(
            decode(None, Some(b"{nope")),
            Err(BadRecord::NotJson(_))
        ));
        assert_eq!(decode(Some(b"[1]"), Some(b"{}")), Err(BadRecord::Key));
        assert_eq!(
            decode(None, Some(&bytes(json!({"op": "x"})))),
            Err(BadRecord::Op("x".into()))
        );
        assert_eq!(
            decode(None, Some(&bytes(json!({"op": "c"})))),
            Err(BadRecord::Envelope("an upsert without `after`"))
        );
        assert_eq!(
            decode(None, Some(&bytes(json!({"op": "d"})))),
            Err(BadRecord::Envelope(
                "a delete with neither `before` nor a key"
            ))
        );
        assert_eq!(
            decode(None, Some(&bytes(json!({"hello": 1})))),
            Err(BadRecord::Envelope("no `op`"))
        );
    }

    #[test]
    fn topics_map_to_tables() {
        assert_eq!(
            table_for_topic("{db}.{table}", "pre.fix.shop.orders").as_deref(),
            Some("shop.orders")
        );
        assert_eq!(
            table_for_topic("copy.{table}", "p.shop.orders").as_deref(),
            Some("copy.orders")
        );
        assert_eq!(table_for_topic("{db}.{table}", "orders"), None);
    }
}
