//! What a statement does to session state that lives on a backend connection.
//!
//! Policy (default-pin): the proxy multiplexes sessions over backend
//! connections, so before a statement is forwarded it must know whether the
//! statement leaves state behind on the connection. State the proxy *tracks*
//! (current database, `SET NAMES`, `autocommit`, `sql_mode`, `time_zone`) is
//! recorded and re-applied on whichever connection runs the next statement.
//! State it does not track pins the session to its connection until
//! COM_RESET_CONNECTION / COM_CHANGE_USER / disconnect (`PinReason`). Anything
//! that looks like session state but is not understood pins — a pinned session
//! is always correct, only less shared. Transactions and `autocommit=0` are
//! seen in the server's status flags, not here.

use super::lexer::{is_kw, Lexed, Token};

/// Why a session stays on its backend connection. Usable as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinReason {
    UserVariable,
    TemporaryTable,
    NamedLock,
    SqlPrepare,
    Handler,
    Xa,
    FoundRows,
    SessionVariable,
    TxCharacteristics,
    MultiStatementState,
}

impl PinReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PinReason::UserVariable => "user_variable",
            PinReason::TemporaryTable => "temporary_table",
            PinReason::NamedLock => "named_lock",
            PinReason::SqlPrepare => "sql_prepare",
            PinReason::Handler => "handler",
            PinReason::Xa => "xa",
            PinReason::FoundRows => "found_rows",
            PinReason::SessionVariable => "session_variable",
            PinReason::TxCharacteristics => "transaction_characteristics",
            PinReason::MultiStatementState => "multi_statement_state",
        }
    }
}

/// A tracked session setting, with the value as the client wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackedSet {
    /// `SET NAMES …` / `SET CHARACTER SET …`: the text after the keyword(s).
    Names(String),
    Autocommit(bool),
    SqlMode(String),
    /// `sql_mode = CONCAT(@@sql_mode, '<text>')`: the quoted text appended
    /// to the session's current mode (what MariaDB Connector/J sends at
    /// every connect).
    SqlModeAppend(String),
    /// `character_set_results = <value>` (MySQL Connector/J sends `NULL`
    /// at connect: results unconverted); a later `SET NAMES` resets it.
    CharsetResults(String),
    TimeZone(String),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    pub use_db: Option<String>,
    pub sets: Vec<TrackedSet>,
    /// `Some(true)` after LOCK TABLES, `Some(false)` after UNLOCK TABLES.
    pub lock_tables: Option<bool>,
    pub pin: Option<PinReason>,
    /// The statement reads the previous statement's LAST_INSERT_ID().
    pub reads_last_insert_id: bool,
    /// It names CONNECTION_ID (`rewrite::own_connection_id` then runs), and
    /// not PROCESSLIST: there `id = CONNECTION_ID()` must find the row of the
    /// backend connection running it, so MariaDB's own id is left.
    pub reads_connection_id: bool,
    /// `SELECT @@socket …`: answered without the backend's socket path, so
    /// clients (mysql_async's prefer_socket) do not reconnect around the proxy.
    pub probes_socket: bool,
    /// Non-empty statements in the text (more than one: multi-statement).
    pub statements: usize,
    /// `SET GLOBAL …` (or `@@global.…`, PERSIST): sessions that start
    /// later must see the new values (`Backend::globals_changed`).
    pub sets_global: bool,
}

/// `KILL [QUERY | CONNECTION] <id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    pub id: u32,
    pub query_only: bool,
}

/// Recognises a single KILL statement by connection id.
pub fn kill_of(lexed: &Lexed<'_>) -> Option<Kill> {
    let t: Vec<&Token<'_>> = lexed
        .tokens
        .iter()
        .filter(|t| **t != Token::Semicolon)
        .collect();
    let at = |i: usize| t.get(i).copied();
    if !is_kw(at(0), "KILL") {
        return None;
    }
    let mut i = 1;
    // MariaDB: KILL [HARD | SOFT] [CONNECTION | QUERY] id
    if is_kw(at(i), "HARD") || is_kw(at(i), "SOFT") {
        i += 1;
    }
    let query_only = is_kw(at(i), "QUERY");
    if query_only || is_kw(at(i), "CONNECTION") {
        i += 1;
    }
    match (at(i), t.len() == i + 1) {
        (Some(Token::Number(n)), true) => n.parse().ok().map(|id| Kill { id, query_only }),
        _ => None,
    }
}

/// Analyses a (possibly multi-statement) lexed text query.
pub fn analyze_lexed(lexed: &Lexed<'_>) -> Effects {
    let mut fx = Effects::default();
    let toks = &lexed.tokens;
    let stmts: Vec<&[Token<'_>]> = toks
        .split(|t| *t == Token::Semicolon)
        .filter(|s| !s.is_empty())
        .collect();
    // Reading an unset user variable gives NULL on any connection, so only
    // assignments pin: `@v := …`, `… INTO @v` (and `SET @v`, in set_item).
    let mut into = false;
    for (i, t) in toks.iter().enumerate() {
        let assigns = matches!(
            toks.get(i + 1..i + 3),
            Some([Token::Punct(':'), Token::Punct('=')])
        );
        match t {
            Token::UserVar(_) if assigns || into => pin(&mut fx, PinReason::UserVariable),
            Token::UserVar(_) | Token::Punct(',') => {}
            Token::Word(w) if w.eq_ignore_ascii_case("INTO") => into = true,
            Token::Word(w) if w.eq_ignore_ascii_case("GET_LOCK") => {
                pin(&mut fx, PinReason::NamedLock)
            }
            Token::Word(w) if w.eq_ignore_ascii_case("SQL_CALC_FOUND_ROWS") => {
                pin(&mut fx, PinReason::FoundRows)
            }
            Token::Word(w) if w.eq_ignore_ascii_case("LAST_INSERT_ID") => {
                fx.reads_last_insert_id = true
            }
            Token::Word(w) if w.eq_ignore_ascii_case("CONNECTION_ID") => {
                fx.reads_connection_id = true
            }
            Token::SysVar(v) => {
                let name = v.rsplit('.').next().unwrap_or(v);
                if name.eq_ignore_ascii_case("identity")
                    || name.eq_ignore_ascii_case("last_insert_id")
                {
                    fx.reads_last_insert_id = true;
                }
                if name.eq_ignore_ascii_case("socket") {
                    fx.probes_socket = true;
                }
            }
            _ => {}
        }
        if !matches!(t, Token::UserVar(_) | Token::Punct(',') | Token::Word(_))
            || is_kw(Some(t), "FROM")
        {
            into = false;
        }
    }
    if fx.reads_connection_id && toks.iter().any(|t| is_kw(Some(t), "PROCESSLIST")) {
        fx.reads_connection_id = false;
    }
    fx.statements = stmts.len();
    for s in &stmts {
        statement(s, &mut fx);
    }
    let changes_state = fx.use_db.is_some() || !fx.sets.is_empty() || fx.lock_tables.is_some();
    if stmts.len() > 1 && changes_state {
        // A later statement may fail after an earlier one changed state: the
        // proxy cannot know which part took effect.
        pin(&mut fx, PinReason::MultiStatementState);
    }
    fx
}

fn pin(fx: &mut Effects, r: PinReason) {
    fx.pin.get_or_insert(r);
}

fn statement(t: &[Token<'_>], fx: &mut Effects) {
    let kw = |i: usize, k: &str| is_kw(t.get(i), k);
    if kw(0, "USE") {
        fx.use_db = match t.get(1) {
            Some(Token::Word(w)) => Some((*w).to_string()),
            Some(Token::Quoted(q)) => Some(q.replace("``", "`")),
            _ => {
                pin(fx, PinReason::SessionVariable);
                None
            }
        };
    } else if kw(0, "SET") {
        set_statement(&t[1..], fx);
    } else if kw(0, "LOCK") && (kw(1, "TABLES") || kw(1, "TABLE")) {
        fx.lock_tables = Some(true);
    } else if kw(0, "UNLOCK") && (kw(1, "TABLES") || kw(1, "TABLE")) {
        fx.lock_tables = Some(false);
    } else if kw(0, "CREATE") && (kw(1, "TEMPORARY") || (kw(1, "OR") && kw(3, "TEMPORARY"))) {
        pin(fx, PinReason::TemporaryTable);
    } else if kw(0, "PREPARE") {
        pin(fx, PinReason::SqlPrepare);
    } else if kw(0, "HANDLER") {
        pin(fx, PinReason::Handler);
    } else if kw(0, "XA") {
        pin(fx, PinReason::Xa);
    }
}

/// `SET a = x, SESSION b = y, NAMES …` — one item at a time.
fn set_statement(t: &[Token<'_>], fx: &mut Effects) {
    let kw = |i: usize, k: &str| is_kw(t.get(i), k);
    if kw(0, "TRANSACTION") || kw(1, "TRANSACTION") || kw(0, "ROLE") {
        pin(fx, PinReason::TxCharacteristics);
        return;
    }
    if ["GLOBAL", "PERSIST", "PERSIST_ONLY"]
        .iter()
        .any(|k| kw(0, k))
    {
        fx.sets_global = true;
    }
    let account_or_global = ["GLOBAL", "PERSIST", "PERSIST_ONLY", "PASSWORD"]
        .iter()
        .any(|k| kw(0, k))
        || (kw(0, "DEFAULT") && kw(1, "ROLE"));
    if account_or_global {
        // Server-wide or account changes; nothing session-scoped to track.
        // (`SET GLOBAL a=1, b=2` scopes every item globally in MySQL.)
        return;
    }
    if kw(0, "STATEMENT") {
        // MariaDB `SET STATEMENT var=… FOR stmt` is scoped to that statement.
        return;
    }
    for item in split_items(t) {
        set_item(item, fx);
    }
}

/// Splits at top-level commas (not inside parentheses).
fn split_items<'t, 'a>(t: &'t [Token<'a>]) -> Vec<&'t [Token<'a>]> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, tok) in t.iter().enumerate() {
        match tok {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => depth -= 1,
            Token::Punct(',') if depth == 0 => {
                out.push(&t[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&t[start..]);
    out
}

fn set_item(item: &[Token<'_>], fx: &mut Effects) {
    let kw = |i: usize, k: &str| is_kw(item.get(i), k);
    if kw(0, "NAMES") {
        match render(&item[1..]) {
            Some(v) => fx.sets.push(TrackedSet::Names(v)),
            None => pin(fx, PinReason::SessionVariable),
        }
        return;
    }
    if kw(0, "CHARSET") || (kw(0, "CHARACTER") && kw(1, "SET")) {
        // CHARACTER SET differs from NAMES (results/connection charsets come
        // from the server default): keep it on its connection.
        return pin(fx, PinReason::SessionVariable);
    }
    let (name, rest) = match item {
        [Token::Word(scope), Token::Word(n), rest @ ..]
            if scope.eq_ignore_ascii_case("SESSION") || scope.eq_ignore_ascii_case("LOCAL") =>
        {
            (*n, rest)
        }
        [Token::Word(scope), ..] if scope.eq_ignore_ascii_case("GLOBAL") => {
            fx.sets_global = true;
            return;
        }
        [Token::SysVar(v), rest @ ..] => match v.split_once('.') {
            Some((scope, _)) if scope.eq_ignore_ascii_case("global") => {
                fx.sets_global = true;
                return;
            }
            Some((_, n)) => (n, rest),
            None => (*v, rest),
        },
        [Token::Word(n), rest @ ..] => (*n, rest),
        [Token::UserVar(_), ..] => return pin(fx, PinReason::UserVariable),
        _ => return pin(fx, PinReason::SessionVariable),
    };
    let value = match rest {
        [Token::Punct('='), v @ ..] => v,
        [Token::Punct(':'), Token::Punct('='), v @ ..] => v,
        _ => return pin(fx, PinReason::SessionVariable),
    };
    let simple = match value {
        [Token::Word(w)] | [Token::Str(w)] | [Token::Number(w)] => Some(*w),
        _ => None,
    };
    let lname = name.to_ascii_lowercase();
    let tracked = match (lname.as_str(), simple) {
        ("autocommit", Some(v)) => autocommit_value(v).map(TrackedSet::Autocommit),
        ("sql_mode", Some(v)) => Some(TrackedSet::SqlMode(v.to_string())),
        ("sql_mode", None) => sql_mode_append(value).map(TrackedSet::SqlModeAppend),
        ("character_set_results", Some(v)) => Some(TrackedSet::CharsetResults(v.to_string())),
        ("time_zone", Some(v)) => Some(TrackedSet::TimeZone(v.to_string())),
        _ => None,
    };
    match tracked {
        Some(s) => fx.sets.push(s),
        None => pin(fx, PinReason::SessionVariable),
    }
}

/// The quoted suffix of `CONCAT(@@[session.|local.]sql_mode, '<suffix>')`.
fn sql_mode_append(value: &[Token<'_>]) -> Option<String> {
    match value {
        [Token::Word(f), Token::Punct('('), Token::SysVar(v), Token::Punct(','), Token::Str(s), Token::Punct(')')]
            if f.eq_ignore_ascii_case("concat")
                && ["sql_mode", "session.sql_mode", "local.sql_mode"]
                    .iter()
                    .any(|n| v.eq_ignore_ascii_case(n)) =>
        {
            Some(s.to_string())
        }
        _ => None,
    }
}

fn autocommit_value(v: &str) -> Option<bool> {
    match v.to_ascii_uppercase().as_str() {
        "1" | "ON" | "TRUE" | "DEFAULT" | "'ON'" | "'1'" => Some(true),
        "0" | "OFF" | "FALSE" | "'OFF'" | "'0'" => Some(false),
        _ => None,
    }
}

/// Re-renders `cs [COLLATE c]` for `SET NAMES`; None if it is not that shape.
fn render(t: &[Token<'_>]) -> Option<String> {
    let one = |t: &Token<'_>| match t {
        Token::Word(w) | Token::Str(w) => Some((*w).to_string()),
        Token::Quoted(q) => Some(format!("`{q}`")),
        _ => None,
    };
    match t {
        [cs] => one(cs),
        [cs, Token::Word(c), coll] if c.eq_ignore_ascii_case("COLLATE") => {
            Some(format!("{} COLLATE {}", one(cs)?, one(coll)?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyze(sql: &str) -> Effects {
        analyze_lexed(&Lexed::new(sql))
    }

    fn parse_kill(sql: &str) -> Option<Kill> {
        kill_of(&Lexed::new(sql))
    }
    use PinReason::*;

    #[test]
    fn connection_id_is_rewritten_except_beside_processlist() {
        assert!(analyze("SELECT CONNECTION_ID()").reads_connection_id);
        assert!(analyze("select 1 from t where id = connection_id()").reads_connection_id);
        let own_row = "SELECT memory_used FROM information_schema.processlist \
                       WHERE id = connection_id()";
        assert!(!analyze(own_row).reads_connection_id);
        assert!(!analyze("SELECT 'CONNECTION_ID()'").reads_connection_id);
    }

    #[test]
    fn pins() {
        let cases: &[(&str, Option<PinReason>)] = &[
            ("SELECT 1", None),
            ("select * from t where a = '@x'", None),
            ("SET @a = 1", Some(UserVariable)),
            ("SELECT @a", None),
            ("SELECT @a := 1", Some(UserVariable)),
            ("SELECT a, b INTO @x, @y FROM t", Some(UserVariable)),
            ("SELECT * FROM t WHERE a = @x", None),
            ("SELECT 1 INTO @v", Some(UserVariable)),
            ("CREATE TEMPORARY TABLE t (a int)", Some(TemporaryTable)),
            (
                "create or replace temporary table t (a int)",
                Some(TemporaryTable),
            ),
            ("SELECT GET_LOCK('x', 1)", Some(NamedLock)),
            ("PREPARE s FROM 'select 1'", Some(SqlPrepare)),
            ("HANDLER t OPEN", Some(Handler)),
            ("XA START 'x'", Some(Xa)),
            (
                "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1",
                Some(FoundRows),
            ),
            ("SET SESSION wait_timeout = 10", Some(SessionVariable)),
            ("SET @@session.sql_mode = CONCAT(@@sql_mode, ',X')", None),
            ("SET character_set_results = NULL", None),
            (
                "SET sql_mode = CONCAT(@@global.sql_mode, ',X')",
                Some(SessionVariable),
            ),
            (
                "SET sql_mode = CONCAT(@@sql_mode, @x)",
                Some(SessionVariable),
            ),
            (
                "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
                Some(TxCharacteristics),
            ),
            ("SET SESSION TRANSACTION READ ONLY", Some(TxCharacteristics)),
            ("SET CHARACTER SET utf8mb4", Some(SessionVariable)),
            ("USE a; USE b", Some(MultiStatementState)),
            ("SET GLOBAL max_connections = 100", None),
            ("SET @@global.max_connections = 100", None),
            ("SET STATEMENT max_statement_time=1 FOR SELECT 1", None),
            ("/*!40101 SET @OLD=@@SQL_MODE */", Some(UserVariable)),
        ];
        for (sql, want) in cases {
            assert_eq!(analyze(sql).pin, *want, "{sql}");
        }
    }

    #[test]
    fn global_changes_are_noticed() {
        for sql in [
            "SET GLOBAL net_buffer_length = 1024",
            "set global a = 1, b = 2",
            "SET @@global.max_allowed_packet = 2048",
            "SET PERSIST max_connections = 10",
            "SET SESSION a = 1, GLOBAL b = 2",
        ] {
            assert!(analyze(sql).sets_global, "{sql}");
        }
        for sql in [
            "SET a = 1",
            "SET @@session.a = 1",
            "SELECT @@global.a",
            "SET PASSWORD = 'x'",
        ] {
            assert!(!analyze(sql).sets_global, "{sql}");
        }
    }

    #[test]
    fn tracked_state() {
        let fx = analyze("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci, autocommit = 0, sql_mode='ANSI', @@time_zone = '+00:00'");
        assert_eq!(fx.pin, None);
        assert_eq!(
            fx.sets,
            vec![
                TrackedSet::Names("utf8mb4 COLLATE utf8mb4_unicode_ci".into()),
                TrackedSet::Autocommit(false),
                TrackedSet::SqlMode("'ANSI'".into()),
                TrackedSet::TimeZone("'+00:00'".into()),
            ]
        );
        assert_eq!(analyze("use `my``db`").use_db.as_deref(), Some("my`db"));
        assert_eq!(analyze("USE test").use_db.as_deref(), Some("test"));
        assert_eq!(analyze("LOCK TABLES t READ").lock_tables, Some(true));
        assert_eq!(analyze("unlock tables").lock_tables, Some(false));
        assert_eq!(
            analyze("SET autocommit=ON").sets,
            vec![TrackedSet::Autocommit(true)]
        );
    }

    #[test]
    fn kill_statements() {
        assert_eq!(
            parse_kill("KILL 5"),
            Some(Kill {
                id: 5,
                query_only: false
            })
        );
        assert_eq!(
            parse_kill("kill query 7;"),
            Some(Kill {
                id: 7,
                query_only: true
            })
        );
        assert_eq!(
            parse_kill("KILL HARD CONNECTION 9"),
            Some(Kill {
                id: 9,
                query_only: false
            })
        );
        assert_eq!(parse_kill("KILL QUERY ID 9"), None);
        assert_eq!(parse_kill("KILL USER bob"), None);
        assert_eq!(analyze("select 1; select 2;").statements, 2);
    }

    #[test]
    fn probes() {
        assert!(analyze("SELECT @@socket").probes_socket);
        assert!(analyze("SELECT LAST_INSERT_ID()").reads_last_insert_id);
        assert!(analyze("select @@identity").reads_last_insert_id);
        assert!(!analyze("select 'LAST_INSERT_ID'").reads_last_insert_id);
    }
}
