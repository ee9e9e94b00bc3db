//! Statement classification: pure functions over SQL text.
//!
//! Policy: default-deny. Today this holds the lexer and the session-effects
//! analysis the multiplexing backend needs; the cacheability verdicts
//! (sqlparser-based) land here too, so all SQL understanding stays in one
//! place and is unit-testable without a server.

pub mod effects;
pub mod lexer;
pub mod sql;
pub mod verdict;

pub use effects::{analyze, Effects, PinReason, TrackedSet};
pub use sql::classify;
pub use verdict::{
    is_system_schema as is_system_schema_name, BypassReason, Invalidation, KeyValue, Lit,
    PointRead, TableName, Verdict,
};
