//! `[proxy]`, `[backend]`, `[[users]]`, `[accounts]`, `[admin]` and
//! `[log]`, and what makes each invalid.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ProxyConfig {
    pub listen: String,
    /// Also listen on this Unix socket: clients on the same host (a
    /// sidecar's application) skip the TCP stack, about a fifth of a cache
    /// hit's CPU (`bench/cache.sh`). Created world-connectable, as
    /// mariadbd's own socket (logins are checked as on TCP); a stale file
    /// left by a crash is replaced, a live one is an error.
    pub socket: Option<PathBuf>,
    /// Client connections accepted at once; more get error 1040.
    pub max_connections: usize,
    /// Worker threads, each a single-threaded runtime; 0 = one per CPU.
    pub workers: usize,
    /// How long a graceful shutdown waits for sessions to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Server version advertised before the backend has been reached once
    /// (afterwards the backend's own version string is advertised).
    pub fallback_server_version: String,
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Refuse clients that do not upgrade to TLS.
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct BackendConfig {
    pub host: String,
    pub port: u16,
    /// Unix socket path; when set it is used instead of host/port.
    pub socket: Option<PathBuf>,
    /// The proxy's own account (server version probe, health checks,
    /// reading `mysql.user`, KILL).
    pub user: String,
    pub password: String,
    /// A file holding `password` (its first line), so the configuration
    /// file holds none; relative to the configuration file's directory.
    pub password_file: Option<PathBuf>,
    /// Most backend connections open at once, over all users.
    pub pool_max: usize,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long a statement waits for a free backend connection.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Longest wait for the first response to a statement; `0s` = no limit.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Idle backend connections older than this are closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

#[derive(Clone, PartialEq, Deserialize)]
pub struct UserConfig {
    pub name: String,
    #[serde(default)]
    pub password: String,
    /// MySQL's stored `mysql_native_password` hash (`*` + 40 hex digits,
    /// `SELECT PASSWORD('…')`), instead of `password`.
    #[serde(default)]
    pub password_hash: Option<String>,
}

/// Secrets are never printed (a config dumped in a log or a panic).
impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("password", &(!self.password.is_empty()).then_some("…"))
            .field("password_hash", &self.password_hash.as_ref().map(|_| "…"))
            .finish()
    }
}

impl UserConfig {
    /// What the proxy checks this account's logins against (`None`: a
    /// malformed `password_hash`, which validation reports).
    pub fn secret(&self) -> Option<crate::credential::Secret> {
        match &self.password_hash {
            Some(h) => crate::credential::parse_hash(h),
            None => Some(crate::credential::Secret::Plain(self.password.clone())),
        }
    }
}

/// Where accounts come from besides `[[users]]` (`frontend/accounts.rs`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct AccountsConfig {
    pub source: AccountSource,
    /// Backend accounts are read again before a login once this old.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            source: AccountSource::Backend,
            max_age: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AccountSource {
    /// `[[users]]` only.
    Config,
    /// Also MySQL's own `mysql_native_password` accounts (`mysql.user`).
    Backend,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive; `RUST_LOG` overrides it.
    pub level: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:6033".into(),
            socket: None,
            max_connections: 4096,
            workers: 0,
            shutdown_timeout: Duration::from_secs(30),
            fallback_server_version: "5.5.5-10.11.0-MariaDB-sqlcache".into(),
            tls: None,
        }
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 3306,
            socket: None,
            user: "root".into(),
            password: String::new(),
            password_file: None,
            pool_max: 64,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(10),
            query_timeout: Duration::ZERO,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
pub struct AdminConfig {
    /// Prometheus `/metrics` address; unset = no admin listener.
    pub listen: Option<String>,
}

impl ProxyConfig {
    pub(super) fn problems(&self, p: &mut Vec<String>) {
        if self.listen.parse::<SocketAddr>().is_err() {
            p.push(format!(
                "proxy.listen: `{}` is not an address:port",
                self.listen
            ));
        }
        if let Some(problem) = self.socket.as_deref().and_then(socket_problem) {
            p.push(format!("proxy.socket: {problem}"));
        }
        if self.max_connections == 0 {
            p.push("proxy.max_connections: must be at least 1".into());
        }
        if let Some(tls) = &self.tls {
            for (key, path) in [("cert", &tls.cert), ("key", &tls.key)] {
                if !path.is_file() {
                    p.push(format!(
                        "proxy.tls.{key}: `{}` is not a readable file",
                        path.display()
                    ));
                }
            }
        }
    }
}

/// Why `path` cannot be a Unix socket's address (pure): the kernel keeps
/// at most 107 bytes of it (`sun_path`).
fn socket_problem(path: &std::path::Path) -> Option<String> {
    const SUN_PATH_MAX: usize = 107;
    let len = path.as_os_str().len();
    if len == 0 {
        return Some("empty path".into());
    }
    (len > SUN_PATH_MAX).then(|| {
        format!(
            "`{}` is {len} bytes; a Unix socket path holds at most {SUN_PATH_MAX}",
            path.display()
        )
    })
}

impl BackendConfig {
    /// Reads `password_file` (relative to `dir`) into `password`.
    pub(super) fn read_password_file(&mut self, dir: &std::path::Path) -> Result<(), String> {
        let Some(f) = &self.password_file else {
            return Ok(());
        };
        if !self.password.is_empty() {
            return Err("backend.password_file: set password or password_file, not both".into());
        }
        let path = dir.join(f);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("backend.password_file: cannot read {}: {e}", path.display()))?;
        self.password = text.lines().next().unwrap_or("").to_string();
        Ok(())
    }

    pub(super) fn problems(&self, p: &mut Vec<String>) {
        if self.socket.is_none() && self.host.is_empty() {
            p.push("backend.host: empty (set host or socket)".into());
        }
        if self.pool_max == 0 {
            p.push("backend.pool_max: must be at least 1".into());
        }
        if self.connect_timeout.is_zero() {
            p.push("backend.connect_timeout: must be above 0".into());
        }
    }
}

impl AdminConfig {
    pub(super) fn problems(&self, p: &mut Vec<String>) {
        if let Some(a) = &self.listen {
            if a.parse::<SocketAddr>().is_err() {
                p.push(format!("admin.listen: `{a}` is not an address:port"));
            }
        }
    }
}

impl LogConfig {
    pub(super) fn problems(&self, p: &mut Vec<String>) {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.level) {
            p.push(format!("log.level: `{}`: {e}", self.level));
        }
    }
}

/// The proxy's "nobody could log in" problem, if it has one.
pub fn no_accounts(users: &[UserConfig], accounts: &AccountsConfig) -> Option<String> {
    (users.is_empty() && accounts.source == AccountSource::Config).then(|| {
        "users: at least one [[users]] entry is needed (or accounts.source = \"backend\")".into()
    })
}

/// `proxy_file`: the file is for the proxy (it has neither `[cdc]` nor
/// `[sink]`), so it must let someone log in.
pub(super) fn user_problems(
    users: &[UserConfig],
    accounts: &AccountsConfig,
    proxy_file: bool,
    p: &mut Vec<String>,
) {
    if proxy_file {
        p.extend(no_accounts(users, accounts));
    }
    if accounts.max_age < Duration::from_millis(100) {
        p.push("accounts.max_age: must be at least 100ms".into());
    }
    for (i, u) in users.iter().enumerate() {
        if u.name.is_empty() {
            p.push(format!("users[{i}].name: empty"));
        }
        if users[..i].iter().any(|o| o.name == u.name) {
            p.push(format!("users[{i}].name: `{}` listed twice", u.name));
        }
        if u.password_hash.is_some() && !u.password.is_empty() {
            p.push(format!(
                "users[{i}]: set password or password_hash, not both"
            ));
        }
        if u.secret().is_none() {
            p.push(format!(
                "users[{i}].password_hash: expected `*` and 40 hex digits (SELECT PASSWORD('…')), or \"\" for no password"
            ));
        }
    }
}
