//! Statement classification: pure functions over SQL text.
//!
//! Policy: default-deny — whatever is not understood may write everything
//! and is never served from the cache. A text statement is lexed once
//! (`Lexed`, `lexer.rs`); from those tokens `effects.rs` finds what it does
//! to session state (pins, tracked `SET`s, `USE`, KILL) and `sql.rs` (with
//! sqlparser) its cache verdict (`verdict.rs`: a point read, a bypass with
//! its reason, or a write with what it invalidates); `memo.rs` shares one
//! verdict among statements that differ only in literals, so sqlparser runs
//! once per shape. No I/O here: every rule is unit-tested without a server.

pub mod digest;
pub mod effects;
pub mod lexer;
pub mod memo;
pub mod rewrite;
pub mod sql;
pub mod verdict;
pub mod words;

pub use effects::{analyze_lexed, kill_of, Effects, PinReason, TrackedSet};
pub use lexer::Lexed;
pub use memo::classify_memo;
pub use sql::{classify, classify_lexed};
pub use verdict::{
    is_system_schema as is_system_schema_name, BypassReason, Invalidation, KeyValue, Lit,
    PointRead, TableName, Verdict,
};
