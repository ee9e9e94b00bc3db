//! Relays a mysql_async query result to the client.
//!
//! Policy: column definitions and rows are relayed verbatim (rows are not
//! decoded: a row packet's payload is copied into the client's buffer under
//! the client's sequence numbers, re-split if it is 16 MiB or more) and
//! streamed — the buffer is flushed every few hundred KiB, so a result of
//! any size passes in bounded memory. Every result of a multi-
//! result response (multi-statements, CALL) is relayed with
//! SERVER_MORE_RESULTS_EXISTS on all but the last. The last packet carries the
//! server's own final status flags; earlier ones carry the flags known before
//! the statement (mysql_async does not expose the intermediate ones). A
//! server error inside the stream is relayed in place and ends the response.

use mysql_async::prelude::Protocol;
use mysql_async::{Conn, QueryResult};
use mysql_common::constants::{CapabilityFlags, StatusFlags};
use tokio::io::{AsyncRead, AsyncWrite};

use super::packet::{PacketConn, ProtoError};
use super::wire;

/// How a relayed response ended.
pub enum Outcome {
    Done,
    /// A server error was relayed to the client (the connection is fine).
    ServerError,
    /// The backend failed mid-response (i/o, protocol): the connection is lost.
    Lost(mysql_async::Error),
}

pub enum End {
    Ok {
        affected: u64,
        insert_id: u64,
        warnings: u16,
        info: Vec<u8>,
    },
    Rows {
        warnings: u16,
    },
}

pub struct Relay<'c, S> {
    pub out: &'c mut PacketConn<S>,
    pub caps: CapabilityFlags,
    /// Flags known before the statement (used for intermediate packets).
    pub status: StatusFlags,
    /// Row sets and OK results relayed, and the most warnings seen: a
    /// response is cacheable only as exactly one row set without warnings.
    pub row_sets: u32,
    pub ok_results: u32,
    pub warnings: u16,
}

impl<'c, S> Relay<'c, S> {
    pub fn new(out: &'c mut PacketConn<S>, caps: CapabilityFlags, status: StatusFlags) -> Self {
        Relay {
            out,
            caps,
            status,
            row_sets: 0,
            ok_results: 0,
            warnings: 0,
        }
    }

    /// Exactly one row set, no warnings: safe to replay for the same key.
    pub fn cacheable(&self) -> bool {
        self.row_sets == 1 && self.ok_results == 0 && self.warnings == 0
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Relay<'_, S> {
    fn deprecate_eof(&self) -> bool {
        self.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF)
    }

    /// Relays every result but the last packet, which the caller writes with
    /// `write_end` once the server's final status flags are readable.
    /// Returns the outcome, the last insert id seen and that last packet.
    pub async fn run<P: Protocol>(
        &mut self,
        mut qr: QueryResult<'_, '_, P>,
    ) -> Result<(Outcome, u64, Option<End>), ProtoError> {
        let mut last_insert_id = 0;
        let mut pending: Option<End> = None;
        loop {
            let Some(cols) = qr.columns() else {
                // No pending result: either done, or a server error is queued.
                match qr.next().await {
                    Ok(_) => break,
                    Err(e) => return self.fail(e, pending.take(), last_insert_id).await,
                }
            };
            if let Some(end) = pending.take() {
                self.write_end(end, self.status | StatusFlags::SERVER_MORE_RESULTS_EXISTS);
            }
            if cols.is_empty() {
                self.ok_results += 1;
                self.warnings = self.warnings.max(qr.warnings());
                let insert_id = qr.last_insert_id().unwrap_or(0);
                if insert_id != 0 {
                    last_insert_id = insert_id;
                }
                pending = Some(End::Ok {
                    affected: qr.affected_rows(),
                    insert_id,
                    warnings: qr.warnings(),
                    info: qr.info().as_bytes().to_vec(),
                });
                if let Err(e) = qr.next().await {
                    return self.fail(e, pending.take(), last_insert_id).await;
                }
                continue;
            }
            self.write_columns(&cols);
            loop {
                let out = &mut *self.out;
                let row = qr
                    .next_raw_with(|payload| {
                        let m = out.begin();
                        out.buf().extend_from_slice(payload);
                        out.finish(m);
                    })
                    .await;
                match row {
                    Ok(true) => self.out.flush_if_full().await?,
                    Ok(false) => break,
                    Err(e) => return self.fail(e, None, last_insert_id).await,
                }
            }
            self.row_sets += 1;
            self.warnings = self.warnings.max(qr.warnings());
            pending = Some(End::Rows {
                warnings: qr.warnings(),
            });
        }
        Ok((Outcome::Done, last_insert_id, pending))
    }

    async fn fail(
        &mut self,
        e: mysql_async::Error,
        pending: Option<End>,
        last_insert_id: u64,
    ) -> Result<(Outcome, u64, Option<End>), ProtoError> {
        if let Some(end) = pending {
            self.write_end(end, self.status | StatusFlags::SERVER_MORE_RESULTS_EXISTS);
        }
        match e {
            mysql_async::Error::Server(se) => {
                let m = self.out.begin();
                wire::err(self.out.buf(), se.code, &se.state, &se.message);
                self.out.finish(m);
                Ok((Outcome::ServerError, last_insert_id, None))
            }
            other => Ok((Outcome::Lost(other), last_insert_id, None)),
        }
    }

    fn write_columns(&mut self, cols: &[mysql_common::packets::Column]) {
        let m = self.out.begin();
        wire::put_lenenc_int(self.out.buf(), cols.len() as u64);
        self.out.finish(m);
        for c in cols {
            let m = self.out.begin();
            wire::column(self.out.buf(), c);
            self.out.finish(m);
        }
        if !self.deprecate_eof() {
            let m = self.out.begin();
            wire::eof(self.out.buf(), 0, self.status);
            self.out.finish(m);
        }
    }

    pub fn write_end(&mut self, end: End, status: StatusFlags) {
        write_end(self.out, self.caps, end, status);
    }
}

/// Writes the packet that ends a result (an OK, or EOF / 0xFE-OK after rows).
pub fn write_end<S>(out: &mut PacketConn<S>, caps: CapabilityFlags, end: End, status: StatusFlags)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let m = out.begin();
    match end {
        End::Ok {
            affected,
            insert_id,
            warnings,
            info,
        } => wire::ok(
            out.buf(),
            0x00,
            affected,
            insert_id,
            status,
            warnings,
            &info,
        ),
        End::Rows { warnings } if caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF) => {
            wire::ok(out.buf(), 0xFE, 0, 0, status, warnings, b"")
        }
        End::Rows { warnings } => wire::eof(out.buf(), warnings, status),
    }
    out.finish(m);
}

/// The server's final status flags after a response, without MORE_RESULTS.
pub fn final_status(conn: &Conn, fallback: StatusFlags) -> StatusFlags {
    conn.last_ok_packet()
        .map(|ok| ok.status_flags())
        .unwrap_or(fallback)
        - StatusFlags::SERVER_MORE_RESULTS_EXISTS
}
