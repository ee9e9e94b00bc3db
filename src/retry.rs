//! The back-off between sessions of `sqlcache cdc` and `sqlcache sink`.
//!
//! Policy: 100 ms, doubling after each failed session up to 10 s, and back
//! to 100 ms once a session made progress; a shutdown ends the wait.

use std::future::Future;
use std::time::Duration;

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(10);

pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff(FIRST)
    }
}

impl Backoff {
    /// The last session made progress: the next wait is the shortest.
    pub fn progressed(&mut self) {
        self.0 = FIRST;
    }

    /// How long the next wait is.
    pub fn delay(&self) -> Duration {
        self.0
    }

    /// Waits `delay`, then doubles it; false when `shutdown` came first.
    pub async fn wait(&mut self, shutdown: &mut (impl Future<Output = ()> + Unpin)) -> bool {
        let d = self.0;
        self.0 = (self.0 * 2).min(MAX);
        tokio::select! {
            _ = shutdown => false,
            _ = tokio::time::sleep(d) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn doubles_to_ten_seconds_and_resets_on_progress() {
        let mut b = Backoff::default();
        let mut never = Box::pin(std::future::pending::<()>());
        assert!(b.wait(&mut never).await, "the wait runs out");
        // A shutdown ends each wait at once; the delay doubles all the same.
        let mut now = Box::pin(std::future::ready(()));
        for want in [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000] {
            assert_eq!(b.delay(), Duration::from_millis(want));
            assert!(!b.wait(&mut now).await, "a shutdown ends the wait");
            now = Box::pin(std::future::ready(()));
        }
        b.progressed();
        assert_eq!(b.delay(), FIRST);
    }
}
