//! Tracked session state: what a session wants vs what a connection has.
//!
//! Policy: `SessionVars` is the client session's view (initial values from the
//! handshake, then changed by statements `classify::effects` understood).
//! `Applied` is what a backend connection is known to have; `None` in a field
//! means unknown, so the next `sync` sets it. Pure functions compute the SQL
//! that brings a connection in line; values are re-sent as the client wrote
//! them, so the server interprets them exactly as it did the first time.
//! A `sql_mode` appended to (`CONCAT(@@sql_mode, ',X')`) is kept as an
//! expression that needs no session value: `CONCAT(<previous>, ',X')`, with
//! the server default written `@@global.sql_mode` (so a `SET GLOBAL sql_mode`
//! between connect and a later statement is seen by that statement, where
//! MySQL would keep the session's copy).

use crate::classify::TrackedSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionVars {
    pub db: Option<String>,
    /// `SET NAMES` argument, e.g. `utf8mb4 COLLATE utf8mb4_general_ci`,
    /// followed by `, character_set_results = <v>` when that was set after
    /// it (so both travel, and key the cache, together; `SET NAMES` resets
    /// it, as on the server).
    pub names: String,
    pub autocommit: bool,
    /// `None`: the server default.
    pub sql_mode: Option<String>,
    pub time_zone: Option<String>,
    /// LAST_INSERT_ID() as the session last saw it (from OK packets).
    pub last_insert_id: u64,
}

impl SessionVars {
    pub fn new(db: Option<String>, collation_id: u8) -> Self {
        Self {
            db,
            names: names_for_collation(collation_id),
            autocommit: true,
            sql_mode: None,
            time_zone: None,
            last_insert_id: 0,
        }
    }

    pub fn apply(&mut self, s: &TrackedSet) {
        match s {
            TrackedSet::Names(n) => self.names = n.clone(),
            TrackedSet::Autocommit(a) => self.autocommit = *a,
            TrackedSet::SqlMode(m) => self.sql_mode = Some(m.clone()),
            TrackedSet::CharsetResults(v) => {
                let base = self.names.split(RESULTS).next().unwrap_or_default();
                self.names = format!("{base}{RESULTS}{v}");
            }
            TrackedSet::SqlModeAppend(s) => {
                let base = self.sql_mode.as_deref().unwrap_or("@@global.sql_mode");
                self.sql_mode = Some(format!("CONCAT({base}, {s})"));
            }
            TrackedSet::TimeZone(t) => self.time_zone = Some(t.clone()),
        }
    }
}

/// Joins `character_set_results` to the `SET NAMES` text.
const RESULTS: &str = ", character_set_results = ";

/// `SET NAMES` text for a handshake collation id.
pub fn names_for_collation(id: u8) -> String {
    use mysql_common::collations::{Collation, CollationId};
    let c = Collation::resolve(CollationId::from(id as u16));
    if c.charset().is_empty() || c.collation().is_empty() {
        // Unknown to mysql_common: utf8mb4 with its server default collation.
        return "utf8mb4".into();
    }
    format!("{} COLLATE {}", c.charset(), c.collation())
}

/// What one backend connection is known to have; `None` = unknown.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    pub db: Option<Option<String>>,
    pub names: Option<String>,
    pub autocommit: Option<bool>,
    pub sql_mode: Option<Option<String>>,
    pub time_zone: Option<Option<String>>,
    pub last_insert_id: Option<u64>,
}

impl Applied {
    /// A new connection: no database, server defaults, charset unknown.
    pub fn fresh() -> Self {
        Self {
            db: Some(None),
            names: None,
            autocommit: Some(true),
            sql_mode: Some(None),
            time_zone: Some(None),
            last_insert_id: Some(0),
        }
    }

    pub fn unknown() -> Self {
        Self::default()
    }

    /// Records that `set_statement(self, want, ..)` ran successfully.
    pub fn assume(&mut self, want: &SessionVars, with_insert_id: bool) {
        self.names = Some(want.names.clone());
        self.autocommit = Some(want.autocommit);
        self.sql_mode = Some(want.sql_mode.clone());
        self.time_zone = Some(want.time_zone.clone());
        if with_insert_id {
            self.last_insert_id = Some(want.last_insert_id);
        }
    }
}

/// `Some(target)` if the connection must change database.
pub fn db_change(a: &Applied, want: &SessionVars) -> Option<Option<String>> {
    match &a.db {
        Some(d) if *d == want.db => None,
        _ => Some(want.db.clone()),
    }
}

/// One `SET` statement that aligns every differing tracked variable, or None.
pub fn set_statement(a: &Applied, want: &SessionVars, with_insert_id: bool) -> Option<String> {
    let mut items: Vec<String> = Vec::new();
    if a.names.as_deref() != Some(want.names.as_str()) {
        items.push(format!("NAMES {}", want.names));
    }
    if a.autocommit != Some(want.autocommit) {
        items.push(format!("autocommit = {}", want.autocommit as u8));
    }
    if a.sql_mode.as_ref() != Some(&want.sql_mode) {
        items.push(format!(
            "sql_mode = {}",
            want.sql_mode.as_deref().unwrap_or("DEFAULT")
        ));
    }
    if a.time_zone.as_ref() != Some(&want.time_zone) {
        items.push(format!(
            "time_zone = {}",
            want.time_zone.as_deref().unwrap_or("DEFAULT")
        ));
    }
    if with_insert_id && a.last_insert_id != Some(want.last_insert_id) {
        items.push(format!("last_insert_id = {}", want.last_insert_id));
    }
    if items.is_empty() {
        None
    } else {
        Some(format!("SET {}", items.join(", ")))
    }
}

/// Backquotes an identifier for `USE`.
pub fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> SessionVars {
        SessionVars::new(Some("db".into()), 45)
    }

    #[test]
    fn fresh_connection_gets_names_only() {
        let mut a = Applied::fresh();
        a.db = Some(Some("db".into()));
        assert_eq!(
            set_statement(&a, &vars(), false).as_deref(),
            Some("SET NAMES utf8mb4 COLLATE utf8mb4_general_ci")
        );
        a.assume(&vars(), false);
        assert_eq!(set_statement(&a, &vars(), false), None);
        assert_eq!(db_change(&a, &vars()), None);
    }

    #[test]
    fn differing_vars_are_aligned_in_one_statement() {
        let mut a = Applied::fresh();
        a.assume(&vars(), true);
        let mut w = vars();
        w.apply(&TrackedSet::Autocommit(false));
        w.apply(&TrackedSet::SqlMode("'ANSI'".into()));
        w.last_insert_id = 7;
        assert_eq!(
            set_statement(&a, &w, true).as_deref(),
            Some("SET autocommit = 0, sql_mode = 'ANSI', last_insert_id = 7")
        );
        // Without the LAST_INSERT_ID need, it is not sent.
        assert!(!set_statement(&a, &w, false)
            .unwrap()
            .contains("last_insert_id"));
        // Another session's sql_mode is undone with DEFAULT.
        let mut b = Applied::fresh();
        b.assume(&w, false);
        assert!(set_statement(&b, &vars(), false)
            .unwrap()
            .contains("sql_mode = DEFAULT"));
    }

    #[test]
    fn an_appended_sql_mode_is_reapplied_without_session_values() {
        let mut w = vars();
        w.apply(&TrackedSet::SqlModeAppend("',STRICT_TRANS_TABLES'".into()));
        w.apply(&TrackedSet::SqlModeAppend("',ANSI_QUOTES'".into()));
        let sql = set_statement(&Applied::fresh(), &w, false).unwrap();
        assert!(
            sql.contains(
                "sql_mode = CONCAT(CONCAT(@@global.sql_mode, ',STRICT_TRANS_TABLES'), ',ANSI_QUOTES')"
            ),
            "{sql}"
        );
        w.apply(&TrackedSet::SqlMode("'ANSI'".into()));
        w.apply(&TrackedSet::SqlModeAppend("',X'".into()));
        assert_eq!(w.sql_mode.as_deref(), Some("CONCAT('ANSI', ',X')"));
    }

    #[test]
    fn character_set_results_follows_names_until_names_change() {
        let mut w = vars();
        w.apply(&TrackedSet::CharsetResults("NULL".into()));
        w.apply(&TrackedSet::CharsetResults("NULL".into()));
        let sql = set_statement(&Applied::fresh(), &w, false).unwrap();
        assert!(sql.contains(", character_set_results = NULL"), "{sql}");
        assert_eq!(sql.matches("character_set_results").count(), 1, "{sql}");
        w.apply(&TrackedSet::Names("latin1".into()));
        assert_eq!(w.names, "latin1");
    }

    #[test]
    fn unknown_db_state_forces_use() {
        assert_eq!(
            db_change(&Applied::unknown(), &vars()),
            Some(Some("db".into()))
        );
        let mut none = vars();
        none.db = None;
        let mut a = Applied::fresh();
        a.db = Some(Some("x".into()));
        assert_eq!(db_change(&a, &none), Some(None));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
    }
}
