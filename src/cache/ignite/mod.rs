//! Apache Ignite as the shared tier's store, over the binary client
//! protocol (`codec`), on pipelined connections (`conn`) to every
//! configured node (`pool`), each single-key request sent to its key's
//! primary (`affinity`), and a continuous query over the tokens (`watch`).
//!
//! Policy: a call never waits for a dial: with no live connection it fails
//! at once and the tier skips L2 (`Kv::connect` alone waits, for the write
//! path). Every ping checks both caches answer; one that is missing (a
//! restarted cluster) is created with OP_CACHE_GET_OR_CREATE_WITH_NAME,
//! i.e. with the cluster's defaults or the cache templates configured there
//! (README: expiry, backups, sync mode), once the node has settled
//! (`pool::CREATE_SETTLE`, apache/ignite#12621).
//! Entry puts carry an expiry policy (protocol ≥ 1.6) so Ignite frees them.

pub mod affinity;
pub mod codec;
pub mod conn;
mod pool;
pub use pool::CREATE_SETTLE;
mod watch;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::l2::peers::BEAT_SPAN;
use super::l2::{Kv, KvFuture, L2Error, Notice};
use codec::{Expiry, Obj, Request};
pub use conn::{Conn, Dial, Topology};
use pool::Pool;

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
    /// Connections per address.
    pub pool_size: usize,
}

/// Heartbeat keys expire after this (a stopped proxy leaves none behind).
const BEAT_EXPIRY_MS: i64 = 60_000;
/// Beat keys tried when the partition map is unknown, to reach every node.
const BLIND_BEAT_KEYS: i64 = 8;

pub struct IgniteKv {
    pool: Arc<Pool>,
}

impl IgniteKv {
    /// Starts dialling every connection (on the current runtime).
    pub fn new(target: Target) -> IgniteKv {
        IgniteKv {
            pool: Pool::start(target),
        }
    }

    /// Connects once to the first address and creates the caches at once
    /// (tests, diagnostics: on a node known to have finished starting).
    pub async fn probe(target: &Target) -> Result<Conn, IgniteError> {
        let addr = target.addresses.first().ok_or(IgniteError::Unavailable)?;
        let c = Conn::connect(addr, &target.dial, Arc::default()).await?;
        pool::create_caches(&c, target).await?;
        Ok(c)
    }

    /// OP_CACHE_REMOVE_KEY on the entries cache.
    pub async fn remove_entry(&self, key: &[u8]) -> Result<(), IgniteError> {
        let r = Request::cache(codec::OP_CACHE_REMOVE_KEY, self.pool.entries_id, None).bytes(key);
        self.pool.any()?.call(r).await.map(drop)
    }

    /// OP_CACHE_REMOVE_KEYS on the tokens cache (a removed token never
    /// matches again: entries guarded by it become stale).
    pub async fn remove_tokens(&self, keys: &[i64]) -> Result<(), IgniteError> {
        let r = Request::cache(codec::OP_CACHE_REMOVE_KEYS, self.pool.tokens_id, None).longs(keys);
        self.pool.any()?.call(r).await.map(drop)
    }

    /// OP_CACHE_CLEAR on the entries cache.
    pub async fn clear_entries(&self) -> Result<(), IgniteError> {
        let r = Request::cache(codec::OP_CACHE_CLEAR, self.pool.entries_id, None);
        self.pool.any()?.call(r).await.map(drop)
    }

    /// True once at least one connection is live.
    pub fn is_connected(&self) -> bool {
        self.live_connections() > 0
    }

    /// How many connections are live (diagnostics, tests).
    pub fn live_connections(&self) -> usize {
        self.pool.live_connections()
    }

    /// Whether a partition map as new as the last reported topology is held.
    pub fn has_partition_map(&self) -> bool {
        self.pool.current_map().is_some()
    }

    /// The topology version of the current partition map, if any.
    pub fn partition_map_version(&self) -> Option<(i64, i32)> {
        self.pool.current_map().map(|m| m.version)
    }

    /// The address of the connection an entry key's requests go to, when
    /// its primary is known and connected (diagnostics, tests).
    pub fn entry_primary(&self, key: &[u8]) -> Option<String> {
        let node = self
            .pool
            .primary(self.pool.entries_id, affinity::bytes_hash(key))?;
        self.pool.addr_of(node)
    }
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

/// The values of `keys` in a GET_ALL answer, in `keys` order.
fn token_values(payload: &[u8], keys: &[i64]) -> Result<Vec<Option<i64>>, IgniteError> {
    let mut current = vec![None; keys.len()];
    for (k, v) in codec::parse_map(payload)? {
        let (Some(k), v) = (long(k)?, long(v)?) else {
            return Err(IgniteError::Protocol("token key is not a long"));
        };
        if let Some(pos) = keys.iter().position(|t| *t == k) {
            current[pos] = v;
        }
    }
    Ok(current)
}

impl IgniteKv {
    async fn get_tokens(&self, keys: &[i64]) -> Result<Vec<Option<i64>>, IgniteError> {
        let p = &self.pool;
        let all = Request::cache(codec::OP_CACHE_GET_ALL, p.tokens_id, None).longs(keys);
        token_values(&p.any()?.call(all).await?, keys)
    }

    async fn get_entry(&self, key: &[u8]) -> Result<Option<Bytes>, IgniteError> {
        let p = &self.pool;
        let c = p.to_primary(p.entries_id, affinity::bytes_hash(key))?;
        let get = Request::cache(codec::OP_CACHE_GET, p.entries_id, None).bytes(key);
        match one_object(&c.call(get).await?)? {
            Obj::Null => Ok(None),
            Obj::Bytes(b) => Ok(Some(b)),
            _ => Err(IgniteError::Protocol("entry is not a byte array")),
        }
    }

    async fn create_token(&self, key: i64, candidate: i64) -> Result<i64, IgniteError> {
        let p = &self.pool;
        let c = p.to_primary(p.tokens_id, affinity::long_hash(key))?;
        let r = Request::cache(codec::OP_CACHE_GET_AND_PUT_IF_ABSENT, p.tokens_id, None)
            .long(key)
            .long(candidate);
        // The previous value if there was one, else ours went in.
        Ok(long(one_object(&c.call(r).await?)?)?.unwrap_or(candidate))
    }

    async fn put_all(&self, tokens: &[(i64, i64)], expiry: Option<i64>) -> Result<(), IgniteError> {
        let p = &self.pool;
        let c = p.any()?;
        let expiry = expiry
            .filter(|_| c.version.has_expiry())
            .map(|create_ms| Expiry { create_ms });
        let mut r =
            Request::cache(codec::OP_CACHE_PUT_ALL, p.tokens_id, expiry).int(tokens.len() as i32);
        for (k, v) in tokens {
            r = r.long(*k).long(*v);
        }
        c.call(r).await.map(drop)
    }
}

impl Kv for IgniteKv {
    /// The entry (from its primary) and the tokens (anywhere), both sent at
    /// once: one round trip.
    fn read(
        &self,
        key: Bytes,
        tokens: Vec<i64>,
    ) -> KvFuture<'_, (Option<Bytes>, Vec<Option<i64>>)> {
        Box::pin(async move {
            let (entry, current) = tokio::join!(self.get_entry(&key), self.get_tokens(&tokens));
            Ok((entry?, current?))
        })
    }

    fn create_tokens(&self, tokens: Vec<(i64, i64)>) -> KvFuture<'_, Vec<i64>> {
        Box::pin(async move {
            let calls = tokens.iter().map(|(k, v)| self.create_token(*k, *v));
            let out = futures_util::future::join_all(calls).await;
            Ok(out.into_iter().collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn put_tokens(&self, tokens: Vec<(i64, i64)>) -> KvFuture<'_, ()> {
        Box::pin(async move { Ok(self.put_all(&tokens, None).await?) })
    }

    fn put_entry(&self, key: Bytes, value: Bytes, ttl: Duration) -> KvFuture<'_, ()> {
        Box::pin(async move {
            let p = &self.pool;
            let c = p.to_primary(p.entries_id, affinity::bytes_hash(&key))?;
            let expiry = c.version.has_expiry().then(|| Expiry {
                create_ms: ttl.as_millis().max(1) as i64,
            });
            let r = Request::cache(codec::OP_CACHE_PUT, p.entries_id, expiry)
                .bytes(&key)
                .bytes(&value);
            c.call(r).await?;
            Ok(())
        })
    }

    fn connect(&self) -> KvFuture<'_, ()> {
        Box::pin(async move { Ok(self.pool.connect_now().await?) })
    }

    fn ping(&self) -> KvFuture<'_, ()> {
        Box::pin(async move {
            let c = self.pool.any()?;
            Ok(self.pool.ensure_caches(&c).await?)
        })
    }

    fn tokens(&self, tokens: Vec<i64>) -> KvFuture<'_, Vec<Option<i64>>> {
        Box::pin(async move { Ok(self.get_tokens(&tokens).await?) })
    }

    fn watch(&self) -> KvFuture<'_, tokio::sync::mpsc::UnboundedReceiver<Notice>> {
        Box::pin(async move { Ok(watch::subscribe(&self.pool).await?) })
    }

    /// One key per node that is primary for tokens, when the map is known;
    /// else `BLIND_BEAT_KEYS` keys (most likely on different partitions).
    fn beat_keys(&self, base: i64) -> Vec<i64> {
        let p = &self.pool;
        let Some(map) = p.current_map().filter(|m| m.partitions(p.tokens_id) > 0) else {
            return (base..base + BLIND_BEAT_KEYS).collect();
        };
        let mut missing = map.nodes(p.tokens_id);
        let mut keys = Vec::with_capacity(missing.len());
        for k in base..base + BEAT_SPAN {
            if missing.is_empty() {
                break;
            }
            if let Some(n) = map.primary(p.tokens_id, affinity::long_hash(k)) {
                if let Some(i) = missing.iter().position(|m| *m == n) {
                    missing.swap_remove(i);
                    keys.push(k);
                }
            }
        }
        keys
    }

    fn beat(&self, keys: Vec<(i64, i64)>) -> KvFuture<'_, ()> {
        Box::pin(async move { Ok(self.put_all(&keys, Some(BEAT_EXPIRY_MS)).await?) })
    }

    fn routing(&self) -> (u64, u64) {
        (
            self.pool.routed.load(Ordering::Relaxed),
            self.pool.unrouted.load(Ordering::Relaxed),
        )
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
            coherence: match cfg.coherence {
                crate::config::CoherenceMode::Events => super::l2::Coherence::Events {
                    max_lag: cfg.max_lag,
                    heartbeat: cfg.heartbeat,
                },
                crate::config::CoherenceMode::Strict => super::l2::Coherence::Strict,
            },
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
