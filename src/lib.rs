//! sqlcache — a SQL-aware caching proxy for MySQL/MariaDB.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | the `Config` tree read from `proxy.toml`, validation |
//! | [`frontend`] | the client-facing MySQL protocol (packets, handshake/auth, sessions, prepared statements, result relay) |
//! | [`classify`] | pure functions over SQL text: lexer, session-state effects (later: cacheability verdicts) |
//! | [`cache`] | cached responses (moka), tag tokens, guarded fills, coalescing, stats |
//! | [`backend`] | mysql_async connections, the multiplexing pool, tracked session state, schema facts |
//! | [`invalidation`] | `ChangeEvent` (the one currency of invalidation), change-feed decoders (Debezium, Canal, Maxwell), the Kafka and binlog feeds, freshness proofs |
//! | [`binlog`] | the binlog reader (a replica connection → decoded row/statement events with positions), shared by the binlog feed and `cdc` |
//! | [`telemetry`] | tracing setup (text or JSON) |
//!
//! Data takes one path: `frontend` reads a command, `classify` says what it
//! does, `backend` runs it on a connection, `frontend::relay` streams the
//! answer back. `classify` never sees packets, so it is unit-testable.

pub mod admin;
pub mod assembly;
pub mod backend;
pub mod binlog;
pub mod cache;
pub mod cdc;
pub mod change;
pub mod classify;
pub mod config;
pub mod frontend;
pub mod invalidation;
pub mod kafka;
pub mod telemetry;

pub use config::Config;
pub use frontend::Proxy;
