"""A thin-client protocol conformance server built on pyignite's codec.

NOT Apache Ignite. It speaks the binary client protocol through pyignite's
own parsers and serializers (Apache Ignite's Python thin client): every
request sqlcache sends is parsed with pyignite's Struct / data-object
classes, and every answer is encoded with them, over an in-memory store.
A frame pyignite cannot parse is a test failure (logged, connection closed).

Usage: ignite_server.py PORT_FILE [--version 1.7.0] [--auth user:password]
       [--tls CERT KEY] [--log FILE] [--delay-ms N] [--port N]
Writes the port it listens on to PORT_FILE; logs one JSON line per request.
"""
import argparse
import json
import socket
import socketserver
import ssl
import sys
import threading
import time
import uuid

from pyignite import Client
from pyignite.datatypes import (AnyDataArray, AnyDataObject, Bool, Byte, ByteArrayObject, Int, Long,
                                LongObject, Map, Null, Short, String, UUIDObject)
from pyignite.datatypes.internal import Struct
from pyignite.queries import op_codes
from pyignite.stream import READ_BACKWARD, BinaryStream
from pyignite.utils import hashcode

CLIENT = Client()  # never connects: pyignite's streams want one for context
LOCK = threading.Lock()
CACHES = {}  # cache id -> {key: (value, deadline or None)}
NAMES = {}  # cache id -> name
OPS = {v: k for k, v in vars(op_codes).items() if k.startswith('OP_')}


def parse(stream, fields):
    struct = Struct(fields)
    c_type = struct.parse(stream)
    return struct.to_python(stream.read_ctype(c_type, direction=READ_BACKWARD))


def parse_one(stream, kind):
    if kind in (Byte, Short, Int, Long):  # primitives convert through a Struct
        return parse(stream, [('v', kind)])['v']
    c_type = kind.parse(stream)
    return kind.to_python(stream.read_ctype(c_type, direction=READ_BACKWARD))


def parse_array(stream):
    """AnyDataArray, parsed by pyignite; its elements converted one by one
    (pyignite's AnyDataArray.to_python calls zero-argument super() inside a
    comprehension, which Python 3.11 rejects; it never runs in a client)."""
    c_type = AnyDataArray().parse(stream)
    obj = stream.read_ctype(c_type, direction=READ_BACKWARD)
    return [AnyDataObject.to_python(getattr(obj, f'element_{i}')) for i in range(obj.length)]


def read_exact(sock, n):
    buf = b''
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def frame(sock):
    n = int.from_bytes(read_exact(sock, 4), 'little', signed=True)
    return read_exact(sock, n)


def write_frame(write):
    with BinaryStream(CLIENT) as s:
        s.write(b'\0\0\0\0')
        write(s)
        body = s.getvalue()
    return len(body[4:]).to_bytes(4, 'little') + body[4:]


def jsonable(v):
    if isinstance(v, (bytes, bytearray)):
        return {'hex': bytes(v).hex()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return [[jsonable(k), jsonable(x)] for k, x in v.items()]
    return v


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        try:
            if not self.handshake(sock):
                return
            while True:
                body = frame(sock)
                if ARGS.delay_ms:
                    time.sleep(ARGS.delay_ms / 1000)
                sock.sendall(self.answer(body))
        except EOFError:
            pass
        except Exception as e:  # noqa: BLE001 - any unparsable frame is fatal
            log({'error': f'{type(e).__name__}: {e}'})
            raise

    def handshake(self, sock):
        with BinaryStream(CLIENT, frame(sock)) as s:
            h = parse(s, [('op_code', Byte), ('version_major', Short), ('version_minor', Short),
                          ('version_patch', Short), ('client_code', Byte)])
            v = (h['version_major'], h['version_minor'], h['version_patch'])
            if v >= (1, 7, 0):
                h['features'] = parse_one(s, ByteArrayObject)
            if s.tell() < len(s.getvalue()):
                h['username'] = parse_one(s, String)
                h['password'] = parse_one(s, String)
        log({'op': 'HANDSHAKE', 'version': list(v), 'user': h.get('username'),
             'features': jsonable(h.get('features'))})
        reject = None
        if h['op_code'] != 1 or h['client_code'] != 2:
            reject = ('not a thin-client handshake', 1)
        elif v > SERVER_VERSION:
            reject = (f'unsupported version {v}', 1)
        elif ARGS.auth and (h.get('username'), h.get('password')) != tuple(ARGS.auth.split(':', 1)):
            reject = ('The user name or password is incorrect', 2000)
        if reject:
            sock.sendall(write_frame(lambda s: Struct([
                ('op_code', Byte), ('version_major', Short), ('version_minor', Short),
                ('version_patch', Short), ('message', String), ('client_status', Int),
            ]).from_python(s, {'op_code': 0, 'version_major': SERVER_VERSION[0],
                               'version_minor': SERVER_VERSION[1],
                               'version_patch': SERVER_VERSION[2],
                               'message': reject[0], 'client_status': reject[1]})))
            return False
        self.version = v
        fields, values = [('op_code', Byte)], {'op_code': 1}
        if v >= (1, 7, 0):
            fields.append(('features', ByteArrayObject))
            values['features'] = b'\0'
        if v >= (1, 4, 0):
            fields.append(('node_uuid', UUIDObject))
            values['node_uuid'] = NODE
        sock.sendall(write_frame(lambda s: Struct(fields).from_python(s, values)))
        return True

    def answer(self, body):
        with BinaryStream(CLIENT, body) as s:
            h = parse(s, [('op_code', Short), ('query_id', Long)])
            op, qid = h['op_code'], h['query_id']
            entry = {'op': OPS.get(op, op)}
            try:
                payload = self.run(op, s, entry)
                status = None
            except KeyError as e:
                # Like Ignite, reject before reading the operation's body.
                payload, status = None, (1000, f'Cache does not exist: {e}')
                s.seek(len(body))
            except NotImplementedError:
                payload, status = None, (1, f'Unsupported operation {op}')
            if s.tell() != len(body):
                raise ValueError(f'{entry["op"]}: {len(body) - s.tell()} unparsed bytes')
        entry['status'] = status and status[0]
        log(entry)
        return write_frame(lambda out: self.reply(out, qid, payload, status))

    def reply(self, s, qid, payload, status):
        Long.from_python(s, qid)
        if self.version >= (1, 4, 0):
            Short.from_python(s, 1 if status else 0)
            if status:
                Int.from_python(s, status[0])
        elif status:
            Int.from_python(s, status[0])
        else:
            Int.from_python(s, 0)
        if status:
            String.from_python(s, status[1])
        elif payload:
            payload(s)

    def run(self, op, s, entry):
        if op == op_codes.OP_CACHE_GET_OR_CREATE_WITH_NAME:
            name = parse_one(s, String)
            entry['name'] = name
            with LOCK:
                NAMES[hashcode(name)] = name
                CACHES.setdefault(hashcode(name), {})
            return None
        cache_id = parse_one(s, Int)
        flags = parse_one(s, Byte)
        expiry = None
        if flags & 0x04:
            expiry = parse(s, [('create', Long), ('update', Long), ('access', Long)])
        entry.update(cache=NAMES.get(cache_id, cache_id), flags=flags, expiry=expiry)
        with LOCK:
            if cache_id not in NAMES:
                raise KeyError(cache_id)
            return self.cache_op(op, s, entry, CACHES[cache_id], expiry)

    def cache_op(self, op, s, entry, data, expiry):
        now = time.time() * 1000

        def get(k):
            v = data.get(k)
            if v is None or (v[1] is not None and v[1] <= now):
                data.pop(k, None)
                return None
            return v[0]

        def deadline():
            if expiry and expiry['create'] >= 0:
                return now + expiry['create']
            return None

        def obj(v):
            return lambda out: (Null if v is None else AnyDataObject).from_python(out, v)

        if op == op_codes.OP_CACHE_GET:
            k = parse_one(s, AnyDataObject)
            entry['key'] = jsonable(k)
            return obj(get(k))
        if op == op_codes.OP_CACHE_GET_ALL:
            keys = parse_array(s)
            entry['keys'] = jsonable(keys)
            found = {k: get(k) for k in keys if get(k) is not None}
            return lambda out: Map.from_python(out, found)
        if op == op_codes.OP_CACHE_PUT:
            k, v = parse_one(s, AnyDataObject), parse_one(s, AnyDataObject)
            entry['key'], entry['value_len'] = jsonable(k), len(v) if isinstance(v, (bytes, bytearray)) else None
            data[k] = (v, deadline())
            return None
        if op == op_codes.OP_CACHE_PUT_ALL:
            pairs = parse_one(s, Map)
            entry['pairs'] = jsonable(pairs)
            for k, v in pairs.items():
                data[k] = (v, deadline())
            return None
        if op == op_codes.OP_CACHE_GET_AND_PUT_IF_ABSENT:
            k, v = parse_one(s, AnyDataObject), parse_one(s, AnyDataObject)
            entry['key'], entry['value'] = jsonable(k), jsonable(v)
            old = get(k)
            if old is None:
                data[k] = (v, deadline())
            return obj(old)
        if op == op_codes.OP_CACHE_REMOVE_KEY:
            k = parse_one(s, AnyDataObject)
            entry['key'] = jsonable(k)
            found = get(k) is not None
            data.pop(k, None)
            return lambda out: Bool.from_python(out, found)
        if op == op_codes.OP_CACHE_REMOVE_KEYS:
            keys = parse_array(s)
            entry['keys'] = jsonable(keys)
            for k in keys:
                data.pop(k, None)
            return None
        if op == op_codes.OP_CACHE_CLEAR:
            data.clear()
            return None
        raise NotImplementedError


def log(entry):
    if ARGS.log:
        with LOCK_LOG, open(ARGS.log, 'a') as f:
            f.write(json.dumps(entry) + '\n')


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def get_request(self):
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if TLS:
            sock = TLS.wrap_socket(sock, server_side=True)
        return sock, addr


ap = argparse.ArgumentParser()
ap.add_argument('port_file')
ap.add_argument('--version', default='1.7.0')
ap.add_argument('--auth')
ap.add_argument('--tls', nargs=2, metavar=('CERT', 'KEY'))
ap.add_argument('--log')
ap.add_argument('--delay-ms', type=float, default=0)
ap.add_argument('--port', type=int, default=0)
ARGS = ap.parse_args()
import os  # noqa: E402
SERVER_VERSION = tuple(int(x) for x in ARGS.version.split('.'))
NODE = uuid.uuid4()
LOCK_LOG = threading.Lock()
TLS = None
if ARGS.tls:
    TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    TLS.load_cert_chain(*ARGS.tls)

srv = Server(('127.0.0.1', ARGS.port), Handler)
with open(ARGS.port_file + '.tmp', 'w') as f:
    f.write(str(srv.server_address[1]))
os.rename(ARGS.port_file + '.tmp', ARGS.port_file)
print(f'conformance server (pyignite codec, protocol {ARGS.version}) on {srv.server_address[1]}',
      file=sys.stderr, flush=True)
srv.serve_forever()
