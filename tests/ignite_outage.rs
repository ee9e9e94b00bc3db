//! The cross-proxy bound across shared-tier outages: a write acknowledged
//! through one proxy is not served old by another proxy more than
//! `max_lag` after its OK, while Ignite is down and just after it is back.
//! Both tests reproduce what the chaos test (`tests/chaos.rs`) found in CI
//! and in a 10-minute run: 134 and 423 reads past `max_lag`.
//! Real MariaDB, Kafka and Ignite; clients are mysql_async.

mod common;

use std::time::{Duration, Instant};

use common::broker::Broker;
use common::ignite::{proxy_section, rows_table, Ignite};
use common::relay::Relay;
use common::sqlcache::*;
use common::*;
use mysql_async::prelude::*;
use mysql_async::Conn as MyConn;

const MAX_LAG: Duration = Duration::from_millis(1000);

fn ignite_section(addr: &str) -> String {
    proxy_section(&[addr.to_owned()], "events", MAX_LAG)
}

async fn wait_status(c: &mut MyConn, key: &str, want: &str, what: &'static str) {
    let d = Deadline::new(Duration::from_secs(30), what);
    while status(c, key).await != want {
        d.tick().await;
    }
}

/// B serves row 1 from its L1; then what B reads more than `max_lag` after
/// A's OK for `UPDATE … v = 'new'` must be the new row.
async fn read_after_bound(cb: &mut MyConn, t: &str, acked: Instant) {
    tokio::time::sleep((MAX_LAG + Duration::from_millis(300)).saturating_sub(acked.elapsed()))
        .await;
    let got = value(cb, t, 1).await;
    let route = last(cb).await;
    assert_eq!(
        got.as_deref(),
        Some("new"),
        "B served the old row {:?} after A's OK (route {route})",
        acked.elapsed()
    );
}

/// Ignite dies; the change feed stays healthy (its broker is up, nothing
/// unread) but carries nothing yet of A's write (its publisher is slow or
/// down). The feed's bound runs from when a change is on Kafka, so it must
/// not vouch for B's L1 in place of the subscription that died with Ignite.
#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_feed_does_not_stand_in_for_the_dead_subscription() {
    let db = mariadb();
    rows_table("io1", 5);
    let broker = Broker::start();
    broker.create_topic("io1_quiet", 1);
    let ignite = Ignite::start();
    let feed = format!(
        "[invalidation.kafka]\nbrokers = \"{}\"\ntopics = [\"io1_quiet\"]\nformat = \"debezium\"\n\
         max_staleness = \"2s\"\n{}",
        broker.addr(),
        ignite_section(&ignite.addr())
    );
    let a = Proxy::start_with(db.port, "", &feed, "");
    let b = Proxy::start_with(db.port, "", &feed, "");
    let mut ca = MyConn::new(opts(a.port, "test")).await.unwrap();
    let mut cb = MyConn::new(opts(b.port, "test")).await.unwrap();
    for c in [&mut ca, &mut cb] {
        wait_fresh(c).await;
        wait_status(c, "l2_l1_trusted", "true", "subscription proven").await;
    }
    assert_eq!(warm(&mut cb, "io1", 1).await.as_deref(), Some("0"));

    ignite.kill(0);
    wait_status(&mut cb, "l2_l1_trusted", "false", "B's subscription lost").await;
    assert_eq!(
        status(&mut cb, "feed_fresh").await,
        "true",
        "the feed is healthy"
    );
    ca.query_drop("UPDATE io1 SET v = 'new' WHERE id = 1")
        .await
        .unwrap();
    read_after_bound(&mut cb, "io1", Instant::now()).await;
    drop((a, b, broker));
}

/// A loses Ignite (a partition: its relay is cut) long enough to back off,
/// and learns of it by a write; Ignite itself stays up for B. Then the
/// partition heals and A writes row 1 at once: A must deliver that write's
/// invalidation before the OK, not wait for its recovery back-off while B
/// serves the old row from L1 and L2.
#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_back_from_a_partition_delivers_before_its_ok() {
    let db = mariadb();
    rows_table("io2", 5);
    let ignite = Ignite::start();
    let relay = Relay::start(ignite.addr()).await;
    let a = Proxy::start_with(
        db.port,
        "",
        &ignite_section(&format!("127.0.0.1:{}", relay.port)),
        "",
    );
    let b = Proxy::start_with(db.port, "", &ignite_section(&ignite.addr()), "");
    let mut ca = MyConn::new(opts(a.port, "test")).await.unwrap();
    let mut cb = MyConn::new(opts(b.port, "test")).await.unwrap();
    for c in [&mut ca, &mut cb] {
        wait_status(c, "l2_up", "true", "shared tier up").await;
        wait_status(c, "l2_l1_trusted", "true", "subscription proven").await;
    }
    assert_eq!(warm(&mut cb, "io2", 1).await.as_deref(), Some("0"));

    relay.set_cut(true);
    // The relay drops open connections within its 20 ms poll.
    tokio::time::sleep(Duration::from_millis(200)).await;
    ca.query_drop("UPDATE io2 SET v = 'cut' WHERE id = 2")
        .await
        .unwrap();
    assert_eq!(
        status(&mut ca, "l2_up").await,
        "false",
        "A knows it is cut off"
    );
    // Long enough for every back-off to reach its ceiling.
    tokio::time::sleep(Duration::from_secs(10)).await;
    relay.set_cut(false);
    ca.query_drop("UPDATE io2 SET v = 'new' WHERE id = 1")
        .await
        .unwrap();
    let acked = Instant::now();
    read_after_bound(&mut cb, "io2", acked).await;
    // What A parked while cut off follows with its recovery.
    wait_status(&mut ca, "l2_up", "true", "A recovered").await;
    assert_eq!(value(&mut cb, "io2", 2).await.as_deref(), Some("cut"));
    drop((a, b));
}
