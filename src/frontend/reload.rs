//! Live reload of `proxy.toml` (SIGHUP, or `SQLCACHE RELOAD` from a
//! client): what a changed file changes in a running proxy.
//!
//! Policy: the file is read and validated whole first; if anything is
//! wrong the running configuration stays, every problem is logged and the
//! statement answers them. Otherwise the live keys are put in force
//! without dropping a client: `[[users]]` (for logins from now on),
//! `cache.ttl`, `cache.max_memory`, `cache.max_result_bytes`,
//! `[[cache.tables]]` (the cache first invalidates what the new rules no
//! longer allow: `cache::tuning`), `log.level`. Any other key that changed
//! needs a restart: it is named in the log and the answer, and its running
//! value stays (`restart_keys`, compared with the configuration the proxy
//! started with, so a pending one is named by every reload until the
//! restart). Reloads run one at a time; live keys are compared with the
//! last configuration applied.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{info, warn};

use super::session::Shared;
use crate::cache::Tuning;
use crate::config::{no_accounts, Config, ConfigError};

/// What a reload needs beyond the proxy's parts.
pub struct Reloader {
    /// The file the proxy was started from; `None`: nothing to reload.
    path: Option<PathBuf>,
    /// The configuration last applied.
    applied: tokio::sync::Mutex<Config>,
    pub reloads: AtomicU64,
    pub failures: AtomicU64,
}

/// What a successful reload did.
#[derive(Debug, Default)]
pub struct Report {
    /// Live changes put in force (and what they invalidated).
    pub applied: Vec<String>,
    /// Changed keys whose running value stays until a restart.
    pub restart: Vec<&'static str>,
}

impl Report {
    /// One line for the log and the client.
    pub fn summary(&self) -> String {
        let mut s = match self.applied.is_empty() {
            true => "no live setting changed".to_string(),
            false => format!("applied: {}", self.applied.join("; ")),
        };
        if !self.restart.is_empty() {
            s += &format!(
                "; needs a restart (running value kept): {}",
                self.restart.join(", ")
            );
        }
        s
    }
}

/// Sections and keys that only a restart changes, with how to read each.
type Section = (&'static str, fn(&Config, &Config) -> bool);

const RESTART_ONLY: &[Section] = &[
    ("proxy", |a, b| a.proxy != b.proxy),
    ("backend", |a, b| a.backend != b.backend),
    ("accounts", |a, b| a.accounts != b.accounts),
    ("cache.enabled", |a, b| a.cache.enabled != b.cache.enabled),
    ("cache.share_across_users", |a, b| {
        a.cache.share_across_users != b.cache.share_across_users
    }),
    ("cache.coalesce_wait", |a, b| {
        a.cache.coalesce_wait != b.cache.coalesce_wait
    }),
    ("cache.fill_delay", |a, b| {
        a.cache.fill_delay != b.cache.fill_delay
    }),
    ("cache.refresh_concurrency", |a, b| {
        a.cache.refresh_concurrency != b.cache.refresh_concurrency
    }),
    ("cache.ignite", |a, b| a.cache.ignite != b.cache.ignite),
    ("admin", |a, b| a.admin != b.admin),
    ("log.format", |a, b| a.log.format != b.log.format),
    ("invalidation", |a, b| a.invalidation != b.invalidation),
    ("cdc", |a, b| a.cdc != b.cdc),
    ("sink", |a, b| a.sink != b.sink),
];

/// The restart-only keys that differ between `old` and `new` (pure).
pub fn restart_keys(old: &Config, new: &Config) -> Vec<&'static str> {
    RESTART_ONLY
        .iter()
        .filter(|(_, differs)| differs(old, new))
        .map(|(k, _)| *k)
        .collect()
}

impl Reloader {
    /// (applied, refused) so far.
    pub fn counts(&self) -> crate::admin::metrics::Reloads {
        (
            self.reloads.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }

    pub fn new(path: Option<PathBuf>, cfg: &Config) -> Reloader {
        Reloader {
            path,
            applied: tokio::sync::Mutex::new(cfg.clone()),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no configuration file to reload (the proxy was not started from one)")]
    NoFile,
    #[error("{0}; the running configuration is kept")]
    Invalid(#[from] ConfigError),
}

/// Reads the file again and applies what can be applied live.
pub async fn reload(shared: &Shared) -> Result<Report, ReloadError> {
    let r = &shared.reloader;
    let path = r.path.as_ref().ok_or(ReloadError::NoFile)?;
    let mut applied = r.applied.lock().await;
    let loaded = Config::load(path).and_then(|c| match no_accounts(&c.users, &c.accounts) {
        Some(problem) => Err(ConfigError::Invalid {
            path: path.display().to_string(),
            problems: vec![problem],
        }),
        None => Ok(c),
    });
    let new = match loaded {
        Ok(c) => c,
        Err(e) => {
            r.failures.fetch_add(1, Ordering::Relaxed);
            warn!(error = %e, "reload refused: the running configuration is kept");
            return Err(e.into());
        }
    };
    let mut report = Report {
        // Against the configuration started with: still pending until then.
        restart: restart_keys(&shared.cfg, &new),
        ..Report::default()
    };
    if new.users != applied.users {
        shared.accounts.set_users(&new.users);
        report
            .applied
            .push(format!("users ({} listed)", new.users.len()));
    }
    let tuning = Tuning::from_config(&new.cache);
    let old = Tuning::from_config(&applied.cache);
    if tuning != old {
        report.applied.push("cache settings".into());
        report.applied.extend(shared.cache.retune(tuning).await);
    }
    if new.log.level != applied.log.level {
        match crate::telemetry::set_level(&new.log.level) {
            Ok(()) => report
                .applied
                .push(format!("log.level = {}", new.log.level)),
            Err(e) => warn!(error = %e, "log.level not changed"),
        }
    }
    *applied = new;
    r.reloads.fetch_add(1, Ordering::Relaxed);
    info!(path = %path.display(), "configuration reloaded: {}", report.summary());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, "t").unwrap()
    }

    #[test]
    fn live_keys_need_no_restart() {
        let old = parse("[cache]\nttl = \"60s\"\n[log]\nlevel = \"info\"\n");
        let new = parse(
            "[cache]\nttl = \"5s\"\nmax_memory = \"1MiB\"\nmax_result_bytes = 100\n\
             [[cache.tables]]\nname = \"s.t\"\nenabled = false\n\
             [[users]]\nname = \"u\"\npassword = \"p\"\n[log]\nlevel = \"debug\"\n",
        );
        assert_eq!(restart_keys(&old, &new), Vec::<&str>::new());
    }

    #[test]
    fn every_other_change_is_named() {
        let old = parse("");
        let new = parse(
            "[proxy]\nlisten = \"127.0.0.1:1\"\n[backend]\nport = 1\n\
             [cache]\nshare_across_users = true\n[log]\nformat = \"json\"\n",
        );
        assert_eq!(
            restart_keys(&old, &new),
            vec!["proxy", "backend", "cache.share_across_users", "log.format"]
        );
    }

    #[test]
    fn the_summary_says_what_was_applied_and_what_waits() {
        let r = Report {
            applied: vec!["users (2 listed)".into()],
            restart: vec!["proxy"],
        };
        assert_eq!(
            r.summary(),
            "applied: users (2 listed); needs a restart (running value kept): proxy"
        );
        assert_eq!(Report::default().summary(), "no live setting changed");
    }
}
