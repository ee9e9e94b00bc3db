#!/usr/bin/env bash
# Two sqlcache binaries side by side on one private MariaDB: warm-cache
# oltp_point_select (prepared and text, 4 threads), runs alternating A, B,
# A, B, … so drift on a noisy machine hits both alike. Prints CPU µs per
# hit of each (from /proc/PID/stat) per round, the medians and B/A.
#
# usage: bench/ab.sh BIN_A BIN_B [seconds per run, default 8] [rounds, default 3]
# e.g.   git worktree add /tmp/old HEAD~1 && (cd /tmp/old && cargo build --release)
#        bench/ab.sh /tmp/old/target/release/sqlcache target/release/sqlcache
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
BIN_A=$1 BIN_B=$2 SECS=${3:-8} ROUNDS=${4:-3}

bench_workdir
db_port=$(free_port)
start_mariadb "$WORK/db" "$db_port"
pids+=("$MARIADB_PID")
sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$db_port" \
    --mysql-user=root --mysql-password= --mysql-db=sbtest --tables=1 --table-size=10000 prepare >/dev/null

declare -A port pid
for side in A B; do
    mkdir -p "$WORK/$side"
    bin=BIN_$side
    SQLCACHE_BIN=$(realpath "${!bin}") start_proxy "$WORK/$side" "$db_port" '[cache]
max_memory = "256MiB"
ttl = "10m"'
    port[$side]=$PROXY_PORT pid[$side]=$PROXY_PID
    pids+=("$PROXY_PID")
    # Warm every row, both protocols.
    sb_run "$PROXY_PORT" 4 4 >/dev/null
    sb_run "$PROXY_PORT" 4 4 --db-ps-mode=disable >/dev/null
done

cpu_per_query() { # SIDE [sysbench args] -> µs of proxy CPU per query
    local side=$1 t0 t1 qps p95 n
    shift
    t0=$(cpu_ticks "${pid[$side]}")
    read -r qps p95 n <<<"$(sb_run "${port[$side]}" 4 "$SECS" "$@")"
    t1=$(cpu_ticks "${pid[$side]}")
    awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN{printf "%.2f", t/hz*1e6/n}'
}
median() { tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

for mode in prepared text; do
    args=()
    [[ $mode == text ]] && args=(--db-ps-mode=disable)
    a=() b=()
    for r in $(seq 1 "$ROUNDS"); do
        a+=("$(cpu_per_query A "${args[@]}")")
        b+=("$(cpu_per_query B "${args[@]}")")
        echo "$mode round $r: A ${a[-1]} us/hit, B ${b[-1]} us/hit"
    done
    ma=$(echo "${a[*]}" | median) mb=$(echo "${b[*]}" | median)
    awk -v m="$mode" -v a="$ma" -v b="$mb" 'BEGIN{printf "%s: median A %.2f, B %.2f us of CPU per hit; B/A %.3f\n", m, a, b, b/a}'
done
