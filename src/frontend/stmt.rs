//! Prepared statements (COM_STMT_*) and COM_CHANGE_USER parsing.
//!
//! Policy: a client statement id is the proxy's own; it maps to the SQL text,
//! not to a backend statement, so it survives multiplexing: each execution
//! prepares the SQL on whichever backend connection runs it (cached per
//! connection and database by `BackendConn::statement`). A client's prepare
//! is described with the columns MySQL gave at prepare time. Parameter types
//! sent with `new_params_bound` are remembered for later executions that omit
//! them; an execution with no types ever sent is an error, never a guess.
//! The backend gets the declared types and the client's own value bytes
//! (`Execute::encode`, the patched `exec_iter_encoded`), never types derived
//! from decoded values: results depend on them, so the cache key includes
//! them too. The wire form is built only when forwarding, not on a hit.
//! Long data (COM_STMT_SEND_LONG_DATA) is accumulated here and sent ahead of
//! the execution. Cursors (COM_STMT_FETCH) are not supported: a cursor request
//! is answered with the whole result, as servers do for non-cursor results.

use std::collections::HashMap;
use std::sync::Arc;

use mysql_async::EncodedParams;
use mysql_common::constants::{CapabilityFlags, ColumnType};
use mysql_common::io::ParseBuf;
use mysql_common::packets::Column;
use mysql_common::value::{BinValue, Value, ValueDeserializer};

use super::pipeline::{Exec, Stmt};
use super::session::{Session, SessionError};
use super::wire::{self, Reader};
use crate::cache::key::BINARY;
use crate::classify::{BypassReason, Verdict};

pub struct PreparedStmt {
    pub sql: Arc<[u8]>,
    /// The shape's digest for query insight (`classify::digest`).
    pub digest: u64,
    /// Classified once, at PREPARE.
    pub verdict: Arc<Verdict>,
    pub num_params: u16,
    pub columns: Arc<[Column]>,
    /// The types last declared, as on the wire: two bytes per parameter
    /// (type, flags; 0x80 = unsigned). Results depend on them (a BLOB
    /// compares as binary, a DATE is no DATETIME), so they are forwarded as
    /// declared and are part of the cache key.
    pub param_types: Option<Arc<[u8]>>,
    pub long_data: HashMap<u16, Vec<u8>>,
}

/// A parsed COM_STMT_EXECUTE, borrowing the packet.
#[derive(Debug)]
pub struct Execute<'a> {
    pub stmt_id: u32,
    /// The values, decoded: the cache key and the invalidation use them.
    pub params: Vec<Value>,
    /// Types sent with this execution (new_params_bound = 1), validated.
    pub new_types: Option<&'a [u8]>,
    bitmap: &'a [u8],
    /// The bytes the values took (none for NULL or long data).
    values: &'a [u8],
}

impl Execute<'_> {
    /// What the backend gets: the declared `types` (always bound, since the
    /// backend statement may never have seen them), the client's own value
    /// bytes and its long data — so MySQL types and compares each parameter
    /// as the client declared it. Built only when forwarding.
    pub fn encode(&self, types: &[u8], long_data: HashMap<u16, Vec<u8>>) -> EncodedParams {
        if self.params.is_empty() {
            return EncodedParams::default();
        }
        let mut bytes = Vec::with_capacity(self.bitmap.len() + 1 + types.len() + self.values.len());
        bytes.extend_from_slice(self.bitmap);
        bytes.push(1);
        bytes.extend_from_slice(types);
        bytes.extend_from_slice(self.values);
        let mut long_data: Vec<(u16, Vec<u8>)> = long_data.into_iter().collect();
        long_data.sort_unstable_by_key(|&(i, _)| i);
        EncodedParams {
            num_params: self.params.len() as u16,
            bytes,
            long_data,
        }
    }
}

/// Parses COM_STMT_EXECUTE against its statement (parameter count,
/// remembered types, long data).
pub fn parse_execute<'a>(body: &'a [u8], stmt: &PreparedStmt) -> Result<Execute<'a>, &'static str> {
    let mut r = Reader::new(body);
    let stmt_id = r.u32().ok_or("short packet")?;
    let _flags = r.u8().ok_or("short packet")?;
    let _iterations = r.u32().ok_or("short packet")?;
    let n = stmt.num_params as usize;
    if n == 0 {
        return Ok(Execute {
            stmt_id,
            params: vec![],
            new_types: None,
            bitmap: &[],
            values: &[],
        });
    }
    let bitmap = r.take(n.div_ceil(8)).ok_or("short null bitmap")?;
    let bound = r.u8().ok_or("short packet")?;
    let new_types = if bound == 1 {
        let raw = r.take(2 * n).ok_or("short parameter types")?;
        if raw
            .chunks(2)
            .any(|c| wire::param_type(c[0], c[1]).is_none())
        {
            return Err("unknown parameter type");
        }
        Some(raw)
    } else {
        None
    };
    let types = new_types
        .or(stmt.param_types.as_deref())
        .ok_or("parameter types were never sent")?;
    let rest = r.rest();
    let (params, used) = decode_values(bitmap, types, rest, &stmt.long_data)?;
    Ok(Execute {
        stmt_id,
        params,
        new_types,
        bitmap,
        values: &rest[..used],
    })
}

/// Decodes the parameter values (`types` as on the wire); also returns how
/// many bytes of `values` they took.
fn decode_values(
    bitmap: &[u8],
    types: &[u8],
    values: &[u8],
    long_data: &HashMap<u16, Vec<u8>>,
) -> Result<(Vec<Value>, usize), &'static str> {
    let mut pb = ParseBuf(values);
    let mut params = Vec::with_capacity(types.len() / 2);
    for (i, t) in types.chunks_exact(2).enumerate() {
        let (ty, flags) = wire::param_type(t[0], t[1]).ok_or("unknown parameter type")?;
        let is_null = bitmap.get(i / 8).ok_or("short null bitmap")? & (1 << (i % 8)) != 0;
        if let Some(data) = long_data.get(&(i as u16)) {
            params.push(Value::Bytes(data.clone()));
        } else if is_null || ty == ColumnType::MYSQL_TYPE_NULL {
            params.push(Value::NULL);
        } else {
            let v: ValueDeserializer<BinValue> = pb
                .parse((ty, flags))
                .map_err(|_| "truncated parameter value")?;
            params.push(v.0);
        }
    }
    Ok((params, values.len() - pb.0.len()))
}

/// A parsed COM_CHANGE_USER.
pub struct ChangeUser {
    pub user: String,
    pub auth: Vec<u8>,
    pub db: Option<String>,
    pub collation: Option<u8>,
    pub plugin: Option<Vec<u8>>,
}

pub fn parse_change_user(body: &[u8], caps: CapabilityFlags) -> Option<ChangeUser> {
    let mut r = Reader::new(body);
    let user = String::from_utf8_lossy(r.cstr()).into_owned();
    let auth = if caps.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
        let n = r.u8()? as usize;
        r.take(n)?.to_vec()
    } else {
        r.cstr().to_vec()
    };
    let db = r.cstr();
    let db = (!db.is_empty()).then(|| String::from_utf8_lossy(db).into_owned());
    let collation = if r.is_empty() {
        None
    } else {
        r.u16().map(|c| c as u8)
    };
    let plugin = if caps.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) && !r.is_empty() {
        Some(r.cstr().to_vec())
    } else {
        None
    };
    Some(ChangeUser {
        user,
        auth,
        db,
        collation,
        plugin,
    })
}

impl Session {
    pub(super) async fn com_stmt_prepare(&mut self, sql: &[u8]) -> Result<(), SessionError> {
        // `CONNECTION_ID()` is this session's proxy id (`classify::rewrite`).
        let own =
            crate::classify::rewrite::own_connection_id(&String::from_utf8_lossy(sql), self.id);
        let sql = own.as_ref().map_or(sql, |s| s.as_bytes());
        let Some(mut c) = self.acquire_or_reply(false).await else {
            return Ok(());
        };
        let prepared = c.statement(self.vars.db.as_deref(), sql).await;
        // A prepare changes no session state. (mysql_async also records the
        // COM_STMT_PREPARE reply, which starts with 0x00, as its "last OK",
        // with garbage status flags: reading them released a connection in
        // the middle of a transaction.)
        let status = self.status;
        let stmt = match prepared {
            Ok(s) => s,
            Err(crate::backend::BackendError::Mysql(mysql_async::Error::Server(se))) => {
                self.settle(c, status);
                self.reply_err(se.code, &se.state, &se.message);
                return Ok(());
            }
            Err(crate::backend::BackendError::Mysql(e)) => return self.lost(c, &e),
            Err(e) => {
                self.settle(c, status);
                self.reply_backend_error(&e);
                return Ok(());
            }
        };
        self.settle(c, status);
        let id = self.next_stmt;
        self.next_stmt = self.next_stmt.wrapping_add(1).max(1);
        let columns = stmt.columns.clone();
        let params = stmt.stmt.params().to_vec();
        let m = self.conn.begin();
        let b = self.conn.buf();
        b.push(0x00);
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&(columns.len() as u16).to_le_bytes());
        b.extend_from_slice(&stmt.stmt.num_params().to_le_bytes());
        b.push(0x00);
        b.extend_from_slice(&0u16.to_le_bytes());
        self.conn.finish(m);
        for defs in [&params[..], &columns[..]] {
            if defs.is_empty() {
                continue;
            }
            for col in defs {
                let m = self.conn.begin();
                wire::column(self.conn.buf(), col);
                self.conn.finish(m);
            }
            if !self.deprecate_eof() {
                let status = self.status;
                let m = self.conn.begin();
                wire::eof(self.conn.buf(), 0, status);
                self.conn.finish(m);
            }
        }
        self.stmts.insert(
            id,
            PreparedStmt {
                sql: Arc::from(sql),
                digest: crate::classify::digest::digest(sql),
                verdict: Arc::new(if self.shared.cache.cfg.enabled {
                    crate::classify::classify(&String::from_utf8_lossy(sql))
                } else {
                    Verdict::Bypass(BypassReason::CacheDisabled)
                }),
                num_params: stmt.stmt.num_params(),
                columns,
                param_types: None,
                long_data: HashMap::new(),
            },
        );
        Ok(())
    }

    pub(super) async fn com_stmt_execute(&mut self, body: &[u8]) -> Result<(), SessionError> {
        let Some(id) = Reader::new(body).u32() else {
            self.reply_err(1210, "HY000", "Incorrect arguments to mysqld_stmt_execute");
            return Ok(());
        };
        let Some(stmt) = self.stmts.get_mut(&id) else {
            self.reply_err(
                1243,
                "HY000",
                &format!("Unknown prepared statement handler ({id}) given to mysqld_stmt_execute"),
            );
            return Ok(());
        };
        let exec = match parse_execute(body, stmt) {
            Ok(e) => e,
            Err(why) => {
                self.reply_err(
                    1210,
                    "HY000",
                    &format!("Incorrect arguments to mysqld_stmt_execute: {why}"),
                );
                return Ok(());
            }
        };
        if let Some(t) = exec.new_types {
            if stmt.param_types.as_deref() != Some(t) {
                stmt.param_types = Some(Arc::from(t));
            }
        }
        let types = stmt.param_types.clone().unwrap_or_default();
        let long_data = std::mem::take(&mut stmt.long_data);
        let (sql, verdict) = (stmt.sql.clone(), stmt.verdict.clone());
        self.shape = stmt.digest;
        let st = Stmt {
            proto: BINARY,
            sql: &sql,
            verdict: &verdict,
            params: &exec.params,
            types: &types,
            bypass: self.cache_bypass(),
            keyed: false,
        };
        let exec = Exec::Binary {
            exec: &exec,
            long_data,
        };
        self.execute(st, exec).await
    }

    pub(super) fn com_stmt_send_long_data(&mut self, body: &[u8]) {
        let mut r = Reader::new(body);
        let (Some(id), Some(param)) = (r.u32(), r.u16()) else {
            return;
        };
        if let Some(s) = self.stmts.get_mut(&id) {
            if param < s.num_params {
                s.long_data
                    .entry(param)
                    .or_default()
                    .extend_from_slice(r.rest());
            }
        }
    }

    pub(super) fn com_stmt_close(&mut self, body: &[u8]) {
        if let Some(id) = Reader::new(body).u32() {
            self.stmts.remove(&id);
        }
    }

    pub(super) fn com_stmt_reset(&mut self, body: &[u8]) {
        let id = Reader::new(body).u32().unwrap_or(0);
        match self.stmts.get_mut(&id) {
            Some(s) => {
                s.long_data.clear();
                self.reply_ok(0, 0, b"");
            }
            None => self.reply_err(
                1243,
                "HY000",
                &format!("Unknown prepared statement handler ({id}) given to mysqld_stmt_reset"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(n: u16) -> PreparedStmt {
        PreparedStmt {
            sql: Arc::from(&b"select ?"[..]),
            digest: 0,
            verdict: Arc::new(Verdict::Bypass(BypassReason::NotPointRead)),
            num_params: n,
            columns: Arc::from(Vec::new()),
            param_types: None,
            long_data: HashMap::new(),
        }
    }

    #[test]
    fn execute_with_types_values_and_nulls() {
        // id=1, flags=0, iter=1, bitmap: param 1 NULL, bound=1,
        // types: LONGLONG unsigned, VAR_STRING; value: u64 max.
        let mut b = vec![1, 0, 0, 0, 0, 1, 0, 0, 0, 0b10, 1, 8, 0x80, 253, 0];
        b.extend_from_slice(&u64::MAX.to_le_bytes());
        let e = parse_execute(&b, &stmt(2)).unwrap();
        assert_eq!(e.params, vec![Value::UInt(u64::MAX), Value::NULL]);
        assert!(e.new_types.is_some());
    }

    #[test]
    fn server_internal_parameter_types_are_refused_not_a_panic() {
        // fuzz/stmt_execute: TIME2 (0x13) made mysql_common's decoder
        // panic ("Unsupported column type"); so would DATETIME2,
        // TIMESTAMP2 and TYPED_ARRAY.
        for ty in [0x11, 0x12, 0x13, 0x14] {
            let b = vec![1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, ty, 0, 3, 0, 0, 0];
            assert_eq!(
                parse_execute(&b, &stmt(1)).unwrap_err(),
                "unknown parameter type"
            );
            let remembered = PreparedStmt {
                param_types: Some(Arc::from(&[ty, 0][..])),
                ..stmt(1)
            };
            let b = vec![1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 3, 0, 0, 0];
            assert!(parse_execute(&b, &remembered).is_err());
        }
    }

    #[test]
    fn execute_without_types_is_an_error_not_a_panic() {
        let b = vec![1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0];
        assert!(parse_execute(&b, &stmt(1)).is_err());
        // Truncated everywhere: never a panic.
        let full = vec![1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 8, 0, 1, 2];
        for i in 0..full.len() {
            let _ = parse_execute(&full[..i], &stmt(1));
        }
    }

    #[test]
    fn remembered_types_and_long_data_are_used() {
        let mut s = stmt(2);
        // BLOB, TINY.
        s.param_types = Some(Arc::from(&[252, 0, 1, 0][..]));
        s.long_data.insert(0, b"big".to_vec());
        let b = vec![1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0xFF];
        let e = parse_execute(&b, &s).unwrap();
        assert_eq!(
            e.params,
            vec![Value::Bytes(b"big".to_vec()), Value::Int(-1)]
        );
    }

    #[test]
    fn backend_gets_declared_types_and_the_clients_value_bytes() {
        // Types sent once (TINY, BLOB), then remembered: the backend always
        // gets them bound, with the client's value bytes unchanged.
        let mut s = stmt(2);
        let first = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 252, 0, 7, 1, b'A'];
        let e = parse_execute(&first, &s).unwrap();
        assert_eq!(e.params, vec![Value::Int(7), Value::Bytes(b"A".to_vec())]);
        assert_eq!(e.new_types, Some(&[1, 0, 252, 0][..]));
        let types: Arc<[u8]> = Arc::from(e.new_types.unwrap());
        let wire = e.encode(&types, HashMap::new());
        assert_eq!(wire.bytes, vec![0, 1, 1, 0, 252, 0, 7, 1, b'A']);
        s.param_types = Some(types.clone());
        // Without types, a NULL first and bytes after the values (ignored).
        let again = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0b01, 0, 1, b'B', 0xEE];
        let e = parse_execute(&again, &s).unwrap();
        assert_eq!(e.params, vec![Value::NULL, Value::Bytes(b"B".to_vec())]);
        assert_eq!(e.new_types, None);
        let wire = e.encode(&types, HashMap::new());
        assert_eq!(wire.bytes, vec![0b01, 1, 1, 0, 252, 0, 1, b'B']);
        assert_eq!(wire.num_params, 2);
        // An unknown type code is refused, not forwarded.
        let bad = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 99, 0, 1, 0, 7, 8];
        assert!(parse_execute(&bad, &s).is_err());
    }

    #[test]
    fn long_data_goes_ahead_and_its_value_is_not_in_the_packet() {
        let mut s = stmt(2);
        // LONGLONG unsigned, BLOB.
        let types: Arc<[u8]> = Arc::from(&[8, 0x80, 252, 0][..]);
        s.param_types = Some(types.clone());
        s.long_data.insert(1, b"big".to_vec());
        let mut b = vec![1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0];
        b.extend_from_slice(&5u64.to_le_bytes());
        let e = parse_execute(&b, &s).unwrap();
        assert_eq!(e.params, vec![Value::Int(5), Value::Bytes(b"big".to_vec())]);
        let wire = e.encode(&types, std::mem::take(&mut s.long_data));
        assert_eq!(wire.long_data, vec![(1, b"big".to_vec())]);
        assert_eq!(&wire.bytes[..6], &[0, 1, 8, 0x80, 252, 0]);
        assert_eq!(&wire.bytes[6..], &5u64.to_le_bytes());
    }

    #[test]
    fn change_user_layout() {
        let caps = CapabilityFlags::CLIENT_SECURE_CONNECTION | CapabilityFlags::CLIENT_PLUGIN_AUTH;
        let mut b = b"bob\0".to_vec();
        b.push(3);
        b.extend_from_slice(b"abc");
        b.extend_from_slice(b"db1\0");
        b.extend_from_slice(&45u16.to_le_bytes());
        b.extend_from_slice(b"mysql_native_password\0");
        let c = parse_change_user(&b, caps).unwrap();
        assert_eq!(c.user, "bob");
        assert_eq!(c.auth, b"abc");
        assert_eq!(c.db.as_deref(), Some("db1"));
        assert_eq!(c.collation, Some(45));
        assert_eq!(c.plugin.as_deref(), Some(&b"mysql_native_password"[..]));
        assert!(parse_change_user(b"bob\0\x09ab", caps).is_none());
    }
}
