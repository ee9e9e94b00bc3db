//! Binlog rows events to Debezium change events.
//!
//! Policy: an insert is `c`, a delete `d`, an update `u` — unless it
//! changes the row's key, which Debezium publishes as a `d` of the old key
//! then a `c` of the new one (so a compacted topic keeps no stale key). A
//! table's columns come from its table map, decoded once per table id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use mysql_async::binlog::row::BinlogRow;
use serde_json::Value as Json;

use super::columns::{self, ColumnMeta};
use super::envelope::{self, Op, Source};
use super::{image, CdcError, Emitter, EventMeta};
use crate::binlog::{Reader, RowKind};

/// Table maps decoded to columns, by table id.
pub(super) type Tables = HashMap<u64, Arc<Vec<ColumnMeta>>>;

/// The columns of `table_id`, decoded from its table map on first use.
pub(super) fn columns_of(
    reader: &Reader,
    tables: &mut Tables,
    collations: &columns::Collations,
    (db, table, table_id): (&str, &str, u64),
) -> Result<Arc<Vec<ColumnMeta>>, CdcError> {
    if let Some(c) = tables.get(&table_id) {
        return Ok(c.clone());
    }
    let tme = reader
        .table_map(table_id)
        .ok_or_else(|| CdcError::Unreadable(format!("no table map for {db}.{table}")))?;
    let c = Arc::new(
        columns::from_table_map(tme, collations)
            .map_err(|e| CdcError::Column(format!("{db}.{table}: {e}")))?,
    );
    // Table ids grow with every table (re)opened on the server.
    if tables.len() > 10_000 {
        tables.clear();
    }
    tables.insert(table_id, c.clone());
    Ok(c)
}

/// One rows event of a published table.
pub(super) struct RowsEvent<'a> {
    pub db: &'a str,
    pub table: &'a str,
    pub kind: RowKind,
    pub rows: &'a [(Option<BinlogRow>, Option<BinlogRow>)],
}

impl Emitter<'_> {
    /// Publishes every row of a rows event, in order.
    pub(super) async fn rows(
        &mut self,
        ev: RowsEvent<'_>,
        cols: &[ColumnMeta],
        at: &EventMeta<'_>,
        read_at: Instant,
    ) -> Result<(), CdcError> {
        let topic = self.topic(ev.db, ev.table);
        for (i, (before, after)) in ev.rows.iter().enumerate() {
            let src = at.source(ev.db, Some(ev.table), i);
            let b = before.as_ref().map(|r| image(cols, r)).transpose()?;
            let a = after.as_ref().map(|r| image(cols, r)).transpose()?;
            self.row(ev.kind, cols, &topic, &src, read_at, (b, a))
                .await?;
        }
        Ok(())
    }

    async fn row(
        &mut self,
        kind: RowKind,
        cols: &[ColumnMeta],
        topic: &str,
        src: &Source<'_>,
        read_at: Instant,
        (b, a): (Option<Json>, Option<Json>),
    ) -> Result<(), CdcError> {
        match kind {
            RowKind::Insert => {
                self.change(Op::Create, cols, topic, None, a, src, read_at)
                    .await
            }
            RowKind::Delete => {
                self.change(Op::Delete, cols, topic, b, None, src, read_at)
                    .await
            }
            RowKind::Update => {
                let (Some(b), Some(a)) = (b, a) else {
                    return Err(CdcError::Unreadable(format!(
                        "an UPDATE row of {}.{} without both images",
                        src.db,
                        src.table.unwrap_or("")
                    )));
                };
                if envelope::key(cols, &b) == envelope::key(cols, &a) {
                    return self
                        .change(Op::Update, cols, topic, Some(b), Some(a), src, read_at)
                        .await;
                }
                self.change(Op::Delete, cols, topic, Some(b), None, src, read_at)
                    .await?;
                self.change(Op::Create, cols, topic, None, Some(a), src, read_at)
                    .await
            }
        }
    }
}
