//! Backend connections to MySQL, on mysql_async, multiplexed across sessions.
//!
//! Policy: a session borrows a connection per statement and gives it back
//! after, unless the session holds state that lives on it (then the session
//! keeps it "pinned", see `classify::effects` and `Session`). One pool per
//! (user, CLIENT_FOUND_ROWS), because grants and affected-row semantics differ;
//! `pool_max` bounds the total over all pools (an idle connection of another
//! user is closed to make room before anyone waits). Each connection records
//! the tracked session state applied to it (`Applied`); `sync` re-applies the
//! borrowing session's state with at most one `SET` and one `USE`. Server-side
//! prepared statements are cached per connection keyed by (database, SQL), so
//! a statement prepared by one session is never reused under another
//! database. A connection whose pinned state may linger is reset
//! (COM_RESET_CONNECTION) before it returns to the pool.
//!
//! A new MySQL session copies the server's global variables; a pooled
//! connection keeps the copy it took when it was opened. So that a client
//! session starting after a `SET GLOBAL` (through the proxy) sees the new
//! values, `globals_changed` starts a new epoch and a connection from an
//! older one is reset (COM_RESET_CONNECTION, which copies the globals
//! again) before it is handed out. A global changed by another client of
//! MySQL directly is not seen: connections opened before it keep the old
//! value until they are reset or closed (`idle_timeout`).
//!
//! The proxy runs one single-threaded runtime per core (see `frontend`); a
//! connection's socket belongs to the runtime that opened it. The pool is
//! shared so `pool_max` stays one global bound, but a worker prefers its own
//! idle connections, then opens a new one, and only then borrows another
//! worker's (which works, at the price of cross-thread wakeups).

pub mod schema;
pub mod state;

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Statement};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::BackendConfig;
pub use state::{Applied, SessionVars};

/// Errors of the backend layer.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot connect to the MySQL backend at {addr}: {source}")]
    Connect {
        addr: String,
        source: mysql_async::Error,
    },
    #[error("timed out after {0:?} connecting to the MySQL backend at {1}")]
    ConnectTimeout(Duration, String),
    #[error("all {0} backend connections are busy (backend.pool_max); waited {1:?}")]
    PoolExhausted(usize, Duration),
    #[error(transparent)]
    Mysql(#[from] mysql_async::Error),
}

/// Which pool a connection belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub user: String,
    pub found_rows: bool,
}

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as worker `i` (its runtime owns what it opens).
pub fn set_worker(i: usize) {
    WORKER.with(|w| w.set(i));
}

fn current_worker() -> usize {
    WORKER.with(Cell::get)
}

/// A borrowed backend connection: boxed, so handing it between the pool,
/// a session and a statement moves a pointer, not the whole record
/// (several moves per forwarded statement; `bench/hit_profile.sh`).
pub struct BackendConn(Box<Parts>);

/// What a backend connection carries.
pub struct Parts {
    /// The worker whose runtime owns the socket.
    worker: usize,
    pub conn: Conn,
    pub applied: Applied,
    /// Set when session state may linger (pinned state): reset before reuse.
    pub dirty: bool,
    /// The globals epoch its session variables were copied in.
    epoch: u64,
    key: PoolKey,
    /// Server-side statements by database ("" = none) then SQL text; two
    /// levels so a lookup borrows instead of building a key. foldhash
    /// (seeded per process): looked up on every execution, and at most
    /// `STMT_CACHE_MAX` entries, so a crafted key set costs little.
    stmts: HashMap<String, HashMap<Vec<u8>, Prepared, Fold>, Fold>,
    idle_since: Instant,
    _permit: OwnedSemaphorePermit,
}

type Fold = foldhash::fast::RandomState;

impl std::ops::Deref for BackendConn {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl std::ops::DerefMut for BackendConn {
    fn deref_mut(&mut self) -> &mut Parts {
        &mut self.0
    }
}

const STMT_CACHE_MAX: usize = 512;
/// Idle connections older than this are pinged before use.
const PING_AFTER: Duration = Duration::from_secs(30);

pub struct Backend {
    cfg: BackendConfig,
    /// Idle connections by account (foldhash: looked up twice per
    /// forwarded statement, SipHash cost about 100 instructions each).
    idle: Mutex<HashMap<PoolKey, Vec<BackendConn>, Fold>>,
    permits: Arc<Semaphore>,
    returned: Notify,
    server_version: Mutex<Option<String>>,
    /// One version probe at a time (a burst of new clients must not open a
    /// burst of backend connections).
    probe: tokio::sync::Mutex<()>,
    /// Bumped by `globals_changed`.
    globals_epoch: std::sync::atomic::AtomicU64,
    /// Connections reset because their globals were older (a metric).
    pub globals_resets: std::sync::atomic::AtomicU64,
}

/// Options for a connection to the configured server as `user` (every
/// backend connection, the pool's and the binlog feed's, starts here).
/// Options for a tool's own account (`cdc`, `sink`): its `user` /
/// `password` where set, else `[backend]`'s.
pub fn account_opts(
    cfg: &BackendConfig,
    user: Option<&str>,
    password: Option<&str>,
) -> mysql_async::Opts {
    let user = user.unwrap_or(&cfg.user);
    let password = password.unwrap_or(&cfg.password);
    conn_opts(cfg, user, password).into()
}

pub fn conn_opts(cfg: &BackendConfig, user: &str, password: &str) -> OptsBuilder {
    let b = OptsBuilder::default()
        .user(Some(user))
        .pass(Some(password))
        .prefer_socket(false)
        .stmt_cache_size(0)
        .tcp_nodelay(true);
    match &cfg.socket {
        Some(s) => b.socket(Some(s.display().to_string())),
        None => b.ip_or_hostname(cfg.host.clone()).tcp_port(cfg.port),
    }
}

impl Backend {
    pub fn new(cfg: BackendConfig) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(cfg.pool_max)),
            cfg,
            idle: Mutex::new(HashMap::default()),
            returned: Notify::new(),
            server_version: Mutex::new(None),
            probe: tokio::sync::Mutex::new(()),
            globals_epoch: Default::default(),
            globals_resets: Default::default(),
        })
    }

    /// A global variable changed (`SET GLOBAL` through the proxy): every
    /// connection open now is reset before its next use.
    pub fn globals_changed(&self) {
        self.globals_epoch
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    fn epoch(&self) -> u64 {
        self.globals_epoch
            .load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn addr(&self) -> String {
        match &self.cfg.socket {
            Some(s) => s.display().to_string(),
            None => format!("{}:{}", self.cfg.host, self.cfg.port),
        }
    }

    fn opts(&self, user: &str, password: &str, found_rows: bool) -> OptsBuilder {
        conn_opts(&self.cfg, user, password).client_found_rows(found_rows)
    }

    async fn connect_raw(&self, opts: OptsBuilder) -> Result<Conn, BackendError> {
        match tokio::time::timeout(self.cfg.connect_timeout, Conn::new(opts)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(source)) => Err(BackendError::Connect {
                addr: self.addr(),
                source,
            }),
            Err(_) => Err(BackendError::ConnectTimeout(
                self.cfg.connect_timeout,
                self.addr(),
            )),
        }
    }

    /// Whether the backend answers now: a fresh connection with the proxy's
    /// own account and a ping, bounded by `connect_timeout` (`/ready`).
    pub async fn probe(&self) -> Result<(), BackendError> {
        let opts = self.opts(&self.cfg.user, &self.cfg.password, false);
        let mut conn = self.connect_raw(opts).await?;
        let ping = tokio::time::timeout(self.cfg.connect_timeout, conn.ping()).await;
        let _ = conn.disconnect().await;
        match ping {
            Ok(r) => Ok(r?),
            Err(_) => Err(BackendError::ConnectTimeout(
                self.cfg.connect_timeout,
                self.addr(),
            )),
        }
    }

    /// Every account MySQL stores: user, host, plugin, authentication_string
    /// (`frontend/accounts.rs`), read with the proxy's own account, which
    /// needs SELECT on `mysql.user` (MariaDB: on `mysql.global_priv`).
    pub async fn accounts(&self) -> Result<Vec<(String, String, String, String)>, BackendError> {
        let opts = self.opts(&self.cfg.user, &self.cfg.password, false);
        let mut conn = self.connect_raw(opts).await?;
        let rows = conn
            .query::<(String, String, String, String), _>(
                "SELECT CONVERT(User USING utf8mb4), CONVERT(Host USING utf8mb4), \
                 CONVERT(plugin USING utf8mb4), CONVERT(authentication_string USING utf8mb4) \
                 FROM mysql.user",
            )
            .await;
        let _ = conn.disconnect().await;
        Ok(rows?)
    }

    /// The backend's version string, probed once with the proxy's own account.
    pub async fn server_version(&self) -> Result<String, BackendError> {
        if let Some(v) = self.server_version.lock().unwrap().clone() {
            return Ok(v);
        }
        let _one = self.probe.lock().await;
        if let Some(v) = self.server_version.lock().unwrap().clone() {
            return Ok(v);
        }
        let opts = self.opts(&self.cfg.user, &self.cfg.password, false);
        let mut conn = self.connect_raw(opts).await?;
        let v: Option<String> = conn.query_first("SELECT VERSION()").await?;
        let _ = conn.disconnect().await;
        let v = v.unwrap_or_default();
        // MariaDB reports "10.11.x-MariaDB"; its own handshake prefixes
        // "5.5.5-" so that old clients parse a 5.x version. Do the same.
        let v = if v.contains("MariaDB") && !v.starts_with("5.5.5-") {
            format!("5.5.5-{v}")
        } else {
            v
        };
        *self.server_version.lock().unwrap() = Some(v.clone());
        Ok(v)
    }

    /// Checks a connection out for `key`, preferring one already on `db`.
    pub async fn acquire(
        &self,
        key: &PoolKey,
        password: &str,
        db: Option<&str>,
    ) -> Result<BackendConn, BackendError> {
        // Read the clock only once a wait begins (not on the usual path).
        let mut start = None;
        loop {
            if let Some(c) = self.take_healthy(key, db, true).await {
                return Ok(c);
            }
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                let opts = self.opts(&key.user, password, key.found_rows);
                let epoch = self.epoch();
                let conn = self.connect_raw(opts).await?;
                return Ok(BackendConn(Box::new(Parts {
                    worker: current_worker(),
                    conn,
                    applied: Applied::fresh(),
                    dirty: false,
                    epoch,
                    key: key.clone(),
                    stmts: HashMap::default(),
                    idle_since: Instant::now(),
                    _permit: permit,
                })));
            }
            if let Some(c) = self.take_healthy(key, db, false).await {
                return Ok(c);
            }
            if self.evict_other(key) {
                continue;
            }
            let waited = start.get_or_insert_with(Instant::now).elapsed();
            if waited >= self.cfg.acquire_timeout {
                return Err(BackendError::PoolExhausted(self.cfg.pool_max, waited));
            }
            let tick = (self.cfg.acquire_timeout - waited).min(Duration::from_millis(50));
            let _ = tokio::time::timeout(tick, self.returned.notified()).await;
        }
    }

    /// An idle connection that still answers (pinged if idle for long),
    /// with the current globals (reset if it copied older ones).
    async fn take_healthy(
        &self,
        key: &PoolKey,
        db: Option<&str>,
        local_only: bool,
    ) -> Option<BackendConn> {
        let now = Instant::now();
        while let Some(mut c) = self.take_idle(key, db, local_only, now) {
            let epoch = self.epoch();
            if c.epoch != epoch {
                if c.reset().await.is_err() {
                    continue;
                }
                c.epoch = epoch;
                self.globals_resets
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Some(c);
            }
            let idle = now.saturating_duration_since(c.idle_since);
            if idle < PING_AFTER || c.conn.ping().await.is_ok() {
                return Some(c);
            }
        }
        None
    }

    /// Best idle match: this worker's and on `db` first.
    fn take_idle(
        &self,
        key: &PoolKey,
        db: Option<&str>,
        local_only: bool,
        now: Instant,
    ) -> Option<BackendConn> {
        let me = current_worker();
        let mut idle = self.idle.lock().unwrap();
        let list = idle.get_mut(key)?;
        list.retain(|c| now.saturating_duration_since(c.idle_since) < self.cfg.idle_timeout);
        let on_db = |c: &BackendConn| c.applied.db.as_ref().map(|d| d.as_deref()) == Some(db);
        let found = list
            .iter()
            .rposition(|c| c.worker == me && on_db(c))
            .or_else(|| list.iter().rposition(|c| c.worker == me))
            .or_else(|| {
                (!local_only)
                    .then(|| list.iter().rposition(on_db))
                    .flatten()
            })
            .or_else(|| (!local_only && !list.is_empty()).then(|| list.len() - 1));
        found.map(|i| list.swap_remove(i))
    }

    /// Closes one idle connection of another pool; true if one was closed.
    fn evict_other(&self, key: &PoolKey) -> bool {
        let mut idle = self.idle.lock().unwrap();
        for (k, list) in idle.iter_mut() {
            if k != key {
                if let Some(c) = list.pop() {
                    drop(c);
                    return true;
                }
            }
        }
        false
    }

    /// Returns a connection to its pool (resetting it first if dirty).
    pub fn release(self: &Arc<Self>, mut c: BackendConn) {
        if c.conn.is_disconnected() {
            self.returned.notify_one();
            return;
        }
        if c.dirty {
            let this = self.clone();
            tokio::spawn(async move {
                let epoch = this.epoch();
                if c.reset().await.is_ok() {
                    c.epoch = epoch;
                    this.put_idle(c);
                } else {
                    this.returned.notify_one();
                }
            });
        } else {
            self.put_idle(c);
        }
    }

    fn put_idle(&self, mut c: BackendConn) {
        c.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap();
        match idle.get_mut(&c.key) {
            Some(list) => list.push(c),
            None => {
                idle.insert(c.key.clone(), vec![c]);
            }
        }
        drop(idle);
        self.returned.notify_one();
    }

    /// Best-effort `KILL <thread>` with the proxy's own account (used when a
    /// statement exceeded `query_timeout`, so the server stops working on it).
    pub async fn kill(&self, thread: u32) {
        let opts = self.opts(&self.cfg.user, &self.cfg.password, false);
        if let Ok(mut c) = self.connect_raw(opts).await {
            let _ = c.query_drop(format!("KILL {thread}")).await;
            let _ = c.disconnect().await;
        }
    }

    /// Backend connections open now (borrowed or idle).
    pub fn open_connections(&self) -> usize {
        self.cfg.pool_max - self.permits.available_permits()
    }

    /// Closes every idle connection (used at shutdown).
    pub fn close_idle(&self) {
        self.idle.lock().unwrap().clear();
    }
}

impl Parts {
    /// COM_RESET_CONNECTION: drops temporary tables, user variables, locks,
    /// prepared statements and rolls back; tracked state becomes unknown.
    pub async fn reset(&mut self) -> Result<(), BackendError> {
        self.conn.reset().await?;
        self.stmts.clear();
        self.applied = Applied::unknown();
        self.dirty = false;
        Ok(())
    }

    /// Makes the connection's tracked state equal to the session's.
    pub async fn sync(
        &mut self,
        want: &SessionVars,
        needs_insert_id: bool,
    ) -> Result<(), BackendError> {
        if let Some(db_change) = state::db_change(&self.applied, want) {
            match db_change {
                Some(db) => {
                    self.conn
                        .query_drop(format!("USE {}", state::quote_ident(&db)))
                        .await?;
                }
                None => {
                    // MySQL cannot leave a database; re-login without one.
                    let opts = mysql_async::ChangeUserOpts::default().with_db_name(None);
                    self.conn.change_user(opts).await?;
                    self.stmts.clear();
                    self.applied = Applied::unknown();
                }
            }
            self.applied.db = Some(want.db.clone());
        }
        if let Some(sql) = state::set_statement(&self.applied, want, needs_insert_id) {
            self.conn.query_drop(sql).await?;
            self.applied.assume(want, needs_insert_id);
        }
        Ok(())
    }

    /// A server-side statement for `sql` under `db`, prepared on first use.
    pub async fn statement(
        &mut self,
        db: Option<&str>,
        sql: &[u8],
    ) -> Result<Prepared, BackendError> {
        let db = db.unwrap_or("");
        if let Some(s) = self.stmts.get(db).and_then(|m| m.get(sql)) {
            return Ok(s.clone());
        }
        if self.stmts.values().map(HashMap::len).sum::<usize>() >= STMT_CACHE_MAX {
            for (_, m) in self.stmts.drain() {
                for (_, s) in m {
                    let _ = self.conn.close(s.stmt).await;
                }
            }
        }
        let stmt = self.conn.prep(sql).await?;
        let s = Prepared {
            columns: stmt.columns(),
            stmt,
        };
        self.stmts
            .entry(db.to_owned())
            .or_default()
            .insert(sql.to_vec(), s.clone());
        Ok(s)
    }
}

/// A backend statement and the columns MySQL described when preparing it:
/// what a client's COM_STMT_PREPARE is answered with. (mysql_async replaces
/// `Statement::columns` with each execution's, whose flags depend on the
/// values bound: `? AS p` turns NOT NULL once executed with a value.)
#[derive(Clone)]
pub struct Prepared {
    pub stmt: Statement,
    pub columns: Arc<[mysql_common::packets::Column]>,
}
