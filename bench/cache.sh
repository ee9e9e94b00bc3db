#!/usr/bin/env bash
# Warm-cache benchmark, all in one run on one private MariaDB (started with
# its own query cache available, toggled per run):
#  1. oltp_point_select, prepared, 4 threads: direct (query cache OFF),
#     through sqlcache (warm), direct with MariaDB's query cache ON
#     (text protocol: MariaDB's query cache does not serve prepared
#     statements, so that run uses --db-ps-mode=disable);
#  2. single-thread p50 latency, direct vs sqlcache;
#  3. mixed: point selects + a few % single-row UPDATEs (text protocol),
#     sqlcache vs MariaDB's query cache, with sqlcache's hit ratio.
# Prints qps, p95, CPU µs/query of sqlcache (user and system for hits,
# prepared and text, over TCP and over the proxy's Unix socket) and
# mariadbd, the event-loop floor of each transport measured in the same run
# (bench/floor.c loaded), and ratios.
#
# usage: bench/cache.sh [seconds per run, default 15]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
SECS=${1:-15}

bench_workdir
work=$WORK

cargo build --release --quiet
db_port=$(free_port)
start_mariadb "$work/db" "$db_port" --query-cache-type=0 --query-cache-size=64M
pids+=("$MARIADB_PID")
qc() { mariadb --no-defaults -uroot --socket="$work/db/sock" -e "SET GLOBAL query_cache_type = $1; RESET QUERY CACHE"; }

SQLCACHE_SOCKET="$work/proxy.sock" start_proxy "$work" "$db_port" '[cache]
max_memory = "256MiB"
ttl = "10m"'
proxy_port=$PROXY_PORT
proxy_pid=$PROXY_PID
pids+=("$proxy_pid")

sb() { # PORT|SOCKET THREADS SECS SCRIPT [args] -> "qps p95 queries sysbench_user_us" (p95 or the --percentile given)
    local port=$1 threads=$2 secs=$3 script=$4 out to
    shift 4
    to=(--mysql-host=127.0.0.1 --mysql-port="$port")
    [[ $port == /* ]] && to=(--mysql-host=localhost --mysql-socket="$port")
    # `times` in the subshell: the CPU of its children, i.e. sysbench's.
    out=$( (sysbench "$script" --db-driver=mysql "${to[@]}" \
        --mysql-user=root --mysql-password= --mysql-db=sbtest --tables=1 --table-size=10000 \
        --threads="$threads" --time="$secs" "$@" run; times))
    echo "$out" | awk '/queries:/ && /per sec/ {gsub(/\(/,"",$3); q=$3; n=$2} /th percentile:/ {p=$3}
        /^[0-9]+m[0-9.]+s [0-9]+m[0-9.]+s$/ {t=$1} END {split(t, a, /[ms]/); print q, p, n, (a[1]*60+a[2])*1e6/n}'
}
# The proxy's context switches so far, all threads: "voluntary involuntary".
switches() { cat /proc/"$proxy_pid"/task/*/status | awk '/^voluntary_ctxt/ {v+=$2} /^nonvoluntary_ctxt/ {n+=$2} END {print v, n}'; }
measure() { # PORT THREADS SCRIPT [args] -> "qps pXX proxy_us db_us proxy_user_us proxy_sys_us sysbench_user_us proxy_switches_per_q proxy_voluntary_per_q"
    local port=$1 threads=$2 script=$3 p0 d0 p1 d1 u0 u1 qps pct n sbu v0 i0 v1 i1
    shift 3
    read -r v0 i0 <<<"$(switches)"
    p0=$(cpu_ticks "$proxy_pid"); d0=$(cpu_ticks "$MARIADB_PID"); u0=$(awk '{print $14}' "/proc/$proxy_pid/stat")
    read -r qps pct n sbu <<<"$(sb "$port" "$threads" "$SECS" "$script" "$@")"
    p1=$(cpu_ticks "$proxy_pid"); d1=$(cpu_ticks "$MARIADB_PID"); u1=$(awk '{print $14}' "/proc/$proxy_pid/stat")
    read -r v1 i1 <<<"$(switches)"
    awk -v q="$qps" -v p="$pct" -v n="$n" -v pp=$((p1 - p0)) -v dd=$((d1 - d0)) -v uu=$((u1 - u0)) -v hz="$CLK_TCK" -v sbu="$sbu" \
        -v cs=$((v1 - v0 + i1 - i0)) -v vc=$((v1 - v0)) \
        'BEGIN{printf "%s %s %.1f %.1f %.1f %.1f %.1f %.2f %.2f\n", q, p, pp/hz*1e6/n, dd/hz*1e6/n, uu/hz*1e6/n, (pp-uu)/hz*1e6/n, sbu, cs/n, vc/n}'
}
status() { mariadb --no-defaults -h127.0.0.1 -P"$proxy_port" -uroot --batch --skip-column-names -e "SHOW SQLCACHE STATUS" | awk -v k="$1" '$1==k {print $2}'; }

sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$db_port" \
    --mysql-user=root --mysql-password= --mysql-db=sbtest --tables=1 --table-size=10000 prepare >/dev/null
qc OFF
# Warm MariaDB's buffer pool and sqlcache (every row, both protocols).
sb "$db_port" 4 3 oltp_point_select >/dev/null
sb "$proxy_port" 4 5 oltp_point_select >/dev/null
sb "$proxy_port" 4 5 oltp_point_select --db-ps-mode=disable >/dev/null

read -r d_qps d_p95 _ d_db _ <<<"$(measure "$db_port" 4 oltp_point_select --percentile=95)"
read -r p_qps p_p95 p_cpu p_db p_user p_sys p_think p_cs p_vcs <<<"$(measure "$proxy_port" 4 oltp_point_select --percentile=95)"
read -r t_qps _ t_cpu _ t_user t_sys _ t_cs t_vcs <<<"$(measure "$proxy_port" 4 oltp_point_select --db-ps-mode=disable --percentile=95)"
sock="$work/proxy.sock"
read -r u_qps _ u_cpu _ u_user u_sys _ u_cs u_vcs <<<"$(measure "$sock" 4 oltp_point_select --percentile=95)"
read -r ut_qps _ ut_cpu _ ut_user ut_sys _ ut_cs ut_vcs <<<"$(measure "$sock" 4 oltp_point_select --db-ps-mode=disable --percentile=95)"
# The event-loop floor in the same run: bench/floor.c with as many threads
# as the proxy's workers and clients that spend sysbench's own user CPU
# per query between requests.
cc -O2 -pthread -o "$work/floor" bench/floor.c
floor=$("$work/floor" loaded 4 "$(nproc)" "$SECS" "$p_think")
ufloor=$("$work/floor" loaded 4 "$(nproc)" "$SECS" "$p_think" unix)
qc ON
sb "$db_port" 4 3 oltp_point_select --db-ps-mode=disable >/dev/null
read -r q_qps q_p95 _ q_db _ <<<"$(measure "$db_port" 4 oltp_point_select --db-ps-mode=disable --percentile=95)"
qc OFF
read -r d1_qps d1_p50 _ _ _ <<<"$(measure "$db_port" 1 oltp_point_select --percentile=50)"
read -r p1_qps p1_p50 _ _ _ <<<"$(measure "$proxy_port" 1 oltp_point_select --percentile=50)"

echo
echo "warm cache: oltp_point_select, 4 threads, ${SECS}s per run"
printf '%-34s %10s %8s %16s %16s\n' path qps "p95 ms" "sqlcache us/q" "mariadbd us/q"
printf '%-34s %10s %8s %16s %16s\n' "direct (query cache off)" "$d_qps" "$d_p95" - "$d_db"
printf '%-34s %10s %8s %16s %16s\n' "sqlcache (warm)" "$p_qps" "$p_p95" "$p_cpu" "$p_db"
printf '%-34s %10s %8s %16s %16s\n' "direct, MariaDB query cache ON*" "$q_qps" "$q_p95" - "$q_db"
echo "  * text protocol: MariaDB's query cache does not serve prepared statements"
awk -v p="$p_qps" -v d="$d_qps" -v q="$q_qps" 'BEGIN{printf "sqlcache / direct qps: %.2fx (target >= 2.2x); sqlcache / query cache: %.2fx (target >= 1.15x)\n", p/d, p/q}'
floor_us() { echo "$1" | sed 's/.*: \([0-9.]*\) µs CPU per request.*/\1/'; }
echo "sqlcache CPU per hit, TCP: prepared $p_cpu us (user $p_user, sys $p_sys), text $t_cpu us (user $t_user, sys $t_sys) (target <= 8)"
echo "  context switches per hit: prepared $p_cs (voluntary $p_vcs), text $t_cs (voluntary $t_vcs)"
echo "$floor"
awk -v p="$p_cpu" -v t="$t_cpu" -v f="$(floor_us "$floor")" \
    'BEGIN{printf "  hit / floor: prepared %.2fx, text %.2fx\n", p/f, t/f}'
echo "sqlcache CPU per hit, Unix socket: prepared $u_cpu us (user $u_user, sys $u_sys), text $ut_cpu us (user $ut_user, sys $ut_sys) (target <= 8); qps $u_qps prepared, $ut_qps text"
echo "  context switches per hit: prepared $u_cs (voluntary $u_vcs), text $ut_cs (voluntary $ut_vcs)"
awk -v u="$u_qps" -v d="$d_qps" 'BEGIN{printf "  sqlcache on the Unix socket / direct (TCP) qps: %.2fx\n", u/d}'
echo "$ufloor"
awk -v p="$u_cpu" -v t="$ut_cpu" -v f="$(floor_us "$ufloor")" \
    'BEGIN{printf "  hit / floor: prepared %.2fx, text %.2fx\n", p/f, t/f}'
echo "  (clients spend $p_think us of user CPU between requests: sysbench's own, measured in the prepared run)"
awk -v p="$p1_p50" -v d="$d1_p50" 'BEGIN{printf "single thread p50: direct %s ms, sqlcache %s ms: %.2fx (target <= 0.6x)\n", d, p, p/d}'

# Mixed: 3% single-row updates, text protocol on both sides.
h0=$(status hits); m0=$(status misses)
read -r mx_qps _ mx_cpu mx_db _ <<<"$(measure "$proxy_port" 4 bench/mixed.lua --percentile=95)"
h1=$(status hits); m1=$(status misses)
qc ON
read -r mq_qps _ _ mq_db _ <<<"$(measure "$db_port" 4 bench/mixed.lua --percentile=95)"
qcs=$(mariadb --no-defaults -uroot --socket="$work/db/sock" --batch --skip-column-names -e \
    "SHOW GLOBAL STATUS WHERE Variable_name IN ('Qcache_hits','Com_select')" | awk '{v[$1]=$2} END {h=v["Qcache_hits"]; s=v["Com_select"]; if (h+s>0) printf "%.3f", h/(h+s); else print "n/a"}')
qc OFF
echo
echo "mixed (97% point selects, 3% single-row UPDATEs), 4 threads"
awk -v h=$((h1 - h0)) -v m=$((m1 - m0)) -v q="$mx_qps" -v mq="$mq_qps" -v qcs="$qcs" \
    'BEGIN{printf "sqlcache: %s qps, hit ratio %.3f | MariaDB query cache: %s qps, hit ratio %s (cumulative) | ratio %.2fx\n", q, h/(h+m), mq, qcs, q/mq}'
