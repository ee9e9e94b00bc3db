//! `SHOW SQLCACHE STATUS | LAST | QUERIES | TABLES`: the statements the
//! proxy answers itself, and the counters STATUS shows (QUERIES' rows are
//! `insight.rs`'s, TABLES' `tables.rs`'s).
//!
//! Policy: recognised from the raw bytes before anything else (never
//! forwarded, never cached); anything else after `SHOW SQLCACHE` is an
//! error. The frontend writes the rows (`frontend/admin.rs`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::cache::{Cache, Stats, L2};
use crate::classify::lexer::{is_kw, Lexer, Token};
use crate::classify::BypassReason;

/// Cheap test on the raw bytes: is this `SHOW SQLCACHE …` or `SQLCACHE …`
/// (no SQL statement starts with that word)?
pub fn is_sqlcache_statement(sql: &[u8]) -> bool {
    let t = sql.trim_ascii_start();
    let word = |t: &[u8], w: &[u8]| {
        t.len() >= w.len()
            && t[..w.len()].eq_ignore_ascii_case(w)
            && t.get(w.len())
                .is_none_or(|c| c.is_ascii_whitespace() || *c == b';')
    };
    word(t, b"sqlcache") || (word(t, b"show") && word(t[4..].trim_ascii_start(), b"sqlcache"))
}

/// Which of the proxy's own statements this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Own {
    Status,
    Last,
    Queries,
    Tables,
    Flush(Flush),
    /// `SQLCACHE RELOAD`: read the configuration file again.
    Reload,
}

/// What `SQLCACHE FLUSH` empties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flush {
    /// Every cached entry (`SQLCACHE FLUSH`).
    All,
    /// One table's entries (`SQLCACHE FLUSH [db.]table`; no db: the
    /// session's current one).
    Table { db: Option<String>, table: String },
    /// The statistics of `SHOW SQLCACHE QUERIES` (`SQLCACHE FLUSH QUERIES`).
    Queries,
}

impl Own {
    pub fn parse(sql: &[u8]) -> Option<Own> {
        let text = String::from_utf8_lossy(sql);
        let mut toks: Vec<_> = Lexer::new(&text).collect();
        while toks.last() == Some(&Token::Semicolon) {
            toks.pop();
        }
        if is_kw(toks.first(), "SQLCACHE") {
            if is_kw(toks.get(1), "RELOAD") && toks.len() == 2 {
                return Some(Own::Reload);
            }
            return is_kw(toks.get(1), "FLUSH")
                .then(|| parse_flush(&toks[2..]).map(Own::Flush))
                .flatten();
        }
        match toks.get(2) {
            t if is_kw(t, "STATUS") => Some(Own::Status),
            t if is_kw(t, "LAST") => Some(Own::Last),
            t if is_kw(t, "QUERIES") => Some(Own::Queries),
            t if is_kw(t, "TABLES") => Some(Own::Tables),
            _ => None,
        }
    }
}

/// The target of `SQLCACHE FLUSH`, from the tokens after FLUSH.
fn parse_flush(toks: &[Token<'_>]) -> Option<Flush> {
    let name = |t: &Token<'_>| match t {
        Token::Word(w) | Token::Quoted(w) => Some(w.to_string()),
        _ => None,
    };
    match toks {
        [] => Some(Flush::All),
        [t] if is_kw(Some(t), "QUERIES") => Some(Flush::Queries),
        [t] => Some(Flush::Table {
            db: None,
            table: name(t)?,
        }),
        [d, Token::Punct('.'), t] => Some(Flush::Table {
            db: Some(name(d)?),
            table: name(t)?,
        }),
        _ => None,
    }
}

/// The rows of `SHOW SQLCACHE STATUS`.
pub fn status_rows(cache: &Cache) -> Vec<(String, String)> {
    let s = &cache.stats;
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
    let mut rows = vec![
        ("enabled".into(), cache.cfg.enabled.to_string()),
        ("hits".into(), g(&s.hits)),
        ("misses".into(), g(&s.misses)),
        ("stale".into(), g(&s.stale)),
        ("fills".into(), g(&s.fills)),
        ("coalesced".into(), g(&s.coalesced)),
        ("classify_parsed".into(), g(&s.parsed)),
        ("classify_memoized".into(), g(&s.memoized)),
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
        rows.push(("l2_l1_trusted".into(), l2.l1_trusted().to_string()));
        let (routed, unrouted) = l2.routing();
        rows.push(("l2_routed".into(), routed.to_string()));
        rows.push(("l2_unrouted".into(), unrouted.to_string()));
        for (k, v) in l2_counters(l2) {
            rows.push((format!("l2_{k}"), g(v)));
        }
    }
    rows
}

/// The shared tier's counters, by metric name.
pub fn l2_counters(l2: &L2) -> [(&'static str, &AtomicU64); 18] {
    let s = &l2.stats;
    let p = &l2.peers.stats;
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
        ("confirmed", &s.confirmed),
        ("unconfirmed", &s.unconfirmed),
        ("peer_applied", &p.applied),
        ("peer_own", &p.own),
        ("peer_flushes", &p.flushes),
        ("peer_proofs", &p.proofs),
        ("peer_subscriptions", &p.subscriptions),
    ]
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
        assert_eq!(Own::parse(b"show sqlcache status"), Some(Own::Status));
        assert_eq!(Own::parse(b"SHOW SQLCACHE LAST"), Some(Own::Last));
        assert_eq!(Own::parse(b"show sqlcache queries"), Some(Own::Queries));
        assert_eq!(Own::parse(b"SHOW SQLCACHE TABLES"), Some(Own::Tables));
        assert_eq!(Own::parse(b"SHOW SQLCACHE PLEASE"), None);
        assert_eq!(Own::parse(b"sqlcache reload;"), Some(Own::Reload));
        assert_eq!(Own::parse(b"SQLCACHE RELOAD now"), None);
        assert!(is_sqlcache_statement(b"sqlcache flush"));
        assert!(is_sqlcache_statement(b"SQLCACHE FLUSH test.t;"));
        assert!(!is_sqlcache_statement(b"sqlcachex flush"));
        assert!(!is_sqlcache_statement(b"SHOW SQLCACHEX"));
    }

    #[test]
    fn parses_flush_targets() {
        let flush = |s: &str| match Own::parse(s.as_bytes()) {
            Some(Own::Flush(f)) => Some(f),
            _ => None,
        };
        assert_eq!(flush("SQLCACHE FLUSH"), Some(Flush::All));
        assert_eq!(flush("sqlcache flush queries;"), Some(Flush::Queries));
        let t = |db: Option<&str>, table: &str| {
            Some(Flush::Table {
                db: db.map(Into::into),
                table: table.into(),
            })
        };
        assert_eq!(flush("SQLCACHE FLUSH t1"), t(None, "t1"));
        assert_eq!(flush("SQLCACHE FLUSH `my db`.`t`"), t(Some("my db"), "t"));
        assert_eq!(flush("SQLCACHE FLUSH a.b.c"), None);
        assert_eq!(flush("SQLCACHE FLUSH 'x'"), None);
        assert_eq!(flush("SQLCACHE EMPTY"), None);
    }
}
