//! Who may log in, and what the proxy checks their proof against: the
//! `[[users]]` of the file, and with `accounts.source = "backend"` the
//! accounts MySQL itself stores (`mysql.user`: user, host, plugin,
//! authentication_string), read with `[backend]`'s account.
//!
//! Policy: a `[[users]]` entry wins over the backend's account of the same
//! name. From the backend only `mysql_native_password` accounts are taken
//! (their stored hash is a `Secret::Hash`, an empty one no password); a
//! user with several host entries is taken only if they all hold the same
//! secret (the proxy cannot tell which host entry MySQL will match for it;
//! otherwise it is refused and logged). The table is read again before a
//! login when it is older than `accounts.max_age`, and when a login names
//! a user it does not hold, at most once per `REREAD_GAP`; so a password
//! changed or an account dropped in MySQL takes effect for new logins
//! within `max_age`, and a new account at once. A failed read keeps the
//! table it had and is retried on the next login after `REREAD_GAP`.
//!
//! The file's users are replaced by a live reload (`set_users`); a
//! session already logged in keeps running, as MySQL's own do after
//! `DROP USER` or a password change.
//!
//! Invariants: no lock is held across an await; one read at a time
//! (later logins wait for it rather than read again).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::backend::Backend;
use crate::config::{AccountSource, Config, UserConfig};
use crate::credential::{parse_hash, Secret};

/// Least time between two reads of the backend's accounts.
pub const REREAD_GAP: Duration = Duration::from_secs(1);

/// What the backend's account rows give, by user (pure).
pub fn from_rows(rows: &[(String, String, String, String)]) -> HashMap<String, Secret> {
    let mut by_user: HashMap<String, Option<Secret>> = HashMap::new();
    for (user, _host, plugin, auth) in rows {
        let secret = match plugin.as_str() {
            "mysql_native_password" | "" => parse_hash(auth),
            _ => None,
        };
        let entry = by_user.entry(user.clone()).or_insert(secret.clone());
        if *entry != secret {
            *entry = None;
        }
    }
    by_user
        .into_iter()
        .filter_map(|(u, s)| Some((u, s?)))
        .collect()
}

fn file_secrets(users: &[UserConfig]) -> HashMap<String, Secret> {
    users
        .iter()
        .filter_map(|u| Some((u.name.clone(), u.secret()?)))
        .collect()
}

struct Table {
    secrets: HashMap<String, Secret>,
    read_at: Option<Instant>,
    tried_at: Option<Instant>,
}

pub struct Accounts {
    file: RwLock<HashMap<String, Secret>>,
    backend: Option<(Arc<Backend>, Duration)>,
    table: RwLock<Table>,
    reading: tokio::sync::Mutex<()>,
}

impl Accounts {
    pub fn new(cfg: &Config, backend: Arc<Backend>) -> Accounts {
        let file = RwLock::new(file_secrets(&cfg.users));
        let backend = (cfg.accounts.source == AccountSource::Backend)
            .then_some((backend, cfg.accounts.max_age));
        Accounts {
            file,
            backend,
            table: RwLock::new(Table {
                secrets: HashMap::new(),
                read_at: None,
                tried_at: None,
            }),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// Replaces the file's users (live reload), for logins from now on.
    pub fn set_users(&self, users: &[UserConfig]) {
        *self.file.write().unwrap_or_else(|p| p.into_inner()) = file_secrets(users);
    }

    /// The secret `user` logs in with, if the account exists.
    pub async fn secret(&self, user: &str) -> Option<Secret> {
        let listed = (self.file.read().unwrap_or_else(|p| p.into_inner()))
            .get(user)
            .cloned();
        if listed.is_some() {
            return listed;
        }
        let (backend, max_age) = self.backend.as_ref()?;
        let (known, stale) = self.lookup(user, *max_age);
        if stale || known.is_none() {
            self.reread(backend, *max_age).await;
            return self.lookup(user, *max_age).0;
        }
        known
    }

    /// The held secret and whether the table is older than `max_age`.
    fn lookup(&self, user: &str, max_age: Duration) -> (Option<Secret>, bool) {
        let t = self.table.read().unwrap_or_else(|p| p.into_inner());
        let stale = t.read_at.is_none_or(|at| at.elapsed() >= max_age);
        (t.secrets.get(user).cloned(), stale)
    }

    /// Reads the backend's accounts unless another login just did (or
    /// tried to, within `REREAD_GAP`).
    async fn reread(&self, backend: &Backend, max_age: Duration) {
        let _one = self.reading.lock().await;
        {
            let t = self.table.read().unwrap_or_else(|p| p.into_inner());
            let fresh = t
                .read_at
                .is_some_and(|at| at.elapsed() < max_age.min(REREAD_GAP));
            if fresh || t.tried_at.is_some_and(|at| at.elapsed() < REREAD_GAP) {
                return;
            }
        }
        let read = backend.accounts().await;
        let mut t = self.table.write().unwrap_or_else(|p| p.into_inner());
        t.tried_at = Some(Instant::now());
        match read {
            Ok(rows) => {
                let secrets = from_rows(&rows);
                if secrets.len() != t.secrets.len() {
                    info!(accounts = secrets.len(), "accounts read from the backend");
                }
                t.secrets = secrets;
                t.read_at = Some(Instant::now());
            }
            Err(e) => {
                warn!(error = %e, "reading accounts from the backend failed; keeping the last ones")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(u: &str, h: &str, p: &str, a: &str) -> (String, String, String, String) {
        (u.into(), h.into(), p.into(), a.into())
    }

    #[test]
    fn native_accounts_with_one_secret_are_taken() {
        let h1 = "*0123456789ABCDEF0123456789ABCDEF01234567";
        let h2 = "*1123456789ABCDEF0123456789ABCDEF01234567";
        let t = from_rows(&[
            row("app", "%", "mysql_native_password", h1),
            row("app", "10.0.0.%", "mysql_native_password", h1),
            row("split", "%", "mysql_native_password", h1),
            row("split", "localhost", "mysql_native_password", h2),
            row("nopw", "%", "mysql_native_password", ""),
            row("sock", "localhost", "unix_socket", ""),
            row("sha2", "%", "caching_sha2_password", "$A$005$xyz"),
            row("broken", "%", "mysql_native_password", "invalid"),
        ]);
        assert_eq!(t.get("app"), parse_hash(h1).as_ref());
        assert_eq!(t.get("nopw"), Some(&Secret::Plain(String::new())));
        for refused in ["split", "sock", "sha2", "broken"] {
            assert!(!t.contains_key(refused), "{refused}");
        }
    }
}
