#!/usr/bin/env bash
# Pass-through benchmark: sysbench oltp_point_select (prepared, 4 threads)
# direct to a private MariaDB, through sqlcache, and (if installed) through
# HAProxy in TCP mode as the plain-relay reference (sqlcache with its cache
# off: this measures forwarding) — all in one run, since
# this 2-core machine is noisy. Prints qps, ratios and CPU µs per query.
#
# usage: bench/passthrough.sh [seconds per run, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
SECS=${1:-20}
THREADS=4

bench_workdir
work=$WORK

cargo build --release --quiet
db_port=$(free_port)
start_mariadb "$work/db" "$db_port"
pids+=("$MARIADB_PID")

start_proxy "$work" "$db_port" '[cache]
enabled = false'
proxy_port=$PROXY_PORT
proxy_pid=$PROXY_PID
pids+=("$proxy_pid")

sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$db_port" \
    --mysql-user=root --mysql-password= --mysql-db=sbtest --tables=1 --table-size=10000 prepare >/dev/null
# Warm MariaDB's buffer pool so the first measured run is not penalised.
sb_run "$db_port" "$THREADS" 3 >/dev/null

measure() { # PORT PID-TO-ACCOUNT(or -) -> "qps p95 cpu_us_per_query"
    local port=$1 pid=$2 t0 t1 r qps p95 q
    [[ $pid != - ]] && t0=$(cpu_ticks "$pid")
    r=$(sb_run "$port" "$THREADS" "$SECS")
    read -r qps p95 q <<<"$r"
    if [[ $pid != - ]]; then
        t1=$(cpu_ticks "$pid")
        echo "$qps $p95 $(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v q="$q" 'BEGIN{printf "%.1f", d/hz*1e6/q}')"
    else
        echo "$qps $p95 -"
    fi
}

read -r d_qps d_p95 d_db_cpu <<<"$(measure "$db_port" "$MARIADB_PID")"
read -r p_qps p_p95 p_cpu <<<"$(measure "$proxy_port" "$proxy_pid")"
relay=""
if command -v haproxy >/dev/null; then
    relay_port=$(free_port)
    cat >"$work/haproxy.cfg" <<CFG
global
    maxconn 1000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m
listen mysql
    bind 127.0.0.1:$relay_port
    server db 127.0.0.1:$db_port
CFG
    haproxy -f "$work/haproxy.cfg" -db >/dev/null 2>&1 &
    relay_pid=$!
    pids+=("$relay_pid")
    wait_port "$relay_port"
    read -r r_qps r_p95 r_cpu <<<"$(measure "$relay_port" "$relay_pid")"
    relay=yes
fi

echo
echo "oltp_point_select, prepared, $THREADS threads, ${SECS}s per run"
printf '%-22s %10s %9s %14s\n' "path" "qps" "p95 ms" "CPU us/query"
printf '%-22s %10s %9s %14s\n' "direct MariaDB" "$d_qps" "$d_p95" "$d_db_cpu (mariadbd)"
printf '%-22s %10s %9s %14s\n' "sqlcache pass-through" "$p_qps" "$p_p95" "$p_cpu (proxy)"
[[ -n $relay ]] && printf '%-22s %10s %9s %14s\n' "haproxy tcp relay" "$r_qps" "$r_p95" "$r_cpu (relay)"
echo
awk -v p="$p_qps" -v d="$d_qps" 'BEGIN{printf "sqlcache / direct qps: %.2fx (target >= 0.6x)\n", p/d}'
if [[ -n $relay ]]; then
    awk -v p="$p_cpu" -v r="$r_cpu" 'BEGIN{printf "sqlcache / relay CPU per query: %.2fx (target <= 1.3x)\n", p/r}'
    awk -v p="$r_qps" -v d="$d_qps" 'BEGIN{printf "relay / direct qps: %.2fx\n", p/d}'
fi
