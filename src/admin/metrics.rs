//! The proxy's `/metrics`: the cache, the feed, the shared tier, refreshes
//! and the statement latency histogram by route, as Prometheus text.
//!
//! Policy: everything `SHOW SQLCACHE STATUS` shows, under `sqlcache_*`
//! names; read from the same atomics (no locks), so both agree.

use std::sync::atomic::{AtomicU64, Ordering};

use super::prom::{Prom, Series};
use super::status::l2_counters;
use crate::cache::stats::BUCKETS_US;
use crate::cache::{Cache, Route, Stats};
use crate::classify::BypassReason;

fn g(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Prometheus text of the cache and routing metrics.
/// Counts of configuration reloads: (applied, refused).
pub type Reloads = (u64, u64);

/// The proxy's figures outside the cache.
#[derive(Debug, Default, Clone, Copy)]
pub struct Proxy {
    pub backend_open: usize,
    pub reloads: Reloads,
    /// Pooled connections reset because the globals changed.
    pub globals_resets: u64,
}

pub fn prometheus(cache: &Cache, proxy: Proxy) -> String {
    let (backend_open, reloads) = (proxy.backend_open, proxy.reloads);
    let mut p = Prom::new();
    cache_families(&mut p, cache);
    feed_families(&mut p, cache);
    if let Some(l2) = &cache.l2 {
        p.gauge(
            "sqlcache_l2_up",
            "1 while the shared tier is trusted.",
            l2.is_up() as u8,
        );
        p.gauge(
            "sqlcache_l2_pending",
            "Invalidations not yet delivered to the shared tier.",
            l2.pending().0,
        );
        p.gauge(
            "sqlcache_l2_l1_trusted",
            "1 while L1 hits need no confirmation (other proxies' invalidations proven current).",
            l2.l1_trusted() as u8,
        );
        let (routed, unrouted) = l2.routing();
        p.counter(
            "sqlcache_l2_routed_total",
            "Single-key shared-tier requests sent to their key's primary node.",
            routed,
        );
        p.counter(
            "sqlcache_l2_unrouted_total",
            "Single-key shared-tier requests sent to any node (partition map unknown or node not connected).",
            unrouted,
        );
        for (name, v) in l2_counters(l2) {
            p.counter(&format!("sqlcache_l2_{name}_total"), "Shared tier.", g(v));
        }
    }
    let r = &cache.refresh.stats;
    for (name, v) in [
        ("done", &r.done),
        ("cold", &r.cold),
        ("dropped", &r.dropped),
        ("failed", &r.failed),
    ] {
        p.counter(
            &format!("sqlcache_refresh_{name}_total"),
            "Refreshes of hot rows of refresh tables.",
            g(v),
        );
    }
    p.gauge("sqlcache_entries", "Entries in the cache.", cache.entries());
    p.gauge(
        "sqlcache_bytes",
        "Bytes of the cache's entries.",
        cache.bytes(),
    );
    p.gauge(
        "sqlcache_backend_connections",
        "Open backend connections.",
        backend_open,
    );
    p.counter(
        "sqlcache_backend_globals_resets_total",
        "Pooled connections reset before use because a SET GLOBAL went through the proxy since they were opened.",
        proxy.globals_resets,
    );
    p.counter(
        "sqlcache_config_reloads_total",
        "Configuration reloads applied (SIGHUP, SQLCACHE RELOAD).",
        reloads.0,
    );
    p.counter(
        "sqlcache_config_reload_failures_total",
        "Configuration reloads refused (the file was invalid; the running configuration stayed).",
        reloads.1,
    );
    latency(&mut p, &cache.stats);
    p.finish()
}

fn cache_families(p: &mut Prom, cache: &Cache) {
    let s = &cache.stats;
    p.counter(
        "sqlcache_hits_total",
        "Statements answered from the cache.",
        g(&s.hits),
    );
    p.counter(
        "sqlcache_misses_total",
        "Cacheable reads forwarded.",
        g(&s.misses),
    );
    p.counter("sqlcache_stale_total", "Entries found stale.", g(&s.stale));
    p.counter(
        "sqlcache_classify_parsed_total",
        "Text statements classified by sqlparser.",
        g(&s.parsed),
    );
    p.counter(
        "sqlcache_classify_memoized_total",
        "Text statements classified from the verdict memo (no parse).",
        g(&s.memoized),
    );
    p.counters(
        "sqlcache_bypass_total",
        "Statements not served from the cache, by reason.",
        "reason",
        BypassReason::ALL
            .iter()
            .map(|r| (r.as_str(), g(&s.bypass[r.index()]))),
    );
    p.counters(
        "sqlcache_invalidations_total",
        "Invalidations, by source.",
        "source",
        Stats::SOURCES
            .iter()
            .enumerate()
            .map(|(i, src)| (*src, g(&s.invalidations[i]))),
    );
}

fn feed_families(p: &mut Prom, cache: &Cache) {
    let f = &cache.stats.feed;
    p.gauge(
        "sqlcache_feed_fresh",
        "1 while the change feed vouches for freshness (or there is none).",
        cache.gate.is_open() as u8,
    );
    for (name, v) in [
        ("messages", &f.messages),
        ("events", &f.events),
        ("malformed", &f.malformed),
        ("gaps", &f.gaps),
        ("errors", &f.errors),
        ("client_restarts", &f.client_restarts),
    ] {
        p.counter(&format!("sqlcache_feed_{name}_total"), "Change feed.", g(v));
    }
    p.gauge(
        "sqlcache_feed_lag_seconds",
        "Age of the newest change applied.",
        g(&f.lag_ms) as f64 / 1e3,
    );
    let proof = g(&f.proof_age_ms);
    if cache.gate.has_feed() && proof != u64::MAX {
        p.gauge(
            "sqlcache_feed_proof_age_seconds",
            "Age of the feed's newest proof of freshness.",
            proof as f64 / 1e3,
        );
    }
}

fn latency(p: &mut Prom, s: &Stats) {
    let labels: Vec<String> = Route::ALL
        .iter()
        .map(|r| format!("route=\"{}\"", r.as_str()))
        .collect();
    let series = Route::ALL.iter().enumerate().map(|(i, _)| {
        let (cum, sum_us, count) = s.latency[i].snapshot();
        Series {
            labels: &labels[i],
            buckets: BUCKETS_US
                .iter()
                .zip(cum)
                .map(|(b, c)| (*b as f64 / 1e6, c))
                .collect(),
            sum: sum_us as f64 / 1e6,
            count,
        }
    });
    p.histogram(
        "sqlcache_statement_duration_seconds",
        "Statement time in the proxy, by route (hit: L1 and L2 hits).",
        series,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_every_family() {
        let c = Cache::new(crate::config::CacheConfig::default());
        c.stats
            .observe(Route::Hit, std::time::Duration::from_micros(30));
        let t = prometheus(
            &c,
            Proxy {
                backend_open: 3,
                ..Proxy::default()
            },
        );
        for f in [
            "sqlcache_hits_total 0",
            "reason=\"in_transaction\"",
            "source=\"proxy_row\"",
            "route=\"hit\",le=\"0.00005\"} 1",
            "sqlcache_statement_duration_seconds_count{route=\"hit\"} 1",
            "sqlcache_backend_connections 3",
        ] {
            assert!(t.contains(f), "{f} missing");
        }
    }
}
