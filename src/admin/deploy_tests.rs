//! The deployment files (`deploy/`, `docker-compose.yml`) stay true to the
//! code: the Grafana dashboard names only metric families the proxy (with
//! a shared tier) and `sqlcache cdc` export, its cdc job is the one the
//! Prometheus example scrapes, and the compose stack's config files
//! validate. (Docker cannot run here; `docker-compose config` was checked
//! by hand, see the README.)

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::l2::mem::{Link, MemKv};
use crate::cache::l2::{Coherence, L2Config, L2};
use crate::cache::Cache;
use crate::config::{CacheConfig, Config};

const DASHBOARD: &str = include_str!("../../deploy/grafana/sqlcache.json");
const PROMETHEUS: &str = include_str!("../../deploy/prometheus.yml");

/// Families exported only in some states (a feed's proof age appears once
/// a feed is configured and has proved itself).
const CONDITIONAL: [&str; 1] = ["sqlcache_feed_proof_age_seconds"];

/// The text of every family the proxy (with a shared tier) and cdc export.
async fn exported() -> String {
    let l2 = L2::new(
        Arc::new(Link::new(Arc::new(MemKv::default()))),
        L2Config {
            timeout: Duration::from_millis(50),
            write_timeout: Duration::from_millis(200),
            ttl: None,
            coherence: Coherence::Strict,
        },
    );
    let cache = Cache::with_l2(CacheConfig::default(), Some(l2));
    crate::admin::metrics::prometheus(&cache, Default::default())
        + &crate::cdc::metrics::Metrics::default().prometheus()
}

/// Every `sqlcache_*` name in the dashboard's queries.
fn dashboard_metrics() -> BTreeSet<String> {
    let d: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard is JSON");
    let re = regex::Regex::new(r"sqlcache_[a-z0-9_]+").unwrap();
    let mut names = BTreeSet::new();
    let panels = d["panels"].as_array().expect("panels");
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("a target has an expr");
            names.extend(re.find_iter(expr).map(|m| m.as_str().to_string()));
        }
    }
    names
}

#[tokio::test]
async fn the_dashboard_reads_only_exported_families() {
    let text = exported().await;
    let names = dashboard_metrics();
    assert!(names.len() > 20, "{names:?}");
    for n in &names {
        let found = text.lines().any(|l| {
            l.strip_prefix(n.as_str())
                .is_some_and(|r| r.starts_with(['{', ' ']))
        });
        assert!(
            found || CONDITIONAL.contains(&n.as_str()),
            "{n} is not exported"
        );
    }
}

#[test]
fn the_dashboard_cdc_job_is_the_one_prometheus_scrapes() {
    let d: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    let vars = d["templating"]["list"].as_array().unwrap();
    let job = vars
        .iter()
        .find(|v| v["name"] == "cdc_job")
        .and_then(|v| v["query"].as_str())
        .unwrap();
    assert!(PROMETHEUS.contains(&format!("job_name: {job}\n")));
    assert!(PROMETHEUS.contains("job_name: sqlcache\n"));
}

#[test]
fn the_compose_stack_configs_validate() {
    for (name, text) in [
        (
            "proxy.toml",
            include_str!("../../deploy/compose/proxy.toml"),
        ),
        ("cdc.toml", include_str!("../../deploy/compose/cdc.toml")),
    ] {
        let c = Config::parse(text, name).and_then(|c| c.validate(name));
        assert!(c.is_ok(), "{name}: {:?}", c.err());
    }
}
