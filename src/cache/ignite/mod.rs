//! Apache Ignite as the shared tier's store, over the binary client
//! protocol (`codec`), on a pool of pipelined connections (`conn`).
//!
//! Policy: `pool_size` connections, each dialled in the background over the
//! configured addresses (starting at a different one per connection, so a
//! pool spreads over a cluster) and redialled with back-off when it breaks.
//! A call never waits for a dial: with no live connection it fails at once
//! and the tier skips L2. Both caches are created on connect (and on every
//! ping, so a restarted cluster gets them back) with
//! OP_CACHE_GET_OR_CREATE_WITH_NAME, i.e. with the cluster's defaults or the
//! cache templates configured there (README: expiry, backups, sync mode).
//! Entry puts carry an expiry policy (protocol ≥ 1.6) so Ignite frees them.

pub mod codec;
pub mod conn;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tracing::{info, warn};

use super::l2::{Kv, KvFuture, L2Error};
use codec::{Expiry, Obj, Request};
pub use conn::{Conn, Dial};

#[derive(Debug, thiserror::Error)]
pub enum IgniteError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(&'static str),
    #[error("protocol: unexpected data object type {0}")]
    UnexpectedType(u8),
    #[error("server error {status}: {message}")]
    Server { status: i32, message: String },
    #[error("handshake: {0}")]
    Handshake(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("timed out")]
    Timeout,
    #[error("connection closed")]
    Closed,
    #[error("connection broken: {0}")]
    Broken(String),
    #[error("no live connection to Ignite")]
    Unavailable,
}

impl From<IgniteError> for L2Error {
    fn from(e: IgniteError) -> L2Error {
        match e {
            IgniteError::Timeout => L2Error::Timeout,
            e => L2Error::Unavailable(e.to_string()),
        }
    }
}

/// Where and how to reach the cluster.
#[derive(Clone)]
pub struct Target {
    pub addresses: Vec<String>,
    pub dial: Dial,
    pub cache_name: String,
    pub tokens_cache_name: String,
    pub pool_size: usize,
}

pub struct IgniteKv {
    inner: Arc<Inner>,
}

struct Inner {
    target: Target,
    entries_id: i32,
    tokens_id: i32,
    slots: Vec<Slot>,
    next: AtomicUsize,
}

#[derive(Default)]
struct Slot {
    conn: Mutex<Option<Arc<Conn>>>,
    dialing: AtomicBool,
}

impl IgniteKv {
    /// Starts dialling every pooled connection (on the current runtime).
    pub fn new(target: Target) -> IgniteKv {
        let n = target.pool_size.max(1);
        let inner = Arc::new(Inner {
            entries_id: codec::java_hash(&target.cache_name),
            tokens_id: codec::java_hash(&target.tokens_cache_name),
            slots: (0..n).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            target,
        });
        for i in 0..n {
            Inner::dial(&inner, i);
        }
        IgniteKv { inner }
    }

    /// Connects once to `addr` and creates the caches (tests, diagnostics).
    pub async fn probe(target: &Target) -> Result<Conn, IgniteError> {
        let addr = target.addresses.first().ok_or(IgniteError::Unavailable)?;
        let c = Conn::connect(addr, &target.dial).await?;
        ensure_caches(&c, target).await?;
        Ok(c)
    }
}

impl IgniteKv {
    /// OP_CACHE_REMOVE_KEY on the entries cache.
    pub async fn remove_entry(&self, key: &[u8]) -> Result<(), IgniteError> {
        let r = Request::cache(codec::OP_CACHE_REMOVE_KEY, self.inner.entries_id, None).bytes(key);
        self.inner.conn()?.call(r).await.map(drop)
    }

    /// OP_CACHE_REMOVE_KEYS on the tokens cache (a removed token never
    /// matches again: entries guarded by it become stale).
    pub async fn remove_tokens(&self, keys: &[i64]) -> Result<(), IgniteError> {
        let r = Request::cache(codec::OP_CACHE_REMOVE_KEYS, self.inner.tokens_id, None).longs(keys);
        self.inner.conn()?.call(r).await.map(drop)
    }

    /// OP_CACHE_CLEAR on the entries cache.
    pub async fn clear_entries(&self) -> Result<(), IgniteError> {
        let r = Request::cache(codec::OP_CACHE_CLEAR, self.inner.entries_id, None);
        self.inner.conn()?.call(r).await.map(drop)
    }

    /// True once at least one pooled connection is live.
    pub fn is_connected(&self) -> bool {
        self.live_connections() > 0
    }

    /// How many pooled connections are live (diagnostics, tests).
    pub fn live_connections(&self) -> usize {
        self.inner
            .slots
            .iter()
            .filter(|s| {
                s.conn
                    .lock()
                    .unwrap()
                    .as_ref()
                    .is_some_and(|c| c.is_alive())
            })
            .count()
    }
}

impl Inner {
    /// A live connection, round-robin; kicks a redial of dead ones.
    fn conn(self: &Arc<Self>) -> Result<Arc<Conn>, IgniteError> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let idx = (start + i) % n;
            let live = {
                let g = self.slots[idx].conn.lock().unwrap();
                g.as_ref().filter(|c| c.is_alive()).cloned()
            };
            match live {
                Some(c) => return Ok(c),
                None => Inner::dial(self, idx),
            }
        }
        Err(IgniteError::Unavailable)
    }

    /// Dials slot `idx` in the background until it connects.
    fn dial(me: &Arc<Self>, idx: usize) {
        if me.slots[idx].dialing.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = me.clone();
        tokio::spawn(async move {
            let t = &me.target;
            let mut backoff = Duration::from_millis(50);
            let mut attempt = 0usize;
            loop {
                let addr = &t.addresses[(idx + attempt) % t.addresses.len()];
                attempt += 1;
                match connect(addr, t).await {
                    Ok(c) => {
                        info!(%addr, version = %c.version, slot = idx, "connected to Ignite");
                        let c = Arc::new(c);
                        *me.slots[idx].conn.lock().unwrap() = Some(c.clone());
                        // Redial as soon as it dies, not at the next call.
                        let watch = me.clone();
                        tokio::spawn(async move {
                            c.closed().await;
                            warn!(addr = %c.addr, slot = idx, "Ignite connection lost; redialling");
                            Inner::dial(&watch, idx);
                        });
                        break;
                    }
                    Err(e) => {
                        if attempt.is_multiple_of(t.addresses.len()) {
                            warn!(%addr, error = %e, "cannot reach Ignite; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
            }
            me.slots[idx].dialing.store(false, Ordering::SeqCst);
        });
    }
}

async fn connect(addr: &str, t: &Target) -> Result<Conn, IgniteError> {
    let c = Conn::connect(addr, &t.dial).await?;
    ensure_caches(&c, t).await?;
    Ok(c)
}

async fn ensure_caches(c: &Conn, t: &Target) -> Result<(), IgniteError> {
    let reqs = [&t.cache_name, &t.tokens_cache_name]
        .into_iter()
        .map(|n| Request::new(codec::OP_CACHE_GET_OR_CREATE_WITH_NAME).string(n))
        .collect();
    for r in tokio::time::timeout(t.dial.timeout, c.call_many(reqs))
        .await
        .map_err(|_| IgniteError::Timeout)??
    {
        r?;
    }
    Ok(())
}

fn long(o: Obj) -> Result<Option<i64>, IgniteError> {
    match o {
        Obj::Null => Ok(None),
        Obj::Long(v) => Ok(Some(v)),
        _ => Err(IgniteError::Protocol("token is not a long")),
    }
}

fn one_object(payload: &[u8]) -> Result<Obj, IgniteError> {
    let mut p = payload;
    codec::object(&mut p)
}

/// OP_CACHE_GET_ALL / PUT_ALL bodies: `int count` then the objects.
impl Kv for IgniteKv {
    fn read(
        &self,
        key: Bytes,
        tokens: Vec<i64>,
    ) -> KvFuture<'_, (Option<Bytes>, Vec<Option<i64>>)> {
        Box::pin(async move {
            let i = &self.inner;
            let c = i.conn()?;
            let get = Request::cache(codec::OP_CACHE_GET, i.entries_id, None).bytes(&key);
            let all = Request::cache(codec::OP_CACHE_GET_ALL, i.tokens_id, None).longs(&tokens);
            let mut r = c.call_many(vec![get, all]).await?.into_iter();
            let entry = match one_object(&r.next().ok_or(IgniteError::Closed)??)? {
                Obj::Null => None,
                Obj::Bytes(b) => Some(b),
                _ => return Err(IgniteError::Protocol("entry is not a byte array").into()),
            };
            let map = codec::parse_map(&r.next().ok_or(IgniteError::Closed)??)?;
            let mut current = vec![None; tokens.len()];
            for (k, v) in map {
                let (Some(k), v) = (long(k)?, long(v)?) else {
                    return Err(IgniteError::Protocol("token key is not a long").into());
                };
                if let Some(pos) = tokens.iter().position(|t| *t == k) {
                    current[pos] = v;
                }
            }
            Ok((entry, current))
        })
    }

    fn create_tokens(&self, tokens: Vec<(i64, i64)>) -> KvFuture<'_, Vec<i64>> {
        Box::pin(async move {
            let i = &self.inner;
            let c = i.conn()?;
            let reqs = tokens
                .iter()
                .map(|(k, v)| {
                    Request::cache(codec::OP_CACHE_GET_AND_PUT_IF_ABSENT, i.tokens_id, None)
                        .long(*k)
                        .long(*v)
                })
                .collect();
            let mut out = Vec::with_capacity(tokens.len());
            for (r, (_, candidate)) in c.call_many(reqs).await?.into_iter().zip(&tokens) {
                // The previous value if there was one, else ours went in.
                out.push(long(one_object(&r?)?)?.unwrap_or(*candidate));
            }
            Ok(out)
        })
    }

    fn put_tokens(&self, tokens: Vec<(i64, i64)>) -> KvFuture<'_, ()> {
        Box::pin(async move {
            let i = &self.inner;
            let c = i.conn()?;
            let mut r =
                Request::cache(codec::OP_CACHE_PUT_ALL, i.tokens_id, None).int(tokens.len() as i32);
            for (k, v) in &tokens {
                r = r.long(*k).long(*v);
            }
            c.call(r).await?;
            Ok(())
        })
    }

    fn put_entry(&self, key: Bytes, value: Bytes, ttl: Duration) -> KvFuture<'_, ()> {
        Box::pin(async move {
            let i = &self.inner;
            let c = i.conn()?;
            let expiry = c.version.has_expiry().then(|| Expiry {
                create_ms: ttl.as_millis().max(1) as i64,
            });
            let r = Request::cache(codec::OP_CACHE_PUT, i.entries_id, expiry)
                .bytes(&key)
                .bytes(&value);
            c.call(r).await?;
            Ok(())
        })
    }

    fn ping(&self) -> KvFuture<'_, ()> {
        Box::pin(async move {
            let c = self.inner.conn()?;
            ensure_caches(&c, &self.inner.target).await?;
            Ok(())
        })
    }
}

/// The shared tier for `[cache.ignite]` (call on the proxy's runtime).
pub fn shared_tier(cfg: &crate::config::IgniteConfig) -> Result<Arc<super::L2>, String> {
    let tls = if cfg.tls {
        let ca = cfg
            .tls_ca
            .as_ref()
            .ok_or("cache.ignite.tls_ca is required")?;
        Some(tls_connector(ca)?)
    } else {
        None
    };
    let target = Target {
        addresses: cfg.addresses.clone(),
        dial: Dial {
            timeout: cfg.connect_timeout,
            auth: cfg.username.clone().zip(cfg.password.clone()),
            tls,
        },
        cache_name: cfg.cache_name.clone(),
        tokens_cache_name: cfg.tokens_cache_name.clone(),
        pool_size: cfg.pool_size,
    };
    let kv = Arc::new(IgniteKv::new(target));
    Ok(super::L2::new(
        kv,
        super::l2::L2Config {
            timeout: cfg.timeout,
            write_timeout: cfg.write_timeout,
            ttl: cfg.ttl,
        },
    ))
}

/// A rustls client trusting the CA certificates in `ca` (PEM).
pub fn tls_connector(ca: &std::path::Path) -> Result<tokio_rustls::TlsConnector, String> {
    let file = std::fs::File::open(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut std::io::BufReader::new(file)) {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}
