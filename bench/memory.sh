#!/usr/bin/env bash
# Memory benchmark, both figures in one run on one private MariaDB:
#  1. bytes of proxy memory per cached row against the row's response bytes:
#     ROWS point selects (text, sysbench's sbtest1, every id once, four
#     mariadb CLI clients) fill the cache; the proxy's RSS growth divided by
#     its entry count, beside the bytes of one response as a client reads it
#     off the wire (PyMySQL, counted at the socket; every row of sbtest1 has
#     the same size). Goal: <= 2.0x.
#  2. RSS with CONNS idle client connections (logged in, nothing running;
#     opened by PyMySQL from one process). Goal: <= 300 MB.
#
# usage: bench/memory.sh [ROWS, default 1000000] [CONNS, default 10000]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
ROWS=${1:-1000000}
CONNS=${2:-10000}
ulimit -n $((CONNS + 4096)) || { echo "cannot raise the open-file limit for $CONNS connections" >&2; exit 1; }

cargo build --release --quiet --bin sqlcache
bench_workdir
DB_PORT=$(free_port)
start_mariadb "$WORK/db" "$DB_PORT" --innodb-buffer-pool-size=512M
pids+=("$MARIADB_PID")
echo "loading $ROWS rows"
sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$DB_PORT" \
    --mysql-user=root --mysql-password= --mysql-db=sbtest --tables=1 --table-size="$ROWS" prepare >/dev/null
start_proxy "$WORK" "$DB_PORT" '[cache]
max_memory = "4GiB"
ttl = "1h"'
pids+=("$PROXY_PID")

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
status() { mariadb --no-defaults -h127.0.0.1 -P"$PROXY_PORT" -uroot --batch --skip-column-names -e "SHOW SQLCACHE STATUS" | awk -v k="$1" '$1==k {print $2}'; }
# reads ids FROM..TO once each through the proxy, one statement at a time
read_ids() {
    seq "$1" "$2" | awk '{printf "SELECT c FROM sbtest1 WHERE id=%d;\n", $1}' \
        | mariadb --no-defaults -h127.0.0.1 -P"$PROXY_PORT" -uroot sbtest --batch >/dev/null
}

# Warm-up: the proxy's pools, schema facts and first pages are in place
# before the baseline is taken.
read_ids 1 2000
read_ids 1 2000
e0=$(status entries)
r0=$(rss_kib "$PROXY_PID")
echo "filling the cache with $ROWS rows"
t0=$(date +%s)
per=$(((ROWS + 3) / 4))
fillers=()
for i in 0 1 2 3; do
    from=$((i * per + 1)); to=$(((i + 1) * per)); ((to > ROWS)) && to=$ROWS
    read_ids "$from" "$to" &
    fillers+=($!)
done
for p in "${fillers[@]}"; do wait "$p"; done
e1=$(status entries)
r1=$(rss_kib "$PROXY_PID")
wire=$(python3 - "$PROXY_PORT" <<'PY'
import sys, pymysql
c = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="root", password="", database="sbtest")
got = 0
read = c._read_bytes
def counting(n):
    global got
    got += n
    return read(n)
c._read_bytes = counting
cur = c.cursor()
cur.execute("SELECT c FROM sbtest1 WHERE id=7")
cur.fetchall()
print(got)
PY
)
echo
echo "== 1. memory per cached row ($(($(date +%s) - t0)) s to fill)"
awk -v e=$((e1 - e0)) -v r=$(((r1 - r0) * 1024)) -v w="$wire" -v b="$(status bytes)" -v n="$e1" 'BEGIN {
    printf "entries added %d (total %d), RSS growth %.1f MiB, cache bytes as max_memory counts them %.1f MiB\n", e, n, r / 1048576, b / 1048576
    printf "per row: %.0f bytes of RSS for a %d-byte response: %.2fx (goal <= 2.0x)\n", r / e, w, r / e / w }'

echo "== 2. RSS with $CONNS idle client connections"
kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true
SQLCACHE_MAX_CONNECTIONS=$((CONNS + 100)) start_proxy "$WORK" "$DB_PORT" ''
pids+=("$PROXY_PID")
idle0=$(rss_kib "$PROXY_PID")
python3 - "$PROXY_PORT" "$CONNS" "$PROXY_PID" "$WORK/idle.done" <<'PY' &
import sys, time, pymysql
port, n, pid, done = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
conns = [pymysql.connect(host="127.0.0.1", port=port, user="root", password="", database="sbtest") for _ in range(n)]
open(done, "w").write(str(len(conns)))
time.sleep(3600)
PY
holder=$!
pids+=("$holder")
for _ in $(seq 1 1200); do [[ -s $WORK/idle.done ]] && break; kill -0 "$holder" || { echo "opening connections failed" >&2; exit 1; }; sleep 0.5; done
[[ -s $WORK/idle.done ]] || { echo "connections were not opened in time" >&2; exit 1; }
sleep 2
idle1=$(rss_kib "$PROXY_PID")
awk -v n="$(cat "$WORK/idle.done")" -v a="$idle0" -v b="$idle1" 'BEGIN {
    printf "%d idle connections: RSS %.1f MiB (%.1f MiB at start; %.1f KiB per connection) (goal <= 300 MB)\n", n, b / 1024, a / 1024, (b - a) / n }'
