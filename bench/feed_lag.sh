#!/usr/bin/env bash
# Invalidation lag of the Kafka change feed: a write made directly on MariaDB
# → its Debezium event on a private Apache Kafka → the proxy
# stops serving the old value. Prints p50/p99 over WRITES writes (default
# 1000). Target: p99 ≤ 50 ms on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
WRITES=${WRITES:-1000}

cargo build --release --quiet --bin sqlcache --example feed_lag
bench_workdir

DB_PORT=$(free_port)
start_mariadb "$WORK/db" "$DB_PORT"
pids+=("$MARIADB_PID")

KAFKA_PORT=$(free_port)
start_kafka "$WORK/kafka" "$KAFKA_PORT"
pids+=("$KAFKA_PID")

start_proxy "$WORK" "$DB_PORT" "
[invalidation.kafka]
brokers = \"127.0.0.1:$KAFKA_PORT\"
topics = [\"^srv(\\\\..*)?\$\"]
format = \"debezium\"
max_staleness = \"5s\"
${FEED_PROPERTIES:-}"
pids+=("$PROXY_PID")

./target/release/examples/feed_lag --proxy-port "$PROXY_PORT" --db-port "$DB_PORT" \
    --brokers "127.0.0.1:$KAFKA_PORT" --writes "$WRITES"
