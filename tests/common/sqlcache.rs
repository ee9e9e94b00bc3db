//! Client-side helpers for cache and feed tests: SHOW SQLCACHE LAST/STATUS,
//! bounded waits, warming an entry (and checking it is a hit).

use mysql_async::prelude::*;
use mysql_async::Conn;
use std::time::{Duration, Instant};

pub async fn last(c: &mut Conn) -> String {
    let r: Option<(String, String)> = c.query_first("SHOW SQLCACHE LAST").await.unwrap();
    r.unwrap().1
}

pub async fn status(c: &mut Conn, key: &str) -> String {
    let rows: Vec<(String, String)> = c.query("SHOW SQLCACHE STATUS").await.unwrap();
    rows.into_iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no {key} in SHOW SQLCACHE STATUS"))
        .1
}

/// A bounded wait: `while !cond { d.tick().await }` panics after `limit`.
pub struct Deadline {
    start: Instant,
    limit: Duration,
    what: &'static str,
}

impl Deadline {
    pub fn new(limit: Duration, what: &'static str) -> Self {
        Deadline {
            start: Instant::now(),
            limit,
            what,
        }
    }

    pub async fn tick(&self) {
        assert!(
            self.start.elapsed() < self.limit,
            "{}: not within {:?}",
            self.what,
            self.limit
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn wait_fresh(c: &mut Conn) {
    let d = Deadline::new(Duration::from_secs(30), "feed fresh");
    while status(c, "feed_fresh").await != "true" {
        d.tick().await;
    }
}

pub async fn value(c: &mut Conn, table: &str, id: i64) -> Option<String> {
    c.query_first(format!("SELECT v FROM {table} WHERE id = {id}"))
        .await
        .unwrap()
}

/// Fills the entry for `id` and checks that the next read is a hit.
pub async fn warm(c: &mut Conn, table: &str, id: i64) -> Option<String> {
    warm_as(c, &format!("SELECT v FROM {table} WHERE id = {id}")).await
}

/// Reads `q` until the proxy answers it from the cache, showing it does:
/// what a change must then invalidate is really there. A feed's echo
/// (`src/invalidation/echo.rs`) may drop an entry filled just after a write
/// to its table once more, so this retries for a while.
pub async fn warm_as<T>(c: &mut Conn, q: &str) -> Option<T>
where
    T: mysql_common::value::convert::FromValue + PartialEq + std::fmt::Debug + Send + 'static,
{
    let d = Deadline::new(Duration::from_secs(8), "entry cached");
    loop {
        let v: Option<T> = c.query_first(q).await.unwrap();
        let again: Option<T> = c.query_first(q).await.unwrap();
        assert_eq!(v, again);
        let l = last(c).await;
        if l == "hit" {
            return v;
        }
        if d.start.elapsed() > Duration::from_secs(7) {
            let rows: Vec<(String, String)> = c.query("SHOW SQLCACHE STATUS").await.unwrap();
            panic!("{q} should be cached, second read was {l}; status: {rows:?}");
        }
        d.tick().await;
    }
}

/// GET /metrics from the admin port.
pub fn scrape(admin: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut b = String::new();
    s.read_to_string(&mut b).unwrap();
    assert!(b.starts_with("HTTP/1.0 200"), "{b}");
    b
}

/// GET `path` from an admin endpoint: the whole response, status line
/// first ("" if nothing listens).
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes());
    let mut b = String::new();
    let _ = s.read_to_string(&mut b);
    b
}

/// Statements timed under each route label, from a scrape.
pub fn timed(body: &str, route: &str) -> u64 {
    let name = format!("sqlcache_statement_duration_seconds_count{{route=\"{route}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(name.as_str()))
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        .parse()
        .unwrap()
}
