//! Debezium's MySQL-connector envelope: message keys, values and topics.
//!
//! Policy: what Debezium's JsonConverter would write — `before`, `after`,
//! `source`, `op`, `ts_ms` (and `transaction: null`) — with the
//! `{schema, payload}` wrapper only when `schemas = true` (Debezium's
//! `schemas.enable`). Keys are the primary-key columns in table order (no
//! key for tables without one: Kafka then spreads their messages over
//! partitions, so their order is not kept). Schema changes go to the
//! `<prefix>` topic with `databaseName`, `ddl` and one `tableChanges` entry
//! (`type`, `id`) per table the statement names; the full column list
//! Debezium adds there is not written.

use serde_json::{json, Map, Value as Json};

use super::columns::{ColumnMeta, Kind};

/// Debezium's `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    Delete,
    Read,
    Truncate,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }
}

/// `source.snapshot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshot {
    No,
    Yes,
    Last,
}

/// Where an event comes from (`source`).
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub name: &'a str,
    pub server_id: u32,
    /// Event time, ms since epoch.
    pub ts_ms: i64,
    pub db: &'a str,
    pub table: Option<&'a str>,
    pub gtid: Option<String>,
    pub file: &'a str,
    pub pos: u64,
    pub row: usize,
    pub snapshot: Snapshot,
}

impl Source<'_> {
    fn json(&self) -> Json {
        json!({
            "version": concat!("sqlcache-", env!("CARGO_PKG_VERSION")),
            "connector": "mysql",
            "name": self.name,
            "ts_ms": self.ts_ms,
            "snapshot": match self.snapshot {
                Snapshot::No => "false",
                Snapshot::Yes => "true",
                Snapshot::Last => "last",
            },
            "db": self.db,
            "sequence": null,
            "table": self.table,
            "server_id": self.server_id,
            "gtid": self.gtid,
            "file": self.file,
            "pos": self.pos,
            "row": self.row,
            "thread": null,
            "query": null,
        })
    }
}

/// `<prefix>.<db>.<table>`.
pub fn topic(prefix: &str, db: &str, table: &str) -> String {
    format!("{prefix}.{db}.{table}")
}

/// A row image as a JSON object (column → value).
pub fn row(cols: &[ColumnMeta], values: Vec<Json>) -> Json {
    let mut m = Map::with_capacity(cols.len());
    for (c, v) in cols.iter().zip(values) {
        m.insert(c.name.clone(), v);
    }
    Json::Object(m)
}

/// The message key of a row image; `None` for a table without primary key.
pub fn key(cols: &[ColumnMeta], image: &Json) -> Option<Json> {
    let mut m = Map::new();
    for c in cols.iter().filter(|c| c.pk) {
        m.insert(
            c.name.clone(),
            image.get(&c.name).cloned().unwrap_or(Json::Null),
        );
    }
    (!m.is_empty()).then_some(Json::Object(m))
}

/// The change-event value, without the schema wrapper.
pub fn value(
    op: Op,
    before: Option<Json>,
    after: Option<Json>,
    source: &Source<'_>,
    now_ms: i64,
) -> Json {
    json!({
        "before": before,
        "after": after,
        "source": source.json(),
        "op": op.code(),
        "ts_ms": now_ms,
        "transaction": null,
    })
}

/// The schema-change value for `ddl` run in `db`; `tables` it names (db, table).
pub fn schema_change(
    ddl: &str,
    db: &str,
    tables: &[(String, String)],
    source: &Source<'_>,
    now_ms: i64,
) -> Json {
    let kind = ddl
        .split_whitespace()
        .find_map(|w| match w.to_ascii_uppercase().as_str() {
            "CREATE" => Some("CREATE"),
            "DROP" => Some("DROP"),
            _ => None,
        })
        .unwrap_or("ALTER");
    let changes: Vec<Json> = tables
        .iter()
        .map(|(d, t)| json!({"type": kind, "id": format!("\"{d}\".\"{t}\""), "table": null}))
        .collect();
    json!({
        "source": source.json(),
        "ts_ms": now_ms,
        "databaseName": db,
        "schemaName": null,
        "ddl": ddl,
        "tableChanges": changes,
    })
}

/// The schema-change key.
pub fn schema_change_key(db: &str) -> Json {
    json!({ "databaseName": db })
}

/// `{schema, payload}` as Debezium's JsonConverter writes with schemas on.
pub fn wrap(schema: Json, payload: Json) -> Json {
    json!({ "schema": schema, "payload": payload })
}

/// The Connect schema of a row struct named `name`.
pub fn row_schema(cols: &[ColumnMeta], name: &str, field: Option<&str>, key_only: bool) -> Json {
    let fields: Vec<Json> = cols
        .iter()
        .filter(|c| !key_only || c.pk)
        .map(column_schema)
        .collect();
    let mut s = json!({
        "type": "struct",
        "fields": fields,
        "optional": field.is_some(),
        "name": name,
    });
    if let Some(f) = field {
        s["field"] = Json::from(f);
    }
    s
}

fn column_schema(c: &ColumnMeta) -> Json {
    let (ty, name, params): (&str, Option<&str>, Option<Json>) = match &c.kind {
        Kind::Int(16) => ("int16", None, None),
        Kind::Int(32) => ("int32", None, None),
        Kind::Int(_) => ("int64", None, None),
        Kind::Float => ("float", None, None),
        Kind::Double => ("double", None, None),
        Kind::Decimal => ("string", None, None),
        Kind::Date => ("int32", Some("io.debezium.time.Date"), None),
        Kind::DateTime(fsp) if *fsp <= 3 => ("int64", Some("io.debezium.time.Timestamp"), None),
        Kind::DateTime(_) => ("int64", Some("io.debezium.time.MicroTimestamp"), None),
        Kind::Timestamp(_) => ("string", Some("io.debezium.time.ZonedTimestamp"), None),
        Kind::Time => ("int64", Some("io.debezium.time.MicroTime"), None),
        Kind::Year => ("int32", Some("io.debezium.time.Year"), None),
        Kind::Text(_) => ("string", None, None),
        Kind::Binary(_) => ("bytes", None, None),
        Kind::Bit(1) => ("boolean", None, None),
        Kind::Bit(n) => (
            "bytes",
            Some("io.debezium.data.Bits"),
            Some(json!({ "length": n.to_string() })),
        ),
        Kind::Enum(v) => (
            "string",
            Some("io.debezium.data.Enum"),
            Some(json!({ "allowed": v.join(",") })),
        ),
        Kind::Set(v) => (
            "string",
            Some("io.debezium.data.EnumSet"),
            Some(json!({ "allowed": v.join(",") })),
        ),
        Kind::Json => ("string", Some("io.debezium.data.Json"), None),
    };
    let mut s = json!({ "type": ty, "optional": c.nullable, "field": c.name });
    if let Some(n) = name {
        s["name"] = Json::from(n);
        s["version"] = Json::from(1);
    }
    if let Some(p) = params {
        s["parameters"] = p;
    }
    s
}

/// The Connect schema of a change-event value of `<prefix>.<db>.<table>`.
pub fn value_schema(cols: &[ColumnMeta], topic: &str) -> Json {
    let row = format!("{topic}.Value");
    let source_fields: Vec<Json> = [
        ("version", "string", false),
        ("connector", "string", false),
        ("name", "string", false),
        ("ts_ms", "int64", false),
        ("snapshot", "string", true),
        ("db", "string", false),
        ("sequence", "string", true),
        ("table", "string", true),
        ("server_id", "int64", false),
        ("gtid", "string", true),
        ("file", "string", false),
        ("pos", "int64", false),
        ("row", "int32", false),
        ("thread", "int64", true),
        ("query", "string", true),
    ]
    .iter()
    .map(|(f, t, o)| json!({"type": t, "optional": o, "field": f}))
    .collect();
    json!({
        "type": "struct",
        "fields": [
            row_schema(cols, &row, Some("before"), false),
            row_schema(cols, &row, Some("after"), false),
            {"type": "struct", "fields": source_fields, "optional": false,
             "name": "io.debezium.connector.mysql.Source", "field": "source"},
            {"type": "string", "optional": false, "field": "op"},
            {"type": "int64", "optional": true, "field": "ts_ms"},
            {"type": "struct", "optional": true, "field": "transaction",
             "name": "event.block", "version": 1, "fields": []},
        ],
        "optional": false,
        "name": format!("{topic}.Envelope"),
        "version": 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::columns::Charset;

    fn cols() -> Vec<ColumnMeta> {
        vec![
            ColumnMeta {
                name: "id".into(),
                kind: Kind::Int(32),
                pk: true,
                nullable: false,
            },
            ColumnMeta {
                name: "v".into(),
                kind: Kind::Text(Charset::Utf8),
                pk: false,
                nullable: true,
            },
        ]
    }

    fn source() -> Source<'static> {
        Source {
            name: "srv",
            server_id: 1,
            ts_ms: 1000,
            db: "shop",
            table: Some("items"),
            gtid: Some("0-1-5".into()),
            file: "bin.000001",
            pos: 400,
            row: 0,
            snapshot: Snapshot::No,
        }
    }

    #[test]
    fn the_envelope_is_debeziums() {
        let after = row(&cols(), vec![json!(7), json!("x")]);
        assert_eq!(key(&cols(), &after), Some(json!({"id": 7})));
        let v = value(Op::Create, None, Some(after), &source(), 2000);
        assert_eq!(v["op"], "c");
        assert_eq!(v["before"], Json::Null);
        assert_eq!(v["after"]["v"], "x");
        assert_eq!(v["source"]["connector"], "mysql");
        assert_eq!(v["source"]["snapshot"], "false");
        assert_eq!(v["source"]["gtid"], "0-1-5");
        assert_eq!(v["ts_ms"], 2000);
        assert_eq!(topic("srv", "shop", "items"), "srv.shop.items");
    }

    #[test]
    fn the_proxy_decodes_what_we_publish() {
        use crate::invalidation::decode::{decode, Format};
        use crate::invalidation::ChangeEvent;
        let after = row(&cols(), vec![json!(7), json!("x")]);
        let k = key(&cols(), &after).unwrap();
        let mut v = value(Op::Update, Some(after.clone()), Some(after), &source(), 0);
        for wrapped in [false, true] {
            if wrapped {
                v = wrap(value_schema(&cols(), "srv.shop.items"), v);
            }
            let got = decode(
                Format::Debezium,
                "srv.shop.items",
                Some(k.to_string().as_bytes()),
                Some(v.to_string().as_bytes()),
            )
            .unwrap();
            assert_eq!(
                got,
                vec![ChangeEvent::Row {
                    db: "shop".into(),
                    table: "items".into(),
                    key: vec![("id".into(), "7".into())]
                }]
            );
        }
        let ddl = schema_change(
            "ALTER TABLE items ADD c INT",
            "shop",
            &[("shop".into(), "items".into())],
            &source(),
            0,
        );
        let got = decode(
            Format::Debezium,
            "srv",
            None,
            Some(ddl.to_string().as_bytes()),
        )
        .unwrap();
        assert_eq!(
            got,
            vec![ChangeEvent::Table {
                db: "shop".into(),
                table: "items".into()
            }]
        );
    }

    #[test]
    fn schemas_name_debezium_semantic_types() {
        let s = value_schema(&cols(), "srv.shop.items");
        assert_eq!(s["name"], "srv.shop.items.Envelope");
        assert_eq!(s["fields"][1]["fields"][0]["type"], "int32");
        assert_eq!(s["fields"][1]["fields"][1]["optional"], true);
        let k = row_schema(&cols(), "srv.shop.items.Key", None, true);
        assert_eq!(k["fields"].as_array().unwrap().len(), 1);
    }
}
