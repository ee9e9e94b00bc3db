"""A client that starts with caching_sha2_password (as MySQL 8 clients do)
must be switched to mysql_native_password and log in; a wrong password after
the switch must get 1045.

usage: auth_switch.py PORT USER PASSWORD
"""
import hashlib
import socket
import struct
import sys

port, user, password = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3].encode()


def read_packet(s):
    hdr = b""
    while len(hdr) < 4:
        hdr += s.recv(4 - len(hdr))
    n = hdr[0] | hdr[1] << 8 | hdr[2] << 16
    body = b""
    while len(body) < n:
        body += s.recv(n - len(body))
    return hdr[3], body


def send_packet(s, seq, body):
    s.sendall(struct.pack("<I", len(body))[:3] + bytes([seq]) + body)


def native(nonce, pw):
    h1 = hashlib.sha1(pw).digest()
    h2 = hashlib.sha1(h1).digest()
    h3 = hashlib.sha1(nonce + h2).digest()
    return bytes(a ^ b for a, b in zip(h1, h3))


def login(pw):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(5)
    read_packet(s)
    caps = 0x200 | 0x8000 | 0x80000 | 0x200000  # 4.1, secure conn, plugin auth, lenenc auth data
    resp = bytes(32)  # what caching_sha2 would send; the proxy cannot verify it
    body = struct.pack("<IIB23x", caps, 1 << 24, 45) + user + b"\0" + bytes([len(resp)]) + resp + b"caching_sha2_password\0"
    send_packet(s, 1, body)
    seq, pkt = read_packet(s)
    assert pkt[0] == 0xFE, "expected an auth switch, got %r" % pkt
    plugin, _, data = pkt[1:].partition(b"\0")
    assert plugin == b"mysql_native_password", plugin
    nonce = data.rstrip(b"\0")
    assert len(nonce) == 20, nonce
    send_packet(s, seq + 1, native(nonce, pw))
    _, pkt = read_packet(s)
    s.close()
    return pkt


ok = login(password)
assert ok[0] == 0x00, "login after switch failed: %r" % ok
bad = login(b"wrong" + password)
assert bad[0] == 0xFF and struct.unpack("<H", bad[1:3])[0] == 1045, bad
print("2 passed, 0 failed")
