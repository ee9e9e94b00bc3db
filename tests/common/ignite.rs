//! Ignite servers for the shared-tier tests:
//! * [`Ignite`]: real Apache Ignite 2.x server nodes (`tests/jvm/IgniteNode.java`
//!   on the jars `.ci/install-jvm` fetched), one or a cluster, on free
//!   loopback ports with loopback discovery, each under a watchdog that kills
//!   it when the test process ends; a node that cannot start panics with its
//!   log.
//! * [`Conformance`]: the pyignite-codec conformance server
//!   (`tests/py/ignite_server.py`) — NOT Apache Ignite: an in-memory store
//!   whose every frame is parsed and encoded by pyignite, Apache Ignite's
//!   Python thin client. Kept for what a real node cannot show: protocol
//!   versions older than the node's (1.4, 1.2) and a log of every parsed
//!   request. pyignite is installed by `.ci/run`.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::jvm;
use super::{free_port, tempdir};

/// Ignite's own start-up failure (apache/ignite#12621).
const IGNITE_12621: &str = "Failed to find completed exchange future to fetch affinity";
/// Starts of a node that hit #12621 before the rig gives up. Rare for a
/// quiet start (3 of ~120 here). Clients creating caches during the start
/// provoke it: four creating every 5 ms failed six starts in a row, every
/// 200 ms two in seven, handshakes alone none (so the proxy now creates
/// caches only on a node it has known for `pool::CREATE_SETTLE`).
const START_ATTEMPTS: u32 = 6;

/// How to start a cluster.
#[derive(Clone, Default)]
pub struct IgniteOpts {
    /// Server nodes (at least one).
    pub nodes: usize,
    /// Authentication on (the node's default user is `ignite`/`ignite`);
    /// Ignite 2 allows it only with persistence, so data survives restarts.
    pub auth: bool,
    /// TLS on the thin-client connector: a PKCS#12 key store and its password.
    pub tls: Option<(PathBuf, String)>,
    /// Configure this cache on every node with `backups = 1` and FULL_SYNC
    /// writes (the README's setting for the tokens cache on a cluster).
    pub tokens_cache: Option<String>,
}

/// One real Ignite server node.
pub struct IgniteNode {
    pub port: u16,
    disc: u16,
    comm: u16,
    dir: PathBuf,
}

/// A node killed by [`Ignite::kill_noted`]: the topology version each
/// other live node had logged before.
pub struct Loss {
    node: usize,
    live: Vec<(usize, u32)>,
    at: Instant,
}

/// Real Apache Ignite server nodes forming one cluster.
pub struct Ignite {
    pub nodes: Vec<IgniteNode>,
    opts: IgniteOpts,
    discs: String,
}

impl Ignite {
    /// One node, no authentication, no TLS.
    pub fn start() -> Ignite {
        Self::start_with(IgniteOpts {
            nodes: 1,
            ..Default::default()
        })
    }

    pub fn start_with(opts: IgniteOpts) -> Ignite {
        let nodes: Vec<IgniteNode> = (0..opts.nodes.max(1))
            .map(|_| IgniteNode {
                port: free_port(),
                disc: free_port(),
                comm: free_port(),
                dir: tempdir(),
            })
            .collect();
        let discs = nodes
            .iter()
            .map(|n| n.disc.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let ignite = Ignite { nodes, opts, discs };
        // Nodes join concurrently: each start waits for the others' discovery.
        std::thread::scope(|s| {
            for i in 0..ignite.nodes.len() {
                let ig = &ignite;
                s.spawn(move || ig.launch(i));
            }
        });
        ignite
    }

    fn launch(&self, i: usize) {
        let n = &self.nodes[i];
        let log = n.dir.join("ignite.log");
        let pidfile = n.dir.join("ignite.pid");
        let _ = std::fs::remove_file(&log);
        let mut args = vec![
            format!("client={}", n.port),
            format!("disc={}", n.disc),
            format!("discs={}", self.discs),
            format!("comm={}", n.comm),
            format!("work={}", n.dir.join("work").display()),
            format!("nodes={}", self.nodes.len()),
        ];
        if self.opts.auth {
            args.push("auth=1".into());
        }
        if let Some(name) = &self.opts.tokens_cache {
            args.push(format!("tokens={name}"));
        }
        if let Some((store, pass)) = &self.opts.tls {
            args.push(format!("tls={}:{pass}", store.display()));
        }
        let mut cmd = jvm::test_jvm_flags(512);
        cmd.push(format!("@{}", jvm::source("ignite.jvmopts")));
        cmd.extend(["-cp".into(), jvm::classpath("ignite")]);
        cmd.push(jvm::source("IgniteNode.java"));
        cmd.extend(args);
        // Ignite 2.17 and 2.18 sometimes abort a node's own start with
        // "Failed to find completed exchange future to fetch affinity"
        // (apache/ignite#12621, open; see START_ATTEMPTS). That failure,
        // and only that, is started again; the failed log is kept beside
        // the new one.
        for attempt in 1.. {
            jvm::spawn(&cmd, &log, &pidfile, "Apache Ignite");
            let Err(why) = jvm::try_wait_log(&log, &pidfile, "IGNITE-READY", "Apache Ignite node")
            else {
                return;
            };
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if attempt == START_ATTEMPTS || !text.contains(IGNITE_12621) || !jvm::exited(&pidfile) {
                panic!("{why}");
            }
            eprintln!("Ignite node {i} hit apache/ignite#12621 at start; starting it again");
            let _ = std::fs::rename(&log, n.dir.join(format!("ignite.log.failed-{attempt}")));
        }
    }

    /// The first node's thin-client address.
    pub fn addr(&self) -> String {
        self.node_addr(0)
    }

    pub fn node_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].port)
    }

    /// Every node's thin-client address.
    pub fn addrs(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.node_addr(i)).collect()
    }

    /// `kill -9` of node `i`.
    pub fn kill(&self, i: usize) {
        let n = &self.nodes[i];
        jvm::kill(&n.dir.join("ignite.pid"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", n.port)).is_ok() {
            assert!(Instant::now() < deadline, "Ignite node did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9` of node `i`, noting what the other live nodes last
    /// reported, for [`Ignite::wait_loss`].
    pub fn kill_noted(&self, i: usize) -> Loss {
        let live = (0..self.nodes.len())
            .filter(|&j| j != i && !jvm::exited(&self.nodes[j].dir.join("ignite.pid")))
            .map(|j| (j, self.topology(j).0))
            .collect();
        let at = Instant::now();
        self.kill(i);
        Loss { node: i, live, at }
    }

    /// Waits until every other live node has processed the loss (logged a
    /// newer topology of one server fewer) and returns how long after the
    /// kill that was. The proxies' recovery is timed from there: how fast
    /// a cluster notices a dead node is Ignite's failure detection, not the
    /// proxy's (3 s configured here; longer when a node's discovery thread
    /// is held up sending to the dead node, as seen under load).
    pub fn wait_loss(&self, loss: &Loss) -> Duration {
        let deadline = loss.at + Duration::from_secs(90);
        for &(j, ver) in &loss.live {
            while !matches!(self.topology(j), (v, n) if v > ver && n == loss.live.len()) {
                if Instant::now() > deadline {
                    let log = std::fs::read_to_string(self.nodes[j].dir.join("ignite.log"));
                    panic!(
                        "Ignite node {j} did not report losing node {} within {:?}; log:\n{}",
                        loss.node,
                        loss.at.elapsed(),
                        super::tail(&log.unwrap_or_default(), 60)
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        loss.at.elapsed()
    }

    /// The newest topology node `i` logged: (version, servers).
    fn topology(&self, i: usize) -> (u32, usize) {
        let log = std::fs::read_to_string(self.nodes[i].dir.join("ignite.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| {
                let rest = l.split("Topology snapshot [ver=").nth(1)?;
                let ver = rest.split(',').next()?.parse().ok()?;
                let servers = rest
                    .split("servers=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                Some((ver, servers))
            })
            .max_by_key(|&(v, _)| v)
            .unwrap_or((0, 0))
    }

    /// Starts node `i` again on its ports; without persistence it comes
    /// back empty (as a whole cluster does when all its nodes restart).
    pub fn restart(&self, i: usize) {
        if !self.opts.auth {
            let _ = std::fs::remove_dir_all(self.nodes[i].dir.join("work"));
        }
        self.launch(i);
    }
}

impl Drop for Ignite {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

pub struct Conformance {
    pub port: u16,
    pub log: PathBuf,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Conformance {
    pub fn start(args: &[&str]) -> Conformance {
        let mut c = Conformance {
            port: free_port(),
            dir: tempdir(),
            log: PathBuf::new(),
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        c.log = c.dir.join("requests.jsonl");
        c.spawn();
        c
    }

    fn spawn(&mut self) {
        let port_file = self.dir.join(format!("port.{}", self.port));
        let _ = std::fs::remove_file(&port_file);
        let script = format!("{}/tests/py/ignite_server.py", env!("CARGO_MANIFEST_DIR"));
        let child = Command::new("python3")
            .arg(script)
            .arg(&port_file)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--log")
            .arg(&self.log)
            .args(&self.args)
            .stderr(std::fs::File::create(self.dir.join("server.err")).unwrap())
            .spawn()
            .expect("python3 for the conformance server");
        self.child = Some(child);
        let t = Instant::now();
        while !port_file.exists() {
            if t.elapsed() > Duration::from_secs(20) || self.exited() {
                panic!(
                    "conformance server did not start (pyignite installed? .ci/run does): {}",
                    std::fs::read_to_string(self.dir.join("server.err")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| !matches!(c.try_wait(), Ok(None)))
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A new, empty server on the same port (a restarted cluster).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Every request the server parsed, as logged.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("log line"))
            .collect()
    }

    /// Panics if pyignite failed to parse any frame.
    pub fn assert_all_parsed(&self) {
        let errors: Vec<_> = self
            .requests()
            .into_iter()
            .filter(|r| r.get("error").is_some())
            .collect();
        assert!(errors.is_empty(), "pyignite could not parse: {errors:?}");
    }
}

impl Drop for Conformance {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- conformance server stderr:\n{}",
                std::fs::read_to_string(self.dir.join("server.err")).unwrap_or_default()
            );
        }
        self.stop();
    }
}

/// The `[cache.ignite]` section of a proxy sharing `addrs` in coherence
/// `mode`, with the fleet tests' timings (300 ms reads, 1 s writes, 100 ms
/// heartbeat) and `max_lag`.
pub fn proxy_section(addrs: &[String], mode: &str, max_lag: Duration) -> String {
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "\n[cache.ignite]\nenabled = true\naddresses = [{}]\ntimeout = \"300ms\"\nwrite_timeout = \"1s\"\n\
         coherence = \"{mode}\"\nmax_lag = \"{}ms\"\nheartbeat = \"100ms\"\n",
        list.join(", "),
        max_lag.as_millis()
    )
}

/// `test.{name}` made anew: `rows` rows of (id, v = '0') on the shared MariaDB.
pub fn rows_table(name: &str, rows: u32) {
    super::mariadb().sql_socket(&format!(
        "DROP TABLE IF EXISTS test.{name}; CREATE TABLE test.{name} (id INT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO test.{name} SELECT seq, '0' FROM test.seq_1_to_{rows};"
    ));
}
