//! The proxy's `/health` (liveness) and `/ready` (readiness, with a line
//! per check) through a backend that goes away and comes back: a relay in
//! front of the private MariaDB carries both the proxy's connections and
//! its binlog feed, so cutting it takes the backend and the feed away.

mod common;

use std::time::Duration;

use common::relay::Relay;
use common::sqlcache::{http_get, Deadline};
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn ready_names_what_is_wrong_while_health_stays_up() {
    let db = mariadb();
    let relay = Relay::start(format!("127.0.0.1:{}", db.port)).await;
    let admin = free_port();
    let _proxy = Proxy::start_with(
        relay.port,
        "",
        &format!(
            "[invalidation.binlog]\nmax_staleness = \"1s\"\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n"
        ),
        "",
    );
    let get = |path: &str| tokio::task::block_in_place(|| http_get(admin, path));
    let d = Deadline::new(
        Duration::from_secs(20),
        "/ready once the feed proves the cache current",
    );
    while !get("/ready").starts_with("HTTP/1.0 200") {
        d.tick().await;
    }
    let ready = get("/ready");
    for line in [
        "\r\n\r\nready\n",
        "backend: ok: ",
        "feed: ok: gate open",
        "shared_tier: ok: not configured",
    ] {
        assert!(ready.contains(line), "{line:?} missing in {ready}");
    }

    relay.set_cut(true);
    let d = Deadline::new(
        Duration::from_secs(20),
        "/ready reports the backend and the feed gone",
    );
    loop {
        let r = get("/ready");
        if r.starts_with("HTTP/1.0 503")
            && r.contains("backend: FAIL")
            && r.contains("feed: FAIL: gate closed")
        {
            assert!(r.contains("\r\n\r\nnot ready\n"), "{r}");
            break;
        }
        d.tick().await;
    }
    let health = get("/health");
    assert!(
        health.starts_with("HTTP/1.0 200"),
        "liveness is not readiness: {health}"
    );

    relay.set_cut(false);
    let d = Deadline::new(Duration::from_secs(30), "/ready again once MariaDB is back");
    while !get("/ready").starts_with("HTTP/1.0 200") {
        d.tick().await;
    }
    assert!(get("/nothing").starts_with("HTTP/1.0 404"));
}
