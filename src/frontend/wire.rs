//! Payload encoders and decoders for the packets the proxy writes itself.
//!
//! Policy: the proxy writes OK / ERR / EOF packets and result-set framing
//! itself (byte layouts from the MySQL client/server protocol); column
//! definitions come verbatim from the backend through `mysql_common`'s
//! `Column` serializer, and relayed rows are the backend's own payloads
//! (`relay`), never re-encoded from decoded values.

use mysql_common::constants::{ColumnFlags, ColumnType, StatusFlags};
use mysql_common::packets::Column;

pub fn put_lenenc_int(buf: &mut Vec<u8>, v: u64) {
    match v {
        0..=250 => buf.push(v as u8),
        251..=0xFFFF => {
            buf.push(0xFC);
            buf.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            buf.push(0xFD);
            buf.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            buf.push(0xFE);
            buf.extend_from_slice(&v.to_le_bytes());
        }
    }
}

pub fn put_lenenc_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_lenenc_int(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

/// OK packet body. `header` is 0x00, or 0xFE when it ends a result set under
/// CLIENT_DEPRECATE_EOF.
pub fn ok(
    buf: &mut Vec<u8>,
    header: u8,
    affected: u64,
    last_insert_id: u64,
    status: StatusFlags,
    warnings: u16,
    info: &[u8],
) {
    buf.push(header);
    put_lenenc_int(buf, affected);
    put_lenenc_int(buf, last_insert_id);
    buf.extend_from_slice(&status.bits().to_le_bytes());
    buf.extend_from_slice(&warnings.to_le_bytes());
    // MySQL and MariaDB servers send the info text length-encoded, and only
    // when there is one; libmysqlclient/libmariadb read it that way.
    if !info.is_empty() {
        put_lenenc_bytes(buf, info);
    }
}

/// Legacy EOF packet body.
pub fn eof(buf: &mut Vec<u8>, warnings: u16, status: StatusFlags) {
    buf.push(0xFE);
    buf.extend_from_slice(&warnings.to_le_bytes());
    buf.extend_from_slice(&status.bits().to_le_bytes());
}

/// ERR packet body (CLIENT_PROTOCOL_41 layout with SQLSTATE).
pub fn err(buf: &mut Vec<u8>, code: u16, state: &str, msg: &str) {
    buf.push(0xFF);
    buf.extend_from_slice(&code.to_le_bytes());
    buf.push(b'#');
    let st = state.as_bytes();
    let mut five = *b"HY000";
    if st.len() == 5 {
        five.copy_from_slice(st);
    }
    buf.extend_from_slice(&five);
    buf.extend_from_slice(msg.as_bytes());
}

/// A column definition (Protocol::ColumnDefinition41).
///
/// Written field by field from `Column`'s getters: mysql_common 0.37.3's own
/// `MySerialize for Column` writes column_length before character_set (its
/// deserializer reads them in the right order), which clients decode as a
/// wrong charset — PyMySQL then fails to decode binary strings.
pub fn column(buf: &mut Vec<u8>, col: &Column) {
    put_lenenc_bytes(buf, b"def");
    put_lenenc_bytes(buf, col.schema_ref());
    put_lenenc_bytes(buf, col.table_ref());
    put_lenenc_bytes(buf, col.org_table_ref());
    put_lenenc_bytes(buf, col.name_ref());
    put_lenenc_bytes(buf, col.org_name_ref());
    buf.push(0x0C);
    buf.extend_from_slice(&col.character_set().to_le_bytes());
    buf.extend_from_slice(&col.column_length().to_le_bytes());
    buf.push(col.column_type() as u8);
    buf.extend_from_slice(&col.flags().bits().to_le_bytes());
    buf.push(col.decimals());
    buf.extend_from_slice(&[0, 0]);
}

/// Binary-protocol parameter types sent by a client (`type`, `flags` bytes):
/// the types a parameter can have on the wire. The server-internal ones
/// (TIMESTAMP2, DATETIME2, TIME2, TYPED_ARRAY) are refused, as MySQL does:
/// no client sends them, and `mysql_common` panics decoding them (found
/// by `fuzz/`, `stmt_execute`).
pub fn param_type(type_byte: u8, flag_byte: u8) -> Option<(ColumnType, ColumnFlags)> {
    let ty = ColumnType::try_from(type_byte)
        .ok()
        .filter(|&t| decodable(t))?;
    let flags = if flag_byte & 0x80 != 0 {
        ColumnFlags::UNSIGNED_FLAG
    } else {
        ColumnFlags::empty()
    };
    Some((ty, flags))
}

/// The types `mysql_common`'s binary value decoder handles (its
/// `deserialize_bin`; any other panics).
fn decodable(ty: ColumnType) -> bool {
    use ColumnType::*;
    matches!(
        ty,
        MYSQL_TYPE_DECIMAL
            | MYSQL_TYPE_TINY
            | MYSQL_TYPE_SHORT
            | MYSQL_TYPE_LONG
            | MYSQL_TYPE_FLOAT
            | MYSQL_TYPE_DOUBLE
            | MYSQL_TYPE_NULL
            | MYSQL_TYPE_TIMESTAMP
            | MYSQL_TYPE_LONGLONG
            | MYSQL_TYPE_INT24
            | MYSQL_TYPE_DATE
            | MYSQL_TYPE_TIME
            | MYSQL_TYPE_DATETIME
            | MYSQL_TYPE_YEAR
            | MYSQL_TYPE_NEWDATE
            | MYSQL_TYPE_VARCHAR
            | MYSQL_TYPE_BIT
            | MYSQL_TYPE_JSON
            | MYSQL_TYPE_NEWDECIMAL
            | MYSQL_TYPE_ENUM
            | MYSQL_TYPE_SET
            | MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB
            | MYSQL_TYPE_LONG_BLOB
            | MYSQL_TYPE_BLOB
            | MYSQL_TYPE_VAR_STRING
            | MYSQL_TYPE_STRING
            | MYSQL_TYPE_GEOMETRY
            | MYSQL_TYPE_VECTOR
    )
}

/// A cursor over a client payload; every read is bounds-checked.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Some(a)
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A NUL-terminated string (the NUL is consumed); the rest if no NUL.
    pub fn cstr(&mut self) -> &'a [u8] {
        match self.buf.iter().position(|&b| b == 0) {
            Some(i) => {
                let s = &self.buf[..i];
                self.buf = &self.buf[i + 1..];
                s
            }
            None => std::mem::take(&mut self.buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_boundaries() {
        let cases: [(u64, &[u8]); 5] = [
            (250, &[250]),
            (251, &[0xFC, 251, 0]),
            (0xFFFF, &[0xFC, 0xFF, 0xFF]),
            (0x10000, &[0xFD, 0, 0, 1]),
            (0x1000000, &[0xFE, 0, 0, 0, 1, 0, 0, 0, 0]),
        ];
        for (v, want) in cases {
            let mut b = Vec::new();
            put_lenenc_int(&mut b, v);
            assert_eq!(b, want, "{v}");
        }
    }

    #[test]
    fn column_definition_layout_matches_the_protocol() {
        let col = Column::new(ColumnType::MYSQL_TYPE_VAR_STRING)
            .with_name(b"c")
            .with_character_set(45)
            .with_column_length(16);
        let mut b = Vec::new();
        column(&mut b, &col);
        // def, 4 empty names, "c", 0x0c, charset 45, length 16, type 253.
        let want: &[u8] = &[
            3, b'd', b'e', b'f', 0, 0, 0, 1, b'c', 0, 0x0C, 45, 0, 16, 0, 0, 0, 253, 0, 0, 0, 0, 0,
        ];
        assert_eq!(b, want);
    }

    #[test]
    fn err_packet_layout() {
        let mut b = Vec::new();
        err(&mut b, 1045, "28000", "denied");
        assert_eq!(
            &b[..9],
            &[0xFF, 0x15, 0x04, b'#', b'2', b'8', b'0', b'0', b'0']
        );
        assert_eq!(&b[9..], b"denied");
    }

    #[test]
    fn reader_never_reads_past_the_end() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Some(0x0201));
        assert_eq!(r.u32(), None);
        assert_eq!(r.u8(), Some(3));
        assert_eq!(r.u8(), None);
        assert_eq!(Reader::new(b"ab\0cd").cstr(), b"ab");
    }
}
