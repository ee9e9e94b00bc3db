//! The shared tier's Ignite thin-client protocol and its use by proxies,
//! against real Apache Ignite 2.18 server nodes (`common::ignite::Ignite`:
//! one node, a three-node cluster, a node with authentication, one with
//! TLS), plus two checks only something else can make:
//! * frames compared byte for byte with pyignite's encoding (Apache
//!   Ignite's own Python thin client), and
//! * protocol versions older than a real 2.18 node speaks (1.4, 1.2),
//!   against the pyignite-codec conformance server
//!   (`tests/py/ignite_server.py`, an in-memory store, NOT Ignite), whose
//!   request log also shows the expiry policy is left out before 1.6.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::sqlcache::cache::ignite::codec::{self, Request};
use ::sqlcache::cache::ignite::{
    tls_connector, Conn, Dial, IgniteError, IgniteKv, Target, CREATE_SETTLE,
};
use ::sqlcache::cache::l2::{Kv, Notice};
use bytes::Bytes;
use common::ignite::{Conformance, Ignite, IgniteOpts};
use common::relay::Relay;
use common::sqlcache::*;
use common::*;
use mysql_async::prelude::*;
use mysql_async::Conn as MyConn;

fn target(addr: &str) -> Target {
    Target {
        addresses: vec![addr.to_owned()],
        dial: Dial {
            timeout: Duration::from_secs(5),
            auth: None,
            tls: None,
        },
        cache_name: "sqlcache_entries".into(),
        tokens_cache_name: "sqlcache_tokens".into(),
        pool_size: 2,
    }
}

/// `connected`, the caches created first (the conformance server is not a
/// node that may still be starting).
async fn created(t: Target) -> IgniteKv {
    IgniteKv::probe(&t).await.unwrap();
    connected(t).await
}

/// A store whose ping answers: connected, and both caches there (a
/// fresh node's are created by the ping once it has settled).
async fn connected(t: Target) -> IgniteKv {
    let kv = IgniteKv::new(t);
    let start = Instant::now();
    while !kv.is_connected() || kv.ping().await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kv
}

#[test]
fn pyignite_encodes_our_frames_byte_for_byte() {
    let out = std::process::Command::new("python3")
        .arg(format!(
            "{}/tests/py/ignite_vectors.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg("42")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "ignite_vectors.py (pyignite installed? .ci/run does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: BTreeMap<String, String> = serde_json::from_slice(&out.stdout).unwrap();
    let ours: BTreeMap<String, String> = sample_frames(42)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), hex(&v[..])))
        .collect();
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    for (name, hex) in &theirs {
        assert_eq!(&ours[name], hex, "frame {name} differs from pyignite's");
    }
}

/// Byte-exact frames of every request the proxy sends (request id `id`),
/// named as `tests/py/ignite_vectors.py` names pyignite's.
fn sample_frames(id: i64) -> Vec<(&'static str, Bytes)> {
    let mut v = vec![
        (
            "handshake_1_7_0",
            codec::handshake(codec::Version(1, 7, 0), None),
        ),
        (
            "handshake_1_7_0_auth",
            codec::handshake(codec::Version(1, 7, 0), Some(("ignite", "secret"))),
        ),
        (
            "get_or_create",
            Request::new(codec::OP_CACHE_GET_OR_CREATE_WITH_NAME)
                .string("sqlcache_entries")
                .finish(id),
        ),
        (
            "get",
            Request::cache(
                codec::OP_CACHE_GET,
                codec::java_hash("sqlcache_entries"),
                None,
            )
            .bytes(b"key\x00\xff")
            .finish(id),
        ),
        (
            "get_all",
            Request::cache(
                codec::OP_CACHE_GET_ALL,
                codec::java_hash("sqlcache_tokens"),
                None,
            )
            .longs(&[5, 1 << 40, -1])
            .finish(id),
        ),
        (
            "put_expiry",
            Request::cache(
                codec::OP_CACHE_PUT,
                codec::java_hash("sqlcache_entries"),
                Some(codec::Expiry { create_ms: 60_000 }),
            )
            .bytes(b"k")
            .bytes(b"value")
            .finish(id),
        ),
        (
            "get_and_put_if_absent",
            Request::cache(
                codec::OP_CACHE_GET_AND_PUT_IF_ABSENT,
                codec::java_hash("sqlcache_tokens"),
                None,
            )
            .long(7)
            .long(-42)
            .finish(id),
        ),
    ];
    v.extend(batch_frames(id));
    v
}

/// The rest of `sample_frames`: batch writes, removals, clear.
fn batch_frames(id: i64) -> Vec<(&'static str, Bytes)> {
    let mut v = Vec::new();
    let mut put_all = Request::cache(
        codec::OP_CACHE_PUT_ALL,
        codec::java_hash("sqlcache_tokens"),
        None,
    )
    .int(2);
    for (k, t) in [(1i64, 2i64), (-1, i64::MIN)] {
        put_all = put_all.long(k).long(t);
    }
    v.push(("put_all", put_all.finish(id)));
    v.push((
        "remove_keys",
        Request::cache(
            codec::OP_CACHE_REMOVE_KEYS,
            codec::java_hash("sqlcache_tokens"),
            None,
        )
        .longs(&[3, 4])
        .finish(id),
    ));
    v.push((
        "remove_key",
        Request::cache(
            codec::OP_CACHE_REMOVE_KEY,
            codec::java_hash("sqlcache_entries"),
            None,
        )
        .bytes(b"k")
        .finish(id),
    ));
    v.push((
        "clear",
        Request::cache(
            codec::OP_CACHE_CLEAR,
            codec::java_hash("sqlcache_entries"),
            None,
        )
        .finish(id),
    ));
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_round_trips_on_a_real_node() {
    let ignite = Ignite::start();
    let t = Instant::now();
    let kv = connected(target(&ignite.addr())).await;
    // A fresh node has no caches: they are created only once the node has
    // been known for CREATE_SETTLE (apache/ignite#12621).
    assert!(
        t.elapsed() >= CREATE_SETTLE,
        "created after {:?}",
        t.elapsed()
    );
    kv.ping().await.unwrap();
    let key = Bytes::from_static(b"select 1\x00\xff");
    assert_eq!(
        kv.read(key.clone(), vec![1, 2, -1]).await.unwrap(),
        (None, vec![None, None, None])
    );
    assert_eq!(
        kv.create_tokens(vec![(1, 11), (2, 22)]).await.unwrap(),
        vec![11, 22]
    );
    assert_eq!(
        kv.create_tokens(vec![(1, 99)]).await.unwrap(),
        vec![11],
        "kept"
    );
    kv.put_tokens(vec![(2, 33), (-1, i64::MIN)]).await.unwrap();
    let value = Bytes::from(vec![7u8; 70_000]);
    kv.put_entry(key.clone(), value.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        kv.read(key.clone(), vec![1, 2, -1, 3]).await.unwrap(),
        (Some(value), vec![Some(11), Some(33), Some(i64::MIN), None])
    );
    // The expiry policy travels with the put: the node drops the entry.
    let brief = Bytes::from_static(b"brief");
    kv.put_entry(brief.clone(), brief.clone(), Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        kv.read(brief, vec![]).await.unwrap().0,
        None,
        "expiry policy"
    );
    kv.remove_entry(&key).await.unwrap();
    kv.remove_tokens(&[1]).await.unwrap();
    assert_eq!(
        kv.read(key.clone(), vec![1, 2]).await.unwrap(),
        (None, vec![None, Some(33)])
    );
    kv.put_entry(key.clone(), key.clone(), Duration::from_secs(9))
        .await
        .unwrap();
    kv.clear_entries().await.unwrap();
    assert_eq!(kv.read(key, vec![]).await.unwrap().0, None);
    // Pipelining: many calls in flight on two connections.
    let kv = Arc::new(kv);
    let calls: Vec<_> = (0..200i64)
        .map(|i| {
            let kv = kv.clone();
            tokio::spawn(async move { kv.create_tokens(vec![(1000 + i, i)]).await.unwrap() })
        })
        .collect();
    for (i, c) in calls.into_iter().enumerate() {
        assert_eq!(c.await.unwrap(), vec![i as i64]);
    }
    // A subscription to the tokens sees every write, with its value, once
    // it is live: Ignite drops a new query's events until it has sent the
    // query's response, so a probe is written until it comes back (what
    // the proxy's first proof does before it trusts the subscription).
    let mut events = kv.watch().await.unwrap();
    let t = Instant::now();
    'live: loop {
        assert!(t.elapsed() < Duration::from_secs(10), "no probe came back");
        kv.put_tokens(vec![(6, 60)]).await.unwrap();
        while let Ok(Some(n)) =
            tokio::time::timeout(Duration::from_millis(100), events.recv()).await
        {
            if matches!(&n, Notice::Tokens(t) if t.contains(&(6, Some(60)))) {
                break 'live;
            }
        }
    }
    kv.put_tokens(vec![(7, 70), (8, 80)]).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("an event within 10 s")
            .expect("subscription alive");
        if let Notice::Tokens(t) = n {
            seen.extend(t);
        }
    }
    seen.sort();
    assert_eq!(seen, vec![(7, Some(70)), (8, Some(80))]);
    assert_eq!(kv.tokens(vec![7, 9]).await.unwrap(), vec![Some(70), None]);
    // Several addresses: a dead one first; the live one's connections serve.
    let mut t = target(&ignite.addr());
    t.addresses.insert(0, format!("127.0.0.1:{}", free_port()));
    t.pool_size = 3;
    let multi = connected(t).await;
    let start = Instant::now();
    while multi.live_connections() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "a connection stuck on the dead address"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..6 {
        multi.ping().await.unwrap();
    }
    // Another client's view: what one connection wrote, a fresh one reads.
    let other = connected(target(&ignite.addr())).await;
    assert_eq!(
        other.read(Bytes::new(), vec![2, 1005]).await.unwrap().1,
        vec![Some(33), Some(5)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_arrive_as_errors_with_their_status() {
    let ignite = Ignite::start();
    let c = Conn::connect(
        &ignite.addr(),
        &target(&ignite.addr()).dial,
        Default::default(),
    )
    .await
    .unwrap();
    // A cache nobody created.
    let r = c
        .call(Request::cache(codec::OP_CACHE_GET, 12345, None).long(1))
        .await;
    match r {
        Err(IgniteError::Server { status, message }) => {
            assert_eq!(status, 1000);
            assert!(message.contains("does not exist"), "{message}");
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    // The connection stays usable after an error response.
    let ok = c
        .call(Request::new(codec::OP_CACHE_GET_OR_CREATE_WITH_NAME).string("x"))
        .await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_node_with_authentication_refuses_wrong_credentials() {
    let ignite = Ignite::start_with(IgniteOpts {
        nodes: 1,
        auth: true,
        ..Default::default()
    });
    let mut t = target(&ignite.addr());
    for auth in [None, Some(("ignite".to_string(), "wrong".to_string()))] {
        t.dial.auth = auth;
        let denied = Conn::connect(&ignite.addr(), &t.dial, Default::default()).await;
        assert!(
            matches!(&denied, Err(IgniteError::Handshake(m)) if m.contains("incorrect") || m.contains("Unauthenticated")),
            "{:?}",
            denied.err()
        );
    }
    t.dial.auth = Some(("ignite".into(), "ignite".into()));
    let c = Conn::connect(&ignite.addr(), &t.dial, Default::default())
        .await
        .unwrap();
    assert_eq!(c.version, codec::Version(1, 7, 0), "a 2.18 node speaks 1.7");
    let kv = connected(t).await;
    kv.put_tokens(vec![(5, 6)]).await.unwrap();
    assert_eq!(
        kv.read(Bytes::new(), vec![5]).await.unwrap().1,
        vec![Some(6)]
    );
}

/// Protocol versions a real 2.18 node never falls back to: only the
/// conformance server can offer them.
#[tokio::test(flavor = "multi_thread")]
async fn older_protocol_versions_negotiate_down_on_the_conformance_server() {
    let server = Conformance::start(&["--version", "1.4.0", "--auth", "ignite:secret"]);
    let mut dial = target(&server.addr()).dial;
    let denied = Conn::connect(&server.addr(), &dial, Default::default()).await;
    assert!(
        matches!(&denied, Err(IgniteError::Handshake(m)) if m.contains("incorrect")),
        "{:?}",
        denied.err()
    );
    dial.auth = Some(("ignite".into(), "secret".into()));
    let c = Conn::connect(&server.addr(), &dial, Default::default())
        .await
        .unwrap();
    assert_eq!(c.version, codec::Version(1, 4, 0));
    // A 1.4 server gets no expiry policy (it arrived in 1.6).
    let mut t = target(&server.addr());
    t.dial = dial;
    let kv = created(t).await;
    kv.put_entry(
        Bytes::from_static(b"k"),
        Bytes::from_static(b"v"),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let reqs = server.requests();
    let put = reqs.iter().find(|r| r["op"] == "OP_CACHE_PUT").unwrap();
    assert!(put["expiry"].is_null(), "{put}");
    let versions: Vec<_> = reqs
        .iter()
        .filter(|r| r["op"] == "HANDSHAKE")
        .map(|r| r["version"].to_string())
        .collect();
    assert!(versions.contains(&"[1,7,0]".to_string()), "{versions:?}");
    assert!(versions.contains(&"[1,4,0]".to_string()), "{versions:?}");
    server.assert_all_parsed();

    // Before 1.4 responses carry an int status instead of flags.
    let old = Conformance::start(&["--version", "1.2.0"]);
    let kv = created(target(&old.addr())).await;
    kv.put_tokens(vec![(5, 6)]).await.unwrap();
    assert_eq!(
        kv.read(Bytes::new(), vec![5]).await.unwrap().1,
        vec![Some(6)]
    );
    old.assert_all_parsed();
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_to_a_real_node() {
    let dir = tempdir();
    let (store, crt) = (dir.join("node.p12"), dir.join("node.pem"));
    let keytool = |args: &[&str]| {
        let out = std::process::Command::new("keytool")
            .args(args)
            .output()
            .expect("keytool (from the JDK)");
        assert!(out.status.success(), "keytool {args:?}: {out:?}");
    };
    let (s, c) = (store.to_str().unwrap(), crt.to_str().unwrap());
    keytool(&[
        "-genkeypair",
        "-alias",
        "node",
        "-keyalg",
        "RSA",
        "-keysize",
        "2048",
        "-dname",
        "CN=localhost",
        "-ext",
        "SAN=dns:localhost",
        "-validity",
        "2",
        "-storetype",
        "PKCS12",
        "-keystore",
        s,
        "-storepass",
        "secret1",
    ]);
    keytool(&[
        "-exportcert",
        "-rfc",
        "-alias",
        "node",
        "-keystore",
        s,
        "-storepass",
        "secret1",
        "-file",
        c,
    ]);
    let ignite = Ignite::start_with(IgniteOpts {
        nodes: 1,
        tls: Some((store.clone(), "secret1".into())),
        ..Default::default()
    });
    let port = ignite.nodes[0].port;
    let mut t = target(&format!("localhost:{port}"));
    t.dial.tls = Some(tls_connector(&crt).unwrap());
    let kv = connected(t.clone()).await;
    kv.put_tokens(vec![(1, 2)]).await.unwrap();
    assert_eq!(
        kv.read(Bytes::new(), vec![1]).await.unwrap().1,
        vec![Some(2)]
    );
    // Plain TCP to a TLS endpoint fails cleanly (no hang past the timeout).
    let mut plain = t.dial.clone();
    plain.tls = None;
    plain.timeout = Duration::from_secs(2);
    let t0 = Instant::now();
    assert!(Conn::connect(&ignite.addr(), &plain, Default::default())
        .await
        .is_err());
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
}

fn ignite_section(addr: &str) -> String {
    format!(
        "\n[cache.ignite]\nenabled = true\naddresses = [\"{addr}\"]\ntimeout = \"300ms\"\nwrite_timeout = \"1s\"\n"
    )
}

/// Waits until the tier is up (and, when up, other proxies'
/// invalidations are proven current) or down.
async fn wait_l2(c: &mut MyConn, up: bool) {
    let d = Deadline::new(Duration::from_secs(20), "l2_up");
    while status(c, "l2_up").await != up.to_string()
        || (up && status(c, "l2_l1_trusted").await != "true")
    {
        d.tick().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_proxies_share_entries_and_invalidations() {
    let db = mariadb();
    db.sql_socket(
        "DROP TABLE IF EXISTS test.l2t; CREATE TABLE test.l2t (id INT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO test.l2t SELECT seq, CONCAT('v', seq) FROM test.seq_1_to_40;",
    );
    let ignite = Ignite::start();
    let relay = Relay::start(ignite.addr()).await;
    // A reaches the store through a relay that can be cut; B directly.
    let a = Proxy::start_with(
        db.port,
        "",
        &ignite_section(&format!("127.0.0.1:{}", relay.port)),
        "",
    );
    let admin = free_port();
    let b = Proxy::start_with(
        db.port,
        "",
        &format!(
            "{}\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n",
            ignite_section(&ignite.addr())
        ),
        "",
    );
    let mut ca = MyConn::new(opts(a.port, "test")).await.unwrap();
    let mut cb = MyConn::new(opts(b.port, "test")).await.unwrap();
    wait_l2(&mut ca, true).await;
    wait_l2(&mut cb, true).await;

    // A warms the tier; B, cold, is answered from it.
    for id in 1..=20 {
        assert_eq!(value(&mut ca, "l2t", id).await, Some(format!("v{id}")));
        assert_eq!(last(&mut ca).await, "miss(filled)");
    }
    let d = Deadline::new(Duration::from_secs(10), "A's fills");
    while status(&mut ca, "l2_fills").await != "20" {
        d.tick().await;
    }
    let before = scrape(admin);
    for id in 1..=20 {
        assert_eq!(value(&mut cb, "l2t", id).await, Some(format!("v{id}")));
        assert_eq!(last(&mut cb).await, "hit(l2)", "row {id}");
        value(&mut cb, "l2t", id).await;
        assert_eq!(last(&mut cb).await, "hit", "an L2 hit fills L1");
    }
    assert_eq!(status(&mut cb, "misses").await, "0");
    // 20 L2 hits and 20 L1 hits, timed as hits (40 SHOW SQLCACHE LAST and
    // one STATUS as other).
    let after = scrape(admin);
    let dt = |route: &str| timed(&after, route) - timed(&before, route);
    assert_eq!((dt("hit"), dt("miss"), dt("other")), (40, 0, 41), "{after}");

    // A write through A makes A's L2 entry stale for B (once it is in L2).
    value(&mut ca, "l2t", 21).await;
    let d = Deadline::new(Duration::from_secs(10), "A's fill of 21");
    while status(&mut ca, "l2_fills").await != "21" {
        d.tick().await;
    }
    ca.query_drop("UPDATE l2t SET v = 'new21' WHERE id = 21")
        .await
        .unwrap();
    assert_eq!(value(&mut cb, "l2t", 21).await.as_deref(), Some("new21"));
    assert_eq!(last(&mut cb).await, "miss(filled)");

    // A is cut off from the store; its clients keep being served and a
    // write's invalidation is parked …
    value(&mut ca, "l2t", 22).await; // in L2 now
    let d = Deadline::new(Duration::from_secs(10), "A's fill of 22");
    while status(&mut ca, "l2_fills").await != "22" {
        d.tick().await;
    }
    relay.set_cut(true);
    tokio::time::sleep(Duration::from_millis(200)).await; // relay drops A's connections
    let t = Instant::now();
    ca.query_drop("UPDATE l2t SET v = 'new22' WHERE id = 22")
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(status(&mut ca, "l2_up").await, "false");
    assert_ne!(status(&mut ca, "l2_pending").await, "0");
    assert_eq!(value(&mut ca, "l2t", 22).await.as_deref(), Some("new22"));
    assert_eq!(value(&mut ca, "l2t", 30).await.as_deref(), Some("v30"));
    // … and delivered before A uses the tier again; B then sees row 22 stale.
    relay.set_cut(false);
    wait_l2(&mut ca, true).await;
    assert_eq!(status(&mut ca, "l2_pending").await, "0");
    assert_eq!(value(&mut cb, "l2t", 22).await.as_deref(), Some("new22"));
    assert_eq!(last(&mut cb).await, "miss(filled)");

    // The store goes away altogether: both proxies answer from MySQL, no
    // client sees an error, and both come back when it returns (empty).
    ignite.kill(0);
    for id in 31..=35 {
        let t = Instant::now();
        assert_eq!(value(&mut cb, "l2t", id).await, Some(format!("v{id}")));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
    tokio::task::block_in_place(|| ignite.restart(0));
    wait_l2(&mut cb, true).await;
    wait_l2(&mut ca, true).await;
    // A fills again once it has reconnected; B is then served A's fill.
    let d = Deadline::new(Duration::from_secs(20), "a fill after the restart");
    let mut id = 36;
    loop {
        let fills: u64 = status(&mut ca, "l2_fills").await.parse().unwrap();
        assert_eq!(value(&mut ca, "l2t", id).await, Some(format!("v{id}")));
        tokio::time::sleep(Duration::from_millis(100)).await;
        if status(&mut ca, "l2_fills").await.parse::<u64>().unwrap() > fills {
            break;
        }
        id += 1;
        assert!(id <= 40, "no fill landed after the restart");
        d.tick().await;
    }
    assert_eq!(value(&mut cb, "l2t", id).await, Some(format!("v{id}")));
    assert_eq!(last(&mut cb).await, "hit(l2)");
    drop((a, b));
}

/// Two proxies on a three-node cluster, each given every node's address
/// (in different orders). Entries are shared across nodes; when the node
/// A's connections reached is killed (no backups: its partitions' entries
/// and tokens are gone), A fails over, its writes' invalidations still
/// land, and a cold proxy reads only current rows.
#[tokio::test(flavor = "multi_thread")]
async fn a_three_node_cluster_shares_entries_and_survives_losing_a_node() {
    let db = mariadb();
    db.sql_socket(
        "DROP TABLE IF EXISTS test.l2c; CREATE TABLE test.l2c (id INT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO test.l2c SELECT seq, CONCAT('v', seq) FROM test.seq_1_to_30;",
    );
    let ignite = tokio::task::block_in_place(|| {
        Ignite::start_with(IgniteOpts {
            nodes: 3,
            ..Default::default()
        })
    });
    let addrs = ignite.addrs();
    let section = |order: [usize; 3]| {
        let list: Vec<String> = order.iter().map(|&i| format!("\"{}\"", addrs[i])).collect();
        format!(
            "\n[cache.ignite]\nenabled = true\naddresses = [{}]\ntimeout = \"300ms\"\nwrite_timeout = \"1s\"\n",
            list.join(", ")
        )
    };
    let a = Proxy::start_with(db.port, "", &section([0, 1, 2]), "");
    let b = Proxy::start_with(db.port, "", &section([1, 2, 0]), "");
    let mut ca = MyConn::new(opts(a.port, "test")).await.unwrap();
    let mut cb = MyConn::new(opts(b.port, "test")).await.unwrap();
    wait_l2(&mut ca, true).await;
    wait_l2(&mut cb, true).await;
    for id in 1..=20 {
        assert_eq!(value(&mut ca, "l2c", id).await, Some(format!("v{id}")));
    }
    let d = Deadline::new(Duration::from_secs(10), "A's fills");
    while status(&mut ca, "l2_fills").await != "20" {
        d.tick().await;
    }
    for id in 1..=20 {
        assert_eq!(value(&mut cb, "l2c", id).await, Some(format!("v{id}")));
        assert_eq!(last(&mut cb).await, "hit(l2)", "row {id} through node 1");
    }

    let loss = tokio::task::block_in_place(|| ignite.kill_noted(0));
    for id in 1..=10 {
        let t = Instant::now();
        ca.query_drop(format!("UPDATE l2c SET v = 'new{id}' WHERE id = {id}"))
            .await
            .unwrap();
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert_eq!(value(&mut ca, "l2c", id).await, Some(format!("new{id}")));
    }
    // Trusted again once the cluster has processed the loss (Ignite's
    // failure detection; until then a subscription cannot be registered).
    let settled = tokio::task::block_in_place(|| ignite.wait_loss(&loss));
    eprintln!("the surviving nodes processed the loss {settled:?} after the kill");
    wait_l2(&mut ca, true).await;
    assert_eq!(status(&mut ca, "l2_pending").await, "0");
    // A cold proxy on the surviving nodes sees every write A acknowledged.
    let c = Proxy::start_with(db.port, "", &section([2, 1, 0]), "");
    let mut cc = MyConn::new(opts(c.port, "test")).await.unwrap();
    wait_l2(&mut cc, true).await;
    let mut from_l2 = 0;
    for id in 1..=20 {
        let want = if id <= 10 {
            format!("new{id}")
        } else {
            format!("v{id}")
        };
        assert_eq!(value(&mut cc, "l2c", id).await, Some(want), "row {id}");
        from_l2 += usize::from(last(&mut cc).await == "hit(l2)");
    }
    eprintln!("after losing a node: {from_l2} of 20 rows served from L2");
    drop((a, b, c));
}
