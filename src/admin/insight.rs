//! Query insight: per statement shape (`classify::digest`), how often it
//! ran, how the cache routed it and how long it took; what `SHOW SQLCACHE
//! QUERIES` shows.
//!
//! Policy: every text and prepared statement the proxy decides a route for
//! is recorded before its reply is flushed (so a client that has its
//! answer sees it counted). Each worker thread counts into a table of its
//! own (`TABLES` of them, handed out round-robin), so workers running the
//! same hot statement never share a lock or a cache line; SHOW merges the
//! tables by digest. Bounded: at most `SHAPES` shapes per table; a new
//! shape in a full table replaces its least-run shape, so the shapes that
//! run most stay; SHOW lists the `SHAPES` most run. A shape's
//! text is built only when the shape is first recorded. Latency is kept
//! in the buckets of `cache::stats::BUCKETS_US`; p50/p99 are the upper
//! bound of the bucket the quantile falls in.
//!
//! Invariants: a record takes its own table's lock (uncontended but for a
//! SHOW) for a few counter updates, never across an await; memory is
//! bounded by `TABLES` × `SHAPES` × (counters + at most `MAX_TEXT` bytes of
//! text).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::cache::stats::BUCKETS_US;
use crate::classify::BypassReason;

/// Shapes kept per table, and listed by SHOW, at most.
pub const SHAPES: usize = 512;
/// Tables (one per worker thread up to this many, then shared).
const TABLES: usize = 8;

thread_local! {
    /// This thread's table, once it has one.
    static TABLE: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}
static NEXT_TABLE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn my_table() -> usize {
    TABLE.with(|t| {
        *t.get().get_or_insert_with(|| {
            let i = NEXT_TABLE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % TABLES;
            t.set(Some(i));
            i
        })
    })
}
/// Bytes of a shape's text kept for display.
pub const MAX_TEXT: usize = 512;

/// How one statement went, for its shape's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    /// Forwarded and stored.
    Filled,
    /// A cacheable read whose response could not be stored.
    NotStored(BypassReason),
    Bypass(BypassReason),
    /// A cacheable read that ended without a response (an error, a lost
    /// backend): a miss, not stored, with no reason of its own.
    Unanswered,
    Write,
    /// Anything else the proxy forwarded or answered (SET, COMMIT, …).
    Other,
}

/// One shape's counters.
#[derive(Debug, Clone)]
pub struct Shape {
    pub text: Box<str>,
    pub count: u64,
    pub hits: u64,
    pub misses: u64,
    pub writes: u64,
    pub other: u64,
    /// Misses whose response could not be stored (also in `misses`).
    pub not_stored: u64,
    /// Bypasses and misses not stored, by reason (`BypassReason::ALL` order).
    pub reasons: [u64; BypassReason::ALL.len()],
    latency: [u64; BUCKETS_US.len() + 1],
}

/// What `SHOW SQLCACHE QUERIES` says about a shape's cacheability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cacheable {
    /// Every run was a hit or a stored miss.
    Yes,
    /// Some runs were cached, others not (the most frequent reason).
    Partly(BypassReason),
    /// A read that never was (the most frequent reason).
    No(BypassReason),
    /// It changes data.
    Write,
    /// Not a read the cache considers (SET, COMMIT, …).
    NotARead,
}

impl Cacheable {
    pub fn describe(self) -> String {
        match self {
            Cacheable::Yes => "yes".into(),
            Cacheable::Partly(r) => format!("partly: {}", r.as_str()),
            Cacheable::No(r) => format!("no: {}", r.as_str()),
            Cacheable::Write => "no: write".into(),
            Cacheable::NotARead => "no: not a read".into(),
        }
    }
}

impl Shape {
    fn new(text: String) -> Self {
        Shape {
            text: text.into_boxed_str(),
            count: 0,
            hits: 0,
            misses: 0,
            writes: 0,
            other: 0,
            not_stored: 0,
            reasons: [0; BypassReason::ALL.len()],
            latency: [0; BUCKETS_US.len() + 1],
        }
    }

    fn add(&mut self, o: Outcome, took: Duration) {
        self.count += 1;
        match o {
            Outcome::Hit => self.hits += 1,
            Outcome::Filled => self.misses += 1,
            Outcome::NotStored(r) => {
                self.misses += 1;
                self.not_stored += 1;
                self.reasons[reason_index(r)] += 1;
            }
            Outcome::Bypass(r) => self.reasons[reason_index(r)] += 1,
            Outcome::Unanswered => {
                self.misses += 1;
                self.not_stored += 1;
            }
            Outcome::Write => self.writes += 1,
            Outcome::Other => self.other += 1,
        }
        let us = took.as_micros() as u64;
        let b = BUCKETS_US
            .iter()
            .position(|&u| us <= u)
            .unwrap_or(BUCKETS_US.len());
        self.latency[b] += 1;
    }

    fn merge(&mut self, o: &Shape) {
        self.count += o.count;
        self.hits += o.hits;
        self.misses += o.misses;
        self.writes += o.writes;
        self.other += o.other;
        self.not_stored += o.not_stored;
        self.reasons
            .iter_mut()
            .zip(o.reasons)
            .for_each(|(a, b)| *a += b);
        self.latency
            .iter_mut()
            .zip(o.latency)
            .for_each(|(a, b)| *a += b);
    }

    /// Bypasses plus misses that could not be stored.
    pub fn uncached(&self) -> u64 {
        self.reasons.iter().sum()
    }

    /// The latency quantile `q` (0..1): the upper bound of its bucket in
    /// µs, `None` past the last bound.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let total: u64 = self.latency.iter().sum();
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (i, n) in self.latency.iter().enumerate() {
            acc += n;
            if acc >= want {
                return BUCKETS_US.get(i).copied();
            }
        }
        None
    }

    /// Whether the cache serves this shape, and if not, why.
    pub fn cacheable(&self) -> Cacheable {
        let top = BypassReason::ALL
            .iter()
            .zip(self.reasons)
            .filter(|(_, n)| *n > 0)
            .max_by_key(|(_, n)| *n)
            .map(|(r, _)| *r);
        let cached = self.hits + self.misses - self.not_stored;
        match (cached > 0, top) {
            (true, None) => Cacheable::Yes,
            (true, Some(r)) => Cacheable::Partly(r),
            (false, Some(r)) => Cacheable::No(r),
            (false, None) if self.writes > 0 => Cacheable::Write,
            (false, None) => Cacheable::NotARead,
        }
    }
}

fn reason_index(r: BypassReason) -> usize {
    BypassReason::ALL
        .iter()
        .position(|&x| x == r)
        .unwrap_or_default()
}

/// The shapes, in one table per worker thread (`TABLES`).
pub struct Insight {
    tables: Vec<Mutex<HashMap<u64, Shape, foldhash::fast::RandomState>>>,
}

impl Default for Insight {
    fn default() -> Self {
        Self::new()
    }
}

impl Insight {
    pub fn new() -> Self {
        Insight {
            tables: (0..TABLES).map(|_| Mutex::default()).collect(),
        }
    }

    /// Counts one statement of shape `digest`; `text` is called only when
    /// the shape is new.
    pub fn record(&self, digest: u64, text: impl FnOnce() -> String, o: Outcome, took: Duration) {
        let mut map = self.tables[my_table()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get_mut(&digest) {
            return s.add(o, took);
        }
        if map.len() >= SHAPES {
            if let Some(least) = map.iter().min_by_key(|(_, s)| s.count).map(|(d, _)| *d) {
                map.remove(&least);
            }
        }
        map.entry(digest)
            .or_insert_with(|| Shape::new(text()))
            .add(o, took);
    }

    /// The `SHAPES` most run shapes over every table, most run first.
    pub fn snapshot(&self) -> Vec<Shape> {
        let mut merged: HashMap<u64, Shape> = HashMap::new();
        for table in &self.tables {
            let map = table.lock().unwrap_or_else(|p| p.into_inner());
            for (d, s) in map.iter() {
                match merged.get_mut(d) {
                    Some(m) => m.merge(s),
                    None => {
                        merged.insert(*d, s.clone());
                    }
                }
            }
        }
        let mut all: Vec<Shape> = merged.into_values().collect();
        all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.text.cmp(&b.text)));
        all.truncate(SHAPES);
        all
    }

    /// Forgets every shape (`SQLCACHE FLUSH QUERIES`).
    pub fn clear(&self) {
        for table in &self.tables {
            table.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }
}

/// The columns of `SHOW SQLCACHE QUERIES`.
pub const COLUMNS: [&str; 9] = [
    "query",
    "count",
    "hits",
    "misses",
    "uncached",
    "cacheable",
    "p50_us",
    "p99_us",
    "share_pct",
];

/// The rows of `SHOW SQLCACHE QUERIES`, most run first.
pub fn query_rows(insight: &Insight) -> Vec<Vec<String>> {
    let shapes = insight.snapshot();
    let total: u64 = shapes.iter().map(|s| s.count).sum::<u64>().max(1);
    let q = |s: &Shape, p| {
        s.quantile_us(p)
            .map_or(">1000000".into(), |u| u.to_string())
    };
    shapes
        .iter()
        .map(|s| {
            vec![
                s.text.to_string(),
                s.count.to_string(),
                s.hits.to_string(),
                s.misses.to_string(),
                s.uncached().to_string(),
                s.cacheable().describe(),
                q(s, 0.5),
                q(s, 0.99),
                format!("{:.1}", s.count as f64 * 100.0 / total as f64),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn counts_routes_and_reasons_per_shape() {
        let i = Insight::new();
        let text = || "select c from t where id=?".to_string();
        i.record(7, text, Outcome::Filled, 300 * US);
        i.record(
            7,
            || unreachable!("text is built once"),
            Outcome::Hit,
            10 * US,
        );
        i.record(7, text, Outcome::Hit, 10 * US);
        i.record(9, || "begin".into(), Outcome::Other, US);
        let s = i.snapshot();
        assert_eq!((s[0].count, s[0].hits, s[0].misses), (3, 2, 1));
        assert_eq!(s[0].cacheable(), Cacheable::Yes);
        assert_eq!(s[0].quantile_us(0.5), Some(25));
        assert_eq!(s[0].quantile_us(0.99), Some(500));
        assert_eq!(s[1].cacheable(), Cacheable::NotARead);
    }

    #[test]
    fn cacheability_names_the_most_frequent_reason() {
        let i = Insight::new();
        let t = || "q".to_string();
        i.record(1, t, Outcome::Bypass(BypassReason::InTransaction), US);
        i.record(1, t, Outcome::Bypass(BypassReason::NotPointRead), US);
        i.record(1, t, Outcome::Bypass(BypassReason::NotPointRead), US);
        assert_eq!(
            i.snapshot()[0].cacheable(),
            Cacheable::No(BypassReason::NotPointRead)
        );
        i.record(1, t, Outcome::Hit, US);
        assert_eq!(
            i.snapshot()[0].cacheable(),
            Cacheable::Partly(BypassReason::NotPointRead)
        );
        let of = |d: &str| i.snapshot().into_iter().find(|s| &*s.text == d).unwrap();
        i.record(
            2,
            || "large".into(),
            Outcome::NotStored(BypassReason::TooLarge),
            US,
        );
        assert_eq!(
            of("large").cacheable(),
            Cacheable::No(BypassReason::TooLarge)
        );
        i.record(3, || "write".into(), Outcome::Write, US);
        assert_eq!(of("write").cacheable(), Cacheable::Write);
    }

    #[test]
    fn tables_of_other_threads_are_merged() {
        let i = std::sync::Arc::new(Insight::new());
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let i = i.clone();
                std::thread::spawn(move || i.record(5, || "q".into(), Outcome::Hit, US))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        i.record(5, || "q".into(), Outcome::Filled, US);
        let s = i.snapshot();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].count, s[0].hits, s[0].misses), (4, 3, 1));
    }

    #[test]
    fn bounded_keeping_the_most_run_shapes() {
        let i = Insight::new();
        for d in 0..SHAPES as u64 * 4 {
            let runs = if d.is_multiple_of(2) { 3 } else { 1 };
            for _ in 0..runs {
                i.record(d, || format!("shape {d}"), Outcome::Other, US);
            }
        }
        let s = i.snapshot();
        assert!(s.len() <= SHAPES, "{} shapes kept", s.len());
        assert_eq!(s.len(), SHAPES, "a full table");
        // A full table gives up its least-run shape, never the newest.
        let last = SHAPES as u64 * 4 - 1;
        let kept = s.iter().find(|x| *x.text == *format!("shape {last}"));
        assert_eq!(kept.map(|x| x.count), Some(1));
        // A shape that replaced another starts from its own count.
        for x in &s {
            let d: u64 = x.text["shape ".len()..].parse().unwrap();
            assert_eq!(
                x.count,
                if d.is_multiple_of(2) { 3 } else { 1 },
                "{}",
                x.text
            );
        }
        i.clear();
        assert!(i.snapshot().is_empty());
    }
}
