//! Statements the proxy answers itself: `SHOW SQLCACHE STATUS` (counters)
//! and `SHOW SQLCACHE LAST` (how this session's previous statement was
//! routed). Both return ordinary text result sets any client can display.

use std::sync::atomic::Ordering;

use mysql_common::constants::{CapabilityFlags, ColumnType};
use mysql_common::packets::Column;

use super::session::Session;
use super::wire;
use crate::cache::{Route, Stats};
use crate::classify::lexer::{is_kw, Lexer};
use crate::classify::BypassReason;

/// Cheap test on the raw bytes: does this look like `SHOW SQLCACHE …`?
pub fn is_sqlcache_statement(sql: &[u8]) -> bool {
    let t = sql.trim_ascii_start();
    t.len() >= 13 && t[..4].eq_ignore_ascii_case(b"show") && {
        let rest = t[4..].trim_ascii_start();
        rest.len() >= 8 && rest[..8].eq_ignore_ascii_case(b"sqlcache")
    }
}

impl Session {
    pub(super) fn sqlcache_statement(&mut self, sql: &[u8]) {
        let text = String::from_utf8_lossy(sql);
        let toks: Vec<_> = Lexer::new(&text).collect();
        let rows: Vec<(String, String)> = if is_kw(toks.get(2), "STATUS") {
            status_rows(&self.shared.cache)
        } else if is_kw(toks.get(2), "LAST") {
            vec![("route".into(), self.last.to_string())]
        } else {
            return self.reply_err(
                1064,
                "42000",
                "sqlcache: expected SHOW SQLCACHE STATUS or SHOW SQLCACHE LAST",
            );
        };
        self.write_rows(&["Variable_name", "Value"], &rows);
    }

    /// A text result set of string columns.
    fn write_rows(&mut self, names: &[&str], rows: &[(String, String)]) {
        let status = self.status;
        let deprecate = self
            .login
            .caps
            .contains(CapabilityFlags::CLIENT_DEPRECATE_EOF);
        let m = self.conn.begin();
        wire::put_lenenc_int(self.conn.buf(), names.len() as u64);
        self.conn.finish(m);
        for n in names {
            let col = Column::new(ColumnType::MYSQL_TYPE_VAR_STRING)
                .with_name(n.as_bytes())
                .with_org_name(n.as_bytes())
                .with_character_set(45)
                .with_column_length(1024);
            let m = self.conn.begin();
            wire::column(self.conn.buf(), &col);
            self.conn.finish(m);
        }
        if !deprecate {
            let m = self.conn.begin();
            wire::eof(self.conn.buf(), 0, status);
            self.conn.finish(m);
        }
        for (k, v) in rows {
            let m = self.conn.begin();
            wire::put_lenenc_bytes(self.conn.buf(), k.as_bytes());
            wire::put_lenenc_bytes(self.conn.buf(), v.as_bytes());
            self.conn.finish(m);
        }
        self.write_end_of_rows();
    }
}

fn status_rows(cache: &crate::cache::Cache) -> Vec<(String, String)> {
    let s = &cache.stats;
    let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
    let mut rows = vec![
        ("enabled".into(), cache.cfg.enabled.to_string()),
        ("hits".into(), g(&s.hits)),
        ("misses".into(), g(&s.misses)),
        ("stale".into(), g(&s.stale)),
        ("fills".into(), g(&s.fills)),
        ("coalesced".into(), g(&s.coalesced)),
        ("entries".into(), cache.entries().to_string()),
        ("bytes".into(), cache.bytes().to_string()),
    ];
    for r in BypassReason::ALL {
        rows.push((format!("bypass_{}", r.as_str()), g(&s.bypass[r.index()])));
    }
    for (i, src) in Stats::SOURCES.iter().enumerate() {
        rows.push((format!("invalidations_{src}"), g(&s.invalidations[i])));
    }
    let f = &s.feed;
    rows.push(("feed_fresh".into(), cache.gate.is_open().to_string()));
    for (k, v) in [
        ("feed_messages", &f.messages),
        ("feed_events", &f.events),
        ("feed_malformed", &f.malformed),
        ("feed_gaps", &f.gaps),
        ("feed_errors", &f.errors),
        ("feed_client_restarts", &f.client_restarts),
        ("feed_lag_ms", &f.lag_ms),
        ("feed_proof_age_ms", &f.proof_age_ms),
        ("refresh_done", &cache.refresh.stats.done),
        ("refresh_cold", &cache.refresh.stats.cold),
        ("refresh_dropped", &cache.refresh.stats.dropped),
        ("refresh_failed", &cache.refresh.stats.failed),
    ] {
        rows.push((k.into(), g(v)));
    }
    rows.push(("refresh_keys".into(), cache.refresh.len().to_string()));
    if let Some(l2) = &cache.l2 {
        rows.push(("l2_up".into(), l2.is_up().to_string()));
        rows.push(("l2_pending".into(), l2.pending().0.to_string()));
        for (k, v) in l2_counters(l2) {
            rows.push((format!("l2_{k}"), g(v)));
        }
    }
    rows
}

/// The shared tier's counters, by metric name.
fn l2_counters(l2: &crate::cache::L2) -> [(&'static str, &std::sync::atomic::AtomicU64); 11] {
    let s = &l2.stats;
    [
        ("hits", &s.hits),
        ("misses", &s.misses),
        ("stale", &s.stale),
        ("skipped", &s.skipped),
        ("read_errors", &s.read_errors),
        ("fills", &s.fills),
        ("fill_errors", &s.fill_errors),
        ("invalidations", &s.invalidations),
        ("invalidation_errors", &s.invalidation_errors),
        ("recoveries", &s.recoveries),
        ("epoch_bumps", &s.epoch_bumps),
    ]
}

/// Prometheus text exposition of the cache and routing metrics.
pub fn prometheus(cache: &crate::cache::Cache, backend_open: usize) -> String {
    use std::fmt::Write;
    let s = &cache.stats;
    let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut o = String::with_capacity(8192);
    let _ = writeln!(
        o,
        "# TYPE sqlcache_hits_total counter\nsqlcache_hits_total {}",
        g(&s.hits)
    );
    let _ = writeln!(
        o,
        "# TYPE sqlcache_misses_total counter\nsqlcache_misses_total {}",
        g(&s.misses)
    );
    let _ = writeln!(
        o,
        "# TYPE sqlcache_stale_total counter\nsqlcache_stale_total {}",
        g(&s.stale)
    );
    let _ = writeln!(o, "# TYPE sqlcache_bypass_total counter");
    for r in BypassReason::ALL {
        let _ = writeln!(
            o,
            "sqlcache_bypass_total{{reason=\"{}\"}} {}",
            r.as_str(),
            g(&s.bypass[r.index()])
        );
    }
    let _ = writeln!(o, "# TYPE sqlcache_invalidations_total counter");
    for (i, src) in Stats::SOURCES.iter().enumerate() {
        let _ = writeln!(
            o,
            "sqlcache_invalidations_total{{source=\"{src}\"}} {}",
            g(&s.invalidations[i])
        );
    }
    let f = &s.feed;
    let feed = cache.gate.has_feed();
    let _ = writeln!(
        o,
        "# TYPE sqlcache_feed_fresh gauge\nsqlcache_feed_fresh {}",
        cache.gate.is_open() as u8
    );
    for (name, v) in [
        ("messages", &f.messages),
        ("events", &f.events),
        ("malformed", &f.malformed),
        ("gaps", &f.gaps),
        ("errors", &f.errors),
        ("client_restarts", &f.client_restarts),
    ] {
        let _ = writeln!(
            o,
            "# TYPE sqlcache_feed_{name}_total counter\nsqlcache_feed_{name}_total {}",
            g(v)
        );
    }
    if let Some(l2) = &cache.l2 {
        let _ = writeln!(
            o,
            "# TYPE sqlcache_l2_up gauge\nsqlcache_l2_up {}\n# TYPE sqlcache_l2_pending gauge\nsqlcache_l2_pending {}",
            l2.is_up() as u8,
            l2.pending().0
        );
        for (name, v) in l2_counters(l2) {
            let _ = writeln!(
                o,
                "# TYPE sqlcache_l2_{name}_total counter\nsqlcache_l2_{name}_total {}",
                g(v)
            );
        }
    }
    let r = &cache.refresh.stats;
    for (name, v) in [
        ("done", &r.done),
        ("cold", &r.cold),
        ("dropped", &r.dropped),
        ("failed", &r.failed),
    ] {
        let _ = writeln!(
            o,
            "# TYPE sqlcache_refresh_{name}_total counter\nsqlcache_refresh_{name}_total {}",
            g(v)
        );
    }
    let _ = writeln!(
        o,
        "# TYPE sqlcache_feed_lag_seconds gauge\nsqlcache_feed_lag_seconds {}",
        g(&f.lag_ms) as f64 / 1e3
    );
    let proof = g(&f.proof_age_ms);
    if feed && proof != u64::MAX {
        let _ = writeln!(
            o,
            "# TYPE sqlcache_feed_proof_age_seconds gauge\nsqlcache_feed_proof_age_seconds {}",
            proof as f64 / 1e3
        );
    }
    let _ = writeln!(
        o,
        "# TYPE sqlcache_entries gauge\nsqlcache_entries {}",
        cache.entries()
    );
    let _ = writeln!(
        o,
        "# TYPE sqlcache_bytes gauge\nsqlcache_bytes {}",
        cache.bytes()
    );
    let _ = writeln!(
        o,
        "# TYPE sqlcache_backend_connections gauge\nsqlcache_backend_connections {backend_open}"
    );
    let _ = writeln!(o, "# TYPE sqlcache_statement_duration_seconds histogram");
    for (i, route) in Route::ALL.iter().enumerate() {
        let (cum, sum_us, count) = s.latency[i].snapshot();
        for (b, c) in crate::cache::stats::BUCKETS_US.iter().zip(&cum) {
            let _ = writeln!(
                o,
                "sqlcache_statement_duration_seconds_bucket{{route=\"{}\",le=\"{}\"}} {c}",
                route.as_str(),
                *b as f64 / 1e6
            );
        }
        let _ = writeln!(
            o,
            "sqlcache_statement_duration_seconds_bucket{{route=\"{}\",le=\"+Inf\"}} {count}",
            route.as_str()
        );
        let _ = writeln!(
            o,
            "sqlcache_statement_duration_seconds_sum{{route=\"{}\"}} {}",
            route.as_str(),
            sum_us as f64 / 1e6
        );
        let _ = writeln!(
            o,
            "sqlcache_statement_duration_seconds_count{{route=\"{}\"}} {count}",
            route.as_str()
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_admin_statements() {
        assert!(is_sqlcache_statement(b"SHOW SQLCACHE STATUS"));
        assert!(is_sqlcache_statement(b"  show  sqlcache last"));
        assert!(!is_sqlcache_statement(b"SHOW STATUS"));
        assert!(!is_sqlcache_statement(b"SELECT 1"));
    }

    #[test]
    fn prometheus_text_has_every_family() {
        let c = crate::cache::Cache::new(crate::config::CacheConfig::default());
        c.stats
            .observe(Route::Hit, std::time::Duration::from_micros(30));
        let t = prometheus(&c, 3);
        for f in [
            "sqlcache_hits_total 0",
            "reason=\"in_transaction\"",
            "source=\"proxy_row\"",
            "route=\"hit\",le=\"0.00005\"} 1",
            "sqlcache_backend_connections 3",
        ] {
            assert!(t.contains(f), "{f} missing");
        }
    }
}
