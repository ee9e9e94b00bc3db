//! A private Apache Kafka per test: one KRaft process (broker and
//! controller combined) on free loopback ports, storage formatted afresh at
//! every start, heap bounded. Its jars come from `.ci/install-jvm`
//! (`tests/jvm/kafka/pom.xml` pins the version). Like the MariaDB rig, a
//! watchdog shell kills it when the test process ends; a test that cannot
//! start it panics with the broker's log.
//!
//! Topics are not created on first use (`auto.create.topics.enable=false`,
//! as production clusters are usually run): tests create theirs through the
//! admin API, `sqlcache cdc` creates its own, Debezium's Connect worker
//! through `topic.creation`. `stop` is `kill -9`; `restart` starts it again
//! on the same ports with *empty* storage — how tests make a feed lose
//! continuity.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value as Json;

use super::jvm;
use super::{free_port, tempdir};

pub struct Broker {
    pub port: u16,
    /// The address clients are told to use after bootstrapping: `port`
    /// itself, or a relay in front of it.
    advertised: u16,
    controller: u16,
    dir: PathBuf,
    producer: Option<BaseProducer>,
}

impl Broker {
    pub fn start() -> Broker {
        let port = free_port();
        Self::start_advertising(port, port)
    }

    /// A broker on `port` that tells clients to reach it at `advertised`
    /// (a `relay::Relay` to `port`): every client, bootstrapped from either
    /// address, then talks to it only through the relay.
    pub fn start_advertising(port: u16, advertised: u16) -> Broker {
        let mut b = Broker {
            port,
            advertised,
            controller: free_port(),
            dir: tempdir(),
            producer: None,
        };
        b.launch(true);
        b
    }

    fn properties(&self) -> String {
        let (port, ctl, adv) = (self.port, self.controller, self.advertised);
        format!(
            "process.roles=broker,controller\nnode.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{ctl}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctl}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{adv}\n\
             controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             log.dirs={}\n\
             auto.create.topics.enable=false\nnum.partitions=1\n\
             offsets.topic.replication.factor=1\noffsets.topic.num.partitions=1\n\
             transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n\
             transaction.state.log.num.partitions=1\n\
             share.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\n\
             share.coordinator.state.topic.num.partitions=1\n\
             group.initial.rebalance.delay.ms=0\n",
            self.dir.join("data").display()
        )
    }

    /// Starts the process: on freshly formatted, empty storage or (not
    /// `fresh`) on what it had.
    fn launch(&mut self, fresh: bool) {
        let cp = jvm::classpath("kafka");
        let props = self.dir.join("server.properties");
        let log = self.dir.join("kafka.log");
        if !fresh {
            return self.start_process(&cp, &props, &log);
        }
        std::fs::write(&props, self.properties()).unwrap();
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
        let _ = std::fs::remove_file(&log);
        let cluster_id = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
        };
        let format = Command::new(jvm::java())
            .args(jvm::test_jvm_flags(256))
            .arg("-cp")
            .arg(&cp)
            // `--cluster-id=`: a base64 id may start with '-', which as a
            // separate argument parses as an option (seen as a flaky start).
            .args(["kafka.tools.StorageTool", "format"])
            .arg(format!("--cluster-id={cluster_id}"))
            .arg("-c")
            .arg(&props)
            .output()
            .expect("java");
        assert!(
            format.status.success(),
            "kafka-storage format failed: {}{}",
            String::from_utf8_lossy(&format.stdout),
            String::from_utf8_lossy(&format.stderr)
        );
        self.start_process(&cp, &props, &log);
    }

    fn start_process(&mut self, cp: &str, props: &std::path::Path, log: &std::path::Path) {
        let pidfile = self.dir.join("kafka.pid");
        let _ = std::fs::remove_file(log);
        let mut args = jvm::test_jvm_flags(512);
        args.extend(["-cp".into(), cp.to_string(), "kafka.Kafka".into()]);
        args.push(props.display().to_string());
        jvm::spawn(&args, log, &pidfile, "Apache Kafka");
        jvm::wait_log(log, &pidfile, "Kafka Server started", "Apache Kafka");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (`kill -9`).
    pub fn stop(&mut self) {
        self.producer = None;
        jvm::kill(&self.dir.join("kafka.pid"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "Kafka did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the broker again on the same ports, with empty storage.
    pub fn restart(&mut self) {
        self.launch(true);
    }

    /// Starts the broker again on the same ports with the data it had
    /// (after `stop`, a `kill -9`).
    pub fn resume(&mut self) {
        self.launch(false);
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        let addr = self.addr();
        let name = name.to_string();
        // Its own thread and runtime: callers may be inside a runtime.
        std::thread::spawn(move || {
            let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                .set("bootstrap.servers", addr)
                .create()
                .expect("admin client");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let topic = NewTopic::new(&name, partitions, TopicReplication::Fixed(1));
            let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
            let r = rt
                .block_on(admin.create_topics(&[topic], &opts))
                .expect("create_topics");
            for t in r {
                t.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
            }
        })
        .join()
        .expect("topic created");
    }

    /// Publishes one message and waits for the broker's acknowledgement.
    pub fn send(&mut self, topic: &str, key: Option<&str>, value: Option<&str>) {
        let addr = self.addr();
        let p = self.producer.get_or_insert_with(|| {
            ClientConfig::new()
                .set("bootstrap.servers", addr)
                .set("linger.ms", "0")
                .create()
                .expect("producer")
        });
        let mut rec: BaseRecord<'_, str, str> = BaseRecord::to(topic);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        p.send(rec).map_err(|(e, _)| e).expect("send");
        p.flush(Duration::from_secs(10))
            .expect("broker acknowledged");
    }
}

impl Drop for Broker {
    /// The JVM goes at once, not when the test process ends: later tests
    /// of the binary get the cores back.
    fn drop(&mut self) {
        self.stop();
    }
}

/// One Kafka message, key and value parsed as JSON (`None`: null).
#[derive(Debug, Clone)]
pub struct Msg {
    pub key: Option<Json>,
    pub value: Option<Json>,
}

impl Msg {
    pub fn op(&self) -> Option<&str> {
        self.value.as_ref()?.get("op")?.as_str()
    }
    pub fn after(&self) -> &Json {
        &self.value.as_ref().unwrap()["after"]
    }
    pub fn before(&self) -> &Json {
        &self.value.as_ref().unwrap()["before"]
    }
}

/// Reads `topic` (partition 0) from the beginning until `done` holds for
/// what arrived; panics after `limit`.
pub fn consume_until(
    broker: &Broker,
    topic: &str,
    limit: Duration,
    done: impl Fn(&[Msg]) -> bool,
) -> Vec<Msg> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("group.id", format!("t-{}", free_port()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let start = Instant::now();
    loop {
        if done(&got) {
            return got;
        }
        assert!(
            start.elapsed() < limit,
            "{topic}: condition not met within {limit:?}; {} messages: {:#?}",
            got.len(),
            got.iter().rev().take(5).collect::<Vec<_>>()
        );
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.unwrap_or_else(|e| panic!("consume {topic}: {e}"));
            let parse = |b: Option<&[u8]>| b.map(|b| serde_json::from_slice(b).unwrap());
            got.push(Msg {
                key: parse(m.key()),
                value: parse(m.payload()),
            });
        }
    }
}
