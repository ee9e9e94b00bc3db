//! tracing setup: one span per connection (`conn{id,peer}`), events inside.
//! `RUST_LOG` overrides `log.level`; `log.format` picks text or JSON lines.
//!
//! Policy: the level filter can be replaced while running (`set_level`,
//! used by live reload) unless `RUST_LOG` set it, which then stays in
//! force; the format is fixed at start.

use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

type SetFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Replaces the running filter; set by `init`.
static SET_FILTER: OnceLock<SetFilter> = OnceLock::new();

pub fn init(cfg: &LogConfig) {
    let from_env = EnvFilter::try_from_default_env().ok();
    let pinned = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(&cfg.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let set: SetFilter = match cfg.format {
        LogFormat::Json => {
            let b = builder.json().with_filter_reloading();
            let handle = b.reload_handle();
            let _ = b.try_init();
            Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()))
        }
        LogFormat::Text => {
            let b = builder.with_filter_reloading();
            let handle = b.reload_handle();
            let _ = b.try_init();
            Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()))
        }
    };
    if !pinned {
        let _ = SET_FILTER.set(set);
    }
}

/// Puts `level` (an `EnvFilter` directive, as `log.level`) in force. Err
/// says why not: a bad directive, `RUST_LOG` in force, or no subscriber.
pub fn set_level(level: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(level).map_err(|e| format!("log.level: {e}"))?;
    match SET_FILTER.get() {
        Some(set) => set(filter),
        None => Err("RUST_LOG is set (it overrides log.level) or logging is not set up".into()),
    }
}
