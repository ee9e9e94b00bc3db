//! `GET /ready` of the proxy: whether it can do its job right now, with a
//! line per check so an operator sees which part is wrong.
//!
//! Policy: ready only when every check passes — the backend answers a fresh
//! connection and a ping with the proxy's own account (bounded by
//! `backend.connect_timeout`); a configured change feed holds its gate open
//! (else hits are not being served: `cache/gate.rs`); a configured shared
//! tier is up. Without a feed or a tier their checks pass as "not
//! configured". `/health` (liveness) stays 200 regardless: a proxy whose
//! backend is down still answers clients with proper errors and should not
//! be restarted for it. `verdict` is the whole policy.

use crate::backend::Backend;
use crate::cache::Cache;

/// One readiness check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Ready iff every check passed; the body names each.
pub fn verdict(checks: &[Check]) -> Result<String, String> {
    let mut body = String::new();
    for c in checks {
        let state = if c.ok { "ok" } else { "FAIL" };
        body.push_str(&format!("{}: {state}: {}\n", c.name, c.detail));
    }
    if checks.iter().all(|c| c.ok) {
        Ok(format!("ready\n{body}"))
    } else {
        Err(format!("not ready\n{body}"))
    }
}

/// Runs every check.
pub async fn check(backend: &Backend, cache: &Cache) -> Result<String, String> {
    let db = match backend.probe().await {
        Ok(()) => Check {
            name: "backend",
            ok: true,
            detail: format!("{} answers", backend.addr()),
        },
        Err(e) => Check {
            name: "backend",
            ok: false,
            detail: e.to_string(),
        },
    };
    let feed = match (cache.gate.has_feed(), cache.gate.is_open()) {
        (false, _) => ok("feed", "not configured"),
        (true, true) => ok("feed", "gate open: the feed proves the cache current"),
        (true, false) => Check {
            name: "feed",
            ok: false,
            detail: "gate closed: the change feed has not proven the cache current within max_staleness; hits are not served".into(),
        },
    };
    let tier = match &cache.l2 {
        None => ok("shared_tier", "not configured"),
        Some(l2) if l2.is_up() => ok("shared_tier", "up"),
        Some(_) => Check {
            name: "shared_tier",
            ok: false,
            detail: "down: Apache Ignite does not answer; entries are not shared or confirmed"
                .into(),
        },
    };
    verdict(&[db, feed, tier])
}

fn ok(name: &'static str, detail: &str) -> Check {
    Check {
        name,
        ok: true,
        detail: detail.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_check_passes() {
        let a = ok("backend", "answers");
        let b = Check {
            name: "feed",
            ok: false,
            detail: "gate closed".into(),
        };
        assert_eq!(
            verdict(std::slice::from_ref(&a)),
            Ok("ready\nbackend: ok: answers\n".into())
        );
        assert_eq!(
            verdict(&[a, b]),
            Err("not ready\nbackend: ok: answers\nfeed: FAIL: gate closed\n".into())
        );
    }
}
