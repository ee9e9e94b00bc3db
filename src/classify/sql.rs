//! sqlparser-based classification of one statement (`classify`).
//!
//! Policy: default-deny. A point read is a single-table `SELECT` whose WHERE
//! is a conjunction containing `column = literal|?` equalities, with only
//! deterministic built-in functions anywhere (an allow-list, not a deny-list),
//! no subqueries, no variables, no locking clause and no `SQL_NO_CACHE`.
//! Whether the equalities cover a primary key is decided later against the
//! schema. Statements sqlparser cannot parse are judged by their first
//! keyword: known read-only verbs forward without invalidation, anything else
//! invalidates everything. So are statements with more than `MAX_JOINS` JOIN
//! keywords: sqlparser 0.63 recurses once per JOIN with no depth guard
//! (`parse_joins`), and MariaDB's own `join_optimizer.test` sends 8192 of them,
//! which overflowed a worker's stack. No point read has a JOIN at all.

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
use super::words::{DETERMINISTIC, OTHER_BUILTINS, READ_ONLY};

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
    if too_many_joins(toks) {
        return read_or_unknown(toks, BypassReason::Unparsable);
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

/// More JOIN keywords than sqlparser can be trusted to recurse through on a
/// worker's stack (a level took ~60 KiB in a debug build: 34 levels filled
/// 2 MiB). MariaDB allows 61 tables per join; the few statements past this
/// are never point reads and lose only table-precise invalidation.
const MAX_JOINS: usize = 64;

/// Whether `toks` holds more than `MAX_JOINS` JOIN keywords.
fn too_many_joins(toks: &[Token<'_>]) -> bool {
    toks.iter()
        .filter(|t| matches!(t, Token::Word(w) if w.eq_ignore_ascii_case("JOIN")))
        .nth(MAX_JOINS)
        .is_some()
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
    let lower = name.to_ascii_lowercase();
    DETERMINISTIC.contains(&lower.as_str()) || OTHER_BUILTINS.contains(&lower.as_str())
}

fn statement(stmt: &Statement) -> Verdict {
    match stmt {
        Statement::Query(q) => query(q),
        Statement::Insert(ins) => insert(ins),
        Statement::Update(u) => update(stmt, u),
        Statement::Delete(d) => delete(stmt, d),
        Statement::Commit { .. } => Verdict::Commit,
        Statement::Rollback { savepoint, .. } => match savepoint {
            Some(_) => Verdict::Bypass(BypassReason::NotPointRead),
            None => Verdict::Rollback,
        },
        Statement::Drop {
            object_type, names, ..
        } => drop_objects(object_type, names),
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

/// UPDATE of one table: row level by key; joins and tuples: tables.
fn update(stmt: &Statement, u: &sqlparser::ast::Update) -> Verdict {
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

/// DELETE from one table: row level by key; multi-table: tables.
fn delete(stmt: &Statement, d: &sqlparser::ast::Delete) -> Verdict {
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

/// DROP TABLE / VIEW names its tables; any other DROP may change anything.
fn drop_objects(object_type: &ObjectType, names: &[ObjectName]) -> Verdict {
    match object_type {
        ObjectType::Table | ObjectType::View if !names.is_empty() => {
            Verdict::Write(Invalidation::Tables {
                tables: names.iter().map(table_name).collect(),
                ddl: true,
            })
        }
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
#[path = "sql_tests.rs"]
mod tests;
