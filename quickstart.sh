#!/usr/bin/env bash
# sqlcache quickstart: from a bare machine to a working cache, one command.
#
# Installs MariaDB from the distribution's packages if it is missing, starts
# a private MariaDB (its own data directory, a free loopback port, the binlog
# settings the feed needs), loads a small sample schema (`shop`), builds and
# starts sqlcache in front of it with the binlog feed, and prints how to
# connect and what to try. Ctrl-C stops everything and removes the data.
# Nothing here touches a MySQL on port 3306; to front an existing MySQL, run
# `cargo run --release -- --config proxy.toml` instead.
#
# usage: bash quickstart.sh
# env:   QUICKSTART_PORT   client port of the proxy (default 6033; taken or 0: a free one)
#        SQLCACHE_BIN      a sqlcache binary to run instead of building one
#        QUICKSTART_CHECK=1  run the walk-through itself, check each step's
#                          route, print it, stop and exit (used by the tests)
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

say() { printf '\033[1m== %s\033[0m\n' "$*"; }
die() { echo "quickstart: $*" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
        || echo $((20000 + RANDOM % 20000))
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
    local what=$2 log=$3
    for _ in $(seq 1 600); do
        port_busy "$1" && return 0
        sleep 0.1
    done
    tail -n 30 "$log" >&2 || true
    die "$what did not start listening on port $1 (log above: $log)"
}

# 1. MariaDB from the distribution's packages, if missing.
if ! command -v mariadbd >/dev/null || ! command -v mariadb >/dev/null; then
    say "installing MariaDB (apt-get install mariadb-server mariadb-client)"
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    command -v apt-get >/dev/null || die "no apt-get here: install MariaDB (mariadbd, mariadb) yourself"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        mariadb-server mariadb-client >/dev/null
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sqlcache-quickstart.XXXXXX")
pids=()
cleanup() {
    trap - INT TERM EXIT
    say "stopping"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 2. A private MariaDB with the binlog the feed reads.
DB_PORT=$(free_port)
SOCK="$WORK/mysqld.sock"
say "starting a private MariaDB on 127.0.0.1:$DB_PORT (data in $WORK)"
# Its own temp directory: bootstraps sharing /tmp can remove each other's
# temporary tables and fail ("Unknown table 'mysql.tmp_user_sys'").
mkdir -p "$WORK/tmp"
mariadb-install-db --no-defaults --auth-root-authentication-method=normal --skip-test-db \
    --datadir="$WORK/data" --tmpdir="$WORK/tmp" --user="$(id -un)" >"$WORK/install.log" 2>&1 \
    || { grep -E "ERROR|Error" "$WORK/install.log" >&2; tail -n 20 "$WORK/install.log" >&2; die "mariadb-install-db failed"; }
# MariaDB and sqlcache run in sessions of their own (setsid), so a Ctrl-C
# reaches this script alone and its trap stops them; in the terminal's
# process group they could exit on the SIGINT before the trap ran, and the
# script would report an unexpected exit instead of stopping.
setsid mariadbd --no-defaults --datadir="$WORK/data" --socket="$SOCK" --port="$DB_PORT" \
    --bind-address=127.0.0.1 --skip-name-resolve --user="$(id -un)" --tmpdir="$WORK/tmp" \
    --log-bin="$WORK/binlog" --binlog-format=ROW --binlog-row-image=FULL \
    --binlog-row-metadata=FULL --server-id=1 \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --log-error="$WORK/mariadb.log" --pid-file="$WORK/mariadb.pid" &
pids+=($!)
wait_port "$DB_PORT" "MariaDB" "$WORK/mariadb.log"
sql() { mariadb --no-defaults -uroot --socket="$SOCK" "$@"; }
sql -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; \
        GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"

# 3. A small sample schema.
say "loading the sample schema (shop.products, shop.customers)"
sql <<'SQL'
CREATE DATABASE shop;
USE shop;
CREATE TABLE products (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, price DECIMAL(8,2) NOT NULL);
CREATE TABLE customers (id INT PRIMARY KEY, email VARCHAR(80) NOT NULL UNIQUE, name VARCHAR(40));
INSERT INTO products VALUES (1,'tea',3.50),(2,'coffee',4.20),(3,'cocoa',3.90),(4,'mate',4.80);
INSERT INTO customers VALUES (1,'ada@example.com','Ada'),(2,'alan@example.com','Alan');
SQL

# 4. sqlcache in front of it, with the binlog feed.
PROXY_PORT=${QUICKSTART_PORT:-6033}
if [[ $PROXY_PORT == 0 ]] || port_busy "$PROXY_PORT"; then PROXY_PORT=$(free_port); fi
ADMIN_PORT=$(free_port)
cat >"$WORK/proxy.toml" <<TOML
[proxy]
listen = "127.0.0.1:$PROXY_PORT"
shutdown_timeout = "2s"

[backend]
host = "127.0.0.1"
port = $DB_PORT
user = "root"
password = ""

[[users]]
name = "root"
password = ""

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

# Writes made directly in MariaDB reach the cache through its binlog.
[invalidation.binlog]
max_staleness = "5s"
TOML
BIN=${SQLCACHE_BIN:-}
if [[ -z $BIN ]]; then
    command -v cargo >/dev/null || die "cargo is needed to build sqlcache (https://rustup.rs)"
    say "building sqlcache (cargo build --release; the first build takes a few minutes)"
    cargo build --release --quiet --bin sqlcache
    BIN=target/release/sqlcache
fi
say "starting sqlcache on 127.0.0.1:$PROXY_PORT"
setsid "$BIN" --config "$WORK/proxy.toml" 2>"$WORK/sqlcache.log" &
pids+=($!)
wait_port "$PROXY_PORT" "sqlcache" "$WORK/sqlcache.log"

proxy() { mariadb --no-defaults -h127.0.0.1 -P"$PROXY_PORT" -uroot shop "$@"; }
last() { proxy -N -e "$1; SHOW SQLCACHE LAST" | tail -n 1 | cut -f2; }
expect() {
    local what=$1 got=$2 want=$3
    printf '  %-58s -> %s\n' "$what" "$got"
    [[ $got == $want* ]] || die "expected '$want' for: $what"
}

if [[ ${QUICKSTART_CHECK:-} == 1 ]]; then
    say "walk-through (QUICKSTART_CHECK=1)"
    for _ in $(seq 1 100); do
        [[ $(proxy -N -e "SHOW SQLCACHE STATUS" | awk '$1=="feed_fresh"{print $2}') == true ]] && break
        sleep 0.1
    done
    q="SELECT name, price FROM products WHERE id = 1"
    expect "$q" "$(last "$q")" "miss"
    expect "$q (again)" "$(last "$q")" "hit"
    expect "UPDATE products SET price = 3.60 WHERE id = 1" \
        "$(last "UPDATE products SET price = 3.60 WHERE id = 1")" "write"
    expect "$q (after the write)" "$(last "$q")" "miss"
    expect "$q (again)" "$(last "$q")" "hit"
    sql -e "UPDATE shop.products SET price = 3.70 WHERE id = 1"
    for _ in $(seq 1 100); do
        got=$(proxy -N -e "$q" | cut -f2)
        [[ $got == 3.70 ]] && break
        sleep 0.05
    done
    expect "a write made directly in MariaDB, then $q" "$got" "3.70"
    proxy -t -e "SHOW SQLCACHE QUERIES"
    exit 0
fi

cat <<EOF

sqlcache is running in front of a private MariaDB. Connect with

    mariadb -h127.0.0.1 -P$PROXY_PORT -uroot shop

and try:

    SELECT name, price FROM products WHERE id = 1;   -- a miss: MariaDB answers, the cache fills
    SELECT name, price FROM products WHERE id = 1;   -- a hit: answered from memory
    SHOW SQLCACHE LAST;                              -- how the last statement was routed
    UPDATE products SET price = 3.60 WHERE id = 1;   -- a write: the entry is invalidated
    SELECT name, price FROM products WHERE id = 1;   -- a miss again, with the new price
    SHOW SQLCACHE QUERIES;                           -- every statement shape, and why it was (not) cached
    SHOW SQLCACHE TABLES;                            -- what each table holds

A write made directly in MariaDB reaches the cache through the binlog:

    mariadb --no-defaults -uroot --socket=$SOCK -e "UPDATE shop.products SET price = 9 WHERE id = 1"

Metrics: http://127.0.0.1:$ADMIN_PORT/metrics   readiness: http://127.0.0.1:$ADMIN_PORT/ready
Logs: $WORK/sqlcache.log, $WORK/mariadb.log. Press Ctrl-C to stop everything.
EOF
wait -n "${pids[@]}" || true
for log in "$WORK/sqlcache.log" "$WORK/mariadb.log"; do
    echo "--- $log" >&2
    tail -n 20 "$log" >&2 || true
done
die "a process exited unexpectedly (its log is above)"
