#!/usr/bin/env bash
# Where a warm cache hit's CPU goes, in three repeatable views of the same
# workload (sysbench oltp_point_select, one thread, HITS events per run,
# prepared and text), each on a warm proxy:
#  1. syscalls per hit by kind: `strace -c -f` attached to the proxy;
#  2. CPU µs per hit from /proc/PID/stat, beside the floor measured by the
#     C probe bench/floor.c (one recv of a waiting request + one send of a
#     reply on loopback TCP) in the same run;
#  3. user-space instructions per hit and the top functions by their own
#     instructions: the proxy under callgrind, counters zeroed after warm-up
#     (instruction counts, unlike time, repeat run to run); the profiles
#     are kept as /tmp/sqlcache-{hit,forward}.{auto,disable}.callgrind for
#     callgrind_annotate (`--tree=caller` shows who calls what).
#
# usage: bench/hit_profile.sh   (env HITS, default 20000; SQLCACHE_BIN: another
#        build to profile, e.g. an older one, as in bench/ab.sh; WHAT=forward
#        profiles a forwarded query instead: the same workload with the cache
#        off, so every statement goes to MariaDB; WHAT=miss a cache miss:
#        the cache on with a 1 ms ttl, so every lookup misses and fills)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
HITS=${HITS:-20000}
for tool in strace valgrind callgrind_annotate cc; do
    command -v $tool >/dev/null || { echo "$tool is needed (apt-get install strace valgrind gcc)" >&2; exit 1; }
done

cargo build --release --quiet --bin sqlcache
bench_workdir
DB_PORT=$(free_port)
start_mariadb "$WORK/db" "$DB_PORT"
pids+=("$MARIADB_PID")
sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$DB_PORT" \
    --mysql-user=root --mysql-password= --mysql-db=sbtest --tables=1 --table-size=10000 prepare >/dev/null
WHAT=${WHAT:-hit}
case $WHAT in
hit) CONFIG='[cache]
max_memory = "256MiB"
ttl = "10m"' ;;
forward) CONFIG='[cache]
enabled = false' ;;
miss) CONFIG='[cache]
max_memory = "256MiB"
ttl = "1ms"' ;;
*) echo "WHAT is hit, forward or miss" >&2; exit 2 ;;
esac

# hits PORT MODE -> runs HITS point selects, one thread (MODE: auto = prepared,
# disable = text), over ids 1..1000 only, so a warm-up of a few thousand
# leaves no miss in the measured run
hits() {
    sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$1" \
        --mysql-user=root --mysql-password= --mysql-db=sbtest --tables=1 --table-size=1000 \
        --threads=1 --time=0 --events="$HITS" --db-ps-mode="$2" run >/dev/null
}
warm() {
    SQLCACHE_WORKERS=1 start_proxy "$WORK" "$DB_PORT" "$CONFIG"
    pids+=("$PROXY_PID")
    for mode in auto disable; do
        HITS=30000 hits "$PROXY_PORT" "$mode"
    done
}

echo "== 1. syscalls per $WHAT (strace -c -f on every thread, $HITS hits each)"
warm
for mode in auto disable; do
    tids=$(ls /proc/"$PROXY_PID"/task | sed 's/^/-p /' | tr '\n' ' ')
    # shellcheck disable=SC2086
    strace -c -f -o "$WORK/strace.$mode" $tids 2>/dev/null &
    st=$!
    sleep 1
    hits "$PROXY_PORT" "$mode"
    kill -INT "$st"; wait "$st" 2>/dev/null || true
    echo "-- $([[ $mode == auto ]] && echo prepared || echo text)"
    { awk -v n="$HITS" -v w="$WHAT" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {
        printf "   %-16s %6.2f per %s\n", $NF, $4 / n, w }' "$WORK/strace.$mode" | sort -k2 -nr | head -8; } || true
done

echo "== 2. CPU per $WHAT beside the floor"
cc -O2 -o "$WORK/floor" bench/floor.c
"$WORK/floor" "$HITS"
for mode in auto disable; do
    c0=$(cpu_ticks "$PROXY_PID")
    hits "$PROXY_PORT" "$mode"
    c1=$(cpu_ticks "$PROXY_PID")
    awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$HITS" -v m="$mode" -v w="$WHAT" \
        'BEGIN { printf "sqlcache %s %s: %.1f µs CPU\n", (m == "auto" ? "prepared" : "text"), w, t / hz * 1e6 / n }'
done
kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true

echo "== 3. instructions per $WHAT (callgrind)"
# The same proxy.toml (and port) as above, under callgrind.
valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
    "${SQLCACHE_BIN:-./target/release/sqlcache}" --config "$WORK/proxy.toml" 2>"$WORK/callgrind.log" &
PROXY_PID=$!
pids+=("$PROXY_PID")
for _ in $(seq 1 1200); do (exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT") 2>/dev/null && break; sleep 0.1; done
for mode in auto disable; do
    HITS=5000 hits "$PROXY_PORT" "$mode"
    callgrind_control --zero "$PROXY_PID" >/dev/null
    hits "$PROXY_PORT" "$mode"
    callgrind_control --dump="$mode" "$PROXY_PID" >/dev/null
    out=$(ls -t "$WORK"/cg.out.* | head -1)
    cp "$out" "/tmp/sqlcache-$WHAT.$mode.callgrind"
    total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
    echo "-- $([[ $mode == auto ]] && echo prepared || echo text): $((total / HITS)) instructions per $WHAT; top functions by own instructions:"
    # Frames still active at the dump (main, the runtime) show the whole
    # cost as their own: left out.
    callgrind_annotate --threshold=100 "$out" 2>/dev/null \
        | awk 'f && NF && $1 ~ /^[0-9,]+$/ && !/\(100.0%\)/ { print; if (++n == 14) exit } /file:function/ { f = 1 }' \
        | awk -v n="$HITS" '{ c = $1; gsub(",", "", c); fn = $0; sub(/^[^:]*:/, "", fn); sub(/ \[.*$/, "", fn)
                              printf "   %6d  %s\n", c / n, substr(fn, 1, 100) }' || true
done
