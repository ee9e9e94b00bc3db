//! Debezium's MariaDB connector under Kafka Connect standalone, reading the
//! private MariaDB and writing to a private Apache Kafka: the jars of
//! `tests/jvm/kafka` (Connect) and `tests/jvm/debezium` (the connector) on
//! one classpath, offsets in a file of its own temp dir. Like the other
//! engines it runs under a watchdog, is killed on drop, and a worker that
//! cannot start panics with its log.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::broker::Broker;
use super::jvm;
use super::{free_port, tempdir, MariaDb};

/// One connector's settings.
pub struct Connector {
    /// Debezium's `topic.prefix`: table topics are `<prefix>.<db>.<table>`,
    /// schema changes go to `<prefix>`.
    pub prefix: String,
    /// `database.include.list`.
    pub databases: String,
    /// The JSON converter's `schemas.enable` for keys and values.
    pub schemas: bool,
    /// More `key=value` lines for the connector.
    pub extra: String,
}

pub struct Debezium {
    dir: PathBuf,
}

impl Debezium {
    /// Starts a Connect worker running `connectors` and waits until each
    /// one's snapshot finished and it streams.
    pub fn start(db: &MariaDb, broker: &Broker, connectors: &[Connector]) -> Debezium {
        let dir = tempdir();
        let worker = dir.join("worker.properties");
        std::fs::write(
            &worker,
            format!(
                "bootstrap.servers={}\n\
                 key.converter=org.apache.kafka.connect.json.JsonConverter\n\
                 value.converter=org.apache.kafka.connect.json.JsonConverter\n\
                 offset.storage.file.filename={}\noffset.flush.interval.ms=500\n\
                 listeners=http://127.0.0.1:{}\nplugin.discovery=only_scan\n",
                broker.addr(),
                dir.join("offsets").display(),
                free_port()
            ),
        )
        .unwrap();
        let mut files = vec![worker];
        for (i, c) in connectors.iter().enumerate() {
            let f = dir.join(format!("connector{i}.properties"));
            std::fs::write(&f, connector_properties(db, broker, c)).unwrap();
            files.push(f);
        }
        let log = dir.join("connect.log");
        let pidfile = dir.join("connect.pid");
        let mut cmd = jvm::test_jvm_flags(768);
        cmd.push("-Dorg.slf4j.simpleLogger.defaultLogLevel=info".into());
        cmd.extend([
            "-cp".into(),
            format!("{}:{}", jvm::classpath("kafka"), jvm::classpath("debezium")),
            "org.apache.kafka.connect.cli.ConnectStandalone".into(),
        ]);
        cmd.extend(files.iter().map(|f| f.display().to_string()));
        jvm::spawn(&cmd, &log, &pidfile, "Kafka Connect");
        let d = Debezium { dir };
        // Debezium logs this once per connector when streaming begins.
        let start = Instant::now();
        loop {
            let text = d.log_text();
            if text.matches("Starting streaming").count() >= connectors.len() {
                break;
            }
            if start.elapsed() > Duration::from_secs(120) || jvm::exited(&pidfile) {
                panic!(
                    "Debezium did not start streaming (log {}):\n{}",
                    log.display(),
                    super::tail(&text, 80)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("connect.log")).unwrap_or_default()
    }
}

impl Drop for Debezium {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- Kafka Connect, last log lines:\n{}",
                super::tail(&self.log_text(), 40)
            );
        }
        jvm::kill(&self.dir.join("connect.pid"));
    }
}

/// A replica server id no other connector of this process uses (two
/// replicas with one id make MariaDB drop the older one's binlog dump).
fn next_server_id() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(5000);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn connector_properties(db: &MariaDb, broker: &Broker, c: &Connector) -> String {
    let schemas = c.schemas;
    format!(
        "name={prefix}\n\
         connector.class=io.debezium.connector.mariadb.MariaDbConnector\ntasks.max=1\n\
         database.hostname=127.0.0.1\ndatabase.port={port}\n\
         database.user=root\ndatabase.password=\n\
         database.server.id={server_id}\n\
         topic.prefix={prefix}\ndatabase.include.list={dbs}\n\
         schema.history.internal.kafka.bootstrap.servers={brokers}\n\
         schema.history.internal.kafka.topic={prefix}.history\n\
         include.schema.changes=true\nskipped.operations=none\n\
         topic.creation.default.replication.factor=1\n\
         topic.creation.default.partitions=1\n\
         key.converter=org.apache.kafka.connect.json.JsonConverter\n\
         value.converter=org.apache.kafka.connect.json.JsonConverter\n\
         key.converter.schemas.enable={schemas}\nvalue.converter.schemas.enable={schemas}\n\
         {extra}\n",
        prefix = c.prefix,
        port = db.port,
        server_id = next_server_id(),
        dbs = c.databases,
        brokers = broker.addr(),
        extra = c.extra,
    )
}
