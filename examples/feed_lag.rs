//! Invalidation lag of the Kafka change feed, for `bench/feed_lag.sh`.
//!
//! For each of N writes: warm the row's cache entry through the proxy (a
//! hit), UPDATE it directly on MariaDB, publish the Debezium event and wait
//! for the broker's acknowledgement, then read through the proxy until the
//! new value shows. Lag = commit acknowledged → first read of the new value
//! (publish time included: a real publisher pays it too). Prints p50/p99/max.
//! The bench's broker is Apache Kafka, which answers a fetch as soon as data
//! arrives (`fetch.wait.max.ms` only bounds an idle wait).

use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

fn arg(name: &str) -> String {
    let mut it = std::env::args();
    while let Some(a) = it.next() {
        if a == name {
            return it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        }
    }
    panic!("missing {name}")
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proxy_port: u16 = arg("--proxy-port").parse()?;
    let db_port: u16 = arg("--db-port").parse()?;
    let brokers = arg("--brokers");
    let writes: usize = arg("--writes").parse()?;
    let topic = "srv.sbtest.lag";
    let url = |port| format!("mysql://root@127.0.0.1:{port}/sbtest");
    let mut direct = mysql_async::Conn::new(mysql_async::Opts::from_url(&url(db_port))?).await?;
    let mut via = mysql_async::Conn::new(mysql_async::Opts::from_url(&url(proxy_port))?).await?;
    direct
        .query_drop(
            "DROP TABLE IF EXISTS lag; CREATE TABLE lag (id INT PRIMARY KEY, v INT NOT NULL)",
        )
        .await?;
    let rows: Vec<String> = (1..=100).map(|i| format!("({i}, 0)")).collect();
    direct
        .query_drop(format!("INSERT INTO lag VALUES {}", rows.join(",")))
        .await?;
    // The bench broker creates no topic on first use.
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()?;
    let created = admin
        .create_topics(
            &[rdkafka::admin::NewTopic::new(
                topic,
                1,
                rdkafka::admin::TopicReplication::Fixed(1),
            )],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await?;
    for r in created {
        if let Err((t, e)) = r {
            if e != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                return Err(format!("create topic {t}: {e}").into());
            }
        }
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "0")
        .create()?;
    // The feed must be fresh before hits are served at all.
    let start = Instant::now();
    loop {
        let s: Vec<(String, String)> = via.query("SHOW SQLCACHE STATUS").await?;
        if s.iter().any(|(k, v)| k == "feed_fresh" && v == "true") {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err("the feed never became fresh".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut lags = Vec::with_capacity(writes);
    let mut acks = Vec::with_capacity(writes);
    let mut polls = 0u64;
    // Write 0 is a warm-up, not counted: the feed discovers the new topic
    // at its next metadata check (at most 1 s).
    for i in 0..=writes {
        let id = (i % 100 + 1) as i64;
        let new = i as i64 + 1;
        let read = "SELECT v FROM lag WHERE id = ?";
        let old: Option<i64> = via.exec_first(read, (id,)).await?;
        let _: Option<i64> = via.exec_first(read, (id,)).await?; // now a hit
        direct
            .exec_drop("UPDATE lag SET v = ? WHERE id = ?", (new, id))
            .await?;
        let committed = Instant::now();
        let key = serde_json::json!({ "id": id }).to_string();
        let value = serde_json::json!({
            "before": {"id": id, "v": old}, "after": {"id": id, "v": new},
            "source": {"connector": "mysql", "name": "srv", "db": "sbtest", "table": "lag",
                       "server_id": 1, "file": "binlog.000001", "pos": i, "row": 0, "snapshot": "false"},
            "op": "u", "ts_ms": 0
        })
        .to_string();
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
        let ack = committed.elapsed();
        loop {
            polls += 1;
            let v: Option<i64> = via.exec_first(read, (id,)).await?;
            if v == Some(new) {
                break;
            }
            if committed.elapsed() > Duration::from_secs(30) {
                return Err(format!("write {i} never became visible").into());
            }
        }
        if i > 0 {
            acks.push(ack);
            lags.push(committed.elapsed());
        }
    }
    lags.sort();
    acks.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "feed lag over {writes} writes (commit -> proxy stops serving the old value): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(pct(&lags, 0.50)),
        ms(pct(&lags, 0.99)),
        ms(*lags.last().unwrap())
    );
    println!(
        "  of which publish (commit -> broker ack): p50 {:.2} ms, p99 {:.2} ms; proxy reads while waiting: {:.1} per write",
        ms(pct(&acks, 0.50)),
        ms(pct(&acks, 0.99)),
        polls as f64 / (writes + 1) as f64
    );
    Ok(())
}
