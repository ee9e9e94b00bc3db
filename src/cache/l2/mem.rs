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

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::{Kv, KvFuture, L2Error, Notice};

#[derive(Default)]
pub struct MemKv {
    entries: Mutex<HashMap<Bytes, Bytes>>,
    tokens: Mutex<HashMap<i64, i64>>,
    delay: Mutex<Duration>,
    /// Subscribers to token changes (`watch`), told in write order.
    watchers: Mutex<Vec<UnboundedSender<Notice>>>,
    /// While set, subscribers stay connected but hear nothing (a stalled
    /// event stream).
    mute: AtomicBool,
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

    pub fn set_mute(&self, mute: bool) {
        self.mute.store(mute, Ordering::SeqCst);
    }

    /// Ends every subscription (a store that lost its listeners).
    pub fn drop_watchers(&self) {
        self.watchers.lock().unwrap().clear();
    }

    /// Tells every subscriber about written tokens (called under the
    /// tokens lock, so subscribers see writes in the store's order).
    fn tell(&self, changes: &[(i64, i64)]) {
        if changes.is_empty() || self.mute.load(Ordering::SeqCst) {
            return;
        }
        let n = Notice::Tokens(changes.iter().map(|(k, v)| (*k, Some(*v))).collect());
        self.watchers
            .lock()
            .unwrap()
            .retain(|w| w.send(n.clone()).is_ok());
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
            let mut created = Vec::new();
            let out = tokens
                .into_iter()
                .map(|(k, v)| {
                    *t.entry(k).or_insert_with(|| {
                        created.push((k, v));
                        v
                    })
                })
                .collect();
            self.tell(&created);
            Ok(out)
        })
    }

    fn put_tokens(&self, tokens: Vec<(i64, i64)>) -> KvFuture<'_, ()> {
        Box::pin(async move {
            self.gate().await?;
            let mut t = self.tokens.lock().unwrap();
            t.extend(tokens.iter().copied());
            self.tell(&tokens);
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

    fn tokens(&self, tokens: Vec<i64>) -> KvFuture<'_, Vec<Option<i64>>> {
        Box::pin(async move {
            self.gate().await?;
            let t = self.tokens.lock().unwrap();
            Ok(tokens.iter().map(|k| t.get(k).copied()).collect())
        })
    }

    fn watch(&self) -> KvFuture<'_, UnboundedReceiver<Notice>> {
        Box::pin(async move {
            self.gate().await?;
            let (tx, rx) = unbounded_channel();
            self.watchers.lock().unwrap().push(tx);
            Ok(rx)
        })
    }

    fn beat_keys(&self, base: i64) -> Vec<i64> {
        vec![base, base + 1]
    }

    fn beat(&self, keys: Vec<(i64, i64)>) -> KvFuture<'_, ()> {
        self.put_tokens(keys)
    }
}

/// One proxy's link to a shared `MemKv`, which can be cut on its own (a
/// network partition between that proxy and the store).
pub struct Link {
    kv: std::sync::Arc<MemKv>,
    cut: std::sync::Arc<AtomicBool>,
}

impl Link {
    pub fn new(kv: std::sync::Arc<MemKv>) -> Link {
        Link {
            kv,
            cut: std::sync::Arc::new(AtomicBool::new(false)),
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

    /// A "dial" through the link fails while it is cut.
    fn connect(&self) -> KvFuture<'_, ()> {
        Box::pin(async move { self.check() })
    }

    fn tokens(&self, tokens: Vec<i64>) -> KvFuture<'_, Vec<Option<i64>>> {
        Box::pin(async move {
            self.check()?;
            self.kv.tokens(tokens).await
        })
    }

    /// A subscription through the link: it ends when the link is cut.
    fn watch(&self) -> KvFuture<'_, UnboundedReceiver<Notice>> {
        Box::pin(async move {
            self.check()?;
            let mut inner = self.kv.watch().await?;
            let (tx, rx) = unbounded_channel();
            let cut = self.cut.clone();
            tokio::spawn(async move {
                loop {
                    let n = tokio::time::timeout(Duration::from_millis(10), inner.recv()).await;
                    if cut.load(Ordering::SeqCst) {
                        return;
                    }
                    match n {
                        Ok(Some(n)) => {
                            if tx.send(n).is_err() {
                                return;
                            }
                        }
                        Ok(None) => return,
                        Err(_) => {}
                    }
                }
            });
            Ok(rx)
        })
    }

    fn beat_keys(&self, base: i64) -> Vec<i64> {
        self.kv.beat_keys(base)
    }

    fn beat(&self, keys: Vec<(i64, i64)>) -> KvFuture<'_, ()> {
        Box::pin(async move {
            self.check()?;
            self.kv.beat(keys).await
        })
    }
}
