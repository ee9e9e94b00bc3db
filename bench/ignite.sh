#!/usr/bin/env bash
# Shared tier (L2) benchmark, one run: two proxies share one store; proxy A
# warms it, then proxy B — cold, its L1 empty — reads the same rows.
# Prints B's hit rate on that first pass and latency percentiles of
#   direct MariaDB  |  B's L2 hits (first pass)  |  B's L1 hits (second pass)
# measured by one PyMySQL client (text protocol, one query at a time).
#
# The store is tests/py/ignite_server.py: a pyignite-codec conformance server
# in Python (NOT Apache Ignite). Its latencies are Python's, so the L2 figure
# is an upper bound of what the proxy adds; the hit rate is the point.
#
# usage: bench/ignite.sh [rows, default 2000]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROWS=${1:-2000}

bench_workdir
cargo build --release --quiet
db_port=$(free_port)
start_mariadb "$WORK/db" "$db_port"
pids+=("$MARIADB_PID")
mariadb --no-defaults -uroot --socket="$WORK/db/sock" sbtest -e \
    "CREATE TABLE l2 (id INT PRIMARY KEY, v VARCHAR(100)); INSERT INTO l2 SELECT seq, REPEAT('x', 80) FROM seq_1_to_$ROWS;"

python3 tests/py/ignite_server.py "$WORK/ignite.port" 2>"$WORK/ignite.err" &
pids+=("$!")
for _ in $(seq 1 100); do [ -f "$WORK/ignite.port" ] && break; sleep 0.1; done
ignite_port=$(cat "$WORK/ignite.port")

l2="[cache.ignite]
enabled = true
addresses = [\"127.0.0.1:$ignite_port\"]
timeout = \"50ms\""
mkdir -p "$WORK/a" "$WORK/b"
start_proxy "$WORK/a" "$db_port" "$l2"
a_port=$PROXY_PORT
pids+=("$PROXY_PID")
start_proxy "$WORK/b" "$db_port" "$l2"
b_port=$PROXY_PORT
pids+=("$PROXY_PID")

python3 - "$db_port" "$a_port" "$b_port" "$ROWS" <<'PY'
import sys, time, pymysql
db, a, b, rows = (int(x) for x in sys.argv[1:5])
conn = lambda p: pymysql.connect(host='127.0.0.1', port=p, user='root', password='', database='sbtest', autocommit=True)
def status(c):
    with c.cursor() as cur:
        cur.execute('SHOW SQLCACHE STATUS')
        return dict(cur.fetchall())
def wait_up(c):
    for _ in range(200):
        if status(c).get('l2_up') == 'true':
            return
        time.sleep(0.05)
    sys.exit('shared tier never came up')
def timed_pass(c):
    lat = []
    with c.cursor() as cur:
        for i in range(1, rows + 1):
            t = time.perf_counter()
            cur.execute(f'SELECT v FROM l2 WHERE id = {i}')
            cur.fetchall()
            lat.append(time.perf_counter() - t)
    lat.sort()
    return lat
pct = lambda lat, p: lat[min(len(lat) - 1, int(len(lat) * p / 100))] * 1e6
ca, cb, cd = conn(a), conn(b), conn(db)
wait_up(ca); wait_up(cb)
timed_pass(cd)  # warm MariaDB's buffer pool
direct = timed_pass(cd)
warm = timed_pass(ca)
for _ in range(400):
    if int(status(ca)['l2_fills']) >= rows:
        break
    time.sleep(0.05)
fills = int(status(ca)['l2_fills'])
first = timed_pass(cb)
sb = status(cb)
second = timed_pass(cb)
l2_hits, misses = int(sb['l2_hits']), int(sb['misses'])
print(f'rows={rows}  A filled L2 with {fills} entries')
print(f'cold proxy B, first pass: {l2_hits}/{rows} answered from L2 '
      f'(hit rate {l2_hits / rows:.3f}), {misses} went to MariaDB')
print(f'{"latency (µs)":<28}{"p50":>8}{"p99":>8}')
for name, lat in [('direct MariaDB', direct), ('A, cold (miss + L2 fill)', warm),
                  ('B, L2 hit', first), ('B, L1 hit', second)]:
    print(f'{name:<28}{pct(lat, 50):>8.0f}{pct(lat, 99):>8.0f}')
print(f'ratio L2 hit / direct p50: {pct(first, 50) / pct(direct, 50):.2f}   '
      f'L1 hit / direct p50: {pct(second, 50) / pct(direct, 50):.2f}')
PY
