//! A small, allocation-light MySQL lexer.
//!
//! Policy: it only has to be right about what is *not* code — strings,
//! quoted identifiers and comments — so that keywords, `@variables` and `;`
//! found by callers are real. MySQL's executable comments (`/*! … */`,
//! `/*M! … */`) are code and are lexed as such. Anything it does not know is
//! a `Punct`, so callers stay default-deny.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token<'a> {
    /// A bare word (keyword or identifier), as written.
    Word(&'a str),
    /// A backquoted identifier, without quotes.
    Quoted(&'a str),
    /// A string literal, with its quotes, as written.
    Str(&'a str),
    Number(&'a str),
    /// `@name` (user variable).
    UserVar(&'a str),
    /// `@@name` or `@@scope.name` (system variable), without the `@@`.
    SysVar(&'a str),
    Punct(char),
    Semicolon,
}

/// A statement's text and its tokens, lexed once: the session-effects
/// analysis, KILL recognition and the cache verdict all read these.
pub struct Lexed<'a> {
    pub sql: &'a str,
    pub tokens: Vec<Token<'a>>,
}

impl<'a> Lexed<'a> {
    pub fn new(sql: &'a str) -> Self {
        // About one token per 4 bytes of SQL: one allocation for most
        // statements instead of a doubling series; capped, as a long string
        // literal is one token however long it is.
        let mut tokens = Vec::with_capacity((sql.len() / 4 + 4).min(64));
        tokens.extend(Lexer::new(sql));
        Lexed { sql, tokens }
    }
}

pub struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    /// Byte offset just past the last token returned.
    pub fn offset(&self) -> usize {
        self.pos
    }

    fn peek(&self, off: usize) -> u8 {
        *self.src.as_bytes().get(self.pos + off).unwrap_or(&0)
    }

    fn skip_space_and_comments(&mut self) {
        let b = self.src.as_bytes();
        loop {
            while self.pos < b.len() && b[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            let c = self.peek(0);
            let c1 = self.peek(1);
            if c == b'#'
                || (c == b'-'
                    && c1 == b'-'
                    && matches!(self.peek(2), b' ' | b'\t' | b'\n' | b'\r' | 0))
            {
                while self.pos < b.len() && b[self.pos] != b'\n' {
                    self.pos += 1;
                }
            } else if c == b'/' && c1 == b'*' {
                let c2 = self.peek(2);
                if c2 == b'!' || (c2 == b'M' && self.peek(3) == b'!') {
                    // Executable comment: drop the marker and version, lex the body.
                    self.pos += if c2 == b'!' { 3 } else { 4 };
                    while self.pos < b.len() && b[self.pos].is_ascii_digit() {
                        self.pos += 1;
                    }
                } else {
                    match self.src[self.pos + 2..].find("*/") {
                        Some(i) => self.pos += 2 + i + 2,
                        None => self.pos = b.len(),
                    }
                }
            } else if c == b'*' && c1 == b'/' {
                // End of an executable comment.
                self.pos += 2;
            } else {
                return;
            }
        }
    }

    fn quoted(&mut self, q: u8) -> &'a str {
        let b = self.src.as_bytes();
        let start = self.pos;
        self.pos += 1;
        while self.pos < b.len() {
            let c = b[self.pos];
            if c == b'\\' && q != b'`' {
                self.pos += 2;
                continue;
            }
            self.pos += 1;
            if c == q {
                if self.pos < b.len() && b[self.pos] == q {
                    self.pos += 1; // doubled quote
                    continue;
                }
                break;
            }
        }
        self.pos = self.pos.min(b.len());
        &self.src[start..self.pos]
    }

    fn word_end(&self, from: usize) -> usize {
        let b = self.src.as_bytes();
        let mut i = from;
        while i < b.len()
            && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80)
        {
            i += 1;
        }
        i
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        self.skip_space_and_comments();
        let b = self.src.as_bytes();
        if self.pos >= b.len() {
            return None;
        }
        let c = b[self.pos];
        let tok = match c {
            b'\'' | b'"' => Token::Str(self.quoted(c)),
            b'`' => {
                let s = self.quoted(c);
                Token::Quoted(s.trim_start_matches('`').trim_end_matches('`'))
            }
            b';' => {
                self.pos += 1;
                Token::Semicolon
            }
            b'@' if self.peek(1) == b'@' => {
                let start = self.pos + 2;
                let mut end = self.word_end(start);
                if self.src.as_bytes().get(end) == Some(&b'.') {
                    end = self.word_end(end + 1);
                }
                self.pos = end;
                Token::SysVar(&self.src[start..end])
            }
            b'@' => {
                let start = self.pos + 1;
                let end = match self.peek(1) {
                    q @ (b'\'' | b'"' | b'`') => {
                        self.pos += 1;
                        self.quoted(q);
                        self.pos
                    }
                    _ => self.word_end(start),
                };
                self.pos = end;
                Token::UserVar(&self.src[start..end])
            }
            b'0'..=b'9' => {
                let start = self.pos;
                let end = self.word_end(start);
                let mut end2 = end;
                if b.get(end) == Some(&b'.') {
                    end2 = self.word_end(end + 1);
                }
                self.pos = end2;
                Token::Number(&self.src[start..end2])
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 => {
                let start = self.pos;
                self.pos = self.word_end(start);
                Token::Word(&self.src[start..self.pos])
            }
            _ => {
                let ch = self.src[self.pos..].chars().next().unwrap_or('?');
                self.pos += ch.len_utf8();
                Token::Punct(ch)
            }
        };
        Some(tok)
    }
}

/// True if `tok` is the keyword `kw` (case-insensitive).
pub fn is_kw(tok: Option<&Token<'_>>, kw: &str) -> bool {
    matches!(tok, Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Token<'_>> {
        Lexer::new(s).collect()
    }

    #[test]
    fn strings_and_comments_hide_code() {
        let t = toks("SELECT 'a;@b' /* @c; */ , \"x\\\"y\" -- @d;\n # @e\n FROM `t;@`");
        assert!(
            !t.iter()
                .any(|t| matches!(t, Token::UserVar(_) | Token::Semicolon)),
            "{t:?}"
        );
        assert_eq!(t.last(), Some(&Token::Quoted("t;@")));
    }

    #[test]
    fn executable_comments_are_code() {
        let t = toks("/*!40101 SET @x = 1 */;");
        assert_eq!(t[0], Token::Word("SET"));
        assert_eq!(t[1], Token::UserVar("x"));
        assert_eq!(t.last(), Some(&Token::Semicolon));
    }

    #[test]
    fn variables() {
        let t = toks("select @@session.sql_mode, @a, @`b c`, 1.5");
        assert_eq!(t[1], Token::SysVar("session.sql_mode"));
        assert_eq!(t[3], Token::UserVar("a"));
        assert_eq!(t[5], Token::UserVar("`b c`"));
        assert_eq!(t[7], Token::Number("1.5"));
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for s in ["'abc", "`abc", "/* x", "@", "@@", "'\\", "é'", "--"] {
            let _ = toks(s);
        }
    }
}
