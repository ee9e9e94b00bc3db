//! What the cache layer needs to know about a statement.
//!
//! Policy: default-deny. A statement is a cacheable `PointRead` only when
//! every part of it is understood; a statement that might change data
//! carries the `Invalidation` it implies, over-approximated (a table tag where
//! rows cannot be named, everything where tables cannot be named).

/// A table as written in the statement (database resolved later against the
/// session's current database).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    pub db: Option<String>,
    pub name: String,
}

/// A value in an equality on a column: a literal or a `?` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    /// Literal text as written, quotes removed for strings.
    Lit(Lit),
    /// The n-th `?` of the statement (0-based).
    Param(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lit {
    Number(String),
    Str(String),
    Null,
}

/// `SELECT … FROM table WHERE col = v AND …` whose equalities may pin a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointRead {
    pub table: TableName,
    /// Equalities `column = value`, column names lower-cased.
    pub eq: Vec<(String, KeyValue)>,
}

/// What a write invalidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// Specific rows of one table, each identified by its column equalities.
    /// `assigned`: columns an UPDATE sets (a key column there moves the row).
    Rows {
        table: TableName,
        rows: Vec<Vec<(String, KeyValue)>>,
        assigned: Vec<String>,
    },
    /// Whole tables; `ddl` when their definition may have changed.
    Tables { tables: Vec<TableName>, ddl: bool },
    /// Anything at all (unknown statement, stored routine, DROP DATABASE …).
    Everything,
}

/// Why a statement is not served from the cache. Usable as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BypassReason {
    CacheDisabled,
    InTransaction,
    AutocommitOff,
    LockTables,
    PinnedSession,
    Locking,
    NonDeterministic,
    SystemSchema,
    SqlNoCache,
    Unparsable,
    NotPointRead,
    NotKey,
    TableDisabled,
    Write,
    MultiStatement,
    Warnings,
    TooLarge,
    FeedUnhealthy,
}

impl BypassReason {
    pub const ALL: [BypassReason; 18] = [
        BypassReason::CacheDisabled,
        BypassReason::InTransaction,
        BypassReason::AutocommitOff,
        BypassReason::LockTables,
        BypassReason::PinnedSession,
        BypassReason::Locking,
        BypassReason::NonDeterministic,
        BypassReason::SystemSchema,
        BypassReason::SqlNoCache,
        BypassReason::Unparsable,
        BypassReason::NotPointRead,
        BypassReason::NotKey,
        BypassReason::TableDisabled,
        BypassReason::Write,
        BypassReason::MultiStatement,
        BypassReason::Warnings,
        BypassReason::TooLarge,
        BypassReason::FeedUnhealthy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BypassReason::CacheDisabled => "cache_disabled",
            BypassReason::InTransaction => "in_transaction",
            BypassReason::AutocommitOff => "autocommit_off",
            BypassReason::LockTables => "lock_tables",
            BypassReason::PinnedSession => "pinned_session",
            BypassReason::Locking => "locking_read",
            BypassReason::NonDeterministic => "non_deterministic",
            BypassReason::SystemSchema => "system_schema",
            BypassReason::SqlNoCache => "sql_no_cache",
            BypassReason::Unparsable => "unparsable",
            BypassReason::NotPointRead => "not_point_read",
            BypassReason::NotKey => "not_primary_key",
            BypassReason::TableDisabled => "table_disabled",
            BypassReason::Write => "write",
            BypassReason::MultiStatement => "multi_statement",
            BypassReason::Warnings => "warnings",
            BypassReason::TooLarge => "too_large",
            BypassReason::FeedUnhealthy => "feed_unhealthy",
        }
    }

    pub fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// The classification of one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Read(PointRead),
    /// Reads only; not cacheable for the reason given.
    Bypass(BypassReason),
    /// May change data: forwarded, then `Invalidation` applied.
    Write(Invalidation),
    /// COMMIT (or another end of transaction that keeps its changes).
    Commit,
    /// ROLLBACK of the whole transaction.
    Rollback,
}

/// Schemas whose contents are server state, never cached.
pub fn is_system_schema(db: &str) -> bool {
    ["information_schema", "mysql", "performance_schema", "sys"]
        .iter()
        .any(|s| db.eq_ignore_ascii_case(s))
}
