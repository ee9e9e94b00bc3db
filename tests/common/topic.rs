//! Reading a topic back with a consumer nobody here wrote (kafka-python),
//! for the tests that check every value of every row.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::Value as Json;

use super::broker::{Broker, Msg};
use super::{python_check, tempdir};

/// Reads `topic` with kafka-python until `done` holds (or `limit` passed:
/// then returns what there is): the tests that check every value of every
/// row read with a consumer nobody here wrote, apart from librdkafka.
pub async fn read_until(
    broker: &Broker,
    topic: &str,
    limit: Duration,
    done: impl Fn(&[Msg]) -> bool,
) -> Vec<Msg> {
    let deadline = Instant::now() + limit;
    loop {
        let msgs = blocking(|| read_all_with_kafka_python(broker, topic));
        if done(&msgs) || Instant::now() > deadline {
            return msgs;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Everything on `topic` (partition 0) up to its current high watermark,
/// read by kafka-python.
pub fn read_all_with_kafka_python(broker: &Broker, topic: &str) -> Vec<Msg> {
    let wm: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()
        .unwrap();
    let (_, high) = wm
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap();
    let out = tempdir().join("kafka-python.jsonl");
    python_check(
        "kafka_consume.py",
        &[
            &broker.addr(),
            topic,
            &high.to_string(),
            &out.display().to_string(),
        ],
        String::new,
    );
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            let j: Json = serde_json::from_str(l).unwrap();
            let opt = |v: &Json| (!v.is_null()).then(|| v.clone());
            Msg {
                key: opt(&j["key"]),
                value: opt(&j["value"]),
            }
        })
        .collect()
}

pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}
