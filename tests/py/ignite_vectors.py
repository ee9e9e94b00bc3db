"""Prints pyignite's own encoding of the thin-client frames sqlcache sends
(JSON: name -> hex), for byte-exact comparison in tests/ignite.rs.

pyignite (Apache Ignite's Python thin client) is the independent reference:
every frame below is built with its Query/HandshakeRequest classes and its
data-type serializers, never by hand.
"""
import json
import sys

from pyignite import Client
from pyignite.connection.bitmask_feature import BitmaskFeature
from pyignite.connection.handshake import HandshakeRequest
from pyignite.connection.protocol_context import ProtocolContext
from pyignite.datatypes import (AnyDataArray, AnyDataObject, ByteArrayObject, ExpiryPolicy,
                                LongObject, Map, String)
from pyignite.datatypes.internal import Struct
from pyignite.queries import Query, op_codes
from pyignite.queries.cache_info import CacheInfo
from pyignite.stream import BinaryStream
from pyignite.utils import hashcode

QID = int(sys.argv[1]) if len(sys.argv) > 1 else 42
CTX = ProtocolContext((1, 7, 0), BitmaskFeature(0))
client = Client()


def encode(write):
    with BinaryStream(client) as s:
        write(s)
        return s.getvalue().hex()


def query(op, fields, values):
    return encode(lambda s: Query(op, fields, query_id=QID).from_python(s, values))


def info(name, expiry=None):
    return CacheInfo(cache_id=hashcode(name), expiry_policy=expiry, protocol_context=CTX)


def handshake(auth):
    req = HandshakeRequest(CTX, *(auth or (None, None)))
    return encode(req.from_python)


class Pairs:
    """A Map payload (int count + key/value objects) with explicit types."""

    @staticmethod
    def from_python(stream, pairs):
        stream.write(len(pairs).to_bytes(4, 'little', signed=True))
        for k, v in pairs:
            LongObject.from_python(stream, k)
            LongObject.from_python(stream, v)


E, T = 'sqlcache_entries', 'sqlcache_tokens'
vectors = {
    'handshake_1_7_0': handshake(None),
    'handshake_1_7_0_auth': handshake(('ignite', 'secret')),
    'get_or_create': query(op_codes.OP_CACHE_GET_OR_CREATE_WITH_NAME,
                           [('name', String)], {'name': E}),
    'get': query(op_codes.OP_CACHE_GET,
                 [('cache_info', CacheInfo), ('key', ByteArrayObject)],
                 {'cache_info': info(E), 'key': b'key\x00\xff'}),
    'get_all': query(op_codes.OP_CACHE_GET_ALL,
                     [('cache_info', CacheInfo), ('keys', AnyDataArray())],
                     {'cache_info': info(T),
                      'keys': [(5, LongObject), (1 << 40, LongObject), (-1, LongObject)]}),
    'put_expiry': query(op_codes.OP_CACHE_PUT,
                        [('cache_info', CacheInfo), ('key', ByteArrayObject),
                         ('value', ByteArrayObject)],
                        {'cache_info': info(E, ExpiryPolicy(create=60_000)),
                         'key': b'k', 'value': b'value'}),
    'get_and_put_if_absent': query(op_codes.OP_CACHE_GET_AND_PUT_IF_ABSENT,
                                   [('cache_info', CacheInfo), ('key', LongObject),
                                    ('value', LongObject)],
                                   {'cache_info': info(T), 'key': 7, 'value': -42}),
    'put_all': query(op_codes.OP_CACHE_PUT_ALL,
                     [('cache_info', CacheInfo), ('data', Pairs)],
                     {'cache_info': info(T), 'data': [(1, 2), (-1, -(1 << 63))]}),
    'remove_keys': query(op_codes.OP_CACHE_REMOVE_KEYS,
                         [('cache_info', CacheInfo), ('keys', AnyDataArray())],
                         {'cache_info': info(T), 'keys': [(3, LongObject), (4, LongObject)]}),
    'remove_key': query(op_codes.OP_CACHE_REMOVE_KEY,
                        [('cache_info', CacheInfo), ('key', ByteArrayObject)],
                        {'cache_info': info(E), 'key': b'k'}),
    'clear': query(op_codes.OP_CACHE_CLEAR, [('cache_info', CacheInfo)],
                   {'cache_info': info(E)}),
}
# pyignite's own Map serializer must agree with the explicit one above.
assert vectors['put_all'] == query(op_codes.OP_CACHE_PUT_ALL,
                                   [('cache_info', CacheInfo), ('data', Map)],
                                   {'cache_info': info(T),
                                    'data': {1: 2, -1: -(1 << 63)}})
print(json.dumps(vectors))
