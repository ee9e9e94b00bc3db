//! `sqlcache cdc`: the binlog published to Kafka as Debezium change events.
//!
//! Policy: at-least-once and in binlog order. A *session* connects to MySQL
//! and Kafka, publishes a snapshot if the saved state asks for one, then
//! streams: each row change becomes a message keyed by the row's primary
//! key (`envelope`), and the end of every transaction becomes a checkpoint
//! that `publish` acknowledges only after Kafka acknowledged everything
//! before it; acknowledged checkpoints are saved (`state`), at most every
//! `SAVE_EVERY` and always on shutdown. Any failure — MySQL or Kafka gone, a
//! delivery that timed out — ends the session; the next one, after a
//! back-off (100 ms doubling to 10 s), resumes from the saved state, so what
//! was in flight may be published again, never skipped. A session resumes
//! by GTID where it can (MariaDB; MySQL with `gtid_mode = ON`), which
//! survives a failover to another server holding the same transactions,
//! and by file/offset otherwise. Errors that retrying cannot
//! fix stop the publisher with a message: the binlog purged past the saved
//! position (re-snapshot), wrong binlog settings, an event of a published
//! table that cannot be decoded (never skipped), a corrupt state file.

pub mod columns;
pub mod envelope;
pub mod filter;
pub mod health;
pub mod metrics;
pub mod publish;
mod rows;
pub mod snapshot;
pub mod state;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mysql_async::binlog::row::BinlogRow;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use serde_json::Value as Json;
use tracing::{info, warn};

use crate::binlog::{self, BinlogError, Flavor, Gtid, Gtids, Item, Position, Reader, Start};
use crate::change::ChangeEvent;
use crate::config::{CdcConfig, Config, SnapshotMode};
use columns::{ColumnMeta, Raw};
use envelope::{Op, Snapshot, Source};
use filter::Filter;
use metrics::Metrics;
use publish::{Publisher, MAX_PENDING};
use state::State;

/// Saved state is written at most this often while streaming.
const SAVE_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum CdcError {
    #[error("the configuration has no [cdc] section")]
    NoConfig,
    #[error(transparent)]
    Binlog(#[from] BinlogError),
    #[error(
        "the saved position {0} is no longer on the server (binlog purged): {1}; changes after \
         it cannot be published — delete the state file {2} to re-snapshot"
    )]
    Purged(Position, String, String),
    #[error("MySQL: {0}")]
    Mysql(mysql_async::Error),
    #[error("Kafka: {0}")]
    Kafka(rdkafka::error::KafkaError),
    #[error("cannot create topic {0}: {1}")]
    Topic(String, String),
    #[error("Kafka delivery failed: {0}")]
    Delivery(String),
    #[error("snapshot: {0}")]
    Snapshot(String),
    #[error("cannot encode a row: {0}")]
    Column(String),
    #[error("binlog event of a published table cannot be decoded: {0}")]
    Unreadable(String),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("metrics listener {0}: {1}")]
    Metrics(String, std::io::Error),
}

impl CdcError {
    /// Errors a new session would only repeat.
    fn is_fatal(&self) -> bool {
        matches!(
            self,
            CdcError::NoConfig
                | CdcError::Purged(..)
                | CdcError::Binlog(BinlogError::Purged(..) | BinlogError::Settings(_))
                | CdcError::Column(_)
                | CdcError::Unreadable(_)
                | CdcError::State(state::StateError::Corrupt(..) | state::StateError::BadGtid(..))
                | CdcError::Metrics(..)
        )
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs the publisher until `shutdown` resolves or a fatal error.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), CdcError> {
    let c = cfg.cdc.clone().ok_or(CdcError::NoConfig)?;
    let metrics = Arc::new(Metrics::default());
    metrics.health.set_bound(c.max_unacked_age);
    if let Some(addr) = &c.metrics_listen {
        let (m, h) = (metrics.clone(), metrics.clone());
        let health = move || h.health.check(now_ms());
        crate::admin::http::spawn_endpoint(addr, move || m.prometheus(), health)
            .await
            .map_err(|e| CdcError::Metrics(addr.clone(), e))?;
    }
    let server_id = c
        .server_id
        .unwrap_or_else(|| rand::random::<u32>() % 1_000_000_000 + 1_000_000_000);
    let opts: Opts =
        crate::backend::account_opts(&cfg.backend, c.user.as_deref(), c.password.as_deref());
    let filter = Filter::new(&c.include, &c.exclude);
    tokio::pin!(shutdown);
    let mut backoff = crate::retry::Backoff::default();
    loop {
        let mut s = Session {
            cfg: &c,
            opts: opts.clone(),
            server_id,
            filter: &filter,
            metrics: metrics.clone(),
            progressed: false,
        };
        let err = match s.run(&mut shutdown).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => e,
        };
        if s.progressed {
            backoff.progressed();
        }
        metrics.restarts.inc();
        metrics.health.session_failed(now_ms(), &err.to_string());
        warn!(error = %err, retry_in = ?backoff.delay(), "cdc session ended; resuming from the saved position");
        if !backoff.wait(&mut shutdown).await {
            return Ok(());
        }
    }
}

/// Turns decoded rows into messages on a `Publisher`.
pub struct Emitter<'a> {
    cfg: &'a CdcConfig,
    publisher: Publisher,
    metrics: Arc<Metrics>,
    server_id: u32,
}

/// A snapshot row ready to send (held back to mark the last one).
pub struct Held {
    topic: String,
    key: Option<Vec<u8>>,
    value: Json,
    schema: Option<Json>,
}

impl Emitter<'_> {
    fn topic(&self, db: &str, table: &str) -> String {
        envelope::topic(&self.cfg.topic_prefix, db, table)
    }

    /// Serializes a key or value, wrapped with its schema if configured.
    fn bytes(&self, schema: impl FnOnce() -> Json, payload: Json) -> Vec<u8> {
        let v = if self.cfg.schemas {
            envelope::wrap(schema(), payload)
        } else {
            payload
        };
        serde_json::to_vec(&v).expect("JSON serializes")
    }

    fn key_bytes(&self, cols: &[ColumnMeta], topic: &str, image: &Json) -> Option<Vec<u8>> {
        let k = envelope::key(cols, image)?;
        Some(self.bytes(
            || envelope::row_schema(cols, &format!("{topic}.Key"), None, true),
            k,
        ))
    }

    fn snapshot_row(
        &self,
        db: &str,
        table: &str,
        cols: &[ColumnMeta],
        values: Vec<Json>,
        pos: &Position,
    ) -> Held {
        let topic = self.topic(db, table);
        let after = envelope::row(cols, values);
        let key = self.key_bytes(cols, &topic, &after);
        let source = Source {
            name: &self.cfg.topic_prefix,
            server_id: self.server_id,
            ts_ms: now_ms(),
            db,
            table: Some(table),
            gtid: None,
            file: &pos.file,
            pos: pos.pos,
            row: 0,
            snapshot: Snapshot::Yes,
        };
        let value = envelope::value(Op::Read, None, Some(after), &source, now_ms());
        Held {
            schema: self
                .cfg
                .schemas
                .then(|| envelope::value_schema(cols, &topic)),
            topic,
            key,
            value,
        }
    }

    async fn send_snapshot(&mut self, mut h: Held, last: bool) -> Result<(), CdcError> {
        if last {
            h.value["source"]["snapshot"] = Json::from("last");
        }
        let v = match h.schema {
            Some(s) => envelope::wrap(s, h.value),
            None => h.value,
        };
        let v = serde_json::to_vec(&v).expect("JSON serializes");
        self.publisher
            .send(&h.topic, h.key.as_deref(), Some(&v), None, 0, true)
            .await
    }

    /// Publishes one change (`op`) with its images.
    #[allow(clippy::too_many_arguments)]
    async fn change(
        &mut self,
        op: Op,
        cols: &[ColumnMeta],
        topic: &str,
        before: Option<Json>,
        after: Option<Json>,
        source: &Source<'_>,
        read_at: Instant,
    ) -> Result<(), CdcError> {
        let image = after.as_ref().or(before.as_ref()).ok_or_else(|| {
            CdcError::Unreadable(format!("a row event for {topic} without images"))
        })?;
        let key = self.key_bytes(cols, topic, image);
        let value = envelope::value(op, before, after, source, now_ms());
        let value = self.bytes(|| envelope::value_schema(cols, topic), value);
        let ts = (source.ts_ms / 1000) as u32;
        self.publisher
            .send(topic, key.as_deref(), Some(&value), Some(read_at), ts, true)
            .await?;
        if op == Op::Delete && self.cfg.tombstones && key.is_some() {
            self.publisher
                .send(topic, key.as_deref(), None, Some(read_at), ts, false)
                .await?;
        }
        Ok(())
    }
}

struct Session<'a> {
    cfg: &'a CdcConfig,
    opts: Opts,
    server_id: u32,
    filter: &'a Filter,
    metrics: Arc<Metrics>,
    /// Something was acknowledged: the back-off starts over.
    progressed: bool,
}

/// Where in the binlog the stream is, and what a checkpoint there saves.
struct Cursor {
    gtids: Gtids,
    /// The GTID of the transaction being read.
    txn_gtid: Option<Gtid>,
    in_txn: bool,
    /// The transaction is a `sqlcache sink`'s (it wrote the sink's
    /// offsets first) and `skip_sink_writes` is on: none of it is published.
    sink_txn: bool,
    /// Position where the event being handled starts.
    event_start: Position,
}

impl Session<'_> {
    async fn run(
        &mut self,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<(), CdcError> {
        let path = self.cfg.state.clone();
        let saved = state::load(&path)?;
        let mut conn = Conn::new(self.opts.clone())
            .await
            .map_err(|e| CdcError::Binlog(BinlogError::Connect(e)))?;
        let flavor = binlog::check_settings(&mut conn).await?;
        let collations: columns::Collations = conn
            .query::<(Option<u16>, Option<String>), _>(
                "SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS",
            )
            .await
            .map_err(CdcError::Mysql)?
            .into_iter()
            .filter_map(|(id, cs)| Some((id?, cs?)))
            .collect();
        let mut out = Emitter {
            cfg: self.cfg,
            publisher: Publisher::new(self.cfg, self.metrics.clone())?,
            metrics: self.metrics.clone(),
            server_id: self.server_id,
        };
        let mut acked: Option<State> = None;
        let state = match saved {
            Some(s) if s.snapshot_done => s,
            None if self.cfg.snapshot == SnapshotMode::Never => {
                let status = binlog::current_status(&mut conn, flavor).await?;
                let s = state_at(&mut conn, flavor, status).await?;
                state::save(&path, &s)?;
                info!(position = %s.position(), "no saved state: streaming from the current position");
                s
            }
            previous => {
                if previous.is_some() {
                    info!("the last snapshot did not finish: starting it again");
                }
                let status = snapshot::run(&mut conn, flavor, self.filter, &mut out).await?;
                let s = state_at(&mut conn, flavor, status).await?;
                out.publisher.mark(s.clone());
                let drained = out
                    .publisher
                    .drain(Duration::from_secs(300), &mut acked)
                    .await;
                if let Some(s) = acked.take() {
                    self.save(&s)?;
                }
                drained?;
                s
            }
        };
        drop(conn);
        self.stream(flavor, state, collations, &mut out, shutdown)
            .await
    }

    fn save(&mut self, s: &State) -> Result<(), CdcError> {
        state::save(&self.cfg.state, s)?;
        self.progressed = true;
        self.metrics
            .position_file
            .set((s.position().key() >> 40) as u64);
        self.metrics.position_pos.set(s.pos);
        Ok(())
    }

    /// Connects the replica stream where `state` says to resume: by GTID
    /// when one was saved, else by position.
    async fn open(&self, flavor: Flavor, state: &State) -> Result<(Reader, Cursor), CdcError> {
        let gtids = Gtids::parse(flavor, &state.gtid).ok_or_else(|| {
            state::StateError::BadGtid(self.cfg.state.display().to_string(), state.gtid.clone())
        })?;
        let start = if state.gtid.is_empty() {
            Start::At(state.position())
        } else {
            Start::Gtid {
                gtid: gtids.clone(),
                or_at: state.position(),
            }
        };
        let reader = Reader::connect(
            self.opts.clone(),
            self.server_id,
            start.clone(),
            self.cfg.heartbeat,
        )
        .await?;
        info!(start = ?start, "streaming the binlog");
        self.metrics.health.streaming(now_ms());
        let cursor = Cursor {
            gtids,
            txn_gtid: None,
            in_txn: false,
            sink_txn: false,
            event_start: state.position(),
        };
        Ok((reader, cursor))
    }

    async fn stream(
        &mut self,
        flavor: Flavor,
        state: State,
        collations: columns::Collations,
        out: &mut Emitter<'_>,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<(), CdcError> {
        let (mut reader, mut cursor) = self.open(flavor, &state).await?;
        let mut tables = rows::Tables::new();
        let mut acked: Option<State> = None;
        let mut saved_at = Instant::now();
        let purged = |e: BinlogError| match e {
            BinlogError::Purged(p, m) => {
                CdcError::Purged(p, m, self.cfg.state.display().to_string())
            }
            e => CdcError::Binlog(e),
        };
        let result = loop {
            tokio::select! {
                biased;
                _ = &mut *shutdown => break Ok(()),
                r = out.publisher.acked(), if !out.publisher.is_idle() => match r {
                    Ok(Some(s)) => acked = Some(s),
                    Ok(None) => {}
                    Err(e) => break Err(e),
                },
                ev = reader.next(), if out.publisher.unacked() < MAX_PENDING => {
                    let ev = match ev {
                        Ok(ev) => ev,
                        Err(e) => break Err(purged(e)),
                    };
                    let read_at = Instant::now();
                    if let Err(e) = self
                        .handle(&reader, ev, read_at, &mut cursor, &mut tables, &collations, out)
                        .await
                    {
                        break Err(e);
                    }
                }
            }
            if acked.is_some() && saved_at.elapsed() >= SAVE_EVERY {
                saved_at = Instant::now();
                if let Some(s) = acked.take() {
                    self.save(&s)?;
                }
            }
        };
        // Whatever ended the session, keep what Kafka has acknowledged.
        let drained = out
            .publisher
            .drain(Duration::from_secs(10), &mut acked)
            .await;
        if let Some(s) = acked.take() {
            self.save(&s)?;
        }
        result?;
        drained
    }

    #[allow(clippy::too_many_arguments)]
    async fn handle(
        &mut self,
        reader: &Reader,
        ev: binlog::Event,
        read_at: Instant,
        cursor: &mut Cursor,
        tables: &mut rows::Tables,
        collations: &columns::Collations,
        out: &mut Emitter<'_>,
    ) -> Result<(), CdcError> {
        let start = std::mem::replace(&mut cursor.event_start, ev.pos.clone());
        let at = EventMeta {
            prefix: &self.cfg.topic_prefix,
            server_id: ev.server_id,
            ts_ms: i64::from(ev.timestamp) * 1000,
            gtid: cursor.txn_gtid.as_ref().map(|g| g.to_string()),
            start,
        };
        let mut end_of_txn = false;
        match &ev.item {
            Item::Gtid(g) => {
                cursor.txn_gtid = Some(g.clone());
            }
            Item::Rows {
                db,
                table,
                table_id,
                kind,
                rows,
            } => {
                if self.cfg.skip_sink_writes && self.cfg.is_sink_offsets(db, table) {
                    cursor.sink_txn = true;
                }
                if !cursor.sink_txn && self.filter.matches(db, table) {
                    let id = (db.as_str(), table.as_str(), *table_id);
                    let cols = rows::columns_of(reader, tables, collations, id)?;
                    let ev = rows::RowsEvent {
                        db,
                        table,
                        kind: *kind,
                        rows,
                    };
                    out.rows(ev, &cols, &at, read_at).await?;
                }
            }
            Item::Query { schema, sql } => {
                let word = first_word(sql);
                match word.as_str() {
                    "BEGIN" => cursor.in_txn = true,
                    "COMMIT" | "ROLLBACK" => end_of_txn = true,
                    "XA" | "SAVEPOINT" | "RELEASE" => {}
                    _ => {
                        self.statement(schema, sql, &word, &at, read_at, out)
                            .await?;
                        end_of_txn = !cursor.in_txn;
                    }
                }
            }
            Item::Xid => end_of_txn = true,
            Item::Unreadable { table, why } => {
                let published = match table {
                    Some((db, t)) => self.filter.matches(db, t),
                    None => true,
                };
                if published {
                    return Err(CdcError::Unreadable(why.clone()));
                }
            }
            Item::Heartbeat | Item::Other => {}
        }
        if end_of_txn {
            self.end_of_txn(cursor, &ev.pos, out);
        }
        Ok(())
    }

    /// A transaction ended at `pos`: its GTID joins the set, and the
    /// position is marked, to be saved once Kafka acknowledged everything
    /// before it.
    fn end_of_txn(&self, cursor: &mut Cursor, pos: &Position, out: &mut Emitter<'_>) {
        cursor.in_txn = false;
        cursor.sink_txn = false;
        if let Some(g) = cursor.txn_gtid.take() {
            cursor.gtids.advance(&g);
        }
        self.metrics.transactions.inc();
        out.publisher.mark(State {
            file: pos.file.clone(),
            pos: pos.pos,
            gtid: cursor.gtids.to_string(),
            snapshot_done: true,
        });
    }

    /// A logged statement outside row events: TRUNCATE becomes `op: t` on
    /// each published table's topic; other data-definition statements a
    /// schema-change event on the `<prefix>` topic.
    async fn statement(
        &self,
        schema: &str,
        sql: &str,
        word: &str,
        at: &EventMeta<'_>,
        read_at: Instant,
        out: &mut Emitter<'_>,
    ) -> Result<(), CdcError> {
        let changes = crate::binlog::changes::statement_changes(schema, sql);
        let mut named = Vec::new();
        let mut everything = false;
        for c in changes {
            match c {
                ChangeEvent::Table { db, table } => named.push((db, table)),
                ChangeEvent::Everything => everything = true,
                ChangeEvent::Row { .. } => {}
            }
        }
        let published: Vec<_> = named
            .iter()
            .filter(|(d, t)| self.filter.matches(d, t))
            .cloned()
            .collect();
        if word == "TRUNCATE" {
            for (db, table) in &published {
                let topic = out.topic(db, table);
                let src = at.source(db, Some(table), 0);
                let v = envelope::value(Op::Truncate, None, None, &src, now_ms());
                let v = out.bytes(|| envelope::value_schema(&[], &topic), v);
                out.publisher
                    .send(
                        &topic,
                        None,
                        Some(&v),
                        Some(read_at),
                        (src.ts_ms / 1000) as u32,
                        false,
                    )
                    .await?;
            }
            return Ok(());
        }
        let db_level = everything && (schema.is_empty() || self.filter.may_match_db(schema));
        if published.is_empty() && !db_level {
            return Ok(());
        }
        // The database the statement changes: its first published table's,
        // else the one it ran in.
        let db = published.first().map_or(schema, |(d, _)| d.as_str());
        let src = at.source(db, None, 0);
        let topic = self.cfg.topic_prefix.clone();
        let v = envelope::schema_change(sql, db, &published, &src, now_ms());
        let k = envelope::schema_change_key(db);
        out.publisher
            .send(
                &topic,
                Some(&serde_json::to_vec(&k).expect("JSON")),
                Some(&serde_json::to_vec(&v).expect("JSON")),
                Some(read_at),
                (src.ts_ms / 1000) as u32,
                false,
            )
            .await
    }
}

/// What every message of one binlog event shares.
struct EventMeta<'a> {
    prefix: &'a str,
    server_id: u32,
    ts_ms: i64,
    gtid: Option<String>,
    /// Where the event starts.
    start: Position,
}

impl EventMeta<'_> {
    fn source<'s>(&'s self, db: &'s str, table: Option<&'s str>, row: usize) -> Source<'s> {
        Source {
            name: self.prefix,
            server_id: self.server_id,
            ts_ms: self.ts_ms,
            db,
            table,
            gtid: self.gtid.clone(),
            file: &self.start.file,
            pos: self.start.pos,
            row,
            snapshot: Snapshot::No,
        }
    }
}

/// A binlog row image as JSON.
/// A statement's first word, upper-cased.
fn first_word(sql: &str) -> String {
    sql.trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

fn image(cols: &[ColumnMeta], row: &BinlogRow) -> Result<Json, CdcError> {
    if row.len() != cols.len() {
        return Err(CdcError::Unreadable(format!(
            "row image has {} of {} columns (binlog_row_image must be FULL)",
            row.len(),
            cols.len()
        )));
    }
    let values = cols
        .iter()
        .enumerate()
        .map(|(i, c)| match row.as_ref(i) {
            Some(v) => columns::encode(c, Raw::Binlog(v)),
            None => Ok(Json::Null),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CdcError::Column(e.to_string()))?;
    Ok(envelope::row(cols, values))
}

/// The state of a publisher that has published everything before
/// `status.pos`, with the GTID state there: MariaDB's GTID position for
/// that file/offset, MySQL's executed set read with it (normalized; empty
/// when the server runs without GTIDs).
async fn state_at(
    conn: &mut Conn,
    flavor: Flavor,
    status: binlog::Status,
) -> Result<State, CdcError> {
    let pos = status.pos;
    let gtid = match flavor {
        Flavor::MariaDb => {
            let g: Option<Option<String>> = conn
                .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (&pos.file, pos.pos))
                .await
                .map_err(CdcError::Mysql)?;
            g.flatten().unwrap_or_default()
        }
        Flavor::MySql(..) => match binlog::GtidSet::parse(&status.gtid_set) {
            Some(set) => set.to_string(),
            None => {
                warn!(gtid_executed = %status.gtid_set, "cannot parse the executed GTID set: resuming by file/offset only");
                String::new()
            }
        },
    };
    Ok(State {
        file: pos.file,
        pos: pos.pos,
        gtid,
        snapshot_done: true,
    })
}
