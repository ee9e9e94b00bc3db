//! A consumed record turned into planned operations on its target table.
//!
//! Policy: the target table is `sink.tables[topic]`, else the `sink.table`
//! rule applied to the topic. Its description (columns, key) is read from
//! the target; a missing table is created from the envelope's schema only
//! with `auto_create`, a missing column added only with `add_columns` and a
//! schema for its type — otherwise the sink stops, naming the table and the
//! column (`SinkError::Schema`), since applying the rest of the row would
//! lose that column's values. A record that cannot be read, or a value that
//! does not fit its column, is `What::Bad` with the reason: parked in the
//! dead-letter topic or the sink stops, never skipped silently.

use std::collections::HashMap;
use std::sync::Arc;

use rdkafka::message::{Message, OwnedMessage};
use serde_json::Value as Json;

use super::plan::{Op, Row};
use super::record::{self, Change, Decoded, Event, Field, Image};
use super::schema;
use super::target::{TableInfo, Target};
use super::values::literal;
use super::{Metrics, SinkError};
use crate::config::SinkConfig;

/// What a record comes to.
pub enum What {
    Apply {
        table: Arc<TableInfo>,
        ops: Vec<Op>,
    },
    /// Nothing to do (counted).
    Skip,
    /// Cannot be applied: why.
    Bad(String),
}

pub struct Prepared {
    pub msg: OwnedMessage,
    pub what: What,
}

/// Prepares one record.
pub async fn prepare(
    target: &mut Target,
    cfg: &SinkConfig,
    metrics: &Metrics,
    msg: OwnedMessage,
) -> Result<Prepared, SinkError> {
    let what = match what(target, cfg, metrics, &msg).await? {
        Ok(w) => w,
        Err(why) => What::Bad(why),
    };
    Ok(Prepared { msg, what })
}

async fn what(
    target: &mut Target,
    cfg: &SinkConfig,
    metrics: &Metrics,
    msg: &OwnedMessage,
) -> Result<Result<What, String>, SinkError> {
    let decoded = match record::decode(msg.key(), msg.payload()) {
        Ok(d) => d,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let name = match cfg.tables.get(msg.topic()) {
        Some(t) => Some(t.clone()),
        None => record::table_for_topic(&cfg.table, msg.topic()),
    };
    let Some((db, table)) = name.as_deref().and_then(crate::config::split_table) else {
        return Ok(Err(format!(
            "topic `{}` maps to no `db.table`",
            msg.topic()
        )));
    };
    let key_cols = cfg
        .key_columns
        .get(&format!("{db}.{table}"))
        .map(Vec::as_slice);
    let ev = match decoded {
        Decoded::Skip(_) | Decoded::Tombstone(None) => return Ok(Ok(What::Skip)),
        Decoded::Tombstone(Some(_)) if !cfg.delete_on_tombstone => return Ok(Ok(What::Skip)),
        Decoded::Tombstone(Some(key)) => {
            let Some(info) = target
                .table(db, table, key_cols)
                .await
                .map_err(SinkError::from)?
            else {
                return Ok(Ok(What::Skip));
            };
            return Ok(key_of(&info, &key, None).map(|key| What::Apply {
                ops: vec![Op::Del { key }],
                table: info,
            }));
        }
        Decoded::Event(ev) => ev,
    };
    let info = match target
        .table(db, table, key_cols)
        .await
        .map_err(SinkError::from)?
    {
        Some(info) => info,
        None => create(target, cfg, metrics, (db, table), &ev, msg, key_cols).await?,
    };
    let info = evolve(target, cfg, metrics, info, &ev, key_cols).await?;
    Ok(ops(&info, ev).map(|ops| What::Apply { table: info, ops }))
}

/// Creates a missing table (`auto_create`), or stops.
async fn create(
    target: &mut Target,
    cfg: &SinkConfig,
    metrics: &Metrics,
    (db, table): (&str, &str),
    ev: &Event,
    msg: &OwnedMessage,
    key_cols: Option<&[String]>,
) -> Result<Arc<TableInfo>, SinkError> {
    let missing = || {
        SinkError::Schema(format!("table {db}.{table} does not exist in the target (topic `{}`; sink.auto_create makes it from an envelope schema)", msg.topic()))
    };
    let (true, Some(fields)) = (cfg.auto_create, &ev.fields) else {
        return Err(missing());
    };
    let key: Vec<String> = match key_cols {
        Some(k) => k.to_vec(),
        None => record::decode_key(msg.key())
            .ok()
            .flatten()
            .map(|k| k.keys().cloned().collect())
            .unwrap_or_default(),
    };
    let ddl = schema::create_table(db, table, fields, &key).map_err(SinkError::Schema)?;
    target
        .run(&format!(
            "CREATE DATABASE IF NOT EXISTS {}",
            super::plan::ident(db)
        ))
        .await
        .map_err(SinkError::from)?;
    target.ddl(&ddl).await.map_err(SinkError::from)?;
    metrics.tables_created.inc();
    tracing::info!(table = %format!("{db}.{table}"), "sink: created the target table from the envelope schema");
    target
        .table(db, table, key_cols)
        .await
        .map_err(SinkError::from)?
        .ok_or_else(missing)
}

/// Adds columns the row carries and the table lacks (`add_columns`), or stops.
async fn evolve(
    target: &mut Target,
    cfg: &SinkConfig,
    metrics: &Metrics,
    mut info: Arc<TableInfo>,
    ev: &Event,
    key_cols: Option<&[String]>,
) -> Result<Arc<TableInfo>, SinkError> {
    let Change::Upsert { after, .. } = &ev.change else {
        return Ok(info);
    };
    let (db, table) = (info.plan.db.clone(), info.plan.name.clone());
    let mut described_again = false;
    for col in after.keys() {
        if info.columns.contains_key(col) {
            continue;
        }
        // The description may be older than the table (altered since):
        // read it again once before deciding the column is missing.
        if !described_again {
            described_again = true;
            target.forget();
            info = target
                .table(&db, &table, key_cols)
                .await
                .map_err(SinkError::from)?
                .ok_or_else(|| SinkError::Schema(format!("table {db}.{table} disappeared")))?;
            if info.columns.contains_key(col) {
                continue;
            }
        }
        let field = ev
            .fields
            .as_ref()
            .and_then(|f| f.iter().find(|f| &f.name == col));
        let (true, Some(field)) = (cfg.add_columns, field) else {
            return Err(SinkError::Schema(format!(
                "table {db}.{table} has no column `{col}`, which the records carry; add it to the target{}",
                if cfg.add_columns { " (the records have no schema to type it)" } else { " or turn on sink.add_columns" }
            )));
        };
        let ddl = schema::add_column(&db, &table, field).map_err(SinkError::Schema)?;
        target.ddl(&ddl).await.map_err(SinkError::from)?;
        metrics.columns_added.inc();
        tracing::info!(table = %format!("{db}.{table}"), column = %col, "sink: added a column from the envelope schema");
        info = target
            .table(&db, &table, key_cols)
            .await
            .map_err(SinkError::from)?
            .ok_or_else(|| SinkError::Schema(format!("table {db}.{table} disappeared")))?;
    }
    Ok(info)
}

/// The key literals of `image` (`None` when a key column is missing).
fn key_of(
    info: &TableInfo,
    image: &Image,
    fields: Option<&HashMap<&str, &Field>>,
) -> Result<Vec<String>, String> {
    info.plan
        .key
        .iter()
        .map(|k| {
            let v = image
                .get(k)
                .ok_or_else(|| format!("key column `{k}` is missing"))?;
            lit(info, k, v, fields)
        })
        .collect()
}

fn lit(
    info: &TableInfo,
    col: &str,
    v: &Json,
    fields: Option<&HashMap<&str, &Field>>,
) -> Result<String, String> {
    let ty = info
        .columns
        .get(col)
        .ok_or_else(|| format!("{}.{} has no column `{col}`", info.plan.db, info.plan.name))?;
    let field = fields.and_then(|f| f.get(col).copied());
    literal(col, ty, v, field).map_err(|e| format!("{}.{}: {e}", info.plan.db, info.plan.name))
}

/// The operations for a change event.
fn ops(info: &TableInfo, ev: Event) -> Result<Vec<Op>, String> {
    let fields: Option<HashMap<&str, &Field>> = ev
        .fields
        .as_ref()
        .map(|f| f.iter().map(|f| (f.name.as_str(), f)).collect());
    let fields = fields.as_ref();
    Ok(match ev.change {
        Change::Truncate => vec![Op::Truncate],
        Change::Delete { before, key } => {
            let by_before = before.as_ref().map(|b| key_of(info, b, fields));
            let key = match (by_before, key) {
                (Some(Ok(k)), _) => k,
                (_, Some(k)) => key_of(info, &k, None)?,
                (Some(Err(e)), None) => return Err(e),
                (None, None) => return Err("a delete without a key".into()),
            };
            vec![Op::Del { key }]
        }
        Change::Upsert { after, before } => {
            let key = key_of(info, &after, fields)?;
            let moved_from = before.as_ref().and_then(|b| key_of(info, b, fields).ok());
            let mut cols = Vec::with_capacity(after.len());
            let mut vals = Vec::with_capacity(after.len());
            for (c, v) in &after {
                vals.push(lit(info, c, v, fields)?);
                cols.push(c.clone());
            }
            vec![Op::Put {
                key,
                moved_from,
                row: Row {
                    cols: Arc::from(cols),
                    vals,
                },
            }]
        }
    })
}
