#!/usr/bin/env python3
"""Writes fuzz/seeds/<target>/: the starting inputs of each fuzz target.

Drawn from the test fixtures: SQL text and JSON messages are extracted from
the unit tests beside the decoders (so new fixtures become seeds on the next
run), packets and frames are built the way real clients and servers lay
them out (MySQL client/server protocol, Ignite thin-client protocol). The
binlog seeds are real binlog files a private MariaDB wrote
(`fuzz/seeds/binlog_events/*.bin`, made by `fuzz/binlog_seed.sh`) and are
left alone here. Rerun after changing fixtures; the output is checked in.
"""

import hashlib
import pathlib
import re
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"


def put(target, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    (d / name).write_bytes(data)


def rust_strings(path):
    """String literals ("…" and r#"…"#) of a Rust source file, unescaped."""
    text = (ROOT / path).read_text()
    out = [m.group(1) for m in re.finditer(r'b?r#"(.*?)"#', text, re.S)]
    for m in re.finditer(r'(?<![#\w])b?"((?:[^"\\\n]|\\.)*)"', text):
        s = m.group(1)
        s = s.replace('\\"', '"').replace("\\n", "\n").replace("\\t", "\t").replace("\\\\", "\\")
        out.append(s)
    return out


SQL_START = re.compile(
    r"^\s*(/\*|--|#\s|\()?\s*(select|insert|update|delete|replace|with|set|show|use|kill|"
    r"begin|start|commit|rollback|lock|unlock|call|create|alter|drop|truncate|explain|"
    r"describe|desc|handler|load|do|prepare|execute|sqlcache|savepoint|xa|flush|grant|"
    r"table|values|analyze)\b",
    re.I,
)


def sql_fixtures():
    files = sorted((ROOT / "src" / "classify").glob("*.rs")) + [
        ROOT / "src" / "admin" / "status.rs",
        ROOT / "src" / "frontend" / "commands.rs",
    ]
    seen = set()
    for f in files:
        for s in rust_strings(f.relative_to(ROOT)):
            if SQL_START.match(s) and s not in seen:
                seen.add(s)
                yield s.encode()


def packet(seq, payload):
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


def lenenc(b):
    assert len(b) < 251
    return bytes([len(b)]) + b


def execute_body(stmt_id, types, values, nulls=0):
    n = len(types) // 2
    bitmap = nulls.to_bytes((n + 7) // 8, "little") if n else b""
    body = struct.pack("<IBI", stmt_id, 0, 1)
    if n:
        body += bitmap + b"\x01" + types + values
    return body


# (type, flags) and one encoded value each, as clients send them.
PARAMS = [
    (b"\x08\x00", struct.pack("<q", 5)),  # LONGLONG
    (b"\x08\x80", struct.pack("<Q", 2**64 - 1)),  # LONGLONG UNSIGNED
    (b"\x03\x00", struct.pack("<i", -7)),  # LONG
    (b"\x02\x00", struct.pack("<h", 300)),  # SHORT
    (b"\x01\x00", b"\x7f"),  # TINY
    (b"\x05\x00", struct.pack("<d", 5.0)),  # DOUBLE (mysql2's numbers)
    (b"\x04\x00", struct.pack("<f", 2.5)),  # FLOAT
    (b"\xfd\x00", lenenc(b"abc")),  # VAR_STRING
    (b"\xfe\x00", lenenc(b"12")),  # STRING
    (b"\xfc\x00", lenenc(b"\x00\x01blob")),  # BLOB
    (b"\xf6\x00", lenenc(b"-12.345")),  # NEWDECIMAL
    (b"\x0a\x00", b"\x04" + struct.pack("<HBB", 2024, 2, 29)),  # DATE
    (b"\x0c\x00", b"\x0b" + struct.pack("<HBBBBBI", 2024, 2, 29, 23, 59, 58, 999999)),
    (b"\x07\x00", b"\x07" + struct.pack("<HBBBBB", 1970, 1, 1, 0, 0, 1)),  # TIMESTAMP
    (b"\x0b\x00", b"\x0c" + struct.pack("<BIBBBI", 1, 34, 22, 59, 59, 1)),  # TIME
    (b"\x06\x00", b""),  # NULL type
    (b"\xf5\x00", lenenc(b'{"a":1}')),  # JSON
    (b"\x10\x00", lenenc(b"\x05")),  # BIT
]


def stmt_execute_seeds():
    for ty, val in PARAMS:
        yield bytes([1, 0]) + execute_body(1, ty, val)  # types sent now
        yield bytes([1, 1]) + ty + execute_body(1, b"", b"")[:9] + b"\x00\x00" + val
    types = b"".join(t for t, _ in PARAMS)
    values = b"".join(v for _, v in PARAMS)
    yield bytes([len(PARAMS), 0]) + execute_body(1, types, values)
    yield bytes([len(PARAMS), 2]) + execute_body(1, types, values, nulls=0b1010)
    yield bytes([0, 0]) + execute_body(1, b"", b"")


def client_packet_seeds(sqls):
    for s in sqls[:40]:
        yield packet(0, b"\x03" + s)
    prep = b"SELECT * FROM t WHERE id = ? AND name = ?"
    ty = b"\x08\x00\xfd\x00"
    val = struct.pack("<q", 5) + lenenc(b"x")
    yield (
        packet(0, b"\x16" + prep)
        + packet(0, b"\x18" + struct.pack("<IH", 1, 1) + b"long")
        + packet(0, b"\x17" + execute_body(1, ty, val))
        + packet(0, b"\x17" + struct.pack("<IBI", 1, 0, 1) + b"\x00\x00" + val)
        + packet(0, b"\x1a" + struct.pack("<I", 1))
        + packet(0, b"\x19" + struct.pack("<I", 1))
    )
    yield packet(0, b"\x04t\x00%")
    yield packet(0, b"\x1b\x01\x00") + packet(0, b"\x0e") + packet(0, b"\x01")
    yield packet(0, b"\x02shop") + packet(0, b"\x03SELECT DATABASE()")
    yield packet(0, b"\x11root\x00\x14" + bytes(range(20)) + b"db\x00\x2d\x00mysql_native_password\x00")
    # A split packet: 0xFFFFFF bytes are too many for a seed, so an empty
    # continuation after a short one, and a wrong sequence id.
    yield packet(0, b"\x03SELECT 1") + packet(1, b"")
    yield packet(3, b"\x03SELECT 1")


CAPS = 0x000FA685  # PROTOCOL_41 | SECURE_CONN | PLUGIN_AUTH | CONNECT_WITH_DB | CONNECT_ATTRS …


def handshake_seeds():
    head = struct.pack("<IIB", CAPS, 1 << 24, 45) + bytes(23)
    proof = bytes(range(20))
    attrs = lenenc(b"_client_name") + lenenc(b"pymysql") + lenenc(b"_pid") + lenenc(b"42")
    yield head + b"root\x00" + lenenc(proof) + b"shop\x00" + b"mysql_native_password\x00" + lenenc(attrs)
    yield head + b"app\x00" + lenenc(b"") + b"mysql_native_password\x00"
    yield head + b"app\x00" + lenenc(bytes(32)) + b"\x00caching_sha2_password\x00"
    no_db = CAPS & ~0x8
    yield struct.pack("<IIB", no_db, 1 << 24, 33) + bytes(23) + b"u\x00" + lenenc(proof)
    yield struct.pack("<IIB", CAPS | 0x800, 1 << 24, 45) + bytes(23)  # SSL request
    yield struct.pack("<HI", 0x8285, 1 << 24) + b"old\x00" + proof[:8]  # pre-4.1


def feed_seeds():
    for s in rust_strings("src/invalidation/decode.rs") + rust_strings("tests/feed.rs"):
        if s.lstrip().startswith("{"):
            yield s.encode()
    yield b'{"schema":{"type":"struct"},"payload":{"id":5}}\x00' + (
        b'{"before":{"id":5},"after":null,"source":{"db":"shop","table":"items"},"op":"d"}'
    )


def sink_seeds():
    for s in rust_strings("src/sink/record.rs") + rust_strings("src/sink/values.rs"):
        if s.lstrip().startswith("{"):
            yield s.encode()
            yield b'{"id":1}\x00' + s.encode()


def i32(v):
    return struct.pack("<i", v)


def ignite_seeds():
    string = lambda s: bytes([9]) + i32(len(s)) + s  # noqa: E731
    long = lambda v: bytes([4]) + struct.pack("<q", v)  # noqa: E731
    blob = lambda b: bytes([12]) + i32(len(b)) + b  # noqa: E731
    rid = struct.pack("<q", 9)
    yield rid + b"\x00\x00" + bytes([101])  # OK, null value
    yield rid + b"\x00\x00" + blob(b"\x01entry bytes")
    yield rid + b"\x00\x00" + i32(2) + long(1) + long(7) + long(2) + bytes([101])  # a map
    yield rid + b"\x03\x00" + struct.pack("<qi", 5, 1) + i32(1000) + string(b"no")  # error
    yield rid + i32(0) + blob(b"old header")  # before 1.4
    yield b"\x01" + bytes([10]) + bytes(16)  # handshake accepted, node UUID
    yield b"\x00" + struct.pack("<hhh", 1, 4, 0) + string(b"old") + i32(1001)
    # A continuous query's events: resource id, flags 0x04, opcode, count,
    # then (key, old, new, type) per event.
    ev = long(42) + bytes([101]) + long(3) + b"\x00"
    yield struct.pack("<qhh", 77, 4, 2007) + i32(1) + ev
    yield struct.pack("<qhh", 77, 5, 2007) + i32(1) + string(b"gone")


def main():
    for d in SEEDS.glob("*"):
        if d.name != "binlog_events":
            for f in d.iterdir():
                f.unlink()
    sqls = list(sql_fixtures())
    for s in sqls:
        put("classify", s)
    for seeds, target in [
        (client_packet_seeds(sqls), "client_packets"),
        (stmt_execute_seeds(), "stmt_execute"),
        (handshake_seeds(), "handshake"),
        (feed_seeds(), "feed_messages"),
        (sink_seeds(), "sink_records"),
        (ignite_seeds(), "ignite_frames"),
    ]:
        for s in seeds:
            put(target, s)
    for d in sorted(SEEDS.iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} seeds")


if __name__ == "__main__":
    main()
