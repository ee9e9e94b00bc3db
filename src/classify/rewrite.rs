//! Statement text the proxy changes before MySQL sees it: `CONNECTION_ID()`
//! becomes the proxy's own connection id.
//!
//! Policy: clients see the proxy's ids (the handshake's, and the ones `KILL`
//! takes), while MySQL would answer `CONNECTION_ID()` with the thread id of
//! whichever pooled connection ran the statement. So each call — a word
//! `CONNECTION_ID` (any case, outside strings, comments and backquotes)
//! followed by `()` — is replaced by the id as a literal. Column names stay
//! what MySQL would give: every select-list item holding a call, at any
//! depth, that has no alias gets its text as written as the alias
//! (`@a - CONNECTION_ID()` is still the column `@a - CONNECTION_ID()`;
//! MySQL names such a column by its text, cut at 255 characters, and so is
//! the alias). An item is taken to have an alias if it names one with `AS`,
//! or ends in a name or string right after a value (`f() x`); that guess can
//! only err towards leaving an alias out (a column renamed), never towards
//! adding one where MySQL would refuse it. A statement with no call is left
//! untouched (`None`).

use super::lexer::{Lexer, Token};

/// Words that end a select list at their depth.
const ENDS_SELECT_LIST: [&str; 13] = [
    "FROM",
    "INTO",
    "WHERE",
    "GROUP",
    "HAVING",
    "ORDER",
    "LIMIT",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "WINDOW",
    "FOR",
    "LOCK",
];

/// Words between SELECT and its first item.
const SELECT_OPTIONS: [&str; 11] = [
    "ALL",
    "DISTINCT",
    "DISTINCTROW",
    "HIGH_PRIORITY",
    "STRAIGHT_JOIN",
    "SQL_SMALL_RESULT",
    "SQL_BIG_RESULT",
    "SQL_BUFFER_RESULT",
    "SQL_CACHE",
    "SQL_NO_CACHE",
    "SQL_CALC_FOUND_ROWS",
];

/// The longest column name MySQL keeps (longer ones, aliases too, are cut).
const NAME_MAX_CHARS: usize = 255;

/// `sql` with every `CONNECTION_ID()` replaced by `id`, or None if it has none.
pub fn own_connection_id(sql: &str, id: u32) -> Option<String> {
    if !contains_ignore_case(sql.as_bytes(), b"connection_id") {
        return None;
    }
    let mut scan = Scan::new(sql);
    scan.run();
    if scan.calls.is_empty() {
        return None;
    }
    Some(apply(sql, &id.to_string(), &scan.calls, &scan.aliases))
}

/// `sql` with each call range replaced by `id` and each alias inserted.
fn apply(sql: &str, id: &str, calls: &[(usize, usize)], aliases: &[(usize, &str)]) -> String {
    let mut out = String::with_capacity(sql.len() + 32 * (calls.len() + aliases.len()));
    let mut edits: Vec<(usize, Option<usize>, &str)> = calls
        .iter()
        .map(|&(start, end)| (start, Some(end), id))
        .chain(aliases.iter().map(|&(at, text)| (at, None, text)))
        .collect();
    // By position; at one position, a call (which ends later) before an alias.
    edits.sort_by_key(|&(at, end, _)| (at, end.is_none()));
    let mut copied = 0;
    for (at, end, text) in edits {
        out.push_str(&sql[copied..at]);
        match end {
            Some(end) => {
                out.push_str(text);
                copied = end;
            }
            None => {
                out.push_str(" AS `");
                out.push_str(&text.replace('`', "``"));
                out.push('`');
                copied = at;
            }
        }
    }
    out.push_str(&sql[copied..]);
    out
}

/// What a token is, for telling an item's alias from its expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Ends a value: a name, literal, variable or `)`.
    Value,
    /// Could be an alias: a bare word, backquoted name or string.
    Name,
    Other,
}

/// A select-list item being read.
struct Item {
    start: usize,
    has_call: bool,
    aliased: bool,
    /// The item's last two tokens at its own depth, the latest last.
    last: [Kind; 2],
}

/// One parenthesis depth: whether it is in a select list, and its item.
#[derive(Default)]
struct Frame {
    in_list: bool,
    item: Option<Item>,
}

struct Scan<'a> {
    sql: &'a str,
    frames: Vec<Frame>,
    /// Byte ranges of the calls.
    calls: Vec<(usize, usize)>,
    /// Where an alias goes, and its text.
    aliases: Vec<(usize, &'a str)>,
    /// End of the last token seen.
    prev_end: usize,
}

impl<'a> Scan<'a> {
    fn new(sql: &'a str) -> Self {
        Scan {
            sql,
            frames: vec![Frame::default()],
            calls: Vec::new(),
            aliases: Vec::new(),
            prev_end: 0,
        }
    }

    fn run(&mut self) {
        let sql = self.sql;
        let mut lexer = Lexer::new(sql);
        let toks: Vec<(Token<'a>, usize)> = std::iter::from_fn(|| {
            let t = lexer.next()?;
            Some((t, lexer.offset()))
        })
        .collect();
        for (i, (t, end)) in toks.iter().enumerate() {
            self.token(t, toks.get(i + 1).map(|n| &n.0), *end);
            self.prev_end = *end;
        }
        self.end_statement();
    }

    fn token(&mut self, t: &Token<'a>, next: Option<&Token<'a>>, end: usize) {
        match t {
            Token::Semicolon => self.end_statement(),
            Token::Punct('(') => {
                self.note(Kind::Other);
                self.frames.push(Frame::default());
            }
            Token::Punct(')') if self.frames.len() > 1 => {
                self.finish_item();
                self.frames.pop();
                self.note(Kind::Value);
            }
            Token::Punct(',') if self.top().in_list => self.finish_item(),
            Token::Word(w) if w.eq_ignore_ascii_case("SELECT") => {
                self.finish_item();
                self.top().in_list = true;
            }
            Token::Word(w) if ENDS_SELECT_LIST.iter().any(|k| w.eq_ignore_ascii_case(k)) => {
                self.finish_item();
                self.top().in_list = false;
            }
            Token::Word(w) if w.eq_ignore_ascii_case("AS") => {
                self.note(Kind::Other);
                if let Some(item) = &mut self.top().item {
                    item.aliased = true;
                }
            }
            Token::Word(w) if w.eq_ignore_ascii_case("CONNECTION_ID") => {
                self.note(Kind::Name);
                if next == Some(&Token::Punct('(')) {
                    self.call(end - w.len());
                }
            }
            Token::Word(_) | Token::Quoted(_) | Token::Str(_) => self.note(Kind::Name),
            Token::Number(_) | Token::UserVar(_) | Token::SysVar(_) => self.note(Kind::Value),
            Token::Punct(_) => self.note(Kind::Other),
        }
    }

    fn top(&mut self) -> &mut Frame {
        if self.frames.is_empty() {
            self.frames.push(Frame::default());
        }
        let last = self.frames.len() - 1;
        &mut self.frames[last]
    }

    /// A token at the current depth: it opens an item in a select list.
    fn note(&mut self, kind: Kind) {
        let (sql, prev_end) = (self.sql, self.prev_end);
        let frame = self.top();
        if !frame.in_list {
            return;
        }
        match &mut frame.item {
            Some(item) => item.last = [item.last[1], kind],
            None => {
                let rest = &sql[prev_end..];
                let word = rest.trim_start();
                let option = SELECT_OPTIONS.iter().any(|o| {
                    word.get(..o.len())
                        .is_some_and(|w| w.eq_ignore_ascii_case(o))
                        && !word[o.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
                });
                if !option {
                    frame.item = Some(Item {
                        start: prev_end + (rest.len() - word.len()),
                        has_call: false,
                        aliased: false,
                        last: [Kind::Other, kind],
                    });
                }
            }
        }
    }

    /// A call starting at `start`: its `()` ends it; every item it is in
    /// needs its alias.
    fn call(&mut self, start: usize) {
        let Some(end) = call_end(self.sql, start + "CONNECTION_ID".len()) else {
            return;
        };
        self.calls.push((start, end));
        for f in &mut self.frames {
            if let Some(item) = &mut f.item {
                item.has_call = true;
            }
        }
    }

    fn finish_item(&mut self) {
        let (sql, end) = (self.sql, self.prev_end);
        let Some(item) = self.top().item.take() else {
            return;
        };
        let implicit_alias = item.last[1] == Kind::Name && item.last[0] == Kind::Value
            || item.last == [Kind::Name, Kind::Name];
        if item.has_call && !item.aliased && !implicit_alias && end > item.start {
            let text = &sql[item.start..end];
            let cut = text
                .char_indices()
                .nth(NAME_MAX_CHARS)
                .map_or(text, |(i, _)| &text[..i]);
            self.aliases.push((end, cut));
        }
    }

    fn end_statement(&mut self) {
        while self.frames.len() > 1 {
            self.finish_item();
            self.frames.pop();
        }
        self.finish_item();
        self.frames = vec![Frame::default()];
    }
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
            Some("SELECT (SELECT 42 AS `CONNECTION_ID()`) AS `(SELECT CONNECTION_ID())`")
        );
        // An expression holding the call is named by its text too.
        assert_eq!(
            rw("select @a - connection_id(); select 1").as_deref(),
            Some("select @a - 42 AS `@a - connection_id()`; select 1")
        );
        assert_eq!(
            rw("SELECT DISTINCT IF(1, CONNECTION_ID(), 0), `a`").as_deref(),
            Some("SELECT DISTINCT IF(1, 42, 0) AS `IF(1, CONNECTION_ID(), 0)`, `a`")
        );
        assert_eq!(
            rw("SELECT CONNECTION_ID()+`x``y` FROM t").as_deref(),
            Some("SELECT 42+`x``y` AS `CONNECTION_ID()+``x````y``` FROM t")
        );
        // MySQL cuts a long name at 255 characters; so is the alias.
        let long = format!("SELECT CONNECTION_ID(){}", " + 1".repeat(100));
        let cut = &long["SELECT ".len()..]
            .chars()
            .take(255)
            .collect::<String>();
        assert_eq!(
            rw(&long),
            Some(format!(
                "{} AS `{cut}`",
                long.replace("CONNECTION_ID()", "42")
            ))
        );
    }

    #[test]
    fn an_alias_is_kept() {
        for (sql, want) in [
            ("SELECT CONNECTION_ID() AS me", "SELECT 42 AS me"),
            ("SELECT CONNECTION_ID() me", "SELECT 42 me"),
            ("SELECT CONNECTION_ID() + 1 'n'", "SELECT 42 + 1 'n'"),
            ("SELECT (CONNECTION_ID()) `n`, 2", "SELECT (42) `n`, 2"),
            (
                "SELECT CASE WHEN 1 THEN CONNECTION_ID() END n",
                "SELECT CASE WHEN 1 THEN 42 END n",
            ),
        ] {
            assert_eq!(rw(sql).as_deref(), Some(want), "{sql}");
        }
    }

    #[test]
    fn elsewhere_it_is_the_literal() {
        assert_eq!(
            rw("SELECT * FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()")
                .as_deref(),
            Some("SELECT * FROM information_schema.PROCESSLIST WHERE ID = 42")
        );
        assert_eq!(
            rw("SELECT 1 EXCEPT SELECT CONNECTION_ID() AS c").as_deref(),
            Some("SELECT 1 EXCEPT SELECT 42 AS c")
        );
        assert_eq!(
            rw("SELECT CAST(CONNECTION_ID() AS CHAR) AS c").as_deref(),
            Some("SELECT CAST(42 AS CHAR) AS c")
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
