#!/usr/bin/env bash
# MariaDB's own regression tests (mysql-test/main, Debian package
# mariadb-test), each run twice against one private MariaDB: directly, and
# through sqlcache. Prints a line per test and a summary; exits non-zero if
# a test passes directly but not through the proxy, unless
# tests/mtr/differences.txt names it with the reason (a deliberate limit of
# a multiplexing proxy). The `ms` column is each run's wall time, direct/proxy.
#
# The tests run under mysqltest (`mariadb-test`) alone, not mysql-test-run:
# no server restarts, no option files. So a list names only tests that can
# run that way; tests/mtr/excluded.txt says why others are left out. Each
# test gets a fresh `test` database; `connect` lines naming `localhost`
# (the server's socket) are pointed at 127.0.0.1 and the test's port, in
# the test and its expected result alike.
#
# usage: bench/mtr.sh [LIST]   (default tests/mtr/ci.list; one test name a
#        line, `#` comments). env: SQLCACHE_BIN (default: the release
#        build), MTR_TIMEOUT seconds per run (default 60), MTR_OUT dir to
#        keep each run's output in.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
LIST=${1:-tests/mtr/ci.list}
SUITE=/usr/share/mysql/mysql-test
TIMEOUT=${MTR_TIMEOUT:-60}
command -v mariadb-test >/dev/null && [[ -d $SUITE/main ]] \
    || { echo "mariadb-test is needed (apt-get install mariadb-test)" >&2; exit 1; }
[[ -n ${SQLCACHE_BIN:-} ]] || cargo build --release --quiet --bin sqlcache

bench_workdir
DB_PORT=$(free_port)
mkdir -p "$WORK/var/tmp"
# The options mysql-test-run gives its servers (include/default_mysqld.cnf)
# that the tests' results depend on; no binlog, as there.
start_mariadb "$WORK/db" "$DB_PORT" --skip-log-bin --character-set-server=latin1 \
    --collation-server=latin1_swedish_ci --log-bin-trust-function-creators=1 --local-infile \
    --key-buffer-size=1M --sort-buffer-size=256K --max-heap-table-size=1M \
    --secure-file-priv="$WORK/var" --open-files-limit=1024 --default-storage-engine=MyISAM \
    --default-tmp-storage-engine=MyISAM
pids+=("$MARIADB_PID")
# mtr's own schema, as far as tests call it (mtr.add_suppression).
mariadb --no-defaults -uroot --socket="$WORK/db/sock" <<'SQL'
CREATE DATABASE mtr;
CREATE TABLE mtr.test_suppressions (pattern VARCHAR(255)) ENGINE=MyISAM;
DELIMITER //
CREATE PROCEDURE mtr.add_suppression(pattern VARCHAR(255))
BEGIN INSERT INTO mtr.test_suppressions VALUES (pattern); END//
DELIMITER ;
SQL
start_proxy "$WORK" "$DB_PORT"
pids+=("$PROXY_PID")
OUT=${MTR_OUT:-$WORK/out}
mkdir -p "$OUT" "$WORK/t"

# The test and its result with `connect (…, localhost, …)` on TCP, and
# without `include/not_valgrind.inc` (nothing runs under valgrind here, and
# Debian's package lacks the .require file it compares against).
prepare() {
    local t=$1
    for ext in test result; do
        sed -E -e 's/^([[:space:]]*-{0,2}connect[[:space:]]*\(?[[:space:]]*[A-Za-z0-9_$]+[[:space:]]*,[[:space:]]*)localhost\b/\1127.0.0.1/I' \
            -e '/^[[:space:]]*-{0,2}source[[:space:]]+include\/not_valgrind\.inc/d' \
            "$SUITE/main/$t.$ext" >"$WORK/t/$t.$ext"
    done
}

# run TEST PORT -> pass | fail | timeout (output in $OUT/TEST.PORT.out)
run() {
    local t=$1 port=$2 out="$OUT/$1.$2.out"
    mariadb --no-defaults -uroot --socket="$WORK/db/sock" \
        -e "DROP DATABASE IF EXISTS test; CREATE DATABASE test; DROP DATABASE IF EXISTS mysqltest;" 2>/dev/null || true
    local rc=0
    MYSQLTEST_VARDIR="$WORK/var" MYSQL_TMP_DIR="$WORK/var/tmp" MYSQL_TEST_DIR="$SUITE" \
        MASTER_MYPORT=$port MASTER_MYSOCK="$WORK/db/sock" \
        MYSQL="mariadb --no-defaults -h127.0.0.1 -P$port -uroot" \
        timeout "$TIMEOUT" mariadb-test --host=127.0.0.1 --port="$port" --user=root \
        --database=test --basedir="$SUITE/" --tmpdir="$WORK/var/tmp" \
        --test-file="$WORK/t/$t.test" --result-file="$WORK/t/$t.result" --silent \
        >"$out" 2>&1 || rc=$?
    case $rc in
    0) echo pass ;;
    124) echo timeout ;;
    *) echo fail ;;
    esac
}

# The reason tests/mtr/differences.txt gives for TEST, if any.
known() { sed -n "s/^$1: //p" tests/mtr/differences.txt 2>/dev/null | head -n 1; }

total=0 direct_ok=0 proxy_ok=0 unexplained=0
printf '%-36s %-8s %-8s %-12s %s\n' test direct proxy ms note
while read -r t _; do
    [[ -z $t || $t == \#* ]] && continue
    [[ -f $SUITE/main/$t.test && -f $SUITE/main/$t.result ]] || { echo "$t: not in $SUITE/main" >&2; exit 1; }
    prepare "$t"
    t0=$(date +%s%N)
    d=$(run "$t" "$DB_PORT")
    t1=$(date +%s%N)
    p=$(run "$t" "$PROXY_PORT")
    t2=$(date +%s%N)
    secs="$(((t1 - t0) / 1000000))/$(((t2 - t1) / 1000000))"
    total=$((total + 1))
    [[ $d == pass ]] && direct_ok=$((direct_ok + 1))
    [[ $p == pass ]] && proxy_ok=$((proxy_ok + 1))
    note=""
    if [[ $d == pass && $p != pass ]]; then
        why=$(known "$t")
        if [[ -n $why ]]; then
            note="known: $why"
        else
            unexplained=$((unexplained + 1))
            note="DIFFERS: $(grep -m1 -E 'mysqltest:|^[-+]' "$OUT/$t.$PROXY_PORT.out" | cut -c1-100)"
        fi
    fi
    printf '%-36s %-8s %-8s %-12s %s\n' "$t" "$d" "$p" "$secs" "$note"
    if ! kill -0 "$PROXY_PID" 2>/dev/null; then
        echo "sqlcache exited during $t:" >&2
        tail -n 30 "$WORK/proxy.log" >&2
        exit 1
    fi
done <"$LIST"
echo "summary: $total tests; pass directly $direct_ok; pass through sqlcache $proxy_ok; differ without a known reason $unexplained"
((unexplained == 0))
