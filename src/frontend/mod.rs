//! The client-facing MySQL protocol: listener, connection phase, sessions.
//!
//! Policy: this layer translates protocol ↔ domain. A statement's bytes
//! become a `pipeline::Stmt`, the cache's answers (`cache::plan`, hits,
//! fills) become replies, and the route record (`route.rs`) is kept; the
//! parts it serves with are built elsewhere (`assembly.rs`). Threading is
//! one single-threaded tokio runtime per worker (`proxy.workers`, default
//! one per CPU): the acceptor hands each accepted socket (TCP, or the Unix
//! socket `proxy.socket`: `listen.rs`) to a worker round-robin, and the
//! session lives on that worker until it closes, so a statement never
//! crosses threads (measured here: 44 µs of proxy CPU per forwarded point
//! select with tokio's work-stealing runtime on two threads, 34 µs on one —
//! the difference was thread wake-ups). Up to `proxy.max_connections`
//! clients are served over both listeners (one more gets error 1040). On
//! shutdown the acceptor stops, sessions are told to close when idle, and
//! the proxy waits up to `proxy.shutdown_timeout` for busy ones. Worker threads
//! get `WORKER_STACK_BYTES`, the main thread's usual 8 MiB (worker 0 runs on
//! it), not Rust's 2 MiB default: classification recurses (see `classify`).

pub mod accounts;
pub mod admin;
pub mod auth;
pub mod caching;
pub mod commands;
pub mod listen;
pub mod packet;
pub mod pipeline;
pub mod refresh;
pub mod relay;
pub mod reload;
pub mod route;
pub mod session;
pub mod stmt;
pub mod stream;
pub mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use crate::config::Config;
pub use session::Shared;

/// An accepted socket and its `max_connections` slot.
type Accepted = (listen::Handoff, OwnedSemaphorePermit);

/// A worker: serves the sockets it is handed until told to exit.
async fn worker(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Accepted>,
    stop: watch::Receiver<bool>,
    mut exit: watch::Receiver<bool>,
) {
    while let Some((handoff, permit)) = rx.recv().await {
        let client = match handoff.register() {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot register a connection");
                continue;
            }
        };
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            session::serve(shared, client, stop).await;
            drop(permit);
        });
    }
    // Keep this runtime (and its sessions and sockets) alive until the
    // acceptor has finished draining.
    let _ = exit.wait_for(|e| *e).await;
}

/// `GET /metrics` (Prometheus text), `GET /health` and `GET /ready`.
async fn serve_admin(listener: TcpListener, shared: Arc<Shared>) {
    let s = shared.clone();
    let ready = move || -> crate::admin::http::ReadyFuture {
        let s = s.clone();
        Box::pin(async move { crate::admin::ready::check(&s.backend, &s.cache).await })
    };
    let metrics = move || {
        let proxy = crate::admin::metrics::Proxy {
            backend_open: shared.backend.open_connections(),
            reloads: shared.reloader.counts(),
            globals_resets: shared
                .backend
                .globals_resets
                .load(std::sync::atomic::Ordering::Relaxed),
        };
        crate::admin::metrics::prometheus(&shared.cache, proxy)
    };
    crate::admin::http::serve(listener, metrics, ready).await
}

/// Answers a client over `max_connections` with error 1040 and closes.
async fn refuse(client: listen::Incoming) {
    let mut b = Vec::new();
    wire::err(
        &mut b,
        1040,
        "08004",
        "Too many connections (proxy.max_connections)",
    );
    let mut pkt = vec![b.len() as u8, (b.len() >> 8) as u8, 0, 0];
    pkt.extend_from_slice(&b);
    let _ = match client {
        listen::Incoming::Tcp(mut s) => s.write_all(&pkt).await,
        listen::Incoming::Unix(mut s) => s.write_all(&pkt).await,
    };
}

/// A bound proxy, ready to serve.
pub struct Proxy {
    listener: listen::Listeners,
    shared: Arc<Shared>,
    /// The change feed, if configured; stops when dropped.
    feed: Option<crate::invalidation::FeedHandle>,
}

impl Proxy {
    /// Binds the listener and builds the parts; `path` is the file `cfg`
    /// came from, read again by live reload (SIGHUP, `SQLCACHE RELOAD`).
    pub async fn bind(cfg: Config, path: Option<std::path::PathBuf>) -> anyhow::Result<Proxy> {
        // A file with [cdc] or [sink] may leave out [[users]]; the proxy may not.
        if let Some(problem) = crate::config::no_accounts(&cfg.users, &cfg.accounts) {
            anyhow::bail!("{problem}");
        }
        let tls = match &cfg.proxy.tls {
            Some(t) => Some(stream::tls_acceptor(&t.cert, &t.key).map_err(anyhow::Error::msg)?),
            None => None,
        };
        let listener = listen::Listeners::bind(&cfg.proxy.listen, cfg.proxy.socket.as_deref())?;
        let crate::assembly::Parts {
            backend,
            cache,
            schema,
            feed,
        } = crate::assembly::build(&cfg)?;
        let accounts = accounts::Accounts::new(&cfg, backend.clone());
        let reloader = reload::Reloader::new(path, &cfg);
        let shared = Arc::new(Shared {
            cfg,
            backend,
            cache,
            schema,
            tls,
            next_id: AtomicU32::new(1),
            sessions: Mutex::new(HashMap::new()),
            insight: Default::default(),
            accounts,
            reloader,
        });
        Ok(Proxy {
            listener,
            shared,
            feed,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    /// Worker count: configured, or one per CPU, at most `backend.pool_max`.
    /// Measured on this 2-core machine: forwarding costs 34 µs CPU/query on
    /// one worker and 45 µs on two (each thread parks in epoll more often),
    /// at the same qps; cache hits reach 1.9x direct qps on one worker and
    /// 2.3x on two (one thread saturates). Throughput wins the default; a
    /// sidecar that must stay small sets `proxy.workers = 1`.
    pub fn workers(cfg: &Config) -> usize {
        let n = match cfg.proxy.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        n.clamp(1, cfg.backend.pool_max.max(1))
    }

    /// Serves until `shutdown` resolves, then drains sessions. Call it on a
    /// current-thread runtime: it is worker 0; it starts the others.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let shared = self.shared;
        let _feed = self.feed;
        let max = shared.cfg.proxy.max_connections;
        let slots = Arc::new(Semaphore::new(max));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (exit_tx, exit_rx) = watch::channel(false);
        // Probe the backend early so the first client sees its real version.
        let probe = shared.backend.clone();
        tokio::spawn(async move {
            if let Err(e) = probe.server_version().await {
                warn!(error = %e, "backend not reachable yet");
            }
        });
        let (senders, threads) = start_workers(&shared, &stop_rx, &exit_rx)?;
        start_side_tasks(&shared).await?;
        info!(listen = %self.listener.local_addr()?, socket = ?shared.cfg.proxy.socket, backend = %shared.backend.addr(), workers = senders.len(), "sqlcache listening");
        accept(&self.listener, &slots, &senders, shutdown).await;
        info!("shutting down: no longer accepting");
        drop(self.listener);
        drop(senders);
        let _ = stop_tx.send(true);
        let wait = shared.cfg.proxy.shutdown_timeout;
        match tokio::time::timeout(wait, slots.acquire_many(max as u32)).await {
            Ok(_) => info!("all sessions closed"),
            Err(_) => warn!(timeout = ?wait, "sessions still open at shutdown timeout"),
        }
        let _ = exit_tx.send(true);
        for t in threads {
            let _ = t.join();
        }
        shared.backend.close_idle();
        Ok(())
    }
}

type Workers = (
    Vec<mpsc::UnboundedSender<Accepted>>,
    Vec<std::thread::JoinHandle<()>>,
);

/// Stack of each worker thread (as Linux gives the main thread by default).
pub const WORKER_STACK_BYTES: usize = 8 << 20;

/// Worker 0 on this runtime, the others on threads of their own.
fn start_workers(
    shared: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
    exit: &watch::Receiver<bool>,
) -> anyhow::Result<Workers> {
    let n = Proxy::workers(&shared.cfg);
    let mut senders = Vec::with_capacity(n);
    let mut threads = Vec::new();
    for i in 0..n {
        let (tx, rx) = mpsc::unbounded_channel::<Accepted>();
        senders.push(tx);
        let w = worker(shared.clone(), rx, stop.clone(), exit.clone());
        if i == 0 {
            tokio::spawn(w);
            continue;
        }
        let t = std::thread::Builder::new()
            .name(format!("sqlcache-w{i}"))
            .stack_size(WORKER_STACK_BYTES)
            .spawn(move || {
                crate::backend::set_worker(i);
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(w),
                    Err(e) => tracing::error!(error = %e, "worker runtime failed to start"),
                }
            })?;
        threads.push(t);
    }
    Ok((senders, threads))
}

/// The refresher (always: a reload may make a table `refresh`), reload on
/// SIGHUP, and the admin endpoint if configured.
async fn start_side_tasks(shared: &Arc<Shared>) -> anyhow::Result<()> {
    let rx = shared.cache.refresh.channel();
    tokio::spawn(refresh::run(shared.clone(), rx));
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let s = shared.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // The outcome is logged by `reload` itself.
            let _ = reload::reload(&s).await;
        }
    });
    if let Some(addr) = &shared.cfg.admin.listen {
        let admin = TcpListener::bind(addr).await?;
        info!(listen = %addr, "admin endpoint (/metrics, /health)");
        tokio::spawn(serve_admin(admin, shared.clone()));
    }
    Ok(())
}

/// Accepts until `shutdown`: each socket goes to the next worker, or gets
/// error 1040 when every `max_connections` slot is taken.
async fn accept(
    listener: &listen::Listeners,
    slots: &Arc<Semaphore>,
    senders: &[mpsc::UnboundedSender<Accepted>],
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut next = 0usize;
    loop {
        let client = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(client));
            continue;
        };
        match client.into_std() {
            Ok(handoff) => {
                let _ = senders[next % senders.len()].send((handoff, permit));
                next = next.wrapping_add(1);
            }
            Err(e) => warn!(error = %e, "cannot hand over a connection"),
        }
    }
}
