//! Verdict memo: text statements that differ only in their literals share
//! one classification, so a miss costs no sqlparser run after the first few
//! of its shape.
//!
//! Policy: a statement's *shape* is its exact text with every plain literal
//! cut out — an unsigned decimal number (`123`, `1.5`, at most 18 digits a
//! side) or a single-quoted string without backslashes, quotes or a glued
//! prefix (`x'…'`, `_utf8'…'`, `N'…'` stay in the shape). Everything else —
//! whitespace, comments, executable comments, case — is part of the shape,
//! so two statements of one shape reach sqlparser as the same tokens with
//! only those literals' contents changed, and plain literals' contents
//! never change how sqlparser tokenizes or parses.
//!
//! A shape's verdict is learnt on its second sighting (a statement seen once
//! costs one parse, as without the memo): the statement is classified, and
//! so is a *probe* — the shape with a distinct sentinel in every literal.
//! The template is the probe's verdict; it is kept only if substituting the
//! statement's own literals for the sentinels gives exactly the statement's
//! own verdict (else the shape is marked `Never` and always parsed). Later
//! statements of the shape get the template with their literals substituted.
//!
//! Invariants: the memo never changes a verdict: its answer equals
//! `classify_lexed` for the same text (`tests`, and a property test over
//! many literal values and shapes). Bounded: at most `SHAPES` shapes of at
//! most `MAX_SHAPE` bytes per worker thread; when full it is emptied.

use std::cell::RefCell;
use std::collections::HashMap;

use super::lexer::{Lexed, Token};
use super::sql::classify_lexed;
use super::verdict::{Invalidation, KeyValue, Lit, Verdict};

/// Shapes kept per worker thread.
pub const SHAPES: usize = 4096;
/// Longer statements are not memoized.
pub const MAX_SHAPE: usize = 2048;

/// How a verdict was reached (for the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Substituted from the shape's template: no parse.
    Memo,
    /// sqlparser ran (first sightings, shapes that cannot be memoized).
    Parsed,
}

/// `classify_lexed` through this thread's memo.
pub fn classify_memo(lexed: &Lexed<'_>) -> (Verdict, Source) {
    MEMO.with(|m| m.borrow_mut().classify(lexed))
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(Memo::new(SHAPES));
}

/// A plain literal cut out of a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Decimal,
    Str,
}

/// A statement split into its shape and its literals (texts as sqlparser
/// reports them: a number as written, a string without its quotes).
#[derive(Debug)]
struct Shape<'a> {
    key: String,
    lits: Vec<(Kind, &'a str)>,
}

#[derive(Debug)]
enum Entry {
    /// Seen once: parsed, not yet learnt.
    Seen,
    Template(Template),
    /// The probe did not reproduce the verdict: always parse.
    Never,
}

#[derive(Debug)]
struct Template {
    verdict: Verdict,
    kinds: Vec<Kind>,
}

pub struct Memo {
    shapes: HashMap<String, Entry, foldhash::fast::RandomState>,
    cap: usize,
}

impl Memo {
    pub fn new(cap: usize) -> Self {
        Memo {
            shapes: HashMap::default(),
            cap,
        }
    }

    pub fn classify(&mut self, lexed: &Lexed<'_>) -> (Verdict, Source) {
        let Some(shape) = shape(lexed) else {
            return (classify_lexed(lexed), Source::Parsed);
        };
        match self.shapes.get(&shape.key) {
            Some(Entry::Template(t)) => return (t.apply(&shape.lits), Source::Memo),
            Some(Entry::Never) => return (classify_lexed(lexed), Source::Parsed),
            Some(Entry::Seen) | None => {}
        }
        let verdict = classify_lexed(lexed);
        let entry = match self.shapes.contains_key(&shape.key) {
            false => Entry::Seen,
            true => match learn(&shape, &verdict) {
                Some(t) => Entry::Template(t),
                None => Entry::Never,
            },
        };
        if self.shapes.len() >= self.cap && !self.shapes.contains_key(&shape.key) {
            self.shapes.clear();
        }
        self.shapes.insert(shape.key, entry);
        (verdict, Source::Parsed)
    }
}

/// The statement's shape, or None when it has no plain literal (nothing to
/// share), is too long, or holds a NUL (the marker byte).
fn shape<'a>(lexed: &Lexed<'a>) -> Option<Shape<'a>> {
    let sql = lexed.sql;
    if sql.len() > MAX_SHAPE || sql.as_bytes().contains(&0) {
        return None;
    }
    let mut key = String::with_capacity(sql.len());
    let mut lits = Vec::new();
    let mut copied = 0;
    for tok in &lexed.tokens {
        let (text, kind, inner) = match *tok {
            Token::Number(n) => match number_kind(n) {
                Some(k) => (n, k, n),
                None => continue,
            },
            Token::Str(s) => match plain_string(s) {
                Some(inner) => (s, Kind::Str, inner),
                None => continue,
            },
            _ => continue,
        };
        let start = offset_in(sql, text)?;
        if glued(sql.as_bytes(), start, start + text.len()) {
            continue;
        }
        key.push_str(&sql[copied..start]);
        key.push('\0');
        key.push(kind.marker());
        copied = start + text.len();
        lits.push((kind, inner));
    }
    if lits.is_empty() {
        return None;
    }
    key.push_str(&sql[copied..]);
    Some(Shape { key, lits })
}

impl Kind {
    fn marker(self) -> char {
        match self {
            Kind::Int => 'i',
            Kind::Decimal => 'd',
            Kind::Str => 's',
        }
    }

    /// The k-th sentinel of this kind, as written in a probe.
    fn sentinel(self, k: usize) -> String {
        match self {
            Kind::Int => format!("{}", 700_000_000 + k),
            Kind::Decimal => format!("{}.25", 700_000_000 + k),
            Kind::Str => format!("~sqlcache~{k}~"),
        }
    }
}

/// `123` or `1.5`, each side 1..=18 ASCII digits.
fn number_kind(n: &str) -> Option<Kind> {
    let digits = |s: &str| (1..=18).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    match n.split_once('.') {
        None if digits(n) => Some(Kind::Int),
        Some((a, b)) if digits(a) && digits(b) => Some(Kind::Decimal),
        _ => None,
    }
}

/// The contents of `'…'` with nothing to unescape, else None.
fn plain_string(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('\'')?.strip_suffix('\'')?;
    (!inner.contains(['\'', '\\'])).then_some(inner)
}

/// Where `part` (a slice of `whole`) starts in `whole`.
fn offset_in(whole: &str, part: &str) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start + part.len() <= whole.len()).then_some(start)
}

/// A literal touching a word or a dot on either side (`x'1F'`, `_utf8'a'`,
/// `t.5`, `1.5.3`) stays in the shape.
fn glued(b: &[u8], start: usize, end: usize) -> bool {
    let word = |c: u8| {
        c.is_ascii_alphanumeric() || matches!(c, b'_' | b'$' | b'.' | b'@' | b'`') || c >= 0x80
    };
    (start > 0 && word(b[start - 1])) || b.get(end).is_some_and(|&c| word(c))
}

/// A template from the statement's own verdict and a probe's, if the probe
/// reproduces it.
fn learn(shape: &Shape<'_>, verdict: &Verdict) -> Option<Template> {
    let mut probe = String::with_capacity(shape.key.len() + 16 * shape.lits.len());
    let mut parts = shape.key.split('\0');
    probe.push_str(parts.next()?);
    for (k, part) in parts.enumerate() {
        let kind = shape.lits.get(k)?.0;
        let rest = part.get(1..)?;
        match kind {
            Kind::Str => {
                probe.push('\'');
                probe.push_str(&kind.sentinel(k));
                probe.push('\'');
            }
            _ => probe.push_str(&kind.sentinel(k)),
        }
        probe.push_str(rest);
    }
    let t = Template {
        verdict: classify_lexed(&Lexed::new(&probe)),
        kinds: shape.lits.iter().map(|l| l.0).collect(),
    };
    (t.apply(&shape.lits) == *verdict).then_some(t)
}

impl Template {
    /// The verdict with the statement's literals in the sentinels' places.
    fn apply(&self, lits: &[(Kind, &str)]) -> Verdict {
        let mut v = self.verdict.clone();
        let swap = |kv: &mut KeyValue| {
            if let KeyValue::Lit(l) = kv {
                self.swap(l, lits);
            }
        };
        match &mut v {
            Verdict::Read(r) => r.eq.iter_mut().for_each(|(_, kv)| swap(kv)),
            Verdict::Write(Invalidation::Rows { rows, .. }) => {
                rows.iter_mut().flatten().for_each(|(_, kv)| swap(kv))
            }
            _ => {}
        }
        v
    }

    fn swap(&self, l: &mut Lit, lits: &[(Kind, &str)]) {
        let (text, is_str) = match l {
            Lit::Number(n) => (n, false),
            Lit::Str(s) => (s, true),
            Lit::Null => return,
        };
        let (sign, bare) = match text.strip_prefix('-') {
            Some(b) if !is_str => ("-", b),
            _ => ("", text.as_str()),
        };
        let slot = self
            .kinds
            .iter()
            .enumerate()
            .position(|(k, kind)| (*kind == Kind::Str) == is_str && kind.sentinel(k) == bare);
        if let Some((_, lit)) = slot.and_then(|k| lits.get(k)) {
            *text = format!("{sign}{lit}");
        }
    }
}

#[cfg(test)]
#[path = "memo_tests.rs"]
mod tests;
