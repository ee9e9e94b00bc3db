//! Change events: the one currency of invalidation (DESIGN.md).
//!
//! Policy: every source becomes `ChangeEvent`s — a write the proxy
//! forwarded (`writes.rs`), a Debezium / Canal / Maxwell message
//! (`decode.rs`), the binlog reader (`binlog.rs`) — and only
//! `resolve.rs` turns them into cache tags, so the proxy's writes and the
//! feeds cannot disagree on the tags of a row. Anything a decoder cannot
//! read becomes a table event, or `Everything` when even the table is
//! unknown: an unreadable message never leaves the cache trusting old data.
//! This module holds the event type, the feeds' `apply` and their handle.

pub mod binlog;
pub mod decode;
pub mod echo;
pub mod freshness;
pub mod kafka;
pub mod keeper;
pub mod resolve;
pub mod writes;

#[cfg(test)]
mod agreement_tests;

use std::thread::JoinHandle;
use std::time::Instant;

use crate::backend::schema::SchemaCache;
use crate::cache::{Cache, Tag};
pub use crate::change::ChangeEvent;
pub use echo::Echo;
pub use resolve::{forget, resolve, resolve_all, Effect};

/// Errors of the feed layer (all at start; afterwards a feed retries).
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("invalidation.kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("invalidation.kafka.topics: `{0}` is not a valid regular expression: {1}")]
    Pattern(String, regex::Error),
    #[error("cannot start the change-feed thread: {0}")]
    Thread(std::io::Error),
}

/// At most one log line per kind of trouble per this period.
pub const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// A rate-limited logger: says how many it suppressed.
#[derive(Default)]
pub struct Quiet {
    last: Option<Instant>,
    suppressed: u64,
    said: String,
}

impl Quiet {
    /// Some(number suppressed since the last line) if a line may be logged.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }

    /// Like `allow`, but a line that differs from the last one logged is
    /// always allowed (a new kind of trouble is news).
    pub fn allow_changed(&mut self, line: &str) -> Option<u64> {
        if line != self.said {
            self.said = line.to_string();
            self.last = None;
        }
        self.allow()
    }
}

/// A running feed (Kafka or binlog); stops and joins its thread when dropped.
pub struct FeedHandle {
    stop: Option<Box<dyn FnOnce() + Send>>,
    thread: Option<JoinHandle<()>>,
}

impl FeedHandle {
    /// `stop` tells the feed's thread to end (called once, on drop).
    pub fn new(stop: impl FnOnce() + Send + 'static, thread: JoinHandle<()>) -> FeedHandle {
        FeedHandle {
            stop: Some(Box::new(stop)),
            thread: Some(thread),
        }
    }
}

impl Drop for FeedHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Applies change events to the cache (bumps their tags' tokens) and
/// queues their echoes (`echo.rs`).
pub fn apply(events: &[ChangeEvent], cache: &Cache, schema: &SchemaCache, echo: &mut Echo) {
    let now = Instant::now();
    let mut all = Vec::new();
    let mut everything = false;
    for ev in events {
        match resolve(ev, schema) {
            Effect::Everything => everything = true,
            Effect::Tags(tags) => all.extend(tags),
        }
        forget(ev, schema);
    }
    if all.is_empty() && !everything {
        return;
    }
    // One call: the shared tier (if any) hears it before this process.
    cache.invalidate_feed(&all, everything);
    if everything {
        echo.everything(now);
    }
    echo.slots(now, all.iter().map(Tag::slot).collect());
}
