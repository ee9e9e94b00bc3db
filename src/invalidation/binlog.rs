//! The binlog change feed: the proxy tails MySQL's binlog itself
//! (`[invalidation.binlog]`), for a single proxy without Kafka.
//!
//! Policy:
//! * **Same rules as every feed.** Rows, statements and unreadable events
//!   become `ChangeEvent`s (`changes`, pure) applied through
//!   `invalidation::apply` with echoes; the gate follows `Keeper`.
//! * **Proofs**: every check (a quarter of `max_staleness`, 50 ms–1 s) reads
//!   the server's binlog end (`SHOW MASTER STATUS`) on a second connection;
//!   once the reader has passed that position, every transaction committed
//!   before the check is in the cache. An idle server proves freshness as
//!   well as a busy one; the server heartbeats at the check interval so a
//!   dead link is noticed within two of them.
//! * **Continuity**: after a broken connection the reader resumes at the
//!   position after the last event it applied — no gap, the binlog is
//!   durable. A gap (flush before hits resume) is: startup; a position the
//!   server no longer has (purged) — the reader restarts at the current end;
//!   a binlog end lower than one seen before or another `@@server_id`
//!   (RESET MASTER, failover to another server); and, by `Freshness`, any
//!   stretch without proof longer than `max_staleness`.
//! * **Statements** in a row-based binlog are DDL, TRUNCATE and the like:
//!   classified by the proxy's own classifier; their tables' tags are bumped
//!   (everything when no table can be named). BEGIN/COMMIT carry nothing.
//!   What an item changes is `binlog::changes`, shared with `sqlcache cdc`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::keeper::Keeper;
use super::{Echo, FeedError, FeedHandle, Quiet};
use crate::backend::schema::SchemaCache;
use crate::binlog::changes::changes;
use crate::binlog::{self, BinlogError, Flavor, Item, Position, Reader, Start};
use crate::cache::Cache;
use crate::config::{BackendConfig, BinlogConfig};

/// The one "partition" of a binlog, for `Freshness`.
fn partition() -> super::freshness::Partition {
    ("binlog".into(), 0)
}

/// Starts the binlog feed: closes the cache's gate until the first proof.
pub fn spawn(
    cfg: &BinlogConfig,
    backend: &BackendConfig,
    cache: Arc<Cache>,
    schema: Arc<SchemaCache>,
) -> Result<FeedHandle, FeedError> {
    let user = cfg.user.as_deref().unwrap_or(&backend.user);
    let password = cfg.password.as_deref().unwrap_or(&backend.password);
    let opts = crate::backend::conn_opts(backend, user, password);
    let interval = (cfg.max_staleness / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let server_id = cfg
        .server_id
        .unwrap_or_else(|| 1_000_000_000 + rand::random::<u32>() % 1_000_000_000);
    let feed = Feed {
        opts: opts.into(),
        connect_timeout: backend.connect_timeout,
        server_id,
        keeper: Keeper::start(cache.clone(), cfg.max_staleness),
        echo: Echo::new(cfg.max_staleness),
        cache,
        schema,
        interval,
        applied: None,
        highest_head: i64::MIN,
        master: None,
        quiet: Quiet::default(),
        quiet_bad: Quiet::default(),
    };
    info!(
        server_id,
        max_staleness = ?cfg.max_staleness,
        "binlog change feed starting; cache hits wait for its first freshness proof"
    );
    let (tx, rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("sqlcache-binlog".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("binlog feed runtime");
            rt.block_on(feed.run(rx));
        })
        .map_err(FeedError::Thread)?;
    Ok(FeedHandle::new(
        move || {
            let _ = tx.send(());
        },
        thread,
    ))
}

struct Feed {
    opts: Opts,
    connect_timeout: Duration,
    server_id: u32,
    cache: Arc<Cache>,
    schema: Arc<SchemaCache>,
    keeper: Keeper,
    echo: Echo,
    interval: Duration,
    /// Position after the last applied event (where to resume).
    applied: Option<Position>,
    /// The highest binlog end a check has read.
    highest_head: i64,
    /// `@@server_id` of the server read.
    master: Option<u32>,
    quiet: Quiet,
    quiet_bad: Quiet,
}

impl Feed {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        loop {
            let outcome = tokio::select! {
                _ = &mut stop => break,
                r = self.session() => r,
            };
            if let Err(e) = outcome {
                self.cache.stats.feed.errors.fetch_add(1, Ordering::Relaxed);
                let line = e.to_string();
                if let Some(suppressed) = self.quiet.allow_changed(&line) {
                    warn!(error = %line, suppressed, "binlog feed: reconnecting");
                }
            }
            // Back off, still enacting expiry (hits stop after max_staleness).
            let until = Instant::now() + self.interval;
            while Instant::now() < until {
                self.settle();
                tokio::select! {
                    _ = &mut stop => { info!("binlog change feed stopped"); return; }
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
        info!("binlog change feed stopped");
    }

    fn settle(&mut self) {
        let applied = self.applied.as_ref().map(Position::key);
        self.keeper.settle(|_| applied);
        self.echo.tick(Instant::now(), &self.cache);
    }

    async fn connect(&self) -> Result<Conn, BinlogError> {
        match tokio::time::timeout(self.connect_timeout, Conn::new(self.opts.clone())).await {
            Ok(r) => r.map_err(BinlogError::Connect),
            Err(_) => Err(BinlogError::Timeout(self.connect_timeout)),
        }
    }

    /// One connection's life: returns when it breaks.
    async fn session(&mut self) -> Result<(), BinlogError> {
        let mut status = self.connect().await?;
        let flavor = binlog::check_settings(&mut status).await?;
        let master: Option<u32> = status
            .query_first("SELECT @@server_id")
            .await
            .map_err(BinlogError::Stream)?;
        if self.master.is_some() && self.master != master {
            self.keeper
                .gap("the binlog comes from another server (@@server_id changed)");
            self.applied = None;
            self.highest_head = i64::MIN;
        }
        self.master = master;
        let start = match &self.applied {
            Some(p) => Start::At(p.clone()),
            None => Start::Current,
        };
        let connect = Reader::connect(self.opts.clone(), self.server_id, start, self.interval);
        let mut reader = match tokio::time::timeout(self.connect_timeout, connect).await {
            Err(_) => return Err(BinlogError::Timeout(self.connect_timeout)),
            Ok(Err(e @ BinlogError::Purged(..))) => {
                self.restart_at_head("the resume position was purged");
                return Err(e);
            }
            Ok(r) => r?,
        };
        if self.applied.is_none() {
            self.applied = Some(reader.position().clone());
        }
        info!(position = %reader.position(), ?flavor, "binlog feed reading");
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = reader.next() => {
                    let ev = match ev {
                        Err(e @ BinlogError::Purged(..)) => {
                            self.restart_at_head("the binlog position was purged");
                            return Err(e);
                        }
                        r => r?,
                    };
                    self.apply(ev);
                    self.settle();
                }
                _ = ticker.tick() => {
                    self.check(&mut status, flavor).await?;
                    self.settle();
                }
            }
        }
    }

    fn restart_at_head(&mut self, why: &str) {
        self.keeper.gap(why);
        self.applied = None;
    }

    /// Reads the binlog end: a freshness proof.
    async fn check(&mut self, status: &mut Conn, flavor: Flavor) -> Result<(), BinlogError> {
        let at = Instant::now();
        let head = match tokio::time::timeout(
            self.interval.max(Duration::from_millis(500)),
            binlog::current_position(status, flavor),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => return Err(BinlogError::Timeout(at.elapsed())),
        };
        let key = head.key();
        if key < self.highest_head {
            self.highest_head = i64::MIN;
            self.restart_at_head("the binlog went backwards (RESET MASTER?)");
            return Err(BinlogError::Settings(format!(
                "binlog end {head} is before one read earlier"
            )));
        }
        self.highest_head = key;
        debug!(head = %head, applied = ?self.applied.as_ref().map(|p| p.to_string()),
               elapsed = ?at.elapsed(), "binlog feed check");
        self.keeper.observe(at, vec![(partition(), key)]);
        Ok(())
    }

    fn apply(&mut self, ev: binlog::Event) {
        let stats = &self.cache.stats.feed;
        let events = changes(&ev.item);
        match &ev.item {
            Item::Rows { .. } | Item::Query { .. } => {
                stats.messages.fetch_add(1, Ordering::Relaxed);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                stats.lag_ms.store(
                    now.saturating_sub(u64::from(ev.timestamp) * 1000),
                    Ordering::Relaxed,
                );
            }
            Item::Unreadable { why, .. } => {
                stats.messages.fetch_add(1, Ordering::Relaxed);
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                if let Some(suppressed) = self.quiet_bad.allow() {
                    warn!(position = %ev.pos, reason = %why, invalidating = ?events, suppressed,
                          "undecodable binlog event");
                }
            }
            _ => {}
        }
        if !events.is_empty() {
            stats
                .events
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            super::apply(&events, &self.cache, &self.schema, &mut self.echo);
        }
        self.applied = Some(ev.pos);
    }
}
