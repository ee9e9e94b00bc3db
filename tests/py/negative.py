"""Hostile and unusual input against sqlcache: each case must get a proper
MySQL error (or a closed connection for garbage framing) and the proxy must go
on serving the next client.

usage: negative.py PROXY_PORT
"""
import socket
import struct
import sys

import pymysql

port = int(sys.argv[1])
results = []


def check(name, ok, detail=""):
    results.append((name, ok, detail))


def connect(**kw):
    args = dict(host="127.0.0.1", port=port, user="root", password="", database="test")
    args.update(kw)
    return pymysql.connect(**args)


def still_serves():
    c = connect()
    cur = c.cursor()
    cur.execute("SELECT 42")
    v = cur.fetchone()[0]
    c.close()
    return v == 42


# Wrong password -> 1045 / 28000.
try:
    connect(password="wrong")
    check("wrong password", False, "connected")
except pymysql.err.OperationalError as e:
    check("wrong password", e.args[0] == 1045 and "Access denied" in e.args[1], repr(e.args))
# Unknown user -> 1045.
try:
    connect(user="nobody")
    check("unknown user", False, "connected")
except pymysql.err.OperationalError as e:
    check("unknown user", e.args[0] == 1045, repr(e.args))
check("serves after bad logins", still_serves())

# Unknown command -> ER_UNKNOWN_COM_ERROR 1047 / 08S01, session continues.
c = connect()
try:
    c._execute_command(0x20, b"")
    c._read_ok_packet()
    check("unknown command", False, "OK received")
except pymysql.MySQLError as e:
    check("unknown command", e.args[0] == 1047, repr(e.args))
cur = c.cursor()
cur.execute("SELECT 1")
check("session continues after unknown command", cur.fetchone()[0] == 1)
# COM_STMT_EXECUTE for a statement that does not exist.
try:
    c._execute_command(0x17, struct.pack("<IBI", 999, 0, 1))
    c._read_ok_packet()
    check("execute unknown stmt", False)
except pymysql.MySQLError as e:
    check("execute unknown stmt", e.args[0] == 1243, repr(e.args))
# COM_STATISTICS answers a status line; COM_PING answers OK.
c._execute_command(0x09, b"")
pkt = c._read_packet()
check("statistics", b"Uptime:" in pkt.get_all_data(), repr(pkt.get_all_data()))
c.ping(reconnect=False)
check("ping", True)
# COM_FIELD_LIST lists the table's columns.
cur.execute("CREATE TABLE IF NOT EXISTS neg_t (a INT, b VARCHAR(3))")
c._execute_command(0x04, b"neg_t\x00")
names = []
while True:
    p = c._read_packet()
    if p.is_eof_packet() or p.is_ok_packet():
        break
    names.append(p.read_length_coded_string())  # catalog
    p.read_length_coded_string()
    p.read_length_coded_string()
    p.read_length_coded_string()
    names[-1] = p.read_length_coded_string()
check("field list", names == [b"a", b"b"], repr(names))
c.close()


def raw_session():
    """A TCP connection that completed the handshake as root (no password)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(5)
    hdr = s.recv(4)
    n = hdr[0] | hdr[1] << 8 | hdr[2] << 16
    body = b""
    while len(body) < n:
        body += s.recv(n - len(body))
    caps = 0x00000200 | 0x00008000 | 0x00080000 | 0x00000008  # 4.1, secure, plugin auth, with db
    payload = struct.pack("<IIB23x", caps, 1 << 24, 45) + b"root\x00" + b"\x00" + b"test\x00" + b"mysql_native_password\x00"
    s.sendall(struct.pack("<I", len(payload))[:3] + b"\x01" + payload)
    hdr = s.recv(4)
    n = hdr[0] | hdr[1] << 8 | hdr[2] << 16
    ok = s.recv(n)
    assert ok[0] == 0, ok
    return s


def closed_or_error(s):
    try:
        data = s.recv(1024)
        return data == b"" or (len(data) > 4 and data[4] == 0xFF)
    except (ConnectionResetError, socket.timeout):
        return False


# Garbage after the handshake: a bad sequence number -> connection closed.
s = raw_session()
s.sendall(b"\xde\xad\xbe\xef" * 8)
check("garbage after handshake", closed_or_error(s))
s.close()
check("serves after garbage", still_serves())
# A truncated packet, then the client goes away.
s = raw_session()
s.sendall(struct.pack("<I", 100)[:3] + b"\x00" + b"\x03SELE")
s.close()
check("serves after truncated packet", still_serves())
# An empty command packet.
s = raw_session()
s.sendall(b"\x00\x00\x00\x00")
check("empty packet", closed_or_error(s))
s.close()
# Garbage instead of a handshake response.
s = socket.create_connection(("127.0.0.1", port))
s.settimeout(5)
s.recv(1024)
s.sendall(b"\x05\x00\x00\x01hello")
check("garbage handshake response", closed_or_error(s))
s.close()
# A malformed COM_STMT_EXECUTE (no parameter types ever sent).
c = connect()
c._execute_command(0x16, b"SELECT ?")
p = c._read_packet()
stmt_id = struct.unpack("<I", p.get_all_data()[1:5])[0]
eofs = 0
while eofs < 2:  # parameter block and column block, each ends with EOF
    p = c._read_packet()
    if p.is_eof_packet():
        eofs += 1
try:
    c._execute_command(0x17, struct.pack("<IBIBB", stmt_id, 0, 1, 0, 0))
    c._read_ok_packet()
    check("execute without types", False)
except pymysql.MySQLError as e:
    check("execute without types", e.args[0] == 1210, repr(e.args))
cur = c.cursor()
cur.execute("SELECT 7")
check("session continues after bad execute", cur.fetchone()[0] == 7)
# COM_STMT_SEND_LONG_DATA twice, then execute with a BLOB type.
c._execute_command(0x18, struct.pack("<IH", stmt_id, 0) + b"abc")
c._execute_command(0x18, struct.pack("<IH", stmt_id, 0) + b"\x00def")
c._execute_command(0x17, struct.pack("<IBIBB", stmt_id, 0, 1, 0, 1) + struct.pack("<BB", 252, 0))
p = c._read_packet()  # column count
p = c._read_packet()  # column definition
p = c._read_packet()  # EOF (PyMySQL does not ask for DEPRECATE_EOF)
row = c._read_packet().get_all_data()
check("long data", row[0] == 0 and row[2:] == b"\x07abc\x00def", repr(row))
while not c._read_packet().is_eof_packet():
    pass
# COM_STMT_RESET answers OK and clears long data.
c._execute_command(0x1A, struct.pack("<I", stmt_id))
check("stmt reset", c._read_packet().is_ok_packet())
# COM_STMT_CLOSE: no answer; executing it afterwards is an error.
c._execute_command(0x19, struct.pack("<I", stmt_id))
try:
    c._execute_command(0x17, struct.pack("<IBIBB", stmt_id, 0, 1, 0, 0))
    c._read_ok_packet()
    check("closed stmt", False)
except pymysql.MySQLError as e:
    check("closed stmt", e.args[0] == 1243, repr(e.args))
c.close()

# COM_SET_OPTION switches multi-statements off and on.
c = connect(client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
cur = c.cursor()
c._execute_command(0x1B, struct.pack("<H", 1))
check("set option off", c._read_packet().is_eof_packet())
try:
    cur.execute("SELECT 1; SELECT 2")
    check("multi refused when off", False)
except pymysql.MySQLError as e:
    check("multi refused when off", e.args[0] == 1064, repr(e.args))
c._execute_command(0x1B, struct.pack("<H", 0))
check("set option on", c._read_packet().is_eof_packet())
cur.execute("SELECT 1; SELECT 2")
check("multi allowed when on", cur.fetchall() == ((1,),) and cur.nextset() and cur.fetchall() == ((2,),))
c.close()
check("serves at the end", still_serves())

failed = [r for r in results if not r[1]]
for name, ok, detail in results:
    print("%s %s %s" % ("ok  " if ok else "FAIL", name, detail))
print("%d passed, %d failed" % (len(results) - len(failed), len(failed)))
sys.exit(1 if failed else 0)
