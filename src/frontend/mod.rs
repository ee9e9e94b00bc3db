//! The client-facing MySQL protocol: listener, connection phase, sessions.
//!
//! Policy: this layer translates protocol ↔ domain and knows nothing of
//! caching. It accepts up to `proxy.max_connections` clients (one more gets
//! error 1040 and is closed); on shutdown it stops accepting, tells idle
//! sessions to close, and waits up to `proxy.shutdown_timeout` for busy ones.

pub mod auth;
pub mod packet;
pub mod relay;
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
use tokio::sync::{watch, Semaphore};
use tracing::{info, warn};

use crate::backend::Backend;
use crate::config::Config;
pub use session::Shared;

/// A bound proxy, ready to serve.
pub struct Proxy {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Proxy {
    pub async fn bind(cfg: Config) -> anyhow::Result<Proxy> {
        let tls = match &cfg.proxy.tls {
            Some(t) => Some(stream::tls_acceptor(&t.cert, &t.key).map_err(anyhow::Error::msg)?),
            None => None,
        };
        let listener = TcpListener::bind(&cfg.proxy.listen).await?;
        let backend = Backend::new(cfg.backend.clone());
        let shared = Arc::new(Shared {
            cfg,
            backend,
            tls,
            next_id: AtomicU32::new(1),
            sessions: Mutex::new(HashMap::new()),
        });
        Ok(Proxy { listener, shared })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    /// Serves until `shutdown` resolves, then drains sessions.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let shared = self.shared;
        let max = shared.cfg.proxy.max_connections;
        let slots = Arc::new(Semaphore::new(max));
        let (stop_tx, stop_rx) = watch::channel(false);
        // Probe the backend early so the first client sees its real version.
        let probe = shared.backend.clone();
        tokio::spawn(async move {
            if let Err(e) = probe.server_version().await {
                warn!(error = %e, "backend not reachable yet");
            }
        });
        info!(listen = %self.listener.local_addr()?, backend = %shared.backend.addr(), "sqlcache listening");
        tokio::pin!(shutdown);
        loop {
            let (mut tcp, _) = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tokio::spawn(async move {
                    let mut b = Vec::new();
                    wire::err(
                        &mut b,
                        1040,
                        "08004",
                        "Too many connections (proxy.max_connections)",
                    );
                    let mut pkt = vec![b.len() as u8, (b.len() >> 8) as u8, 0, 0];
                    pkt.extend_from_slice(&b);
                    let _ = tcp.write_all(&pkt).await;
                });
                continue;
            };
            let shared = shared.clone();
            let rx = stop_rx.clone();
            tokio::spawn(async move {
                session::serve(shared, tcp, rx).await;
                drop(permit);
            });
        }
        info!("shutting down: no longer accepting");
        drop(self.listener);
        let _ = stop_tx.send(true);
        let wait = shared.cfg.proxy.shutdown_timeout;
        match tokio::time::timeout(wait, slots.acquire_many(max as u32)).await {
            Ok(_) => info!("all sessions closed"),
            Err(_) => warn!(timeout = ?wait, "sessions still open at shutdown timeout"),
        }
        shared.backend.close_idle();
        Ok(())
    }
}
