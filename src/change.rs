//! The change event: the one currency of invalidation (DESIGN.md).
//!
//! Policy: every source of changes — a write the proxy forwarded, a Kafka
//! message, a binlog item — is turned into these, and only
//! `invalidation::resolve` turns them into cache tags. A leaf module: the
//! binlog reading (`binlog/changes.rs`), the feeds and `sqlcache cdc` all
//! name changes with it.

/// One change, from any source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEvent {
    /// A row, identified by (lower-cased column, value as text) pairs.
    Row {
        db: String,
        table: String,
        key: Vec<(String, String)>,
    },
    /// Rows that cannot be named (TRUNCATE, DDL, a message without a key).
    Table { db: String, table: String },
    /// Anything (database-level DDL, an unknown table).
    Everything,
}
