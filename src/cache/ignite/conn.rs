//! One thin-client connection, pipelined: many requests in flight, matched
//! to their responses by request id.
//!
//! Policy: a writer task owns the socket's write half and sends whatever is
//! queued in one write; a reader task owns the read half and hands each
//! response to the caller waiting for its id. A caller that gives up (a
//! timeout drops its future) removes its id, so a late response is dropped.
//! Any I/O or framing error kills the connection: every waiting caller gets
//! `Closed` at once and the pool replaces it; nothing is retried here (a
//! cache read that fails is a miss, never a wrong answer).
//!
//! Server-initiated frames: a notification (a continuous query's events)
//! goes to the connection's one subscriber (`notifications`), in order; a
//! response flagged "affinity topology changed" reports the new version to
//! the pool's `Topology` before its caller sees it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::codec::{self, Handshake, Inbound, Request, Version};
use super::IgniteError;

/// Frames larger than this are a protocol error (entries are bounded by
/// `cache.max_result_bytes`, far below).
const MAX_FRAME: usize = 256 << 20;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Waiters = Mutex<HashMap<i64, oneshot::Sender<Result<Bytes, IgniteError>>>>;

/// The newest affinity topology version any connection of a pool saw.
#[derive(Default)]
pub struct Topology {
    latest: Mutex<(i64, i32)>,
    changed: tokio::sync::Notify,
    changes: std::sync::atomic::AtomicU64,
}

impl Topology {
    /// Records a version a response carried; wakes waiters if it is newer.
    pub fn report(&self, v: (i64, i32)) {
        let mut l = self.latest.lock().unwrap();
        if v > *l {
            *l = v;
            self.changes.fetch_add(1, Ordering::AcqRel);
            self.changed.notify_waiters();
        }
    }

    pub fn latest(&self) -> (i64, i32) {
        *self.latest.lock().unwrap()
    }

    /// How many newer versions were reported so far.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// Resolves at the next reported change after `seen` changes.
    pub async fn changed_since(&self, seen: u64) {
        loop {
            let n = self.changed.notified();
            if self.changes() != seen {
                return;
            }
            n.await;
        }
    }
}

/// How to reach a node.
#[derive(Clone)]
pub struct Dial {
    pub timeout: Duration,
    pub auth: Option<(String, String)>,
    pub tls: Option<tokio_rustls::TlsConnector>,
}

pub struct Conn {
    pub version: Version,
    pub addr: String,
    /// The node's id from the handshake (protocol ≥ 1.4).
    pub node: Option<[u8; 16]>,
    /// Notification frames, taken once by the connection's subscriber.
    notifications: Mutex<Option<mpsc::UnboundedReceiver<Bytes>>>,
    tx: mpsc::UnboundedSender<Bytes>,
    waiters: Arc<Waiters>,
    next_id: AtomicI64,
    alive: Arc<AtomicBool>,
    /// Woken when the connection dies (the pool redials at once).
    died: Arc<tokio::sync::Notify>,
}

/// Removes a caller's id if it stops waiting before its response.
struct Forget<'a>(&'a Waiters, i64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.lock().unwrap().remove(&self.1);
    }
}

impl Conn {
    /// Connects and negotiates the newest protocol version both sides speak.
    pub async fn connect(
        addr: &str,
        dial: &Dial,
        topology: Arc<Topology>,
    ) -> Result<Conn, IgniteError> {
        let mut v = codec::VERSIONS[0];
        loop {
            let mut io = open(addr, dial).await?;
            let auth = dial.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
            let reply = tokio::time::timeout(dial.timeout, async {
                io.write_all(&codec::handshake(v, auth)).await?;
                read_frame(&mut io).await
            })
            .await
            .map_err(|_| IgniteError::Timeout)??;
            match codec::parse_handshake(v, &reply)? {
                Handshake::Accepted { node } => {
                    return Ok(Conn::start(io, v, addr, node, topology))
                }
                Handshake::Rejected {
                    server, message, ..
                } => {
                    // The server names its version: offer the newest we
                    // speak that is no newer (VERSIONS is newest first).
                    // A server that speaks ours refused for another reason
                    // (credentials; a node still starting refuses every
                    // handshake): stepping down would only leave a
                    // connection without what later versions bring (node
                    // ids, expiry) once it is accepted.
                    let older = codec::VERSIONS.iter().find(|c| **c <= server && **c < v);
                    match older.filter(|_| server < v) {
                        Some(next) => v = *next,
                        None => {
                            return Err(IgniteError::Handshake(format!(
                                "{addr} rejected protocol {v} (server speaks {server}): {message}"
                            )))
                        }
                    }
                }
            }
        }
    }

    fn start(
        io: Box<dyn Io>,
        version: Version,
        addr: &str,
        node: Option<[u8; 16]>,
        topology: Arc<Topology>,
    ) -> Conn {
        let (mut rd, mut wr) = tokio::io::split(io);
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let (ntx, nrx) = mpsc::unbounded_channel::<Bytes>();
        let waiters: Arc<Waiters> = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let died = Arc::new(tokio::sync::Notify::new());
        let (w, a, d) = (waiters.clone(), alive.clone(), died.clone());
        tokio::spawn(async move {
            loop {
                let frame = read_frame(&mut rd).await;
                match frame.and_then(|f| Ok((codec::inbound(version, &f)?, f))) {
                    Ok((Inbound::Response { id, topology: t }, frame)) => {
                        if let Some(v) = t {
                            topology.report(v);
                        }
                        if let Some(s) = w.lock().unwrap().remove(&id) {
                            let _ = s.send(Ok(frame));
                        }
                    }
                    Ok((Inbound::Notification { .. }, frame)) => {
                        let _ = ntx.send(frame);
                    }
                    Err(e) => {
                        fail_all(&w, &a, e);
                        d.notify_waiters();
                        return;
                    }
                }
            }
        });
        let (w, a, d) = (waiters.clone(), alive.clone(), died.clone());
        tokio::spawn(async move {
            let mut buf = BytesMut::new();
            while let Some(first) = rx.recv().await {
                buf.extend_from_slice(&first);
                while let Ok(more) = rx.try_recv() {
                    buf.extend_from_slice(&more);
                }
                if let Err(e) = wr.write_all(&buf).await {
                    fail_all(&w, &a, IgniteError::Io(e));
                    d.notify_waiters();
                    return;
                }
                buf.clear();
            }
            let _ = wr.shutdown().await;
        });
        Conn {
            version,
            addr: addr.to_owned(),
            node,
            notifications: Mutex::new(Some(nrx)),
            tx,
            waiters,
            next_id: AtomicI64::new(1),
            alive,
            died,
        }
    }

    /// Resolves once the connection is dead.
    pub async fn closed(&self) {
        loop {
            let n = self.died.notified();
            if !self.is_alive() {
                return;
            }
            n.await;
        }
    }

    /// The connection's notification frames (once; None afterwards). The
    /// stream ends when the connection dies.
    pub fn take_notifications(&self) -> Option<mpsc::UnboundedReceiver<Bytes>> {
        self.notifications.lock().unwrap().take()
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Sends `reqs` in one write and returns each one's payload (or error),
    /// in order.
    pub async fn call_many(
        &self,
        reqs: Vec<Request>,
    ) -> Result<Vec<Result<Bytes, IgniteError>>, IgniteError> {
        if !self.is_alive() {
            return Err(IgniteError::Closed);
        }
        let mut frames = BytesMut::new();
        let mut waits = Vec::with_capacity(reqs.len());
        let mut forget = Vec::with_capacity(reqs.len());
        for r in reqs {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (s, rx) = oneshot::channel();
            self.waiters.lock().unwrap().insert(id, s);
            forget.push(Forget(&self.waiters, id));
            frames.extend_from_slice(&r.finish(id));
            waits.push(rx);
        }
        self.tx
            .send(frames.freeze())
            .map_err(|_| IgniteError::Closed)?;
        let mut out = Vec::with_capacity(waits.len());
        for rx in waits {
            let frame = rx.await.map_err(|_| IgniteError::Closed)??;
            out.push(
                codec::parse_response(self.version, &frame)
                    .map(|(_, payload)| frame.slice_ref(payload)),
            );
        }
        drop(forget);
        Ok(out)
    }

    /// One request; its payload.
    pub async fn call(&self, req: Request) -> Result<Bytes, IgniteError> {
        self.call_many(vec![req])
            .await?
            .pop()
            .unwrap_or(Err(IgniteError::Closed))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Release);
    }
}

fn fail_all(w: &Waiters, alive: &AtomicBool, e: IgniteError) {
    alive.store(false, Ordering::Release);
    let reason = e.to_string();
    for (_, s) in w.lock().unwrap().drain() {
        let _ = s.send(Err(IgniteError::Broken(reason.clone())));
    }
}

async fn open(addr: &str, dial: &Dial) -> Result<Box<dyn Io>, IgniteError> {
    let tcp = tokio::time::timeout(dial.timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| IgniteError::Timeout)??;
    tcp.set_nodelay(true)?;
    match &dial.tls {
        None => Ok(Box::new(tcp)),
        Some(tls) => {
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                .map_err(|e| IgniteError::Tls(format!("server name {host:?}: {e}")))?;
            let s = tokio::time::timeout(dial.timeout, tls.connect(name, tcp))
                .await
                .map_err(|_| IgniteError::Timeout)?
                .map_err(|e| IgniteError::Tls(e.to_string()))?;
            Ok(Box::new(s))
        }
    }
}

/// Reads one `int`-prefixed frame; returns the body.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Bytes, IgniteError> {
    let len = r.read_i32_le().await?;
    let len = usize::try_from(len).map_err(|_| IgniteError::Protocol("negative frame length"))?;
    if len > MAX_FRAME {
        return Err(IgniteError::Protocol("frame larger than 256 MiB"));
    }
    let mut body = BytesMut::zeroed(len);
    r.read_exact(&mut body).await?;
    Ok(body.freeze())
}
