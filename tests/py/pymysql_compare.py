"""PyMySQL through sqlcache vs directly to MariaDB: every value and error must match.

usage: pymysql_compare.py DIRECT_PORT PROXY_PORT
Exits non-zero and prints the differences if anything differs.
"""
import sys

import pymysql

direct_port, proxy_port = int(sys.argv[1]), int(sys.argv[2])


def connect(port, **kw):
    return pymysql.connect(host="127.0.0.1", port=port, user="root", password="", database="test", **kw)


SETUP = [
    "DROP TABLE IF EXISTS py_types",
    """CREATE TABLE py_types (
        id INT PRIMARY KEY, u INT UNSIGNED, b BIGINT, bu BIGINT UNSIGNED, d DECIMAL(30,10),
        f FLOAT, dbl DOUBLE, dt DATE, ts DATETIME(6), tm TIME, y YEAR,
        c CHAR(10), s VARCHAR(50), vb VARBINARY(300), bl BLOB, lb LONGBLOB,
        j JSON, e ENUM('a','b'), st SET('x','y'), bt BIT(8))""",
]
ALL_BYTES = bytes(range(256))
ROWS = [
    (1, 4294967295, -9223372036854775808, 18446744073709551615, "12345678901234567890.0123456789",
     1.5, 2.25, "2024-02-29", "2024-02-29 12:34:56.123456", "-838:59:59", 2155,
     "char", "héllo 😀 ünïcode", ALL_BYTES, ALL_BYTES, bytes(range(256)) * 4096,
     '{"a": [1, 2, {"b": null}]}', "b", "x,y", b"\x81"),
    (2, 0, 0, 0, "0", 0.0, 0.0, "1000-01-01", "1000-01-01 00:00:00", "00:00:00", 1901,
     "", "", b"", b"", b"", "null", "a", "", b"\x00"),
    (3,) + (None,) * 19,
]
QUERIES = [
    "SELECT * FROM py_types ORDER BY id",
    "SELECT * FROM py_types WHERE id = 42",
    "SELECT id, s, vb FROM py_types WHERE id = 1",
    "SELECT COUNT(*), SUM(u), MAX(ts) FROM py_types",
    "SELECT 1 AS one, NULL AS n, 'x' AS s, 1.5 AS d, 1e300 AS big",
    "SHOW WARNINGS",
]
ERRORS = [
    "SELECT * FROM no_such_table",
    "SELEC 1",
    "INSERT INTO py_types (id) VALUES (1)",
    "SELECT nope FROM py_types",
    "SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 4084, MESSAGE_TEXT = 'custom'",
]


def run(port):
    out = []
    conn = connect(port)
    cur = conn.cursor()
    for q in QUERIES:
        cur.execute(q)
        out.append((q, cur.description, cur.fetchall()))
    # Prepared-style parameters (PyMySQL escapes client-side).
    cur.execute("SELECT %s, %s, %s, %s", (ALL_BYTES, "é", None, 10**18))
    out.append(("params", cur.description, cur.fetchall()))
    for q in ERRORS:
        try:
            cur.execute(q)
            out.append((q, "no error"))
        except pymysql.MySQLError as e:
            out.append((q, type(e).__name__, e.args))
    # Transactions: rollback leaves nothing behind.
    conn.begin()
    cur.execute("INSERT INTO py_types (id) VALUES (100)")
    conn.rollback()
    cur.execute("SELECT COUNT(*) FROM py_types WHERE id = 100")
    out.append(("rollback", cur.fetchall()))
    # Multiple result sets.
    conn2 = connect(port, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
    c2 = conn2.cursor()
    c2.execute("SELECT 1; SELECT 'a', 'b'; SELECT 3")
    sets = [c2.fetchall()]
    while c2.nextset():
        sets.append(c2.fetchall())
    out.append(("multi", sets))
    c2.execute("CALL py_two_sets()")
    sets = [c2.fetchall()]
    while c2.nextset():
        sets.append(c2.fetchall())
    out.append(("call", sets))
    conn2.close()
    conn.close()
    return out


def main():
    conn = connect(direct_port)
    cur = conn.cursor()
    for s in SETUP:
        cur.execute(s)
    cur.executemany("INSERT INTO py_types VALUES (" + ",".join(["%s"] * 20) + ")", ROWS)
    cur.execute("DROP PROCEDURE IF EXISTS py_two_sets")
    cur.execute("CREATE PROCEDURE py_two_sets() BEGIN SELECT 1 AS a; SELECT 2 AS b, 'x' AS c; END")
    conn.commit()
    conn.close()
    a, b = run(direct_port), run(proxy_port)
    failed = 0
    for x, y in zip(a, b):
        if x != y:
            failed += 1
            print("DIFFERENT:\n  direct: %r\n  proxy:  %r" % (str(x)[:2000], str(y)[:2000]))
    if len(a) != len(b):
        failed += 1
        print("different number of checks")
    print("%d passed, %d failed" % (len(a) - failed, failed))
    sys.exit(1 if failed else 0)


main()
