//! sqlparser-based classification of one statement (`classify`).
//!
//! Policy: default-deny. A point read is a single-table `SELECT` whose WHERE
//! is a conjunction containing `column = literal|?` equalities, with only
//! deterministic built-in functions anywhere (an allow-list, not a deny-list),
//! no subqueries, no variables, no locking clause and no `SQL_NO_CACHE`.
//! Whether the equalities cover a primary key is decided later against the
//! schema. Statements sqlparser cannot parse are judged by their first
//! keyword: known read-only verbs forward without invalidation, anything else
//! invalidates everything.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, visit_relations, AssignmentTarget, BinaryOperator, Expr, FromTable,
    FunctionArguments, LimitClause, ObjectName, ObjectNamePart, ObjectType, Query, SelectItem,
    SetExpr, Statement, TableFactor, TableObject, Value,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use super::lexer::{Lexed, Token};
use super::verdict::*;

/// Built-in functions whose result depends only on their arguments (and on
/// session state that is part of the cache key).
const DETERMINISTIC: &[&str] = &[
    "abs",
    "ceil",
    "ceiling",
    "floor",
    "round",
    "truncate",
    "mod",
    "sign",
    "greatest",
    "least",
    "concat",
    "concat_ws",
    "lower",
    "upper",
    "lcase",
    "ucase",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "substring",
    "substr",
    "left",
    "right",
    "trim",
    "ltrim",
    "rtrim",
    "lpad",
    "rpad",
    "replace",
    "reverse",
    "repeat",
    "hex",
    "unhex",
    "coalesce",
    "ifnull",
    "nullif",
    "if",
    "isnull",
    "json_extract",
    "json_unquote",
    "json_object",
    "json_array",
    "json_length",
    "json_type",
    "json_valid",
    "year",
    "month",
    "day",
    "dayofmonth",
    "hour",
    "minute",
    "second",
    "date",
    "time",
    "to_days",
    "datediff",
    "date_add",
    "date_sub",
    "md5",
    "sha1",
    "sha2",
    "crc32",
    "bit_length",
    "ascii",
    "ord",
    "field",
    "find_in_set",
    "instr",
    "locate",
    "position",
    "strcmp",
    "count",
    "sum",
    "min",
    "max",
    "avg",
];

/// Classifies one statement's SQL text.
pub fn classify(sql: &str) -> Verdict {
    classify_lexed(&Lexed::new(sql))
}

/// `classify` of a lexed statement (sqlparser still tokenizes on its own).
pub fn classify_lexed(lexed: &Lexed<'_>) -> Verdict {
    let (sql, toks) = (lexed.sql, &lexed.tokens);
    if toks.iter().filter(|t| **t != Token::Semicolon).count() == 0 {
        return Verdict::Bypass(BypassReason::NotPointRead);
    }
    if toks
        .iter()
        .any(|t| matches!(t, Token::Word(w) if w.eq_ignore_ascii_case("SQL_NO_CACHE")))
    {
        return read_or_unknown(toks, BypassReason::SqlNoCache);
    }
    let stmts = match Parser::parse_sql(&MySqlDialect {}, sql) {
        Ok(s) => s,
        Err(_) => return read_or_unknown(toks, BypassReason::Unparsable),
    };
    match stmts.as_slice() {
        [one] => statement(one),
        many => merge(many.iter().map(statement)),
    }
}

/// Several statements in one text: reads bypass, writes union their tables.
fn merge(verdicts: impl Iterator<Item = Verdict>) -> Verdict {
    let mut tables: Vec<TableName> = Vec::new();
    let mut writes = false;
    for v in verdicts {
        match v {
            Verdict::Read(_) | Verdict::Bypass(_) => {}
            Verdict::Write(Invalidation::Tables { tables: t, .. }) => {
                writes = true;
                tables.extend(t);
            }
            Verdict::Write(Invalidation::Rows { table, .. }) => {
                writes = true;
                tables.push(table);
            }
            // Transaction ends inside a batch, or anything unknown.
            _ => return Verdict::Write(Invalidation::Everything),
        }
    }
    if writes {
        Verdict::Write(Invalidation::Tables { tables, ddl: true })
    } else {
        Verdict::Bypass(BypassReason::MultiStatement)
    }
}

/// For text sqlparser rejects: read-only verbs bypass, anything else may write.
fn read_or_unknown(toks: &[Token<'_>], reason: BypassReason) -> Verdict {
    const READ_ONLY: &[&str] = &[
        "SELECT",
        "SHOW",
        "DESCRIBE",
        "DESC",
        "EXPLAIN",
        "USE",
        "SET",
        "HELP",
        "BEGIN",
        "START",
        "SAVEPOINT",
        "RELEASE",
        "KILL",
        "DEALLOCATE",
        "PREPARE",
        "LOCK",
        "UNLOCK",
        "CHECKSUM",
    ];
    let first = match toks.first() {
        Some(Token::Word(w)) => w.to_ascii_uppercase(),
        Some(Token::Punct('(')) => "SELECT".into(),
        _ => String::new(),
    };
    if first == "COMMIT" {
        return Verdict::Commit;
    }
    if first == "ROLLBACK" {
        let to_savepoint = toks
            .iter()
            .any(|t| matches!(t, Token::Word(w) if w.eq_ignore_ascii_case("TO")));
        return if to_savepoint {
            Verdict::Bypass(reason)
        } else {
            Verdict::Rollback
        };
    }
    if READ_ONLY.contains(&first.as_str()) && !calls_unknown_function(toks) {
        Verdict::Bypass(reason)
    } else {
        Verdict::Write(Invalidation::Everything)
    }
}

/// `name(` where `name` is neither a known built-in nor a keyword: possibly a
/// stored function, which may write.
fn calls_unknown_function(toks: &[Token<'_>]) -> bool {
    toks.windows(2).any(|w| match w {
        [Token::Word(name), Token::Punct('(')] => !is_builtin_or_keyword(name),
        [Token::Quoted(_), Token::Punct('(')] => true,
        _ => false,
    })
}

fn is_builtin_or_keyword(name: &str) -> bool {
    const OTHER: &[&str] = &[
        "in",
        "values",
        "value",
        "exists",
        "any",
        "all",
        "some",
        "using",
        "on",
        "into",
        "from",
        "where",
        "and",
        "or",
        "not",
        "as",
        "cast",
        "convert",
        "char",
        "varchar",
        "decimal",
        "signed",
        "unsigned",
        "binary",
        "now",
        "rand",
        "uuid",
        "uuid_short",
        "sysdate",
        "curdate",
        "curtime",
        "current_timestamp",
        "current_date",
        "current_time",
        "unix_timestamp",
        "utc_timestamp",
        "connection_id",
        "last_insert_id",
        "found_rows",
        "row_count",
        "database",
        "schema",
        "user",
        "current_user",
        "session_user",
        "system_user",
        "version",
        "sleep",
        "benchmark",
        "get_lock",
        "release_lock",
        "is_free_lock",
        "is_used_lock",
        "match",
        "against",
        "interval",
        "over",
        "partition",
        "group_concat",
        "json_arrayagg",
        "json_objectagg",
        "std",
        "stddev",
        "variance",
        "bit_and",
        "bit_or",
        "bit_xor",
        "extract",
        "date_format",
        "str_to_date",
        "from_unixtime",
        "format",
        "weekday",
        "dayname",
        "monthname",
        "last_day",
        "timestampdiff",
        "timestampadd",
        "json_contains",
        "json_search",
        "json_keys",
        "json_set",
        "json_insert",
        "json_remove",
        "json_merge",
        "json_merge_patch",
        "json_merge_preserve",
        "json_quote",
        "json_table",
        "regexp_replace",
        "regexp_substr",
        "regexp_instr",
        "regexp_like",
        "elt",
        "export_set",
        "make_set",
        "quote",
        "soundex",
        "space",
        "conv",
        "bin",
        "oct",
        "pow",
        "power",
        "sqrt",
        "exp",
        "ln",
        "log",
        "log2",
        "log10",
        "pi",
        "sin",
        "cos",
        "tan",
        "asin",
        "acos",
        "atan",
        "atan2",
        "cot",
        "degrees",
        "radians",
        "inet_aton",
        "inet_ntoa",
        "inet6_aton",
        "inet6_ntoa",
        "to_base64",
        "from_base64",
        "compress",
        "uncompress",
        "password",
        "encrypt",
        "aes_encrypt",
        "aes_decrypt",
        "nextval",
        "lastval",
        "setval",
        "row",
        "point",
        "if",
        "case",
        "coalesce",
        "limit",
        "tables",
        "table",
        "with",
        "returning",
        "key",
        "index",
        "primary",
        "unique",
        "foreign",
        "references",
        "check",
        "constraint",
        "default",
        "lock",
        "share",
        "mode",
    ];
    let lower = name.to_ascii_lowercase();
    DETERMINISTIC.contains(&lower.as_str()) || OTHER.contains(&lower.as_str())
}

fn statement(stmt: &Statement) -> Verdict {
    match stmt {
        Statement::Query(q) => query(q),
        Statement::Insert(ins) => insert(ins),
        Statement::Update(u) => {
            let single = u.table.joins.is_empty() && u.from.is_none();
            match (&u.table.relation, single) {
                (TableFactor::Table { name, .. }, true) if !assigns_tuple(&u.assignments) => {
                    let assigned = u
                        .assignments
                        .iter()
                        .filter_map(|a| match &a.target {
                            AssignmentTarget::ColumnName(n) => Some(object_name(n)),
                            AssignmentTarget::Tuple(_) => None,
                        })
                        .collect();
                    rows_or_tables(stmt, table_name(name), u.selection.as_ref(), assigned)
                }
                _ => tables_of(stmt, false),
            }
        }
        Statement::Delete(d) => {
            let from = match &d.from {
                FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f) => f,
            };
            match (from.as_slice(), d.tables.is_empty() && d.using.is_none()) {
                ([t], true) if t.joins.is_empty() => match &t.relation {
                    TableFactor::Table { name, .. } => {
                        rows_or_tables(stmt, table_name(name), d.selection.as_ref(), Vec::new())
                    }
                    _ => tables_of(stmt, false),
                },
                _ => tables_of(stmt, false),
            }
        }
        Statement::Commit { .. } => Verdict::Commit,
        Statement::Rollback { savepoint, .. } => match savepoint {
            Some(_) => Verdict::Bypass(BypassReason::NotPointRead),
            None => Verdict::Rollback,
        },
        Statement::Drop {
            object_type, names, ..
        } => match object_type {
            ObjectType::Table | ObjectType::View if !names.is_empty() => {
                Verdict::Write(Invalidation::Tables {
                    tables: names.iter().map(table_name).collect(),
                    ddl: true,
                })
            }
            _ => Verdict::Write(Invalidation::Everything),
        },
        Statement::RenameTable(renames) => Verdict::Write(Invalidation::Tables {
            tables: renames
                .iter()
                .flat_map(|r| [table_name(&r.old_name), table_name(&r.new_name)])
                .collect(),
            ddl: true,
        }),
        Statement::Truncate(_) | Statement::LoadData { .. } | Statement::Merge(_) => {
            tables_of(stmt, false)
        }
        Statement::AlterTable(_)
        | Statement::CreateTable(_)
        | Statement::CreateIndex(_)
        | Statement::CreateView(_)
        | Statement::OptimizeTable { .. } => tables_of(stmt, true),
        Statement::Set(_)
        | Statement::Use(_)
        | Statement::StartTransaction { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Kill { .. }
        | Statement::Prepare { .. }
        | Statement::Deallocate { .. }
        | Statement::LockTables { .. }
        | Statement::UnlockTables
        | Statement::Explain { .. }
        | Statement::ExplainTable { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowProcessList { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowCollation { .. }
        | Statement::ShowCharset(_) => Verdict::Bypass(BypassReason::NotPointRead),
        // CALL, EXECUTE, triggers, grants, everything else: may change anything.
        _ => Verdict::Write(Invalidation::Everything),
    }
}

/// Every table the statement names, as a table-level invalidation.
fn tables_of(stmt: &Statement, ddl: bool) -> Verdict {
    let mut tables = Vec::new();
    let _ = visit_relations(stmt, |name| {
        tables.push(table_name(name));
        ControlFlow::<()>::Continue(())
    });
    if tables.is_empty() {
        return Verdict::Write(Invalidation::Everything);
    }
    tables.dedup();
    Verdict::Write(Invalidation::Tables { tables, ddl })
}

/// Row-level when WHERE is a plain conjunction of equalities, else tables.
fn rows_or_tables(
    stmt: &Statement,
    table: TableName,
    selection: Option<&Expr>,
    assigned: Vec<String>,
) -> Verdict {
    if has_subquery_or_function_call(stmt) {
        return tables_of(stmt, false);
    }
    let ph = Placeholders::of(stmt);
    match selection.and_then(|e| key_sets(e, &ph)) {
        Some(rows) if !rows.is_empty() && rows.iter().all(|eq| !eq.is_empty()) => {
            Verdict::Write(Invalidation::Rows {
                table,
                rows,
                assigned,
            })
        }
        _ => tables_of(stmt, false),
    }
}

/// Most rows a write's WHERE may name before it is resolved per table.
const MAX_NAMED_ROWS: usize = 256;

/// The rows an AND-chain of `col = value` and `col IN (values)` names, each
/// as its column equalities (the cross product of the IN lists); `None` for
/// an OR or too many rows. Other conjuncts (NOT IN too) only narrow them.
fn key_sets(e: &Expr, ph: &Placeholders) -> Option<Vec<Vec<(String, KeyValue)>>> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let (l, r) = (key_sets(left, ph)?, key_sets(right, ph)?);
            if l.len() * r.len() > MAX_NAMED_ROWS {
                return None;
            }
            Some(
                l.iter()
                    .flat_map(|a| r.iter().map(move |b| [a.as_slice(), b].concat()))
                    .collect(),
            )
        }
        Expr::Nested(inner) => key_sets(inner, ph),
        Expr::InList {
            expr,
            list,
            negated: false,
        } if !list.is_empty() && list.len() <= MAX_NAMED_ROWS => {
            let named: Option<Vec<_>> = column(expr).and_then(|c| {
                list.iter()
                    .map(|v| key_value(v, ph).map(|v| vec![(c.clone(), v)]))
                    .collect()
            });
            // A list of expressions only narrows, like any other conjunct.
            Some(named.unwrap_or_else(|| vec![vec![]]))
        }
        _ => {
            let mut eq = Vec::new();
            conjunction(e, &mut eq, ph).then_some(vec![eq])
        }
    }
}

/// `SET (a, b) = …`: table level (which columns are keys is only known
/// later, against the schema, through `assigned`).
fn assigns_tuple(assignments: &[sqlparser::ast::Assignment]) -> bool {
    assignments
        .iter()
        .any(|a| matches!(a.target, AssignmentTarget::Tuple(_)))
}

fn insert(ins: &sqlparser::ast::Insert) -> Verdict {
    let stmt_tables = || {
        let mut tables = Vec::new();
        if let TableObject::TableName(n) = &ins.table {
            tables.push(table_name(n));
        }
        if let Some(src) = &ins.source {
            let _ = visit_relations(src.as_ref(), |name| {
                tables.push(table_name(name));
                ControlFlow::<()>::Continue(())
            });
        }
        tables
    };
    let TableObject::TableName(name) = &ins.table else {
        return Verdict::Write(Invalidation::Everything);
    };
    let table = table_name(name);
    // REPLACE and ON DUPLICATE KEY UPDATE may touch rows found by any unique
    // key; INSERT … SELECT names no rows: table level.
    let values = match ins.source.as_deref().map(|q| q.body.as_ref()) {
        Some(SetExpr::Values(v)) if !ins.replace_into && ins.on.is_none() => v,
        _ => {
            return Verdict::Write(Invalidation::Tables {
                tables: stmt_tables(),
                ddl: false,
            })
        }
    };
    let cols: Vec<String> = ins
        .columns
        .iter()
        .map(|c| last_part(c).to_ascii_lowercase())
        .collect();
    if cols.is_empty() {
        return Verdict::Write(Invalidation::Tables {
            tables: stmt_tables(),
            ddl: false,
        });
    }
    let ph = Placeholders::of(ins);
    let mut rows = Vec::new();
    for row in &values.rows {
        let row = &row.content;
        if row.len() != cols.len() {
            return Verdict::Write(Invalidation::Tables {
                tables: stmt_tables(),
                ddl: false,
            });
        }
        let mut eq = Vec::new();
        for (c, e) in cols.iter().zip(row) {
            // Expressions (NOW(), col + 1 …) cannot name the row.
            if let Some(v) = key_value(e, &ph) {
                eq.push((c.clone(), v));
            }
        }
        rows.push(eq);
    }
    Verdict::Write(Invalidation::Rows {
        table,
        rows,
        assigned: Vec::new(),
    })
}

/// Source positions of every `?` in a statement, in order: a placeholder's
/// parameter number is its rank here, whatever order the AST is walked in.
struct Placeholders(Vec<(u64, u64)>);

impl Placeholders {
    fn of<V: sqlparser::ast::Visit>(v: &V) -> Self {
        let mut at = Vec::new();
        let _ = visit_expressions(v, |x| {
            if let Expr::Value(val) = x {
                if matches!(val.value, Value::Placeholder(_)) {
                    at.push((val.span.start.line, val.span.start.column));
                }
            }
            ControlFlow::<()>::Continue(())
        });
        at.sort_unstable();
        Placeholders(at)
    }

    fn index(&self, span: &sqlparser::tokenizer::Span) -> Option<usize> {
        let key = (span.start.line, span.start.column);
        // Spans must be known and unique, or positions cannot be trusted.
        if key == (0, 0) {
            return None;
        }
        self.0.binary_search(&key).ok()
    }
}

fn has_subquery_or_function_call(stmt: &Statement) -> bool {
    let mut found = false;
    let _ = visit_expressions(stmt, |e| {
        if matches!(
            e,
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } | Expr::Function(_)
        ) {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

fn query(q: &Query) -> Verdict {
    // Stored functions may write; a SELECT calling one is not read-only.
    let mut unknown_fn = false;
    let _ = visit_expressions(q, |e| {
        if let Expr::Function(f) = e {
            if !is_builtin_or_keyword(&object_name(&f.name)) {
                unknown_fn = true;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    if unknown_fn {
        return Verdict::Write(Invalidation::Everything);
    }
    match point_read(q) {
        Ok(r) => Verdict::Read(r),
        Err(reason) => Verdict::Bypass(reason),
    }
}

fn point_read(q: &Query) -> Result<PointRead, BypassReason> {
    if !q.locks.is_empty() {
        return Err(BypassReason::Locking);
    }
    if q.with.is_some() || q.fetch.is_some() || q.for_clause.is_some() {
        return Err(BypassReason::NotPointRead);
    }
    if let Some(LimitClause::LimitOffset { limit_by, .. }) = &q.limit_clause {
        if !limit_by.is_empty() {
            return Err(BypassReason::NotPointRead);
        }
    }
    let SetExpr::Select(s) = q.body.as_ref() else {
        return Err(BypassReason::NotPointRead);
    };
    if s.into.is_some() {
        return Err(BypassReason::NonDeterministic);
    }
    if s.select_modifiers
        .as_ref()
        .is_some_and(|m| m.sql_no_cache || m.sql_calc_found_rows)
    {
        return Err(BypassReason::SqlNoCache);
    }
    if s.having.is_some() || s.from.len() != 1 || !s.from[0].joins.is_empty() {
        return Err(BypassReason::NotPointRead);
    }
    let TableFactor::Table {
        name, args: None, ..
    } = &s.from[0].relation
    else {
        return Err(BypassReason::NotPointRead);
    };
    let table = table_name(name);
    if table.db.as_deref().is_some_and(is_system_schema) {
        return Err(BypassReason::SystemSchema);
    }
    for item in &s.projection {
        match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                deterministic(e)?
            }
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {}
            _ => return Err(BypassReason::NotPointRead),
        }
    }
    let selection = s.selection.as_ref().ok_or(BypassReason::NotPointRead)?;
    deterministic(selection)?;
    let ph = Placeholders::of(q);
    let mut eq = Vec::new();
    if !conjunction(selection, &mut eq, &ph) || eq.is_empty() {
        return Err(BypassReason::NotPointRead);
    }
    Ok(PointRead { table, eq })
}

/// Every expression node is allowed: columns, literals, `?`, operators and
/// deterministic built-ins. Variables and subqueries are not.
fn deterministic(e: &Expr) -> Result<(), BypassReason> {
    let mut bad = None;
    let _ = visit_expressions(e, |x| {
        let r = match x {
            Expr::Identifier(id) if id.value.starts_with('@') => {
                Some(BypassReason::NonDeterministic)
            }
            Expr::CompoundIdentifier(ids) if ids.iter().any(|i| i.value.starts_with('@')) => {
                Some(BypassReason::NonDeterministic)
            }
            Expr::Identifier(_)
            | Expr::CompoundIdentifier(_)
            | Expr::Value(_)
            | Expr::BinaryOp { .. }
            | Expr::UnaryOp { .. }
            | Expr::Nested(_)
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::IsTrue(_)
            | Expr::IsFalse(_)
            | Expr::InList { .. }
            | Expr::Between { .. }
            | Expr::Like { .. }
            | Expr::Case { .. }
            | Expr::Cast { .. } => None,
            Expr::Function(f) => {
                let name = object_name(&f.name);
                let plain_args =
                    matches!(f.args, FunctionArguments::List(_) | FunctionArguments::None);
                if plain_args
                    && f.filter.is_none()
                    && f.over.is_none()
                    && DETERMINISTIC.contains(&name.as_str())
                {
                    None
                } else {
                    Some(BypassReason::NonDeterministic)
                }
            }
            _ => Some(BypassReason::NotPointRead),
        };
        match r {
            Some(r) => {
                bad = Some(r);
                ControlFlow::Break(())
            }
            None => ControlFlow::Continue(()),
        }
    });
    bad.map_or(Ok(()), Err)
}

/// Collects `col = value` equalities of an AND-chain; false if an OR or
/// another shape is at the top level. Other conjuncts are allowed: they only
/// narrow the result.
fn conjunction(e: &Expr, out: &mut Vec<(String, KeyValue)>, ph: &Placeholders) -> bool {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => conjunction(left, out, ph) && conjunction(right, out, ph),
        Expr::Nested(inner) => conjunction(inner, out, ph),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            let pair = match (column(left), column(right)) {
                (Some(c), None) => key_value(right, ph).map(|v| (c, v)),
                (None, Some(c)) => key_value(left, ph).map(|v| (c, v)),
                _ => None,
            };
            out.extend(pair);
            true
        }
        Expr::BinaryOp {
            op: BinaryOperator::Or | BinaryOperator::Xor,
            ..
        } => false,
        _ => true,
    }
}

fn column(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(id) if !id.value.starts_with('@') => Some(id.value.to_ascii_lowercase()),
        Expr::CompoundIdentifier(ids) => ids.last().map(|i| i.value.to_ascii_lowercase()),
        Expr::Nested(inner) => column(inner),
        _ => None,
    }
}

fn key_value(e: &Expr, ph: &Placeholders) -> Option<KeyValue> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Placeholder(_) => ph.index(&v.span).map(KeyValue::Param),
            Value::Number(n, _) => Some(KeyValue::Lit(Lit::Number(n.to_string()))),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
                Some(KeyValue::Lit(Lit::Str(s.clone())))
            }
            Value::Null => Some(KeyValue::Lit(Lit::Null)),
            _ => None,
        },
        Expr::UnaryOp {
            op: sqlparser::ast::UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => Some(KeyValue::Lit(Lit::Number(format!("-{n}")))),
                _ => None,
            },
            _ => None,
        },
        Expr::Nested(inner) => key_value(inner, ph),
        _ => None,
    }
}

fn last_part(n: &ObjectName) -> String {
    match n.0.last() {
        Some(ObjectNamePart::Identifier(i)) => i.value.clone(),
        _ => String::new(),
    }
}

fn object_name(n: &ObjectName) -> String {
    last_part(n).to_ascii_lowercase()
}

fn table_name(n: &ObjectName) -> TableName {
    let parts: Vec<String> =
        n.0.iter()
            .map(|p| match p {
                ObjectNamePart::Identifier(i) => i.value.clone(),
                _ => String::new(),
            })
            .collect();
    match parts.as_slice() {
        [db, t] => TableName {
            db: Some(db.clone()),
            name: t.clone(),
        },
        [.., t] => TableName {
            db: None,
            name: t.clone(),
        },
        [] => TableName {
            db: None,
            name: String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BypassReason::*;

    fn t(db: Option<&str>, name: &str) -> TableName {
        TableName {
            db: db.map(Into::into),
            name: name.into(),
        }
    }

    #[test]
    fn point_reads() {
        let v = classify("SELECT id, v FROM test.t WHERE id = 5");
        assert_eq!(
            v,
            Verdict::Read(PointRead {
                table: t(Some("test"), "t"),
                eq: vec![("id".into(), KeyValue::Lit(Lit::Number("5".into())))]
            })
        );
        let v = classify("select * from t where c > ? and a = ? and B = '7'");
        let Verdict::Read(r) = v else { panic!("{v:?}") };
        assert_eq!(
            r.eq,
            vec![
                ("a".into(), KeyValue::Param(1)),
                ("b".into(), KeyValue::Lit(Lit::Str("7".into())))
            ]
        );
        assert!(matches!(
            classify("SELECT UPPER(name) FROM t WHERE id = -3 LIMIT 1"),
            Verdict::Read(_)
        ));
    }

    #[test]
    fn bypass_reasons() {
        let cases: &[(&str, BypassReason)] = &[
            ("SELECT * FROM t WHERE id = 1 FOR UPDATE", Locking),
            ("SELECT * FROM t WHERE id = 1 FOR SHARE", Locking),
            (
                "SELECT * FROM t WHERE id = 1 LOCK IN SHARE MODE",
                Unparsable,
            ),
            ("SELECT NOW() FROM t WHERE id = 1", NonDeterministic),
            ("SELECT RAND() FROM t WHERE id = 1", NonDeterministic),
            ("SELECT UUID() FROM t WHERE id = 1", NonDeterministic),
            (
                "SELECT CURRENT_USER() FROM t WHERE id = 1",
                NonDeterministic,
            ),
            (
                "SELECT CONNECTION_ID() FROM t WHERE id = 1",
                NonDeterministic,
            ),
            (
                "SELECT LAST_INSERT_ID() FROM t WHERE id = 1",
                NonDeterministic,
            ),
            ("SELECT FOUND_ROWS()", NotPointRead),
            ("SELECT @a FROM t WHERE id = 1", NonDeterministic),
            ("SELECT @@sql_mode FROM t WHERE id = 1", NonDeterministic),
            ("SELECT * FROM t WHERE id = @a", NonDeterministic),
            (
                "SELECT * FROM information_schema.tables WHERE table_name = 'x'",
                SystemSchema,
            ),
            ("SELECT * FROM mysql.user WHERE user = 'x'", SystemSchema),
            ("SELECT SQL_NO_CACHE * FROM t WHERE id = 1", SqlNoCache),
            ("SELECT * FROM t WHERE id = 1 OR id = 2", NotPointRead),
            ("SELECT * FROM t WHERE id > 1", NotPointRead),
            ("SELECT * FROM t", NotPointRead),
            (
                "SELECT * FROM t JOIN u ON t.a = u.a WHERE t.id = 1",
                NotPointRead,
            ),
            ("SELECT * FROM t WHERE id = (SELECT 1)", NotPointRead),
            ("SELECT 1 INTO @v", NonDeterministic),
            ("SHOW TABLES", NotPointRead),
        ];
        for (sql, want) in cases {
            assert_eq!(classify(sql), Verdict::Bypass(*want), "{sql}");
        }
    }

    #[test]
    fn writes() {
        let rows = |sql| match classify(sql) {
            Verdict::Write(Invalidation::Rows { rows, .. }) => rows,
            v => panic!("{sql}: {v:?}"),
        };
        assert_eq!(
            rows("UPDATE t SET v = 1 WHERE id = 5")[0],
            vec![("id".into(), KeyValue::Lit(Lit::Number("5".into())))]
        );
        assert_eq!(
            rows("DELETE FROM t WHERE id = ?")[0],
            vec![("id".into(), KeyValue::Param(0))]
        );
        let r = rows("INSERT INTO t (id, v) VALUES (1, 'a'), (?, NOW())");
        assert_eq!(r.len(), 2);
        assert_eq!(r[1], vec![("id".into(), KeyValue::Param(0))]);
        assert_eq!(
            rows("UPDATE t SET v = ? WHERE id = ?")[0],
            vec![("id".into(), KeyValue::Param(1))]
        );
        assert_eq!(
            rows("UPDATE t SET v = ?, w = ? WHERE x > ? AND id = ?")[0],
            vec![("id".into(), KeyValue::Param(3))]
        );
        // IN lists name one row per value (crossed with the other keys).
        let lit = |n: &str| KeyValue::Lit(Lit::Number(n.into()));
        assert_eq!(
            rows("DELETE FROM t WHERE id IN (1, -2, ?)"),
            vec![
                vec![("id".into(), lit("1"))],
                vec![("id".into(), lit("-2"))],
                vec![("id".into(), KeyValue::Param(0))],
            ]
        );
        assert_eq!(
            rows("UPDATE t SET v = 1 WHERE a = 1 AND b IN (2, 3) AND v NOT IN (4)"),
            vec![
                vec![("a".into(), lit("1")), ("b".into(), lit("2"))],
                vec![("a".into(), lit("1")), ("b".into(), lit("3"))],
            ]
        );
        let tables = |sql| match classify(sql) {
            Verdict::Write(Invalidation::Tables { tables, ddl }) => (tables, ddl),
            v => panic!("{sql}: {v:?}"),
        };
        assert_eq!(tables("DELETE FROM t WHERE id IN (SELECT 1)").0.len(), 1);
        assert_eq!(tables("DELETE FROM t WHERE id NOT IN (1)").0.len(), 1);
        assert_eq!(
            tables("UPDATE t SET v = 1 WHERE v = 2 OR id = 1").0,
            vec![t(None, "t")]
        );
        assert_eq!(
            tables("INSERT INTO t (id) VALUES (1) ON DUPLICATE KEY UPDATE v = 2").0,
            vec![t(None, "t")]
        );
        assert_eq!(
            tables("REPLACE INTO t (id) VALUES (1)").0,
            vec![t(None, "t")]
        );
        assert_eq!(
            tables("INSERT INTO t SELECT * FROM u").0,
            vec![t(None, "t"), t(None, "u")]
        );
        assert_eq!(
            tables("UPDATE t JOIN u ON t.a = u.a SET t.v = 1").0,
            vec![t(None, "t"), t(None, "u")]
        );
        assert_eq!(tables("DELETE t FROM t JOIN u ON t.a = u.a").0.len(), 2);
        assert_eq!(tables("TRUNCATE TABLE d.t").0, vec![t(Some("d"), "t")]);
        assert_eq!(
            tables("ALTER TABLE t ADD COLUMN x INT"),
            (vec![t(None, "t")], true)
        );
        assert_eq!(tables("DROP TABLE a, b").0.len(), 2);
        assert_eq!(tables("RENAME TABLE a TO b").0.len(), 2);
        assert_eq!(
            tables("UPDATE t SET v = 1 WHERE id = (SELECT 1)").0,
            vec![t(None, "t")]
        );
        assert_eq!(
            classify("SELECT 1; SELECT 2"),
            Verdict::Bypass(MultiStatement)
        );
        assert_eq!(
            tables("SELECT 1; UPDATE t SET v = 1 WHERE id = 2").0,
            vec![t(None, "t")]
        );
        match classify("UPDATE t SET id = 7 WHERE id = 5") {
            Verdict::Write(Invalidation::Rows { assigned, .. }) => {
                assert_eq!(assigned, vec!["id".to_string()])
            }
            v => panic!("{v:?}"),
        }
        for sql in [
            "CALL p()",
            "DROP DATABASE d",
            "FROBNICATE x",
            "SELECT my_func(1)",
            "SELECT 1; COMMIT",
        ] {
            assert_eq!(
                classify(sql),
                Verdict::Write(Invalidation::Everything),
                "{sql}"
            );
        }
        assert_eq!(classify("COMMIT"), Verdict::Commit);
        assert_eq!(classify("ROLLBACK"), Verdict::Rollback);
        assert_eq!(
            classify("ROLLBACK TO SAVEPOINT a"),
            Verdict::Bypass(NotPointRead)
        );
        assert_eq!(classify("BEGIN"), Verdict::Bypass(NotPointRead));
    }
}
