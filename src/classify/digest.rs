//! Statement digests for query insight (`SHOW SQLCACHE QUERIES`): one
//! pass over the raw bytes, no lexer, no allocation.
//!
//! Policy: two statements share a digest when they differ only in literals
//! (numbers, quoted strings — both become `?`), whitespace (kept only as
//! one space between two words or literals, and after a comma), ordinary
//! comments (`/* … */`, `-- …`, `# …`; executable `/*! … */` and hint
//! `/*+ … */` comments are kept) and the case of words outside quotes.
//! Backquoted identifiers are kept as written. The digest only groups
//! statistics: a collision merges two shapes' counters, never a cached
//! response (cache keys are the exact statement, `cache/key.rs`).
//!
//! Invariants: `digest(s)` is the FNV-1a hash of the bytes `normalize(s)`
//! produces before truncation, so a shape's shown text and its digest
//! always agree (tested).

/// The digest of a statement's shape.
pub fn digest(sql: &[u8]) -> u64 {
    let mut h = Fnv::new();
    walk(sql, |b| h.eat(b));
    h.0
}

/// The shape's text for display: literals as `?`, whitespace as one space,
/// words lowercased; at most `max` bytes (cut on a character boundary, then
/// marked with `…`).
pub fn normalize(sql: &[u8], max: usize) -> String {
    let mut out = Vec::with_capacity(sql.len().min(max));
    let mut cut = false;
    walk(sql, |b| {
        if out.len() < max {
            out.push(b)
        } else {
            cut = true
        }
    });
    let mut s = String::from_utf8_lossy(&out).into_owned();
    if cut {
        // A cut through a multi-byte character shows as U+FFFD: drop it.
        while s.ends_with('\u{fffd}') {
            s.pop();
        }
        s.push('…');
    }
    s
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn eat(&mut self, b: u8) {
        self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
}

/// Emits the normalized bytes of `sql`: tokens as written (words
/// lowercased, literals as `?`), one space between two word-like tokens
/// that had a gap, one after every comma, none elsewhere.
fn walk(sql: &[u8], mut emit: impl FnMut(u8)) {
    let n = sql.len();
    let (mut i, mut gap, mut last_wordy) = (0, false, false);
    while i < n {
        let b = sql[i];
        let next = sql.get(i + 1).copied();
        let skip = match b {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => Some(i + 1),
            b'#' => Some(line_end(sql, i)),
            b'-' if next == Some(b'-')
                && sql.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                Some(line_end(sql, i))
            }
            b'/' if next == Some(b'*') && !matches!(sql.get(i + 2), Some(b'!' | b'+')) => {
                Some(comment_end(sql, i + 2))
            }
            _ => None,
        };
        if let Some(j) = skip {
            gap = true;
            i = j;
            continue;
        }
        let wordy = is_word(b) || matches!(b, b'\'' | b'"' | b'`' | b'?');
        if gap && last_wordy && wordy {
            emit(b' ');
        }
        (gap, last_wordy) = (false, wordy);
        i = match b {
            b'\'' | b'"' => {
                emit(b'?');
                quoted_end(sql, i)
            }
            b'0'..=b'9' => {
                emit(b'?');
                word_end(sql, i)
            }
            b'`' => {
                let j = quoted_end(sql, i);
                sql[i..j].iter().for_each(|&c| emit(c));
                j
            }
            c if is_word(c) => {
                let j = word_end(sql, i);
                sql[i..j].iter().for_each(|c| emit(c.to_ascii_lowercase()));
                j
            }
            b',' => {
                emit(b',');
                emit(b' ');
                i + 1
            }
            c => {
                emit(c);
                i + 1
            }
        };
    }
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// End of a word or number (`1.5e3`, `0x1f` and `12abc` are one run).
fn word_end(sql: &[u8], mut i: usize) -> usize {
    while i < sql.len() && (is_word(sql[i]) || sql[i] == b'.' && sql[i - 1].is_ascii_digit()) {
        i += 1;
    }
    i
}

/// End of the quoted run starting at `i` (backslash escapes and doubled
/// quotes stay inside; an unterminated quote runs to the end).
fn quoted_end(sql: &[u8], i: usize) -> usize {
    let q = sql[i];
    let mut j = i + 1;
    while j < sql.len() {
        match sql[j] {
            b'\\' if q != b'`' => j += 2,
            c if c == q && sql.get(j + 1) == Some(&q) => j += 2,
            c if c == q => return j + 1,
            _ => j += 1,
        }
    }
    sql.len()
}

fn line_end(sql: &[u8], i: usize) -> usize {
    sql[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(sql.len(), |p| i + p + 1)
}

fn comment_end(sql: &[u8], i: usize) -> usize {
    sql.get(i..)
        .and_then(|rest| rest.windows(2).position(|w| w == b"*/"))
        .map_or(sql.len(), |p| i + p + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &str, b: &str) {
        assert_eq!(digest(a.as_bytes()), digest(b.as_bytes()), "{a} | {b}");
    }

    #[test]
    fn literals_whitespace_comments_and_case_do_not_change_the_shape() {
        same(
            "SELECT c FROM t WHERE id=1",
            "select  c\nfrom t where id = 2",
        );
        same(
            "SELECT c FROM t WHERE id=1",
            "SELECT c FROM t WHERE id=12345",
        );
        same(
            "SELECT * FROM t WHERE k='a'",
            "SELECT * FROM t WHERE k='it''s \\' x'",
        );
        same("SELECT 1 /* app=a */", "SELECT 2 -- trailing\n");
        same("SELECT 1.5e3, 0x1f", "SELECT 7,8");
        same(
            "SELECT c FROM t WHERE id = ( 1 )",
            "SELECT c FROM t WHERE id=(2)",
        );
        assert_eq!(
            normalize(
                b"SELECT  c, d FROM t WHERE id = 1 AND k=\"x\" IN (1,2)",
                100
            ),
            "select c, d from t where id=? and k=? in(?, ?)"
        );
    }

    #[test]
    fn identifiers_operators_and_kept_comments_change_the_shape() {
        let d = |s: &str| digest(s.as_bytes());
        assert_ne!(
            d("SELECT c FROM t1 WHERE id=1"),
            d("SELECT c FROM t2 WHERE id=1")
        );
        assert_ne!(
            d("SELECT c FROM t WHERE id=1"),
            d("SELECT c FROM t WHERE id>1")
        );
        assert_ne!(d("SELECT `A` FROM t"), d("SELECT `a` FROM t"));
        assert_ne!(d("SELECT /*+ MAX_EXECUTION_TIME(1) */ 1"), d("SELECT 1"));
        assert_ne!(d("SELECT a-1"), d("SELECT a--1"));
    }

    #[test]
    fn digest_is_the_hash_of_the_normalized_text() {
        for s in [
            "SELECT c FROM sbtest1 WHERE id=42",
            "  UPDATE t SET v = 'é' WHERE id IN (1, 2, 3) # done",
            "select `we``ird` from x where y = 'unterminated",
            "/* only a comment */",
            "",
        ] {
            let mut h = Fnv::new();
            normalize(s.as_bytes(), usize::MAX)
                .bytes()
                .for_each(|b| h.eat(b));
            assert_eq!(h.0, digest(s.as_bytes()), "{s}");
        }
    }

    #[test]
    fn display_text_is_bounded_on_a_character_boundary() {
        assert_eq!(normalize(b"select abcdef", 9), "select ab…");
        let s = normalize("select `ééé`".as_bytes(), 10);
        assert!(s.ends_with('…') && !s.contains('\u{fffd}'), "{s}");
    }
}
