//! Target tables and columns made from an envelope's schema
//! (`sink.auto_create`, `sink.add_columns`).
//!
//! Policy: a Kafka Connect field becomes the MySQL type Debezium's MySQL
//! connector would have read it from — `io.debezium.time.MicroTimestamp`
//! DATETIME(6), `Enum` ENUM of its `allowed` values, `Bits` BIT(`length`),
//! Connect `Decimal` DECIMAL(precision, scale) — and a plain Connect type
//! the widest column that holds it exactly (`int16` SMALLINT, `string`
//! LONGTEXT, or VARCHAR(255) in a key; `bytes` LONGBLOB / VARBINARY(255)).
//! The schema does not carry the source's exact types (a TINYINT arrives
//! as `int16`, a DECIMAL from `sqlcache cdc` as `string`), so a created
//! table holds every value exactly but may not match the source's DDL:
//! create the tables first where that matters. Added columns are NULL-able,
//! so rows written before keep their meaning. A field without a schema
//! cannot be typed: the caller stops and names it.

use serde_json::Value as Json;

use super::plan::ident;
use super::record::Field;

fn param<'a>(f: &'a Field, name: &str) -> Option<&'a str> {
    f.params.get(name).and_then(Json::as_str)
}

/// A string literal for a type definition (ENUM/SET members).
fn member(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The column type for a field (`in_key`: part of the primary key).
pub fn column_type(f: &Field, in_key: bool) -> Option<String> {
    let by_name = match f.semantic.as_deref() {
        Some("io.debezium.time.Date") => Some("DATE".to_string()),
        Some("io.debezium.time.Timestamp") => Some("DATETIME(3)".into()),
        Some("io.debezium.time.MicroTimestamp" | "io.debezium.time.NanoTimestamp") => {
            Some("DATETIME(6)".into())
        }
        Some("io.debezium.time.ZonedTimestamp") => Some("TIMESTAMP(6) NULL".into()),
        Some(
            "io.debezium.time.MicroTime" | "io.debezium.time.Time" | "io.debezium.time.NanoTime",
        ) => Some("TIME(6)".into()),
        Some("io.debezium.time.Year") => Some("YEAR".into()),
        Some("io.debezium.data.Json") => Some("JSON".into()),
        Some(n @ ("io.debezium.data.Enum" | "io.debezium.data.EnumSet")) => {
            let members: Vec<String> = param(f, "allowed")?.split(',').map(member).collect();
            let kind = if n.ends_with("Set") { "SET" } else { "ENUM" };
            Some(format!("{kind}({})", members.join(",")))
        }
        Some("io.debezium.data.Bits") => Some(format!("BIT({})", param(f, "length")?)),
        Some("org.apache.kafka.connect.data.Decimal") => {
            let scale: u32 = param(f, "scale")?.parse().ok()?;
            let precision: u32 = param(f, "connect.decimal.precision")
                .and_then(|p| p.parse().ok())
                .unwrap_or(65);
            Some(format!("DECIMAL({precision},{scale})"))
        }
        _ => None,
    };
    if by_name.is_some() {
        return by_name;
    }
    Some(
        match (f.ty.as_str(), in_key) {
            ("int8", _) => "TINYINT",
            ("int16", _) => "SMALLINT",
            ("int32", _) => "INT",
            ("int64", _) => "BIGINT",
            ("float" | "float32", _) => "FLOAT",
            ("double" | "float64", _) => "DOUBLE",
            ("boolean", _) => "BIT(1)",
            ("string", false) => "LONGTEXT",
            ("string", true) => "VARCHAR(255)",
            ("bytes", false) => "LONGBLOB",
            ("bytes", true) => "VARBINARY(255)",
            _ => return None,
        }
        .to_string(),
    )
}

/// `CREATE TABLE` for `db.table` with `fields`, keyed by `key`.
pub fn create_table(
    db: &str,
    table: &str,
    fields: &[Field],
    key: &[String],
) -> Result<String, String> {
    if key.is_empty() {
        return Err(format!(
            "{db}.{table}: cannot create it without a record key"
        ));
    }
    let mut cols = Vec::new();
    for f in fields {
        let in_key = key.contains(&f.name);
        let ty = column_type(f, in_key)
            .ok_or_else(|| format!("{db}.{table}.{}: no column type for `{}`", f.name, f.ty))?;
        let null = if in_key || !f.optional {
            " NOT NULL"
        } else {
            ""
        };
        cols.push(format!("{} {ty}{null}", ident(&f.name)));
    }
    let key: Vec<String> = key.iter().map(|k| ident(k)).collect();
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS {}.{} ({}, PRIMARY KEY ({})) ENGINE=InnoDB",
        ident(db),
        ident(table),
        cols.join(", "),
        key.join(", ")
    ))
}

/// `ALTER TABLE … ADD COLUMN` for a field the target lacks.
pub fn add_column(db: &str, table: &str, f: &Field) -> Result<String, String> {
    let ty = column_type(f, false)
        .ok_or_else(|| format!("{db}.{table}.{}: no column type for `{}`", f.name, f.ty))?;
    let ty = ty.trim_end_matches(" NULL");
    Ok(format!(
        "ALTER TABLE {}.{} ADD COLUMN {} {ty} NULL",
        ident(db),
        ident(table),
        ident(&f.name)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str, ty: &str, semantic: Option<&str>, params: Json) -> Field {
        Field {
            name: name.into(),
            ty: ty.into(),
            semantic: semantic.map(str::to_string),
            optional: true,
            params: params.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn fields_map_to_columns_that_hold_them() {
        let e = f(
            "e",
            "string",
            Some("io.debezium.data.Enum"),
            json!({"allowed": "a,it's"}),
        );
        assert_eq!(column_type(&e, false).unwrap(), "ENUM('a','it''s')");
        let d = f(
            "d",
            "bytes",
            Some("org.apache.kafka.connect.data.Decimal"),
            json!({"scale": "2", "connect.decimal.precision": "10"}),
        );
        assert_eq!(column_type(&d, false).unwrap(), "DECIMAL(10,2)");
        assert_eq!(
            column_type(&f("s", "string", None, json!({})), true).unwrap(),
            "VARCHAR(255)"
        );
        assert_eq!(
            column_type(
                &f(
                    "t",
                    "int64",
                    Some("io.debezium.time.MicroTimestamp"),
                    json!({})
                ),
                false
            )
            .unwrap(),
            "DATETIME(6)"
        );
        assert!(column_type(&f("x", "map", None, json!({})), false).is_none());
    }

    #[test]
    fn create_and_alter_statements() {
        let fields = vec![
            f("id", "int32", None, json!({})),
            f("v", "string", None, json!({})),
        ];
        assert_eq!(
            create_table("d", "t", &fields, &["id".into()]).unwrap(),
            "CREATE TABLE IF NOT EXISTS `d`.`t` (`id` INT NOT NULL, `v` LONGTEXT, PRIMARY KEY (`id`)) ENGINE=InnoDB"
        );
        assert!(create_table("d", "t", &fields, &[]).is_err());
        let z = f(
            "z",
            "string",
            Some("io.debezium.time.ZonedTimestamp"),
            json!({}),
        );
        assert_eq!(
            add_column("d", "t", &z).unwrap(),
            "ALTER TABLE `d`.`t` ADD COLUMN `z` TIMESTAMP(6) NULL"
        );
    }
}
