//! A private Kafka-protocol broker per test: tansu in memory mode.
//!
//! tansu is installed by `.ci/install-tansu` into `.tools/bin/tansu` (or
//! named by `SQLCACHE_TANSU`). Like the MariaDB rig, a watchdog shell kills
//! it when the test process ends; a test that cannot start it panics.
//! tansu does not create topics on first use, so tests create them through
//! the Kafka admin API. Its memory storage forgets everything on restart —
//! which is also how tests make a feed lose continuity.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::{free_port, spawn_watched, tempdir, wait_port};

pub struct Broker {
    pub port: u16,
    /// The address clients are told to use after bootstrapping: `port`
    /// itself, or a relay in front of it.
    advertised: u16,
    dir: PathBuf,
    producer: Option<BaseProducer>,
}

fn tansu() -> PathBuf {
    if let Ok(p) = std::env::var("SQLCACHE_TANSU") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/tansu");
    assert!(
        p.is_file(),
        "tansu (the Kafka-protocol broker) is not installed at {}: run .ci/install-tansu",
        p.display()
    );
    p
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
            dir: tempdir(),
            producer: None,
        };
        b.launch();
        b
    }

    fn launch(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised);
        let log = self.dir.join("tansu.log");
        let pidfile = self.dir.join("tansu.pid");
        spawn_watched(
            &format!(
                "'{}' broker --storage-engine memory://tansu/ --listener-url {url} --advertised-listener-url {advertised} >>'{}' 2>&1",
                tansu().display(),
                log.display()
            ),
            &format!("echo $pid > '{}'", pidfile.display()),
            "",
            "tansu",
        );
        wait_port(self.port, Duration::from_secs(20), "tansu", Some(&log));
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (its memory storage is lost).
    pub fn stop(&mut self) {
        self.producer = None;
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("tansu.pid")) {
            let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(std::time::Instant::now() < deadline, "tansu did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the broker again on the same port, empty.
    pub fn restart(&mut self) {
        self.launch();
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
            let r = rt
                .block_on(admin.create_topics(&[topic], &AdminOptions::new()))
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
