#!/usr/bin/env bash
# `sqlcache cdc` publishing to a private Apache Kafka:
#  * throughput: row events/s for one bulk UPDATE of ROWS rows (default
#    100000), from the UPDATE's start until Kafka acknowledged the last
#    event (the publisher's own acked-rows counter, read from /metrics);
#  * latency: single-row commits, commit returned to the client → the
#    event read back by a consumer (kafka-python), p50/p99 over COMMITS
#    (default 500) — an upper bound of commit → Kafka ack.
# Target (issue #5): p99 ≤ 20 ms on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
ROWS=${ROWS:-100000}
COMMITS=${COMMITS:-500}

cargo build --release --quiet --bin sqlcache
bench_workdir

DB_PORT=$(free_port)
start_mariadb "$WORK/db" "$DB_PORT"
pids+=("$MARIADB_PID")
KAFKA_PORT=$(free_port)
start_kafka "$WORK/kafka" "$KAFKA_PORT"
pids+=("$KAFKA_PID")

sql() { mariadb --no-defaults -uroot --socket="$WORK/db/sock" -e "$1"; }
sql "CREATE DATABASE bench; USE bench;
     CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL, pad VARCHAR(64));
     INSERT INTO t SELECT seq, 0, REPEAT('x', 64) FROM seq_1_to_$ROWS;"

METRICS_PORT=$(free_port)
cat >"$WORK/cdc.toml" <<TOML
[backend]
host = "127.0.0.1"
port = $DB_PORT
[[users]]
name = "root"
[log]
level = "info"
[cdc]
brokers = "127.0.0.1:$KAFKA_PORT"
topic_prefix = "bench"
include = ["bench.*"]
snapshot = "never"
state = "$WORK/cdc-state.json"
metrics_listen = "127.0.0.1:$METRICS_PORT"
${CDC_EXTRA:-}
TOML
./target/release/sqlcache cdc --config "$WORK/cdc.toml" 2>"$WORK/cdc.log" &
pids+=($!)
wait_port "$METRICS_PORT"
while [[ ! -f $WORK/cdc-state.json ]]; do sleep 0.05; done

acked() { curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk '$1=="sqlcache_cdc_row_events_total" {print $2}'; }
base=$(acked)
start=$(date +%s.%N)
sql "UPDATE bench.t SET v = v + 1"
updated=$(date +%s.%N)
while (( $(acked) < base + ROWS )); do sleep 0.01; done
done_at=$(date +%s.%N)
python3 - "$start" "$updated" "$done_at" "$ROWS" <<'PY'
import sys
start, updated, done, rows = map(float, sys.argv[1:])
print(f"bulk UPDATE of {int(rows)} rows: statement took {updated-start:.2f} s; "
      f"all {int(rows)} row events acknowledged by Kafka after {done-start:.2f} s "
      f"= {rows/(done-start):,.0f} row events/s (from the statement's start)")
PY

python3 - "$DB_PORT" "127.0.0.1:$KAFKA_PORT" "$COMMITS" <<'PY'
import json, sys, time
import pymysql
from kafka import KafkaConsumer, TopicPartition
port, broker, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
db = pymysql.connect(host="127.0.0.1", port=port, user="root", password="", database="bench", autocommit=True)
c = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, fetch_max_wait_ms=5)
tp = TopicPartition("bench.bench.t", 0)
c.assign([tp]); c.seek_to_end(tp); c.position(tp)
lat = []
with db.cursor() as cur:
    for i in range(n):
        t0 = time.perf_counter()
        cur.execute("UPDATE t SET v = %s WHERE id = 1", (1_000_000 + i,))
        t1 = time.perf_counter()
        found = False
        while not found:
            for batch in c.poll(timeout_ms=100).values():
                for m in batch:
                    v = json.loads(m.value) if m.value else None
                    if v and v["after"] and v["after"]["v"] == 1_000_000 + i:
                        found = True
        lat.append((time.perf_counter() - t1) * 1000)
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"commit -> consumed (kafka-python), {n} single-row commits: "
      f"p50 {p(0.50):.1f} ms, p99 {p(0.99):.1f} ms, max {lat[-1]:.1f} ms")
PY
curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E "^sqlcache_cdc_ack_latency_seconds_(bucket|count)" | tr '\n' ' '; echo
