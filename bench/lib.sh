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
    mkdir -p "$dir/install-tmp"
    # A temp directory of its own (see tests/common/mod.rs `install`).
    mariadb-install-db --no-defaults --auth-root-authentication-method=normal --skip-test-db \
        --datadir="$dir/data" --tmpdir="$dir/install-tmp" --user=root >"$dir/install.log" 2>&1
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
# (runs $SQLCACHE_BIN if set, else the release build; also listens on the
# Unix socket $SQLCACHE_SOCKET if set)
start_proxy() {
    local work=$1 db_port=$2 extra=${3:-}
    PROXY_PORT=$(free_port)
    cat >"$work/proxy.toml" <<TOML
[proxy]
listen = "127.0.0.1:$PROXY_PORT"
${SQLCACHE_SOCKET:+socket = \"$SQLCACHE_SOCKET\"}
workers = ${SQLCACHE_WORKERS:-0}
max_connections = ${SQLCACHE_MAX_CONNECTIONS:-4096}
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
    "${SQLCACHE_BIN:-./target/release/sqlcache}" --config "$work/proxy.toml" 2>"$work/proxy.log" &
    PROXY_PID=$!
    wait_port "$PROXY_PORT"
}

# bench_workdir -> sets WORK, installs the cleanup trap (uses the pids array)
bench_workdir() {
    WORK=$(mktemp -d /tmp/sqlcache-bench.XXXXXX)
    pids=()
    trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
}

# java_cp COMPONENT -> the class path of .tools/jvm/COMPONENT (.ci/install-jvm)
java_cp() {
    [[ -d .tools/jvm/$1 ]] || .ci/install-jvm >&2
    echo ".tools/jvm/$1/*"
}

# wait_log FILE TEXT [COUNT] -> waits until TEXT appears COUNT times (120 s)
wait_log() {
    for _ in $(seq 1 1200); do
        local n
        n=$(grep -c -- "$2" "$1" 2>/dev/null || true)
        (( ${n:-0} >= ${3:-1} )) && return 0
        sleep 0.1
    done
    echo "'$2' not in $1 within 120 s" >&2
    tail -40 "$1" >&2
    return 1
}

# start_kafka DIR PORT -> Apache Kafka (KRaft, one process), sets KAFKA_PID
start_kafka() {
    local dir=$1 port=$2 ctl
    ctl=$(free_port)
    mkdir -p "$dir"
    cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctl
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctl
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
    local cp id
    cp=$(java_cp kafka)
    id=$(python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))')
    java -Xmx256m -cp "$cp" kafka.tools.StorageTool format --cluster-id="$id" -c "$dir/server.properties" >"$dir/format.log" 2>&1
    java -Xmx1g -cp "$cp" kafka.Kafka "$dir/server.properties" >"$dir/kafka.log" 2>&1 &
    KAFKA_PID=$!
    wait_log "$dir/kafka.log" "Kafka Server started"
}

# start_debezium DIR KAFKA_PORT DB_PORT PREFIX DATABASES [extra connector lines]
# -> Debezium's MariaDB connector under Connect standalone, sets DEBEZIUM_PID
# once it streams.
start_debezium() {
    local dir=$1 kafka=$2 db=$3 prefix=$4 dbs=$5 extra=${6:-}
    mkdir -p "$dir"
    cat >"$dir/worker.properties" <<PROPS
bootstrap.servers=127.0.0.1:$kafka
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=false
value.converter.schemas.enable=false
offset.storage.file.filename=$dir/offsets
offset.flush.interval.ms=1000
listeners=http://127.0.0.1:$(free_port)
plugin.discovery=only_scan
PROPS
    cat >"$dir/connector.properties" <<PROPS
name=$prefix
connector.class=io.debezium.connector.mariadb.MariaDbConnector
tasks.max=1
database.hostname=127.0.0.1
database.port=$db
database.user=root
database.password=
database.server.id=$((5000 + RANDOM))
topic.prefix=$prefix
database.include.list=$dbs
schema.history.internal.kafka.bootstrap.servers=127.0.0.1:$kafka
schema.history.internal.kafka.topic=history.$prefix
skipped.operations=none
decimal.handling.mode=string
topic.creation.default.replication.factor=1
topic.creation.default.partitions=1
$extra
PROPS
    java -Xmx1g -cp "$(java_cp kafka):$(java_cp debezium)" \
        org.apache.kafka.connect.cli.ConnectStandalone "$dir/worker.properties" \
        "$dir/connector.properties" >"$dir/connect.log" 2>&1 &
    DEBEZIUM_PID=$!
    wait_log "$dir/connect.log" "Starting streaming"
}
