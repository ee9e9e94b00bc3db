//! The Apache Ignite binary client ("thin client") protocol: just the frames
//! the shared tier needs, encoded and decoded without I/O.
//!
//! Policy: everything is little-endian and length-prefixed (`int`). A
//! request is `int len, short opcode, long request_id` + payload; a cache
//! operation's payload starts with `int cache_id, byte flags` (flag 0x04 adds
//! an expiry policy, protocol ≥ 1.6). A response is `int len, long
//! request_id` then, from 1.4, `short flags` (0x01 error → `int status,
//! String message`; 0x02 topology changed → `long, int` to skip); before 1.4
//! an `int status` (non-zero → `String message`). A server-initiated
//! notification (≥ 1.4, flag 0x04: a continuous query's events) carries the
//! resource id where a response has the request id, then `short opcode`.
//! Values are typed data objects: byte array (12), long (4), string (9),
//! UUID (10), null (101). Anything this
//! module does not understand is an error, never a guess: the tier treats
//! it as "L2 unavailable", which can only cost hit rate.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::IgniteError;

pub const OP_HANDSHAKE: u8 = 1;
pub const OP_CACHE_GET: i16 = 1000;
pub const OP_CACHE_PUT: i16 = 1001;
pub const OP_CACHE_GET_ALL: i16 = 1003;
pub const OP_CACHE_PUT_ALL: i16 = 1004;
pub const OP_CACHE_GET_AND_PUT_IF_ABSENT: i16 = 1008;
pub const OP_CACHE_CLEAR: i16 = 1013;
pub const OP_CACHE_REMOVE_KEY: i16 = 1016;
pub const OP_CACHE_REMOVE_KEYS: i16 = 1018;
pub const OP_CACHE_LOCAL_PEEK: i16 = 1021;
pub const OP_CACHE_GET_OR_CREATE_WITH_NAME: i16 = 1052;
pub const OP_CACHE_PARTITIONS: i16 = 1101;
pub const OP_QUERY_CONTINUOUS: i16 = 2006;
pub const OP_QUERY_CONTINUOUS_EVENT_NOTIFICATION: i16 = 2007;

const FLAG_ERROR: i16 = 0x01;
const FLAG_TOPOLOGY: i16 = 0x02;
const FLAG_NOTIFICATION: i16 = 0x04;

pub const TYPE_LONG: u8 = 4;
pub const TYPE_STRING: u8 = 9;
pub const TYPE_UUID: u8 = 10;
pub const TYPE_BYTE_ARRAY: u8 = 12;
pub const TYPE_NULL: u8 = 101;

/// Protocol versions offered, newest first; the server's answer to a
/// rejected handshake picks the next one it supports.
pub const VERSIONS: [Version; 8] = [
    Version(1, 7, 0),
    Version(1, 6, 0),
    Version(1, 5, 0),
    Version(1, 4, 0),
    Version(1, 3, 0),
    Version(1, 2, 0),
    Version(1, 1, 0),
    Version(1, 0, 0),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub i16, pub i16, pub i16);

impl Version {
    /// Response headers carry `short flags` instead of `int status`.
    pub fn has_status_flags(self) -> bool {
        self >= Version(1, 4, 0)
    }
    /// The handshake carries a features bitmask.
    pub fn has_features(self) -> bool {
        self >= Version(1, 7, 0)
    }
    /// A successful handshake returns the node's UUID.
    pub fn has_node_id(self) -> bool {
        self >= Version(1, 4, 0)
    }
    /// Cache operations may carry an expiry policy.
    pub fn has_expiry(self) -> bool {
        self >= Version(1, 6, 0)
    }
    /// OP_CACHE_PARTITIONS and the topology flag (IEP-23).
    pub fn has_partitions(self) -> bool {
        self >= Version(1, 4, 0)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Java's `String.hashCode()` over UTF-16 code units: Ignite's cache id.
pub fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(u as i32))
}

/// The handshake request (no features requested; credentials if given).
pub fn handshake(v: Version, auth: Option<(&str, &str)>) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_i32_le(0);
    b.put_u8(OP_HANDSHAKE);
    b.put_i16_le(v.0);
    b.put_i16_le(v.1);
    b.put_i16_le(v.2);
    b.put_u8(2); // client code: thin client
    if v.has_features() {
        put_bytes(&mut b, &[0]);
    }
    if let Some((user, password)) = auth {
        put_string(&mut b, user);
        put_string(&mut b, password);
    }
    finish(b)
}

/// What a handshake response said (the body after the length prefix).
#[derive(Debug, PartialEq, Eq)]
pub enum Handshake {
    /// Accepted; the node's id from 1.4 (what partition maps name).
    Accepted { node: Option<[u8; 16]> },
    /// Rejected; the server's version and message.
    Rejected {
        server: Version,
        message: String,
        status: Option<i32>,
    },
}

pub fn parse_handshake(v: Version, mut body: &[u8]) -> Result<Handshake, IgniteError> {
    let success = take_u8(&mut body)?;
    if success == 1 {
        if v.has_features() {
            let _features = object(&mut body)?;
        }
        let mut node = None;
        if v.has_node_id() {
            if let Obj::Uuid(u) = object(&mut body)? {
                node = Some(u);
            }
        }
        return Ok(Handshake::Accepted { node });
    }
    let server = Version(
        take_i16(&mut body)?,
        take_i16(&mut body)?,
        take_i16(&mut body)?,
    );
    let message = match object(&mut body)? {
        Obj::Str(s) => s,
        _ => String::new(),
    };
    let status = (body.len() >= 4).then(|| body.get_i32_le());
    Ok(Handshake::Rejected {
        server,
        message,
        status,
    })
}

/// Optional per-operation expiry: Ignite's `ExpiryPolicy` (ms; -2 unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub create_ms: i64,
}

/// A request under construction; `finish` fills in the length.
pub struct Request(BytesMut);

impl Request {
    pub fn new(op: i16) -> Request {
        let mut b = BytesMut::with_capacity(64);
        b.put_i32_le(0);
        b.put_i16_le(op);
        b.put_i64_le(0);
        Request(b)
    }

    /// A cache operation on `cache_id`.
    pub fn cache(op: i16, cache_id: i32, expiry: Option<Expiry>) -> Request {
        let mut r = Request::new(op);
        r.0.put_i32_le(cache_id);
        match expiry {
            None => r.0.put_u8(0),
            Some(e) => {
                r.0.put_u8(0x04);
                r.0.put_i64_le(e.create_ms);
                r.0.put_i64_le(-2);
                r.0.put_i64_le(-2);
            }
        }
        r
    }

    pub fn bytes(mut self, v: &[u8]) -> Request {
        put_bytes(&mut self.0, v);
        self
    }

    pub fn long(mut self, v: i64) -> Request {
        self.0.put_u8(TYPE_LONG);
        self.0.put_i64_le(v);
        self
    }

    /// A count, then that many longs (the key lists of GET_ALL, REMOVE_KEYS).
    pub fn longs(mut self, keys: &[i64]) -> Request {
        self = self.int(keys.len() as i32);
        for k in keys {
            self = self.long(*k);
        }
        self
    }

    pub fn string(mut self, v: &str) -> Request {
        put_string(&mut self.0, v);
        self
    }

    pub fn int(mut self, v: i32) -> Request {
        self.0.put_i32_le(v);
        self
    }

    /// The frame, with request id `id`.
    pub fn finish(mut self, id: i64) -> Bytes {
        self.0[6..14].copy_from_slice(&id.to_le_bytes());
        finish(self.0)
    }
}

fn finish(mut b: BytesMut) -> Bytes {
    let len = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&len.to_le_bytes());
    b.freeze()
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_u8(TYPE_BYTE_ARRAY);
    b.put_i32_le(v.len() as i32);
    b.put_slice(v);
}

fn put_string(b: &mut BytesMut, v: &str) {
    b.put_u8(TYPE_STRING);
    b.put_i32_le(v.len() as i32);
    b.put_slice(v.as_bytes());
}

/// A data object this client reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obj {
    Null,
    Long(i64),
    Bytes(Bytes),
    Str(String),
    Uuid([u8; 16]),
}

/// Reads one data object; `body` advances past it.
pub fn object(body: &mut &[u8]) -> Result<Obj, IgniteError> {
    let t = take_u8(body)?;
    match t {
        TYPE_NULL => Ok(Obj::Null),
        TYPE_LONG => Ok(Obj::Long(take_i64(body)?)),
        TYPE_BYTE_ARRAY | TYPE_STRING => {
            let n = take_i32(body)?;
            let n = usize::try_from(n).map_err(|_| IgniteError::Protocol("negative length"))?;
            need(body, n)?;
            let v = &body[..n];
            body.advance(n);
            if t == TYPE_STRING {
                Ok(Obj::Str(String::from_utf8_lossy(v).into_owned()))
            } else {
                Ok(Obj::Bytes(Bytes::copy_from_slice(v)))
            }
        }
        TYPE_UUID => {
            need(body, 16)?;
            let mut u = [0u8; 16];
            u.copy_from_slice(&body[..16]);
            body.advance(16);
            Ok(Obj::Uuid(u))
        }
        other => Err(IgniteError::UnexpectedType(other)),
    }
}

/// Splits a response body (after the length prefix) into its request id
/// and its payload, or the server's error.
pub fn parse_response(v: Version, mut body: &[u8]) -> Result<(i64, &[u8]), IgniteError> {
    let id = take_i64(&mut body)?;
    let failed = if v.has_status_flags() {
        let flags = take_i16(&mut body)?;
        if flags & FLAG_TOPOLOGY != 0 {
            need(body, 12)?;
            body.advance(12); // affinity topology version: long + int
        }
        flags & FLAG_ERROR != 0
    } else {
        let status = take_i32(&mut body)?;
        if status != 0 {
            let message = match object(&mut body)? {
                Obj::Str(s) => s,
                _ => String::new(),
            };
            return Err(IgniteError::Server { status, message });
        }
        false
    };
    if failed {
        let status = take_i32(&mut body)?;
        let message = match object(&mut body)? {
            Obj::Str(s) => s,
            _ => String::new(),
        };
        return Err(IgniteError::Server { status, message });
    }
    Ok((id, body))
}

/// What a frame from the server is, read from its header only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// The response to request `id`; `topology` is the affinity topology
    /// version (major, minor) when the server flags it as changed.
    Response {
        id: i64,
        topology: Option<(i64, i32)>,
    },
    /// A notification for resource `id` (a continuous query's cursor).
    Notification { id: i64 },
}

/// Classifies a frame body (after the length prefix) by its header.
pub fn inbound(v: Version, body: &[u8]) -> Result<Inbound, IgniteError> {
    let mut b = body;
    let id = take_i64(&mut b)?;
    if !v.has_status_flags() {
        return Ok(Inbound::Response { id, topology: None });
    }
    let flags = take_i16(&mut b)?;
    if flags & FLAG_NOTIFICATION != 0 {
        return Ok(Inbound::Notification { id });
    }
    let topology = if flags & FLAG_TOPOLOGY != 0 {
        Some((take_i64(&mut b)?, take_i32(&mut b)?))
    } else {
        None
    };
    Ok(Inbound::Response { id, topology })
}

/// OP_QUERY_CONTINUOUS on `cache_id`: events sent one by one (page size
/// 1, no time interval), expiries not included, no filter, no initial
/// query. The response payload is the cursor id (`long`).
pub fn continuous_query(cache_id: i32) -> Request {
    let mut r = Request::cache(OP_QUERY_CONTINUOUS, cache_id, None).int(1);
    r.0.put_i64_le(0);
    r.0.put_u8(0);
    r.0.put_u8(TYPE_NULL);
    r
}

/// One entry event of a continuous query: the key and the new value
/// (None when removed or expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryEvent {
    pub key: Obj,
    pub value: Obj,
}

/// A notification frame: its resource id and events, or the server's error
/// (the query ended on the server).
pub fn parse_notification(mut body: &[u8]) -> Result<(i64, Vec<EntryEvent>), IgniteError> {
    let id = take_i64(&mut body)?;
    let flags = take_i16(&mut body)?;
    let op = take_i16(&mut body)?;
    if flags & FLAG_ERROR != 0 {
        let status = take_i32(&mut body)?;
        let message = match object(&mut body)? {
            Obj::Str(s) => s,
            _ => String::new(),
        };
        return Err(IgniteError::Server { status, message });
    }
    if op != OP_QUERY_CONTINUOUS_EVENT_NOTIFICATION {
        return Err(IgniteError::Protocol("unknown notification"));
    }
    let n = take_count(&mut body)?;
    let mut out = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let key = object(&mut body)?;
        let _old = object(&mut body)?;
        let value = object(&mut body)?;
        let _kind = take_u8(&mut body)?;
        out.push(EntryEvent { key, value });
    }
    Ok((id, out))
}

/// The `Map` payload of OP_CACHE_GET_ALL: `int count`, key/value pairs.
pub fn parse_map(mut payload: &[u8]) -> Result<Vec<(Obj, Obj)>, IgniteError> {
    let n = take_count(&mut payload)?;
    let mut out = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let k = object(&mut payload)?;
        let v = object(&mut payload)?;
        out.push((k, v));
    }
    Ok(out)
}

pub(super) fn need(b: &[u8], n: usize) -> Result<usize, IgniteError> {
    if b.len() < n {
        Err(IgniteError::Protocol("truncated frame"))
    } else {
        Ok(n)
    }
}

/// An `int` element count (negative is a protocol error).
pub(super) fn take_count(b: &mut &[u8]) -> Result<usize, IgniteError> {
    let n = take_i32(b)?;
    usize::try_from(n).map_err(|_| IgniteError::Protocol("negative count"))
}

pub(super) fn take_u8(b: &mut &[u8]) -> Result<u8, IgniteError> {
    need(b, 1)?;
    Ok(b.get_u8())
}

pub(super) fn take_i16(b: &mut &[u8]) -> Result<i16, IgniteError> {
    need(b, 2)?;
    Ok(b.get_i16_le())
}

pub(super) fn take_i32(b: &mut &[u8]) -> Result<i32, IgniteError> {
    need(b, 4)?;
    Ok(b.get_i32_le())
}

pub(super) fn take_i64(b: &mut &[u8]) -> Result<i64, IgniteError> {
    need(b, 8)?;
    Ok(b.get_i64_le())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_ids_are_java_string_hash_codes() {
        // Figures from pyignite.utils.hashcode, the reference client.
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("a"), 97);
        assert_eq!(java_hash("sqlcache_entries"), -303703611);
        assert_eq!(java_hash("sqlcache_tokens"), 835925445);
        assert_eq!(java_hash("Ünïcode€"), -1645383070);
        // Outside the BMP Java hashes UTF-16 units (pyignite hashes code
        // points there and disagrees with the server): 0xD83D*31 + 0xDE00.
        assert_eq!(java_hash("😀"), 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn frames_are_length_prefixed_and_carry_the_id() {
        let f = Request::cache(OP_CACHE_GET, 7, None).long(-1).finish(42);
        assert_eq!(&f[..4], &((f.len() - 4) as i32).to_le_bytes());
        assert_eq!(&f[4..6], &OP_CACHE_GET.to_le_bytes());
        assert_eq!(&f[6..14], &42i64.to_le_bytes());
        assert_eq!(&f[14..18], &7i32.to_le_bytes());
        assert_eq!(f[18], 0);
        assert_eq!(f[19], TYPE_LONG);
    }

    #[test]
    fn responses_old_and_new_headers() {
        let mut ok = vec![];
        ok.extend(9i64.to_le_bytes());
        ok.extend(0i16.to_le_bytes());
        ok.extend([TYPE_NULL]);
        let (id, p) = parse_response(Version(1, 7, 0), &ok).unwrap();
        assert_eq!((id, p), (9, &[TYPE_NULL][..]));
        let mut err = vec![];
        err.extend(9i64.to_le_bytes());
        err.extend(3i16.to_le_bytes()); // error + topology changed
        err.extend(5i64.to_le_bytes());
        err.extend(1i32.to_le_bytes());
        err.extend(1000i32.to_le_bytes());
        err.extend([TYPE_STRING, 2, 0, 0, 0, b'n', b'o']);
        match parse_response(Version(1, 7, 0), &err) {
            Err(IgniteError::Server { status, message }) => {
                assert_eq!((status, message.as_str()), (1000, "no"))
            }
            other => panic!("{other:?}"),
        }
        let mut old = vec![];
        old.extend(9i64.to_le_bytes());
        old.extend(0i32.to_le_bytes());
        assert!(parse_response(Version(1, 2, 0), &old).is_ok());
        assert!(parse_response(Version(1, 7, 0), &old[..9]).is_err());
    }

    #[test]
    fn truncated_and_unknown_objects_are_errors() {
        assert!(object(&mut &[TYPE_BYTE_ARRAY, 5, 0, 0, 0, 1][..]).is_err());
        assert!(object(&mut &[TYPE_BYTE_ARRAY, 0xff, 0xff, 0xff, 0xff][..]).is_err());
        assert!(matches!(
            object(&mut &[27u8][..]),
            Err(IgniteError::UnexpectedType(27))
        ));
        assert!(parse_map(&[1, 0, 0, 0, TYPE_LONG]).is_err());
    }

    #[test]
    fn handshake_rejection_names_the_server_version() {
        let mut b = vec![0u8];
        b.extend(1i16.to_le_bytes());
        b.extend(4i16.to_le_bytes());
        b.extend(0i16.to_le_bytes());
        b.extend([TYPE_STRING, 3, 0, 0, 0, b'o', b'l', b'd']);
        b.extend(1001i32.to_le_bytes());
        assert_eq!(
            parse_handshake(Version(1, 7, 0), &b).unwrap(),
            Handshake::Rejected {
                server: Version(1, 4, 0),
                message: "old".into(),
                status: Some(1001)
            }
        );
    }
}
