#!/usr/bin/env bash
# Writes fuzz/seeds/binlog_events/: real binlog files from a private
# MariaDB, one with CRC32 checksums and one without, after a workload that
# logs every event kind the decoder meets (row events over many column
# types, multi-row updates and deletes, key changes, DDL, TRUNCATE, a
# non-transactional table, user variables, a rotation). Rerun only to
# refresh the seeds; the output is checked in.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../bench/lib.sh"
bench_workdir
out="$here/seeds/binlog_events"
mkdir -p "$out"
for crc in CRC32 NONE; do
    port=$(free_port)
    start_mariadb "$WORK/$crc" "$port" --binlog-checksum=$crc
    pids+=("$MARIADB_PID")
    mariadb --no-defaults -uroot --socket="$WORK/$crc/sock" <<'SQL'
CREATE DATABASE shop;
USE shop;
CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40), price DECIMAL(10,2), qty BIGINT UNSIGNED,
  made DATETIME(6), day DATE, t TIME, y YEAR, f FLOAT, d DOUBLE, b BLOB, bits BIT(12),
  e ENUM('a','b'), s SET('x','y'), j JSON, ts TIMESTAMP(3) NULL, c CHAR(3) CHARACTER SET latin1,
  bin BINARY(4), u TINYINT UNSIGNED, m MEDIUMINT);
INSERT INTO items VALUES (1, 'apple', 1.50, 18446744073709551615, '2024-02-29 23:59:58.999999',
  '2024-02-29', '-838:59:59', 2024, 1.5, -2.25e300, x'00ff', b'101010101010', 'b', 'x,y',
  '{"a": [1, null]}', '2038-01-19 03:14:07.999', 'ÿé', x'01', 255, -8388608),
  (2, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
UPDATE items SET name = CONCAT(IFNULL(name, ''), '!'), qty = qty DIV 2 WHERE id IN (1, 2);
UPDATE items SET id = 3 WHERE id = 2;
CREATE TABLE nokey (a INT, b TEXT) ENGINE=MyISAM;
INSERT INTO nokey VALUES (1, 'one'), (1, 'one');
DELETE FROM nokey LIMIT 1;
SET @v = 'var';
INSERT INTO items (id, name) VALUES (4, @v);
BEGIN; DELETE FROM items WHERE id = 4; INSERT INTO items (id) VALUES (5); COMMIT;
ALTER TABLE items ADD COLUMN extra INT DEFAULT 7;
FLUSH BINARY LOGS;
TRUNCATE TABLE nokey;
DROP TABLE nokey;
SQL
    for f in "$WORK/$crc"/binlog.0*; do
        cp "$f" "$out/$(basename "$f")-$crc.bin"
    done
    kill "$MARIADB_PID"
    wait "$MARIADB_PID" 2>/dev/null || true
done
ls -l "$out"
