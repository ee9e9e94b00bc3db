"""A third-party Kafka consumer (kafka-python) reading what `sqlcache cdc` published.

usage: kafka_consume.py BROKER TOPIC EXPECTED_MESSAGES OUT_FILE
Reads TOPIC from the beginning until at least EXPECTED_MESSAGES messages arrived (or
30 s passed) and writes them as JSON lines {"key": ..., "value": ...} (key
and value decoded from JSON; a tombstone's value is null) to OUT_FILE.
Prints "N passed, 0 failed" when it got them all.
"""
import json
import sys
import time

from kafka import KafkaConsumer, TopicPartition

broker, topic, expected, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
consumer = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, consumer_timeout_ms=1000)
tp = TopicPartition(topic, 0)
consumer.assign([tp])
consumer.seek_to_beginning(tp)
got = []
deadline = time.time() + 30
while len(got) < expected and time.time() < deadline:
    for batch in consumer.poll(timeout_ms=500).values():
        for m in batch:
            got.append({
                "key": json.loads(m.key) if m.key else None,
                "value": json.loads(m.value) if m.value else None,
            })
with open(out, "w") as f:
    for g in got:
        f.write(json.dumps(g) + "\n")
ok = len(got) >= expected
print(f"{1 if ok else 0} passed, {0 if ok else 1} failed (got {len(got)} of {expected} messages)")
sys.exit(0 if ok else 1)
