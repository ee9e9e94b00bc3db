//! How one statement was routed: a single value per command, from which the
//! `/metrics` latency label, the statement's log event, `SHOW SQLCACHE
//! LAST` and the shape's `SHOW SQLCACHE QUERIES` counters are all derived.
//!
//! Policy: a command starts as `Local`; the cache decision replaces it once
//! (hit, miss, bypass, write, forward) and later steps only complete its
//! detail (a miss learns whether it was stored, a write what it
//! invalidated). `SHOW SQLCACHE LAST` reports the last statement that had a
//! cache decision: a `Local` command (the proxy's own statements, pings)
//! leaves it as it was.

use std::borrow::Cow;

use crate::admin::insight::Outcome;
use crate::cache::stats::Route;
use crate::classify::BypassReason;

/// Which cache tier answered a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    L1,
    /// An L1 copy the shared tier confirmed current (strict mode, or while
    /// other proxies' invalidations could not be vouched for).
    L1Confirmed,
    L2,
}

/// What became of a miss's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Not known yet (the response is still being relayed), or the miss
    /// ended without a response (an error, a lost backend).
    Pending,
    Filled,
    NotStored(BypassReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// No cache decision; the label says what the proxy did with the
    /// backend connection ("local" when it used none).
    Local(&'static str),
    Hit(Tier),
    Miss(Stored),
    Bypass(BypassReason),
    /// A write; what it invalidated once known.
    Write(Option<String>),
    /// COMMIT or ROLLBACK.
    Forward,
}

impl Routed {
    /// The `/metrics` latency label.
    pub fn metric(&self) -> Route {
        match self {
            Routed::Hit(_) => Route::Hit,
            Routed::Miss(_) => Route::Miss,
            Routed::Bypass(_) => Route::Bypass,
            Routed::Write(_) => Route::Write,
            Routed::Local(_) | Routed::Forward => Route::Other,
        }
    }

    /// The statement event's `route` field.
    pub fn label(&self) -> &'static str {
        match self {
            Routed::Local(label) => label,
            Routed::Hit(Tier::L1) => "hit",
            Routed::Hit(Tier::L1Confirmed) => "hit(confirmed)",
            Routed::Hit(Tier::L2) => "hit(l2)",
            Routed::Miss(_) => "miss",
            Routed::Bypass(_) => "bypass",
            Routed::Write(_) => "write",
            Routed::Forward => "forward",
        }
    }

    /// The statement's outcome for its shape's insight counters.
    pub fn outcome(&self) -> Outcome {
        match self {
            Routed::Hit(_) => Outcome::Hit,
            Routed::Miss(Stored::Filled) => Outcome::Filled,
            Routed::Miss(Stored::NotStored(r)) => Outcome::NotStored(*r),
            Routed::Miss(Stored::Pending) => Outcome::Unanswered,
            Routed::Bypass(r) => Outcome::Bypass(*r),
            Routed::Write(_) => Outcome::Write,
            Routed::Local(_) | Routed::Forward => Outcome::Other,
        }
    }

    /// What `SHOW SQLCACHE LAST` says afterwards; `None` keeps what it said.
    pub fn describe(self) -> Option<Cow<'static, str>> {
        Some(match self {
            Routed::Local(_) => return None,
            Routed::Hit(_) | Routed::Write(None) | Routed::Forward => self.label().into(),
            Routed::Miss(Stored::Pending) => "miss".into(),
            Routed::Miss(Stored::Filled) => "miss(filled)".into(),
            Routed::Miss(Stored::NotStored(r)) => {
                format!("miss(not stored: {})", r.as_str()).into()
            }
            Routed::Bypass(r) => format!("bypass({})", r.as_str()).into(),
            Routed::Write(Some(what)) => what.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_its_own_metric_label() {
        assert_eq!(Routed::Hit(Tier::L1).metric(), Route::Hit);
        assert_eq!(Routed::Hit(Tier::L2).metric(), Route::Hit);
        assert_eq!(Routed::Miss(Stored::Filled).metric(), Route::Miss);
        assert_eq!(
            Routed::Bypass(BypassReason::NotPointRead).metric(),
            Route::Bypass
        );
        assert_eq!(Routed::Write(None).metric(), Route::Write);
        assert_eq!(Routed::Local("local").metric(), Route::Other);
    }

    #[test]
    fn show_last_keeps_the_previous_answer_for_local_commands() {
        assert_eq!(Routed::Local("pinned").describe(), None);
        assert_eq!(Routed::Hit(Tier::L2).describe().as_deref(), Some("hit(l2)"));
        assert_eq!(
            Routed::Miss(Stored::NotStored(BypassReason::TooLarge))
                .describe()
                .as_deref(),
            Some("miss(not stored: too_large)")
        );
    }
}
