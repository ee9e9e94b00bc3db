//! Builds the proxy's parts from its configuration: the backend pool, the
//! cache with its shared tier, the schema facts, and the change feed.
//!
//! Policy: everything is built, or the proxy does not start — a configured
//! shared tier or feed that cannot be set up is a start-up error, never a
//! silent degradation to "no feed" (which would serve stale rows). The
//! frontend receives the parts and knows none of their construction.

use std::sync::Arc;

use tracing::info;

use crate::backend::schema::SchemaCache;
use crate::backend::Backend;
use crate::cache::Cache;
use crate::config::Config;
use crate::invalidation::{self, FeedHandle};

/// What a running proxy is made of, besides its listener.
pub struct Parts {
    pub backend: Arc<Backend>,
    pub cache: Arc<Cache>,
    pub schema: Arc<SchemaCache>,
    /// The change feed, if configured; stops when dropped.
    pub feed: Option<FeedHandle>,
}

/// Builds every part `cfg` asks for.
pub fn build(cfg: &Config) -> anyhow::Result<Parts> {
    let backend = Backend::new(cfg.backend.clone());
    let l2 = match cfg.cache.ignite.as_ref().filter(|i| i.enabled) {
        Some(i) => {
            info!(addresses = ?i.addresses, "shared tier (Ignite) enabled");
            Some(crate::cache::ignite::shared_tier(i).map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    let cache = Cache::with_l2(cfg.cache.clone(), l2);
    let schema = Arc::new(SchemaCache::default());
    let kafka = cfg.invalidation.kafka.as_ref().filter(|k| k.enabled);
    let binlog = cfg.invalidation.binlog.as_ref().filter(|b| b.enabled);
    let feed = match (kafka, binlog) {
        (Some(k), _) => Some(invalidation::kafka::spawn(
            k,
            cache.clone(),
            schema.clone(),
        )?),
        (None, Some(b)) => Some(invalidation::binlog::spawn(
            b,
            &cfg.backend,
            cache.clone(),
            schema.clone(),
        )?),
        (None, None) => None,
    };
    Ok(Parts {
        backend,
        cache,
        schema,
        feed,
    })
}
