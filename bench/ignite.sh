#!/usr/bin/env bash
# Shared tier (L2) benchmark on a real Apache Ignite 2.x node, one run.
# Proxies A and B (coherence = "events") and S (coherence = "strict") share
# the node; one PyMySQL client (text protocol, one query at a time) prints:
#   * cold proxy B's hit rate after A warmed the tier;
#   * latency p50/p99: direct MariaDB | B's L2 hits | B's L1 hits | S's L1
#     hits (each confirmed against the tier: strict mode's cost);
#   * invalidation propagation: after each of N writes through A, B reads
#     the row at once — how many of those reads still served the old row,
#     and A's OK -> B's first new answer, p50/p99.
#
# usage: bench/ignite.sh [rows, default 2000] [writes, default 300]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROWS=${1:-2000}
WRITES=${2:-300}

bench_workdir
cargo build --release --quiet
db_port=$(free_port)
start_mariadb "$WORK/db" "$db_port"
pids+=("$MARIADB_PID")
mariadb --no-defaults -uroot --socket="$WORK/db/sock" sbtest -e \
    "CREATE TABLE l2 (id INT PRIMARY KEY, v VARCHAR(100)); INSERT INTO l2 SELECT seq, REPEAT('x', 80) FROM seq_1_to_$ROWS;"

ignite_port=$(free_port)
cp=$(java_cp ignite)
java -Xmx512m -XX:+UseSerialGC @tests/jvm/ignite.jvmopts -cp "$cp" tests/jvm/IgniteNode.java \
    client="$ignite_port" disc="$(free_port)" comm="$(free_port)" work="$WORK/ignite" \
    >"$WORK/ignite.log" 2>&1 &
pids+=("$!")
wait_log "$WORK/ignite.log" IGNITE-READY

l2() {
    printf '[cache.ignite]\nenabled = true\naddresses = ["127.0.0.1:%s"]\ntimeout = "50ms"\ncoherence = "%s"\n' \
        "$ignite_port" "$1"
}
for p in a b s; do mkdir -p "$WORK/$p"; done
start_proxy "$WORK/a" "$db_port" "$(l2 events)"
a_port=$PROXY_PORT
pids+=("$PROXY_PID")
start_proxy "$WORK/b" "$db_port" "$(l2 events)"
b_port=$PROXY_PORT
pids+=("$PROXY_PID")
start_proxy "$WORK/s" "$db_port" "$(l2 strict)"
s_port=$PROXY_PORT
pids+=("$PROXY_PID")

python3 - "$db_port" "$a_port" "$b_port" "$s_port" "$ROWS" "$WRITES" <<'PY'
import sys, time, pymysql
db, a, b, s, rows, writes = (int(x) for x in sys.argv[1:7])
conn = lambda p: pymysql.connect(host='127.0.0.1', port=p, user='root', password='', database='sbtest', autocommit=True)
def status(c):
    with c.cursor() as cur:
        cur.execute('SHOW SQLCACHE STATUS')
        return dict(cur.fetchall())
def wait_up(c, trusted):
    for _ in range(400):
        st = status(c)
        if st.get('l2_up') == 'true' and (not trusted or st.get('l2_l1_trusted') == 'true'):
            return
        time.sleep(0.05)
    sys.exit('shared tier never came up')
def read(cur, i):
    cur.execute(f'SELECT v FROM l2 WHERE id = {i}')
    return cur.fetchall()[0][0]
def timed_pass(c):
    lat = []
    with c.cursor() as cur:
        for i in range(1, rows + 1):
            t = time.perf_counter()
            read(cur, i)
            lat.append(time.perf_counter() - t)
    lat.sort()
    return lat
pct = lambda lat, p: lat[min(len(lat) - 1, int(len(lat) * p / 100))] * 1e6
ca, cb, cs, cd = conn(a), conn(b), conn(s), conn(db)
wait_up(ca, True); wait_up(cb, True); wait_up(cs, False)
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
timed_pass(cs)
strict = timed_pass(cs)
ss = status(cs)
l2_hits, misses = int(sb['l2_hits']), int(sb['misses'])
print(f'rows={rows}  A filled L2 with {fills} entries')
print(f'cold proxy B, first pass: {l2_hits}/{rows} answered from L2 '
      f'(hit rate {l2_hits / rows:.3f}), {misses} went to MariaDB')
print(f'{"latency (µs)":<34}{"p50":>8}{"p99":>8}')
for name, lat in [('direct MariaDB', direct), ('A, cold (miss + L2 fill)', warm),
                  ('B, L2 hit', first), ('B, L1 hit (events)', second),
                  ('S, L1 hit confirmed (strict)', strict)]:
    print(f'{name:<34}{pct(lat, 50):>8.0f}{pct(lat, 99):>8.0f}')
print(f'ratio L2 hit / direct p50: {pct(first, 50) / pct(direct, 50):.2f}   '
      f'L1 hit / direct p50: {pct(second, 50) / pct(direct, 50):.2f}   '
      f'strict hit / events hit p50: {pct(strict, 50) / pct(second, 50):.2f}   '
      f'(S confirmed {ss["l2_confirmed"]}, refused {ss["l2_unconfirmed"]})')
# Propagation: B holds every row in L1; A writes one, B reads it at once.
old_served, lags = 0, []
with ca.cursor() as wa, cb.cursor() as rb:
    for n in range(writes):
        i = 1 + n % rows
        new = f'w{n}'
        wa.execute(f"UPDATE l2 SET v = '{new}' WHERE id = {i}")
        ok = time.perf_counter()
        while True:
            began = time.perf_counter()
            if read(rb, i) == new:
                break
            old_served += 1
            if began - ok > 5:
                sys.exit(f'B still served the old row {i} 5 s after A\'s OK')
        # B stopped serving the old row no later than this read began.
        lags.append(began - ok)
        read(rb, i)  # back in B's L1 for a later round
lags.sort()
print(f'propagation over {writes} writes through A: B\'s first read after the OK served the old row '
      f'{old_served} times; A\'s OK -> B no longer serving it (upper bound: the first read that '
      f'got the new row began) p50 {pct(lags, 50):.0f} µs, p99 {pct(lags, 99):.0f} µs, '
      f'max {lags[-1] * 1e6:.0f} µs')
sb = status(cb)
print(f'B applied {sb["l2_peer_applied"]} peer invalidations, skipped {sb["l2_peer_own"]} own echoes, '
      f'{sb["l2_peer_proofs"]} heartbeat proofs, {sb["l2_peer_flushes"]} flushes, routed {sb["l2_routed"]}')
PY
