//! MySQL packet framing for the client side.
//!
//! Policy: a packet is `3-byte length | 1-byte sequence | payload`; payloads of
//! 0xFFFFFF bytes or more are split into continuation packets on write and
//! joined on read. Responses are assembled in one write buffer and flushed
//! once per response (or whenever the buffer passes `FLUSH_AT`, so a large
//! result streams instead of being buffered whole). Sequence ids are checked on
//! read; a wrong id, a truncated packet or one larger than `max_packet` is a
//! protocol error that closes the connection — never a panic.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest payload of one physical packet.
pub const MAX_CHUNK: usize = 0xFF_FFFF;
/// Flush the write buffer once it holds this much, mid-response.
const FLUSH_AT: usize = 256 * 1024;

/// Errors of the client-facing protocol layer.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("client i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("client closed the connection")]
    Closed,
    #[error("packet out of order: expected sequence {expected}, got {got}")]
    Sequence { expected: u8, got: u8 },
    #[error("packet of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("malformed packet: {0}")]
    Malformed(String),
    #[error("tls: {0}")]
    Tls(String),
}

/// A framed MySQL connection over any byte stream.
pub struct PacketConn<S> {
    stream: S,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    seq: u8,
    max_packet: usize,
    /// Mid-response flushes so far (a response captured for the cache must
    /// still be whole in the buffer).
    flushes: u64,
    /// Buffer the whole response (no mid-response flush).
    hold: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> PacketConn<S> {
    pub fn new(stream: S, max_packet: usize) -> Self {
        Self {
            stream,
            rbuf: BytesMut::with_capacity(16 * 1024),
            wbuf: Vec::with_capacity(16 * 1024),
            seq: 0,
            max_packet,
            flushes: 0,
            hold: false,
        }
    }

    /// Gives back the stream; fails if unread bytes are buffered (a client
    /// must not pipeline data behind an SSL request).
    pub fn into_stream(self) -> Result<S, ProtoError> {
        if !self.rbuf.is_empty() {
            return Err(ProtoError::Malformed("data after SSL request".into()));
        }
        Ok(self.stream)
    }

    pub fn stream_ref(&self) -> &S {
        &self.stream
    }

    pub fn seq(&self) -> u8 {
        self.seq
    }

    pub fn set_seq(&mut self, seq: u8) {
        self.seq = seq;
    }

    /// Reads one logical packet (continuations joined). `Ok(None)` on a clean
    /// EOF before any byte of a new packet.
    pub async fn read_packet(&mut self) -> Result<Option<BytesMut>, ProtoError> {
        let mut payload: Option<BytesMut> = None;
        loop {
            if !self.fill(4, payload.is_none()).await? {
                return Ok(None);
            }
            let len = u32::from_le_bytes([self.rbuf[0], self.rbuf[1], self.rbuf[2], 0]) as usize;
            let got = self.rbuf[3];
            if got != self.seq {
                return Err(ProtoError::Sequence {
                    expected: self.seq,
                    got,
                });
            }
            self.seq = self.seq.wrapping_add(1);
            let total = payload.as_ref().map_or(0, |p| p.len()) + len;
            if total > self.max_packet {
                return Err(ProtoError::TooLarge(total));
            }
            self.fill(4 + len, false).await?;
            self.rbuf.advance(4);
            let chunk = self.rbuf.split_to(len);
            match payload.as_mut() {
                None => payload = Some(chunk),
                Some(p) => p.extend_from_slice(&chunk),
            }
            if len < MAX_CHUNK {
                return Ok(payload);
            }
        }
    }

    /// Ensures `n` bytes are buffered. Returns false on clean EOF at a packet
    /// boundary when `eof_ok`.
    async fn fill(&mut self, n: usize, eof_ok: bool) -> Result<bool, ProtoError> {
        while self.rbuf.len() < n {
            self.rbuf.reserve((n - self.rbuf.len()).max(8 * 1024));
            let read = self.stream.read_buf(&mut self.rbuf).await?;
            if read == 0 {
                if eof_ok && self.rbuf.is_empty() {
                    return Ok(false);
                }
                return Err(ProtoError::Closed);
            }
        }
        Ok(true)
    }

    /// Starts a packet in the write buffer; returns a mark for `finish`.
    pub fn begin(&mut self) -> usize {
        let mark = self.wbuf.len();
        self.wbuf.extend_from_slice(&[0, 0, 0, 0]);
        mark
    }

    /// The write buffer, to append a payload after `begin`.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.wbuf
    }

    /// Completes the packet started at `mark`, splitting it if it is large.
    pub fn finish(&mut self, mark: usize) {
        let len = self.wbuf.len() - mark - 4;
        if len < MAX_CHUNK {
            self.set_header(mark, len);
            return;
        }
        // Rare: re-frame a large payload into continuation packets.
        let payload = self.wbuf.split_off(mark + 4);
        self.wbuf.truncate(mark);
        self.write_split(&payload);
    }

    fn set_header(&mut self, mark: usize, len: usize) {
        let l = (len as u32).to_le_bytes();
        self.wbuf[mark..mark + 4].copy_from_slice(&[l[0], l[1], l[2], self.seq]);
        self.seq = self.seq.wrapping_add(1);
    }

    fn write_split(&mut self, payload: &[u8]) {
        let mut rest = payload;
        loop {
            let n = rest.len().min(MAX_CHUNK);
            let mark = self.begin();
            self.wbuf.extend_from_slice(&rest[..n]);
            self.set_header(mark, n);
            rest = &rest[n..];
            if n < MAX_CHUNK {
                break;
            }
        }
    }

    pub fn flushes(&self) -> u64 {
        self.flushes
    }

    /// Appends pre-framed response bytes (a cached response; its sequence
    /// ids start at 1, as every response's do).
    pub fn write_framed(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// Appends a whole packet.
    pub fn write_packet(&mut self, payload: &[u8]) {
        if payload.len() < MAX_CHUNK {
            let mark = self.begin();
            self.wbuf.extend_from_slice(payload);
            self.set_header(mark, payload.len());
        } else {
            self.write_split(payload);
        }
    }

    /// Writes the buffered response with one write call (when it fits).
    pub async fn flush(&mut self) -> Result<(), ProtoError> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
            if self.wbuf.capacity() > 4 * FLUSH_AT {
                self.wbuf.shrink_to(FLUSH_AT);
            }
        }
        self.stream.flush().await?;
        Ok(())
    }

    /// Keeps the whole response buffered until `flush` (used when a write's
    /// OK must not reach the client before its invalidation is applied).
    pub fn hold_response(&mut self, hold: bool) {
        self.hold = hold;
    }

    /// Flushes only if the buffer has grown past the streaming threshold.
    pub async fn flush_if_full(&mut self) -> Result<(), ProtoError> {
        if self.wbuf.len() >= FLUSH_AT && !self.hold {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
            self.flushes += 1;
        }
        Ok(())
    }

    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn roundtrip(len: usize) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let p2 = payload.clone();
        let writer = tokio::spawn(async move {
            let mut w = PacketConn::new(a, usize::MAX);
            let m = w.begin();
            w.buf().extend_from_slice(&p2);
            w.finish(m);
            w.flush().await.unwrap();
            w
        });
        let mut r = PacketConn::new(b, usize::MAX);
        let got = r.read_packet().await.unwrap().unwrap();
        assert_eq!(got.len(), payload.len());
        assert!(got[..] == payload[..]);
        let w = writer.await.unwrap();
        // Sequence ids advanced identically on both ends.
        assert_eq!(w.seq(), r.seq());
    }

    #[tokio::test]
    async fn small_and_exact_and_large_packets_roundtrip() {
        for len in [
            0,
            1,
            1000,
            MAX_CHUNK - 1,
            MAX_CHUNK,
            MAX_CHUNK + 5,
            2 * MAX_CHUNK,
        ] {
            roundtrip(len).await;
        }
    }

    #[tokio::test]
    async fn a_held_response_is_not_flushed_mid_stream() {
        let (a, _b) = tokio::io::duplex(8 * 1024 * 1024);
        let mut w = PacketConn::new(a, usize::MAX);
        w.hold_response(true);
        for _ in 0..10 {
            w.write_packet(&[0u8; 64 * 1024]);
            w.flush_if_full().await.unwrap();
        }
        assert_eq!(w.flushes(), 0);
        w.hold_response(false);
        w.flush_if_full().await.unwrap();
        assert_eq!(w.flushes(), 1);
    }

    #[tokio::test]
    async fn wrong_sequence_is_an_error() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&[1, 0, 0, 7, 0x0e]).await.unwrap();
        let mut r = PacketConn::new(b, 1 << 20);
        assert!(matches!(
            r.read_packet().await,
            Err(ProtoError::Sequence { .. })
        ));
    }

    #[tokio::test]
    async fn truncated_packet_is_an_error_and_eof_is_none() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&[10, 0, 0, 0, 1, 2]).await.unwrap();
        drop(a);
        let mut r = PacketConn::new(b, 1 << 20);
        assert!(matches!(r.read_packet().await, Err(ProtoError::Closed)));
        let (a, b) = tokio::io::duplex(1024);
        drop(a);
        let mut r = PacketConn::new(b, 1 << 20);
        assert!(r.read_packet().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_packet_is_refused() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&[0xff, 0xff, 0x0f, 0]).await.unwrap();
        let mut r = PacketConn::new(b, 1024);
        assert!(matches!(
            r.read_packet().await,
            Err(ProtoError::TooLarge(_))
        ));
    }
}
