# Shared helpers for the bench scripts: a private MariaDB, the release proxy,
# CPU accounting from /proc/PID/stat.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
    for _ in $(seq 1 400); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listening on $1" >&2
    return 1
}

# start_mariadb DIR PORT [extra mariadbd options...]
start_mariadb() {
    local dir=$1 port=$2
    shift 2
    mkdir -p "$dir"
    mariadb-install-db --no-defaults --auth-root-authentication-method=normal --skip-test-db \
        --datadir="$dir/data" --user=root >"$dir/install.log" 2>&1
    mariadbd --no-defaults --datadir="$dir/data" --socket="$dir/sock" --port="$port" \
        --bind-address=127.0.0.1 --skip-name-resolve --log-bin="$dir/binlog" --binlog-format=ROW \
        --binlog-row-image=FULL --binlog-row-metadata=FULL --server-id=1 --user=root \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
        --innodb-buffer-pool-size=256M --max-connections=500 --log-error="$dir/error.log" \
        --pid-file="$dir/pid" "$@" &
    MARIADB_PID=$!
    wait_port "$port"
    mariadb --no-defaults -uroot --socket="$dir/sock" -e \
        "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; CREATE DATABASE IF NOT EXISTS sbtest;"
}

# cpu_ticks PID -> utime+stime in clock ticks
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

CLK_TCK=$(getconf CLK_TCK)

# sb_run PORT THREADS SECONDS [extra sysbench args] -> prints "qps p95_ms queries"
sb_run() {
    local port=$1 threads=$2 secs=$3
    shift 3
    local out
    out=$(sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$port" \
        --mysql-user=root --mysql-password= --mysql-db=sbtest --tables=1 --table-size=10000 \
        --threads="$threads" --time="$secs" --percentile=95 "$@" run)
    local qps p95 queries
    qps=$(echo "$out" | awk '/queries:/ && /per sec/ {gsub(/\(/,"",$3); print $3; exit}')
    queries=$(echo "$out" | awk '/queries:/ && /per sec/ {print $2; exit}')
    p95=$(echo "$out" | awk '/95th percentile:/ {print $3; exit}')
    echo "$qps $p95 $queries"
}

# start_proxy WORKDIR DB_PORT [extra toml] -> sets PROXY_PORT, PROXY_PID
start_proxy() {
    local work=$1 db_port=$2 extra=${3:-}
    PROXY_PORT=$(free_port)
    cat >"$work/proxy.toml" <<TOML
[proxy]
listen = "127.0.0.1:$PROXY_PORT"
workers = ${SQLCACHE_WORKERS:-0}
[backend]
host = "127.0.0.1"
port = $db_port
pool_max = 16
[[users]]
name = "root"
password = ""
$extra
[log]
level = "warn"
TOML
    ./target/release/sqlcache --config "$work/proxy.toml" 2>"$work/proxy.log" &
    PROXY_PID=$!
    wait_port "$PROXY_PORT"
}

# bench_workdir -> sets WORK, installs the cleanup trap (uses the pids array)
bench_workdir() {
    WORK=$(mktemp -d /tmp/sqlcache-bench.XXXXXX)
    pids=()
    trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
}
