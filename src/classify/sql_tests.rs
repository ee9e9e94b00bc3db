//! Unit tests of `sql.rs`: verdicts of statements, by kind.

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

fn rows(sql: &str) -> Vec<Vec<(String, KeyValue)>> {
    match classify(sql) {
        Verdict::Write(Invalidation::Rows { rows, .. }) => rows,
        v => panic!("{sql}: {v:?}"),
    }
}

fn tables(sql: &str) -> (Vec<TableName>, bool) {
    match classify(sql) {
        Verdict::Write(Invalidation::Tables { tables, ddl }) => (tables, ddl),
        v => panic!("{sql}: {v:?}"),
    }
}

#[test]
fn writes_by_key_name_their_rows() {
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
    match classify("UPDATE t SET id = 7 WHERE id = 5") {
        Verdict::Write(Invalidation::Rows { assigned, .. }) => {
            assert_eq!(assigned, vec!["id".to_string()])
        }
        v => panic!("{v:?}"),
    }
}

#[test]
fn other_writes_name_their_tables() {
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
}

#[test]
fn unknown_writes_and_transaction_ends() {
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

/// MariaDB's MDEV-38168 statement (8192 joins, `join_optimizer.test`): once
/// overflowed a worker's stack in sqlparser. Classified on a thread with a
/// worker's stack, it must come back as a verdict, not an abort; so must a
/// statement at the bound, which sqlparser still parses.
#[test]
fn thousands_of_joins_classify_on_a_small_stack() {
    let joins = |n: usize| {
        let mut sql = String::from("SELECT * FROM t1");
        for i in (1..=n).rev() {
            sql.push_str(&format!(" JOIN t1 x{i}"));
        }
        sql
    };
    // At the bound sqlparser still runs (and fits the stack); past it, not.
    let (sql, at_bound) = (joins(8192), joins(MAX_JOINS));
    let nested = format!("SELECT 1 + {}1{}", "(".repeat(20_000), ")".repeat(20_000));
    let v = std::thread::Builder::new()
        .stack_size(crate::frontend::WORKER_STACK_BYTES)
        .spawn(move || {
            let lexed = Lexed::new(&sql);
            let nested = Lexed::new(&nested);
            (
                classify_lexed(&lexed),
                crate::classify::effects::analyze_lexed(&lexed),
                classify_lexed(&nested),
                classify_lexed(&Lexed::new(&at_bound)),
            )
        })
        .expect("spawn")
        .join()
        .expect("classified without overflowing the stack");
    assert!(matches!(v.0, Verdict::Bypass(_)), "{:?}", v.0);
    assert!(matches!(v.2, Verdict::Bypass(_)), "{:?}", v.2);
    assert_eq!(v.0, Verdict::Bypass(Unparsable));
    assert_eq!(v.3, Verdict::Bypass(NotPointRead));
}
