//! `/health` of `sqlcache cdc`: unhealthy (503, with the reason) while a
//! change it read waits for Kafka longer than `cdc.max_unacked_age`, or
//! while its sessions have been failing (and retrying) for longer than that.
//!
//! Policy: the publisher notes when the oldest message still waiting for
//! Kafka's acknowledgement was queued (wall clock, ms; 0 when none waits),
//! the run loop when a session ended in error and when a new one streams
//! the binlog. A dead broker therefore shows either way: messages queue and
//! are never acknowledged (librdkafka retries forever), or sessions keep
//! failing (topic creation fails) and restarting. A run of failures ends
//! with an acknowledgement, or once a session has streamed for the bound
//! without failing (an idle publisher has nothing to acknowledge); until
//! then a session that streams briefly between failures does not end it.
//! An idle publisher with nothing to send is healthy. `decide` is the whole
//! policy.
//!
//! Invariants: plain atomics plus one mutex for the last error text, never
//! held across an await.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// What `/health` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// The oldest unacknowledged message was queued this long ago.
    Stalled {
        age_ms: i64,
    },
    /// Sessions have been ending in errors for this long.
    Failing {
        age_ms: i64,
    },
}

/// Times the policy reads: wall-clock ms, 0 for none.
#[derive(Debug, Clone, Copy, Default)]
pub struct Times {
    /// The oldest message waiting for Kafka was queued.
    pub oldest_unacked: i64,
    /// The first failure of the current run of failures.
    pub failing_since: i64,
    /// The current session started streaming.
    pub streaming_since: i64,
}

/// The health policy; `bound_ms` is `cdc.max_unacked_age`.
pub fn decide(now_ms: i64, t: Times, bound_ms: i64) -> Verdict {
    let age = |t: i64| (now_ms - t).max(0);
    let recovered = t.streaming_since != 0 && age(t.streaming_since) >= bound_ms;
    let (oldest_ms, failing_since_ms) = (t.oldest_unacked, t.failing_since);
    if failing_since_ms != 0 && !recovered && age(failing_since_ms) > bound_ms {
        Verdict::Failing {
            age_ms: age(failing_since_ms),
        }
    } else if oldest_ms != 0 && age(oldest_ms) > bound_ms {
        Verdict::Stalled {
            age_ms: age(oldest_ms),
        }
    } else {
        Verdict::Healthy
    }
}

#[derive(Default)]
pub struct Health {
    oldest_unacked_ms: AtomicI64,
    failing_since_ms: AtomicI64,
    streaming_since_ms: AtomicI64,
    bound_ms: AtomicU64,
    last_error: Mutex<String>,
}

impl Health {
    pub fn set_bound(&self, d: Duration) {
        self.bound_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// The oldest message waiting for Kafka was queued at `ms` (0: none).
    pub fn oldest_unacked(&self, ms: i64) {
        self.oldest_unacked_ms.store(ms, Ordering::Relaxed);
    }

    /// Age of the oldest unacknowledged message in seconds (0: none).
    pub fn oldest_unacked_age_s(&self, now_ms: i64) -> f64 {
        match self.oldest_unacked_ms.load(Ordering::Relaxed) {
            0 => 0.0,
            t => (now_ms - t).max(0) as f64 / 1000.0,
        }
    }

    /// A session ended in `error`: the first failure of a run starts the
    /// clock.
    pub fn session_failed(&self, now_ms: i64, error: &str) {
        let streamed = self.streaming_since_ms.swap(0, Ordering::Relaxed);
        let bound = self.bound_ms.load(Ordering::Relaxed) as i64;
        let run_over = streamed != 0 && now_ms - streamed >= bound;
        if self.failing_since_ms.load(Ordering::Relaxed) == 0 || run_over {
            self.failing_since_ms.store(now_ms, Ordering::Relaxed);
        }
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = error.to_string();
    }

    /// A session started streaming the binlog.
    pub fn streaming(&self, now_ms: i64) {
        self.streaming_since_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Kafka acknowledged a message: a run of failures is over.
    pub fn progressed(&self) {
        self.failing_since_ms.store(0, Ordering::Relaxed);
    }

    /// `/health`'s answer: `Ok` body for 200, `Err` body for 503.
    pub fn check(&self, now_ms: i64) -> Result<String, String> {
        let bound = self.bound_ms.load(Ordering::Relaxed) as i64;
        let t = Times {
            oldest_unacked: self.oldest_unacked_ms.load(Ordering::Relaxed),
            failing_since: self.failing_since_ms.load(Ordering::Relaxed),
            streaming_since: self.streaming_since_ms.load(Ordering::Relaxed),
        };
        match decide(now_ms, t, bound) {
            Verdict::Healthy => Ok("ok\n".into()),
            Verdict::Stalled { age_ms } => Err(format!(
                "stalled: the oldest change not yet acknowledged by Kafka was read {age_ms} ms ago (cdc.max_unacked_age = {bound} ms)\n"
            )),
            Verdict::Failing { age_ms } => {
                let e = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
                Err(format!(
                    "failing: sessions have been ending in errors for {age_ms} ms (cdc.max_unacked_age = {bound} ms); last error: {e}\n"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy() {
        let t = |oldest_unacked, failing_since, streaming_since| Times {
            oldest_unacked,
            failing_since,
            streaming_since,
        };
        let d = |times| decide(10_000, times, 1_000);
        assert_eq!(d(t(0, 0, 0)), Verdict::Healthy, "idle");
        assert_eq!(d(t(9_500, 0, 0)), Verdict::Healthy, "young");
        assert_eq!(d(t(8_000, 0, 0)), Verdict::Stalled { age_ms: 2_000 });
        assert_eq!(
            d(t(8_000, 5_000, 0)),
            Verdict::Failing { age_ms: 5_000 },
            "a failing session is named first"
        );
        assert_eq!(d(t(0, 9_900, 0)), Verdict::Healthy, "retrying briefly");
        assert_eq!(
            d(t(0, 5_000, 9_500)),
            Verdict::Failing { age_ms: 5_000 },
            "streaming, but not for long yet"
        );
        assert_eq!(d(t(0, 5_000, 8_000)), Verdict::Healthy, "recovered");
    }

    #[test]
    fn failures_keep_their_first_time_until_streaming_again() {
        let h = Health::default();
        h.set_bound(Duration::from_secs(1));
        h.session_failed(1_000, "broker down");
        h.streaming(1_200);
        h.session_failed(1_500, "still down");
        let e = h.check(2_600).unwrap_err();
        assert!(e.contains("1600 ms") && e.contains("still down"), "{e}");
        h.progressed();
        assert_eq!(h.check(2_600), Ok("ok\n".into()));
        // Streaming for the bound ends a run: the next failure starts anew.
        h.session_failed(3_000, "again");
        h.streaming(3_100);
        assert!(h.check(4_050).is_err(), "not streaming long enough yet");
        assert_eq!(h.check(4_100), Ok("ok\n".into()));
        h.session_failed(5_000, "later");
        assert_eq!(h.check(5_900), Ok("ok\n".into()), "a new run, young");
        h.oldest_unacked(2_000);
        assert!(h.check(3_500).unwrap_err().starts_with("stalled"));
        assert_eq!(h.oldest_unacked_age_s(3_500), 1.5);
    }
}
