#!/usr/bin/env bash
# `sqlcache cdc` and Debezium's MariaDB connector (3.5, Kafka Connect
# standalone) capturing the same MariaDB into the same Apache Kafka, in one
# run, side by side (they share the two cores, as they would a host):
#  * throughput: one bulk UPDATE of ROWS rows (default 100000); time from
#    the statement's start until each one's topic holds all ROWS events;
#  * latency: COMMITS (default 500) single-row commits; commit returned to
#    the client → the event read by a kafka-python consumer, p50/p99, each.
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
mariadb --no-defaults -uroot --socket="$WORK/db/sock" -e "CREATE DATABASE bench; USE bench;
     CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL, pad VARCHAR(64));
     INSERT INTO t SELECT seq, 0, REPEAT('x', 64) FROM seq_1_to_$ROWS;"

start_debezium "$WORK/dbz" "$KAFKA_PORT" "$DB_PORT" dbz bench "snapshot.mode=no_data"
pids+=("$DEBEZIUM_PID")
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
state = "$WORK/cdc-state.json"
TOML
./target/release/sqlcache cdc --config "$WORK/cdc.toml" 2>"$WORK/cdc.log" &
pids+=($!)
while [[ ! -f $WORK/cdc-state.json ]]; do sleep 0.05; done

python3 - "$DB_PORT" "127.0.0.1:$KAFKA_PORT" "$ROWS" "$COMMITS" <<'PY'
import json, sys, threading, time
import pymysql
from kafka import KafkaConsumer, TopicPartition
port, broker, rows, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
topics = {"Debezium": "dbz.bench.t", "sqlcache cdc": "sqlc.bench.t"}
db = pymysql.connect(host="127.0.0.1", port=port, user="root", password="", database="bench", autocommit=True)
cur = db.cursor()
# A first event on each topic, so both exist before the clock starts.
cur.execute("UPDATE t SET v = -1 WHERE id = 1")
probe = KafkaConsumer(bootstrap_servers=broker)
def end(topic):
    tp = TopicPartition(topic, 0)
    return probe.end_offsets([tp]).get(tp, 0)
for t in topics.values():
    deadline = time.time() + 60
    while end(t) < 1:
        assert time.time() < deadline, f"no event on {t}"
        time.sleep(0.1)
base = {k: end(t) for k, t in topics.items()}
t0 = time.perf_counter()
cur.execute("UPDATE t SET v = v + 1")
done = {}
while len(done) < len(topics):
    for k, t in topics.items():
        if k not in done and end(t) >= base[k] + rows:
            done[k] = time.perf_counter() - t0
    time.sleep(0.02)
    assert time.perf_counter() - t0 < 600, f"not all events within 600 s: {done}"
for k, s in done.items():
    print(f"{k}: {rows} row events of one UPDATE on Kafka after {s:.2f} s = {rows / s:,.0f} row events/s")

seen = {k: {} for k in topics}
stop = threading.Event()
def consume(k, topic):
    c = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, fetch_max_wait_ms=5)
    tp = TopicPartition(topic, 0)
    c.assign([tp]); c.seek_to_end(tp); c.position(tp)
    while not stop.is_set():
        for batch in c.poll(timeout_ms=50).values():
            now = time.perf_counter()
            for m in batch:
                v = json.loads(m.value) if m.value else None
                if v and v.get("after") and v["after"]["id"] == 2:
                    seen[k].setdefault(v["after"]["v"], now)
threads = [threading.Thread(target=consume, args=kv, daemon=True) for kv in topics.items()]
for t in threads: t.start()
time.sleep(2)
committed = {}
for i in range(n):
    cur.execute("UPDATE t SET v = %s WHERE id = 2", (1_000_000 + i,))
    committed[1_000_000 + i] = time.perf_counter()
    time.sleep(0.005)
deadline = time.time() + 60
while any(len(s) < n for s in seen.values()) and time.time() < deadline:
    time.sleep(0.1)
stop.set()
for k in topics:
    lat = sorted((seen[k][v] - c) * 1000 for v, c in committed.items() if v in seen[k])
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print(f"{k}: commit -> consumed, {len(lat)}/{n} single-row commits: "
          f"p50 {p(0.50):.1f} ms, p99 {p(0.99):.1f} ms, max {lat[-1]:.1f} ms")
PY
