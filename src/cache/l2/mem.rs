//! `MemKv`: an in-memory stand-in for the shared store, for tier-logic
//! tests only (several `Cache`s sharing one `MemKv` act as proxies sharing
//! one Ignite cluster). It is not Ignite and proves nothing about the wire
//! protocol (`cache::ignite` is tested against pyignite for that).
//!
//! Policy: every call can be made to stall (`set_delay`); a `Link` (one
//! proxy's path to the store) can be cut to make its calls fail; and
//! `forget_tokens` drops tokens as an evicting or restarted store would.
//! Compiled for tests only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;

use super::{Kv, KvFuture, L2Error};

#[derive(Default)]
pub struct MemKv {
    entries: Mutex<HashMap<Bytes, Bytes>>,
    tokens: Mutex<HashMap<i64, i64>>,
    delay: Mutex<Duration>,
}

impl MemKv {
    pub fn set_delay(&self, d: Duration) {
        *self.delay.lock().unwrap() = d;
    }

    pub fn forget_tokens(&self) {
        self.tokens.lock().unwrap().clear();
    }

    pub fn token(&self, key: i64) -> Option<i64> {
        self.tokens.lock().unwrap().get(&key).copied()
    }

    pub fn entry(&self, key: &[u8]) -> Option<Bytes> {
        self.entries.lock().unwrap().get(key).cloned()
    }

    pub fn entries(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    async fn gate(&self) -> Result<(), L2Error> {
        let d = *self.delay.lock().unwrap();
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
        Ok(())
    }
}

impl Kv for MemKv {
    fn read(
        &self,
        key: Bytes,
        tokens: Vec<i64>,
    ) -> KvFuture<'_, (Option<Bytes>, Vec<Option<i64>>)> {
        Box::pin(async move {
            self.gate().await?;
            let e = self.entries.lock().unwrap().get(&key).cloned();
            let t = self.tokens.lock().unwrap();
            Ok((e, tokens.iter().map(|k| t.get(k).copied()).collect()))
        })
    }

    fn create_tokens(&self, tokens: Vec<(i64, i64)>) -> KvFuture<'_, Vec<i64>> {
        Box::pin(async move {
            self.gate().await?;
            let mut t = self.tokens.lock().unwrap();
            Ok(tokens
                .into_iter()
                .map(|(k, v)| *t.entry(k).or_insert(v))
                .collect())
        })
    }

    fn put_tokens(&self, tokens: Vec<(i64, i64)>) -> KvFuture<'_, ()> {
        Box::pin(async move {
            self.gate().await?;
            self.tokens.lock().unwrap().extend(tokens);
            Ok(())
        })
    }

    fn put_entry(&self, key: Bytes, value: Bytes, _ttl: Duration) -> KvFuture<'_, ()> {
        Box::pin(async move {
            self.gate().await?;
            self.entries.lock().unwrap().insert(key, value);
            Ok(())
        })
    }

    fn ping(&self) -> KvFuture<'_, ()> {
        Box::pin(self.gate())
    }
}

/// One proxy's link to a shared `MemKv`, which can be cut on its own (a
/// network partition between that proxy and the store).
pub struct Link {
    kv: std::sync::Arc<MemKv>,
    cut: AtomicBool,
}

impl Link {
    pub fn new(kv: std::sync::Arc<MemKv>) -> Link {
        Link {
            kv,
            cut: AtomicBool::new(false),
        }
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), L2Error> {
        if self.cut.load(Ordering::SeqCst) {
            Err(L2Error::Unavailable("link cut".into()))
        } else {
            Ok(())
        }
    }
}

impl Kv for Link {
    fn read(
        &self,
        key: Bytes,
        tokens: Vec<i64>,
    ) -> KvFuture<'_, (Option<Bytes>, Vec<Option<i64>>)> {
        Box::pin(async move {
            self.check()?;
            self.kv.read(key, tokens).await
        })
    }

    fn create_tokens(&self, tokens: Vec<(i64, i64)>) -> KvFuture<'_, Vec<i64>> {
        Box::pin(async move {
            self.check()?;
            self.kv.create_tokens(tokens).await
        })
    }

    fn put_tokens(&self, tokens: Vec<(i64, i64)>) -> KvFuture<'_, ()> {
        Box::pin(async move {
            self.check()?;
            self.kv.put_tokens(tokens).await
        })
    }

    fn put_entry(&self, key: Bytes, value: Bytes, ttl: Duration) -> KvFuture<'_, ()> {
        Box::pin(async move {
            self.check()?;
            self.kv.put_entry(key, value, ttl).await
        })
    }

    fn ping(&self) -> KvFuture<'_, ()> {
        Box::pin(async move {
            self.check()?;
            self.kv.ping().await
        })
    }
}
