//! The proxy's and the publisher's own surface: the admin HTTP endpoint
//! (`http.rs`: `/metrics`, `/health`, and the proxy's `/ready`, `ready.rs`), one Prometheus writer (`prom.rs`)
//! for `sqlcache` (`metrics.rs`) and `sqlcache cdc` (`cdc/metrics.rs`),
//! and the content of the proxy's own statements (`status.rs`: `SHOW
//! SQLCACHE STATUS | LAST | QUERIES | TABLES`; `insight.rs`: the per-shape
//! statistics QUERIES shows; `tables.rs`: TABLES' rows).

#[cfg(test)]
mod deploy_tests;
pub mod http;
pub mod insight;
pub mod metrics;
pub mod prom;
pub mod ready;
pub mod status;
pub mod tables;
