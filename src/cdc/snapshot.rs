//! The initial snapshot: every row of every published table, once, as seen
//! at one binlog position, then streaming continues from exactly there.
//!
//! Policy: one connection opens `START TRANSACTION WITH CONSISTENT
//! SNAPSHOT` (REPEATABLE READ, InnoDB) and learns the binlog position that
//! transaction sees. On MariaDB the server reports it per transaction
//! (`binlog_snapshot_file` / `binlog_snapshot_position`), so no lock is
//! taken; on MySQL a global read lock is held just around the start of the
//! transaction and the position read (needs RELOAD). Every row committed
//! before that position is in the snapshot and every later change is in the
//! binlog after it: nothing is lost or published twice across the
//! boundary. Tables in non-transactional engines (MyISAM) are not
//! consistent this way. Rows are read with the binary protocol in session
//! time zone UTC, so they encode exactly as binlog rows do (`columns`).

use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tracing::info;

use super::columns::{self, Raw};
use super::filter::Filter;
use super::{CdcError, Emitter, Held};
use crate::binlog::{self, Flavor, Position, Status};

/// The consistent position of a snapshot transaction just started on `conn`
/// (with MySQL's executed GTID set, read under the same lock).
async fn snapshot_position(conn: &mut Conn, flavor: Flavor) -> Result<Status, CdcError> {
    let my = CdcError::Mysql;
    if flavor.snapshot_needs_lock() {
        conn.query_drop("FLUSH TABLES WITH READ LOCK")
            .await
            .map_err(my)?;
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            .await
            .map_err(my)?;
        let status = binlog::current_status(conn, flavor).await;
        conn.query_drop("UNLOCK TABLES").await.map_err(my)?;
        return status.map_err(CdcError::Binlog);
    }
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        .await
        .map_err(my)?;
    let vars: Vec<(String, String)> = conn
        .query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(my)?;
    let get = |n: &str| {
        vars.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    match (
        get("binlog_snapshot_file"),
        get("binlog_snapshot_position").and_then(|p| p.parse().ok()),
    ) {
        (Some(file), Some(pos)) if !file.is_empty() => Ok(Status {
            pos: Position { file, pos },
            gtid_set: String::new(),
        }),
        _ => Err(CdcError::Snapshot(
            "the server reports no binlog_snapshot_file/position".into(),
        )),
    }
}

fn quote(ident: &str) -> String {
    format!("`{}`", ident.replace('`', "``"))
}

/// Publishes the snapshot; returns the position streaming starts at.
pub async fn run(
    conn: &mut Conn,
    flavor: Flavor,
    filter: &Filter,
    out: &mut Emitter<'_>,
) -> Result<Status, CdcError> {
    let my = CdcError::Mysql;
    conn.query_drop("SET SESSION time_zone = '+00:00'")
        .await
        .map_err(my)?;
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(my)?;
    let status = snapshot_position(conn, flavor).await?;
    let pos = &status.pos;
    let tables = published_tables(conn, filter).await?;
    let m = out.metrics.clone();
    m.snapshot_running.set(1);
    m.snapshot_tables_total.set(tables.len() as u64);
    m.snapshot_tables_done.set(0);
    info!(tables = tables.len(), position = %pos, "snapshot started");
    let mut progress = Progress {
        started: Instant::now(),
        logged: Instant::now(),
        tables: tables.len(),
        done: 0,
    };
    let mut held = None;
    for (db, table) in &tables {
        let n = table_rows(conn, (db, table), pos, out, &mut held, &mut progress).await?;
        progress.done += 1;
        m.snapshot_tables_done.inc();
        info!(table = %format!("{db}.{table}"), rows = n, "snapshot: table done");
    }
    if let Some(last) = held {
        out.send_snapshot(last, true).await?;
    }
    conn.query_drop("COMMIT").await.map_err(my)?;
    m.snapshot_running.set(0);
    info!(
        rows = m.snapshot_rows.get(),
        tables = tables.len(),
        secs = progress.started.elapsed().as_secs_f64(),
        "snapshot read; streaming from {pos}"
    );
    Ok(status)
}

/// The base tables the filter publishes, in name order.
async fn published_tables(
    conn: &mut Conn,
    filter: &Filter,
) -> Result<Vec<(String, String)>, CdcError> {
    let tables: Vec<(String, String)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_SCHEMA, TABLE_NAME",
        )
        .await
        .map_err(CdcError::Mysql)?;
    Ok(tables
        .into_iter()
        .filter(|(d, t)| filter.matches(d, t))
        .collect())
}

/// How far the snapshot got (logged every 5 s).
struct Progress {
    started: Instant,
    logged: Instant,
    tables: usize,
    done: usize,
}

/// Publishes every row of one table; one row is always held back in
/// `held` so that the very last row of the snapshot can say so.
async fn table_rows(
    conn: &mut Conn,
    (db, table): (&str, &str),
    pos: &Position,
    out: &mut Emitter<'_>,
    held: &mut Option<Held>,
    progress: &mut Progress,
) -> Result<u64, CdcError> {
    let my = CdcError::Mysql;
    let sql = format!("SELECT * FROM {}.{}", quote(db), quote(table));
    let mut result = conn.exec_iter(sql, ()).await.map_err(my)?;
    let cols = columns::from_result_set(result.columns_ref())
        .map_err(|e| CdcError::Column(format!("{db}.{table}: {e}")))?;
    let m = out.metrics.clone();
    let mut n = 0u64;
    while let Some(row) = result.next().await.map_err(my)? {
        let row: Row = row;
        let values = (0..cols.len())
            .map(|i| {
                let v = row.as_ref(i).unwrap_or(&mysql_common::value::Value::NULL);
                columns::encode(&cols[i], Raw::Snapshot(v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CdcError::Column(format!("{db}.{table}: {e}")))?;
        if let Some(prev) = held.replace(out.snapshot_row(db, table, &cols, values, pos)) {
            out.send_snapshot(prev, false).await?;
        }
        n += 1;
        m.snapshot_rows.inc();
        if progress.logged.elapsed().as_secs() >= 5 {
            progress.logged = Instant::now();
            let rows = m.snapshot_rows.get();
            info!(
                table = %format!("{db}.{table}"),
                rows,
                rows_per_s = (rows as f64 / progress.started.elapsed().as_secs_f64()) as u64,
                tables_done = progress.done,
                tables = progress.tables,
                "snapshot progress"
            );
        }
    }
    Ok(n)
}
