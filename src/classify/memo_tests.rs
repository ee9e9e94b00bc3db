//! Unit tests of `memo.rs`: the memo's verdict is always `classify_lexed`'s.

use super::*;

fn memo_says(m: &mut Memo, sql: &str) -> (Verdict, Source) {
    m.classify(&Lexed::new(sql))
}

fn direct(sql: &str) -> Verdict {
    classify_lexed(&Lexed::new(sql))
}

#[test]
fn a_shape_is_learnt_at_its_second_sighting_and_served_after() {
    let mut m = Memo::new(16);
    let q = |id: u32| format!("SELECT c FROM sbtest1 WHERE id={id}");
    assert_eq!(memo_says(&mut m, &q(1)).1, Source::Parsed);
    assert_eq!(memo_says(&mut m, &q(2)).1, Source::Parsed);
    for id in [3, 0, 4294967295, 77] {
        let (v, src) = memo_says(&mut m, &q(id));
        assert_eq!(src, Source::Memo);
        assert_eq!(v, direct(&q(id)));
    }
}

#[test]
fn literals_that_are_not_plain_stay_in_the_shape() {
    let key = |sql: &str| shape(&Lexed::new(sql)).map(|s| s.key);
    for sql in [
        "SELECT c FROM t WHERE id = 0x1F",
        "SELECT c FROM t WHERE id = x'1F'",
        "SELECT c FROM t WHERE id = 1e5",
        "SELECT c FROM t WHERE s = 'it''s'",
        "SELECT c FROM t WHERE s = 'a\\'b'",
        "SELECT c FROM t WHERE s = _utf8'a'",
        "SELECT c FROM t WHERE s = N'a'",
        "SELECT c FROM t WHERE s = \"a\"",
        "SELECT c FROM t WHERE id = 1234567890123456789",
    ] {
        assert_eq!(key(sql), None, "{sql}");
    }
    let s = key("SELECT c FROM t /* id = 5 */ WHERE id = -5 AND s = 'x' AND d = 1.5");
    assert_eq!(
        s.as_deref(),
        Some("SELECT c FROM t /* id = 5 */ WHERE id = -\0i AND s = \0s AND d = \0d")
    );
}

#[test]
fn a_template_the_probe_does_not_reproduce_is_refused() {
    let sql = "SELECT c FROM t WHERE id = 5";
    let lexed = Lexed::new(sql);
    let Some(s) = shape(&lexed) else {
        panic!("no shape")
    };
    assert!(learn(&s, &direct(sql)).is_some());
    assert!(learn(&s, &direct("SELECT c FROM t WHERE id = 6")).is_none());
}

#[test]
fn the_memo_is_bounded() {
    let mut m = Memo::new(4);
    for i in 0..40 {
        memo_says(&mut m, &format!("SELECT c{i} FROM t WHERE id = 1"));
        assert!(m.shapes.len() <= 4);
    }
}

/// A small deterministic generator (xorshift), so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }

    fn literal(&mut self) -> String {
        // Mostly integers, so most shapes recur and are served.
        match self.next() % 10 {
            0..=2 => (self.next() % 10).to_string(),
            3..=5 => (self.next() % 100_000_000_000).to_string(),
            6 => format!("{}.{}", self.next() % 1000, self.next() % 100),
            7 => format!("-{}", self.next() % 1000),
            8 => format!(
                "'{}'",
                self.pick(&["", "a", "%_", "é", "1", "?", ";", "x y", "0x1"])
            ),
            _ => self
                .pick(&[
                    "NULL", "0x1F", "x'1F'", "'it''s'", "1e3", "'\\n'", "_utf8'a'",
                ])
                .to_string(),
        }
    }
}

/// Statement forms with `$` where a literal goes: reads, writes, batches,
/// comments, functions, and forms the classifier refuses.
const FORMS: &[&str] = &[
    "SELECT c FROM sbtest1 WHERE id=$",
    "select id, v from test.t where id = $ and k = $",
    "SELECT c FROM t WHERE id = $ LIMIT $",
    "SELECT UPPER(name) FROM t WHERE id = $ AND name = CONCAT($, 'x')",
    "SELECT c FROM t /* $ */ WHERE id = $",
    "SELECT /*!40001 SQL_NO_CACHE */ c FROM t WHERE id = $",
    "SELECT c FROM t WHERE id IN ($, $, $)",
    "SELECT c FROM t WHERE id = $ FOR UPDATE",
    "SELECT c FROM t WHERE id > $",
    "SELECT RAND($) FROM t WHERE id = $",
    "UPDATE t SET c = $ WHERE id = $",
    "UPDATE t SET id = $ WHERE id = $",
    "DELETE FROM t WHERE id = $ AND k = $",
    "DELETE FROM t WHERE id IN ($, $)",
    "INSERT INTO t (id, c) VALUES ($, $), ($, $)",
    "INSERT INTO t VALUES ($) ON DUPLICATE KEY UPDATE c = $",
    "REPLACE INTO t (id) VALUES ($)",
    "SELECT c FROM t WHERE id = $; SELECT $",
    "UPDATE a SET x = $ WHERE id = $; UPDATE b SET y = $ WHERE id = $",
    "SELECT c FROM t WHERE id = CAST($ AS SIGNED)",
    "SELECT c FROM t WHERE (id) = ($)",
    "SELECT c FROM t WHERE id = $ AND id = $",
    "SELECT SLEEP($)",
    "SELECT c FROM t WHERE id = $ garbage (",
    "CALL p($)",
    "SET @x = $",
    "SELECT c FROM t WHERE d = DATE_ADD($, INTERVAL $ DAY)",
];

/// Every form, with literals drawn at random, several hundred times in a
/// random order: the memo (learning and serving) agrees with sqlparser on
/// every single statement.
#[test]
fn the_memo_agrees_with_the_classifier_on_generated_statements() {
    for seed in 1..=4u64 {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
        let mut m = Memo::new(256);
        let mut served = 0;
        for _ in 0..3000 {
            let form = rng.pick(FORMS);
            let sql = form
                .split('$')
                .enumerate()
                .map(|(i, part)| {
                    if i == 0 {
                        part.to_string()
                    } else {
                        rng.literal() + part
                    }
                })
                .collect::<String>();
            let (v, src) = memo_says(&mut m, &sql);
            assert_eq!(v, direct(&sql), "seed {seed}: {sql}");
            served += usize::from(src == Source::Memo);
        }
        assert!(
            served > 1000,
            "seed {seed}: only {served} served from the memo"
        );
    }
}
