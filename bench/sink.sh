#!/usr/bin/env bash
# `sqlcache sink` and Debezium's JDBC sink connector (3.5, Kafka Connect
# standalone) applying the same topic to the same MariaDB, in one run:
#  * throughput: ROWS (default 100000) create events published by
#    `sqlcache cdc` (one bulk INSERT) wait in Kafka; each sink is started
#    alone on them in turn; rows/s from its first row to its last appearing
#    in its target table, and the sink's CPU µs per row (/proc/PID/stat);
#  * latency: with both running, COMMITS (default 300) single-row UPDATEs at
#    the source; commit returned → new value visible in each target, p50/p99
#    (includes cdc and Kafka, the same for both).
# Debezium's JDBC sink needs schemas, so `cdc` publishes with schemas = true.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
ROWS=${ROWS:-100000}
COMMITS=${COMMITS:-300}

# Debezium's JDBC sink: fetched once into .tools/jvm/jdbcsink (bench only).
pom=bench/jvm/jdbcsink/pom.xml
sum=$(sha256sum "$pom" | cut -d' ' -f1)
if [[ ! -f .tools/jvm/jdbcsink/.pom.sha256 || $(cat .tools/jvm/jdbcsink/.pom.sha256) != "$sum" ]]; then
    rm -rf .tools/jvm/jdbcsink
    mvn -B -q -f "$pom" org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$PWD/.tools/jvm/jdbcsink"
    echo "$sum" >.tools/jvm/jdbcsink/.pom.sha256
fi

cargo build --release --quiet --bin sqlcache
bench_workdir
DB_PORT=$(free_port)
start_mariadb "$WORK/db" "$DB_PORT"
pids+=("$MARIADB_PID")
KAFKA_PORT=$(free_port)
start_kafka "$WORK/kafka" "$KAFKA_PORT"
pids+=("$KAFKA_PID")
sql() { mariadb --no-defaults -uroot --socket="$WORK/db/sock" -N -e "$1"; }
DDL="(id INT PRIMARY KEY, v INT NOT NULL, pad VARCHAR(64))"
sql "CREATE DATABASE bench; CREATE TABLE bench.t $DDL;
     CREATE DATABASE sq; CREATE TABLE sq.t $DDL; CREATE DATABASE dz; CREATE TABLE dz.t $DDL;"

cat >"$WORK/cdc.toml" <<TOML
[backend]
host = "127.0.0.1"
port = $DB_PORT
[[users]]
name = "root"
[cdc]
brokers = "127.0.0.1:$KAFKA_PORT"
topic_prefix = "sqlc"
include = ["bench.*"]
snapshot = "never"
schemas = true
state = "$WORK/cdc-state.json"
TOML
./target/release/sqlcache cdc --config "$WORK/cdc.toml" 2>"$WORK/cdc.log" &
pids+=($!)
while [[ ! -f $WORK/cdc-state.json ]]; do sleep 0.05; done
sql "USE bench; INSERT INTO bench.t SELECT seq, 0, REPEAT('x', 64) FROM seq_1_to_$ROWS"
python3 - "127.0.0.1:$KAFKA_PORT" "$ROWS" <<'PY'
import sys, time
from kafka import KafkaConsumer, TopicPartition
c, tp = KafkaConsumer(bootstrap_servers=sys.argv[1]), TopicPartition("sqlc.bench.t", 0)
deadline = time.time() + 300
while c.end_offsets([tp]).get(tp, 0) < int(sys.argv[2]):
    assert time.time() < deadline, "cdc did not publish every row"
    time.sleep(0.2)
PY
echo "$ROWS create events on sqlc.bench.t"

cat >"$WORK/sink.toml" <<TOML
[backend]
host = "127.0.0.1"
port = $DB_PORT
[[users]]
name = "root"
[sink]
brokers = "127.0.0.1:$KAFKA_PORT"
topics = ["sqlc.bench.t"]
table = "sq.{table}"
TOML
start_sqlcache_sink() {
    ./target/release/sqlcache sink --config "$WORK/sink.toml" 2>>"$WORK/sink.log" &
    SINK_PID=$!
    pids+=("$SINK_PID")
}

mkdir -p "$WORK/jdbc"
cat >"$WORK/jdbc/worker.properties" <<PROPS
bootstrap.servers=127.0.0.1:$KAFKA_PORT
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=true
value.converter.schemas.enable=true
offset.storage.file.filename=$WORK/jdbc/offsets
listeners=http://127.0.0.1:$(free_port)
plugin.discovery=only_scan
PROPS
cat >"$WORK/jdbc/connector.properties" <<PROPS
name=jdbc-sink
connector.class=io.debezium.connector.jdbc.JdbcSinkConnector
tasks.max=1
topics=sqlc.bench.t
connection.url=jdbc:mysql://127.0.0.1:$DB_PORT/dz
connection.username=root
connection.password=
insert.mode=upsert
delete.enabled=true
primary.key.mode=record_key
schema.evolution=none
collection.name.format=t
table.name.format=t
PROPS
start_jdbc_sink() {
    java -Xmx1g -cp "$(java_cp kafka):.tools/jvm/jdbcsink/*" \
        org.apache.kafka.connect.cli.ConnectStandalone "$WORK/jdbc/worker.properties" \
        "$WORK/jdbc/connector.properties" >"$WORK/jdbc/connect.log" 2>&1 &
    JDBC_PID=$!
    pids+=("$JDBC_PID")
}

# throughput NAME DB PID: first row → all ROWS rows in DB.t, CPU of PID.
throughput() {
    local name=$1 db=$2 pid=$3 n=0 t0 c0 t1 c1
    for _ in $(seq 1 6000); do
        n=$(sql "SELECT COUNT(*) FROM $db.t")
        (( n > 0 )) && break
        sleep 0.01
    done
    t0=$(date +%s.%N) c0=$(cpu_ticks "$pid") n0=$n
    for _ in $(seq 1 60000); do
        n=$(sql "SELECT COUNT(*) FROM $db.t")
        (( n >= ROWS )) && break
        sleep 0.01
    done
    t1=$(date +%s.%N) c1=$(cpu_ticks "$pid")
    (( n >= ROWS )) || { echo "$name: only $n of $ROWS rows applied" >&2; exit 1; }
    python3 -c "
rows = $ROWS - $n0; s = $t1 - $t0; cpu = ($c1 - $c0) / $(getconf CLK_TCK)
print(f'$name: {rows} rows in {s:.2f} s = {rows / s:,.0f} rows/s; {cpu * 1e6 / rows:.1f} µs CPU per row')"
}

start_sqlcache_sink
throughput "sqlcache sink" sq "$SINK_PID"
start_jdbc_sink
throughput "Debezium JDBC sink" dz "$JDBC_PID"

python3 - "$DB_PORT" "$COMMITS" <<'PY'
import sys, time
import pymysql
port, n = int(sys.argv[1]), int(sys.argv[2])
conn = lambda: pymysql.connect(host="127.0.0.1", port=port, user="root", password="", autocommit=True)
src, targets = conn().cursor(), {"sqlcache sink": ("sq", conn().cursor()), "Debezium JDBC sink": ("dz", conn().cursor())}
lat = {k: [] for k in targets}
for i in range(n):
    v = 1_000_000 + i
    src.execute("UPDATE bench.t SET v = %s WHERE id = 7", (v,))
    t0 = time.perf_counter()
    pending = dict(targets)
    while pending:
        for k, (db, cur) in list(pending.items()):
            cur.execute(f"SELECT v FROM {db}.t WHERE id = 7")
            if cur.fetchone()[0] == v:
                lat[k].append((time.perf_counter() - t0) * 1000)
                del pending[k]
        assert time.perf_counter() - t0 < 60, f"commit {i} not applied within 60 s"
for k, l in lat.items():
    l.sort()
    p = lambda q: l[min(len(l) - 1, int(q * len(l)))]
    print(f"{k}: source commit -> visible in target, {len(l)} single-row commits: "
          f"p50 {p(0.50):.1f} ms, p99 {p(0.99):.1f} ms, max {l[-1]:.1f} ms")
PY
