//! sqlcache — a SQL-aware caching proxy for MySQL/MariaDB.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | the `Config` tree read from `proxy.toml`, validation per section |
//! | [`assembly`] | building the backend, cache, shared tier and feed from the config |
//! | [`frontend`] | the client-facing MySQL protocol: handshake, sessions, prepared statements, the one statement pipeline, result relay, the route record |
//! | [`classify`] | pure functions over SQL text: lexer, session-state effects, cache verdicts |
//! | [`cache`] | key layout, planning (eligibility, read plans, fills), entries (moka), tag tokens, the shared tier (`l2`, `ignite`), stats |
//! | [`backend`] | mysql_async connections, the multiplexing pool, tracked session state, schema facts |
//! | [`change`] | `ChangeEvent`, the one currency of invalidation |
//! | [`invalidation`] | the one resolver (events → tags), forwarded writes as events, feed decoders, the Kafka and binlog feeds, freshness proofs |
//! | [`binlog`] | the binlog reader and what its items change, shared by the binlog feed and `cdc` |
//! | [`cdc`] | `sqlcache cdc`: binlog → Debezium events on Kafka |
//! | [`admin`] | `/metrics`, `/health`, the Prometheus writer, SHOW SQLCACHE content |
//! | [`kafka`] | Kafka client settings shared by the feed and `cdc` |
//! | [`telemetry`] | tracing setup (text or JSON) |
//!
//! A statement takes one path (`frontend::pipeline`): key → hit, or
//! classify → plan (`cache::plan`) → MySQL → relay → fill; a change takes
//! one path: source → `ChangeEvent` → `invalidation::resolve` → token bump.
//! `docs/ARCHITECTURE.md` draws both with the file of each stage.

pub mod admin;
pub mod assembly;
pub mod backend;
pub mod binlog;
pub mod cache;
pub mod cdc;
pub mod change;
pub mod classify;
pub mod config;
pub mod credential;
pub mod frontend;
pub mod invalidation;
pub mod kafka;
pub mod retry;
pub mod sink;
pub mod telemetry;

pub use config::Config;
pub use frontend::Proxy;
