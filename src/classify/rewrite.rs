//! Statement text the proxy changes before MySQL sees it: `CONNECTION_ID()`
//! becomes the proxy's own connection id.
//!
//! Policy: clients see the proxy's ids (the handshake's, and the ones `KILL`
//! takes), while MySQL would answer `CONNECTION_ID()` with the thread id of
//! whichever pooled connection ran the statement. So each call — a word
//! `CONNECTION_ID` (any case, outside strings, comments and backquotes)
//! followed by `()` — is replaced by the id as a literal. A call that is a
//! whole item of a select list with no alias gets its text as written as
//! the alias, so the column keeps the name MySQL would give it; elsewhere
//! (a WHERE clause, a function argument, an expression) it is just the
//! literal. A statement with no call is left untouched (`None`).

use super::lexer::{is_kw, Lexer, Token};

/// Words that end a select list at their depth.
const ENDS_SELECT_LIST: [&str; 11] = [
    "FROM", "INTO", "WHERE", "GROUP", "HAVING", "ORDER", "LIMIT", "UNION", "WINDOW", "FOR", "LOCK",
];

/// `sql` with every `CONNECTION_ID()` replaced by `id`, or None if it has none.
pub fn own_connection_id(sql: &str, id: u32) -> Option<String> {
    if !contains_ignore_case(sql.as_bytes(), b"connection_id") {
        return None;
    }
    let toks: Vec<Token<'_>> = Lexer::new(sql).collect();
    let mut out = String::with_capacity(sql.len() + 32);
    let mut copied = 0;
    let mut in_list: Vec<bool> = vec![false];
    for (i, t) in toks.iter().enumerate() {
        match t {
            Token::Punct('(') => in_list.push(false),
            Token::Punct(')') if in_list.len() > 1 => {
                in_list.pop();
            }
            Token::Word(w) if w.eq_ignore_ascii_case("SELECT") => set_top(&mut in_list, true),
            Token::Word(w) if ENDS_SELECT_LIST.iter().any(|k| w.eq_ignore_ascii_case(k)) => {
                set_top(&mut in_list, false)
            }
            Token::Word(w) if w.eq_ignore_ascii_case("CONNECTION_ID") => {
                let start = offset(sql, w);
                let Some(end) = call_end(sql, start + w.len()) else {
                    continue;
                };
                let whole_item = in_list.last() == Some(&true)
                    && starts_item(i.checked_sub(1).and_then(|p| toks.get(p)))
                    && ends_item(toks.get(i + 3));
                out.push_str(&sql[copied..start]);
                out.push_str(&id.to_string());
                if whole_item {
                    out.push_str(" AS `");
                    out.push_str(&sql[start..end].replace('`', "``"));
                    out.push('`');
                }
                copied = end;
            }
            _ => {}
        }
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&sql[copied..]);
    Some(out)
}

fn set_top(in_list: &mut [bool], v: bool) {
    if let Some(top) = in_list.last_mut() {
        *top = v;
    }
}

/// Byte offset of `part`, a slice of `sql`.
fn offset(sql: &str, part: &str) -> usize {
    part.as_ptr() as usize - sql.as_ptr() as usize
}

/// The end of `()` (spaces allowed) right after a word ending at `from`.
fn call_end(sql: &str, from: usize) -> Option<usize> {
    let b = sql.as_bytes();
    let mut i = from;
    let skip = |i: &mut usize| {
        while b.get(*i).is_some_and(|c| c.is_ascii_whitespace()) {
            *i += 1;
        }
    };
    skip(&mut i);
    (b.get(i) == Some(&b'(')).then_some(())?;
    i += 1;
    skip(&mut i);
    (b.get(i) == Some(&b')')).then_some(i + 1)
}

fn starts_item(prev: Option<&Token<'_>>) -> bool {
    matches!(prev, Some(Token::Punct(',')))
        || ["SELECT", "DISTINCT", "ALL"].iter().any(|k| is_kw(prev, k))
}

fn ends_item(next: Option<&Token<'_>>) -> bool {
    match next {
        None | Some(Token::Semicolon) | Some(Token::Punct(',')) | Some(Token::Punct(')')) => true,
        t => ["FROM", "INTO", "UNION"].iter().any(|k| is_kw(t, k)),
    }
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(sql: &str) -> Option<String> {
        own_connection_id(sql, 42)
    }

    #[test]
    fn a_select_item_keeps_its_column_name() {
        assert_eq!(
            rw("SELECT CONNECTION_ID()").as_deref(),
            Some("SELECT 42 AS `CONNECTION_ID()`")
        );
        assert_eq!(
            rw("select 1, connection_id ( ) from t").as_deref(),
            Some("select 1, 42 AS `connection_id ( )` from t")
        );
        assert_eq!(
            rw("SELECT CONNECTION_ID() INTO @x").as_deref(),
            Some("SELECT 42 AS `CONNECTION_ID()` INTO @x")
        );
        assert_eq!(
            rw("SELECT (SELECT CONNECTION_ID())").as_deref(),
            Some("SELECT (SELECT 42 AS `CONNECTION_ID()`)")
        );
    }

    #[test]
    fn elsewhere_it_is_the_literal() {
        assert_eq!(
            rw("SELECT CONNECTION_ID() AS me").as_deref(),
            Some("SELECT 42 AS me")
        );
        assert_eq!(
            rw("SELECT * FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()")
                .as_deref(),
            Some("SELECT * FROM information_schema.PROCESSLIST WHERE ID = 42")
        );
        assert_eq!(
            rw("SELECT IF(1, CONNECTION_ID(), 0)").as_deref(),
            Some("SELECT IF(1, 42, 0)")
        );
        assert_eq!(
            rw("SELECT a FROM t ORDER BY a, CONNECTION_ID()").as_deref(),
            Some("SELECT a FROM t ORDER BY a, 42")
        );
        assert_eq!(
            rw("INSERT INTO t VALUES (CONNECTION_ID())").as_deref(),
            Some("INSERT INTO t VALUES (42)")
        );
    }

    #[test]
    fn strings_comments_and_other_words_are_left_alone() {
        assert_eq!(rw("SELECT 'CONNECTION_ID()'"), None);
        assert_eq!(rw("SELECT 1 /* CONNECTION_ID() */"), None);
        assert_eq!(rw("SELECT connection_id FROM t"), None);
        assert_eq!(rw("SELECT `CONNECTION_ID`()"), None);
        assert_eq!(rw("SELECT 1"), None);
    }
}
