//! Where clients connect: the TCP listener (`proxy.listen`) and, when
//! `proxy.socket` is set, a Unix socket beside it.
//!
//! Policy: both hand their connections to the same workers under the same
//! `max_connections`, with the same deep accept queue (a burst of clients
//! must wait in the kernel, not be dropped). The socket file is created
//! world-connectable, as mariadbd's own: logins are checked as on TCP, and
//! its directory's permissions are what restrict it. A socket file nothing
//! answers on (a crash left it) is replaced; one another process listens on,
//! or a path that is not a socket, is an error, never deleted. When the
//! proxy stops, the file is removed if it is still the one it created.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// Connections the kernel queues before the acceptor takes them (tokio's
/// default of 1024 lost connections in a 2,000-client burst).
const BACKLOG: i32 = 8192;

/// An accepted client connection, on the acceptor's runtime.
pub enum Incoming {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// An accepted connection on its way to a worker (a runtime's sockets
/// cannot move to another runtime; std ones can).
pub enum Handoff {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Incoming {
    pub fn into_std(self) -> io::Result<Handoff> {
        Ok(match self {
            Incoming::Tcp(s) => Handoff::Tcp(s.into_std()?),
            Incoming::Unix(s) => Handoff::Unix(s.into_std()?),
        })
    }
}

impl Handoff {
    /// Registers the socket with the calling worker's runtime.
    pub fn register(self) -> io::Result<Incoming> {
        Ok(match self {
            Handoff::Tcp(s) => Incoming::Tcp(TcpStream::from_std(s)?),
            Handoff::Unix(s) => Incoming::Unix(UnixStream::from_std(s)?),
        })
    }
}

/// The bound listeners.
pub struct Listeners {
    tcp: TcpListener,
    unix: Option<SocketFile>,
}

/// The Unix listener and the file it created (removed on drop).
struct SocketFile {
    listener: UnixListener,
    path: PathBuf,
    inode: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        // Another proxy may have replaced a file it found stale meanwhile.
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Listeners {
    /// Binds `listen` (address:port) and, if given, the Unix socket `socket`.
    pub fn bind(listen: &str, socket: Option<&Path>) -> anyhow::Result<Listeners> {
        let tcp = bind_tcp(listen)?;
        let unix = socket.map(bind_unix).transpose()?;
        Ok(Listeners { tcp, unix })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The next client, from whichever listener has one.
    pub async fn accept(&self) -> io::Result<Incoming> {
        let Some(unix) = &self.unix else {
            return Ok(Incoming::Tcp(self.tcp.accept().await?.0));
        };
        tokio::select! {
            r = self.tcp.accept() => Ok(Incoming::Tcp(r?.0)),
            r = unix.listener.accept() => Ok(Incoming::Unix(r?.0)),
        }
    }
}

fn bind_tcp(addr: &str) -> anyhow::Result<TcpListener> {
    let addr: SocketAddr = addr.parse()?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket.listen(BACKLOG as u32)?)
}

/// What to do about what is at the socket's path before binding (pure).
#[derive(Debug, PartialEq, Eq)]
enum Existing {
    Nothing,
    /// A socket file nobody answers on: left by a crash.
    Stale,
    Live,
    NotASocket,
}

fn existing(path: &Path) -> io::Result<Existing> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Existing::Nothing),
        Err(e) => Err(e),
        Ok(m) if !m.file_type().is_socket() => Ok(Existing::NotASocket),
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => Ok(Existing::Live),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(Existing::Stale),
            Err(e) => Err(e),
        },
    }
}

/// Makes way for the socket at `path`, or says why it cannot.
fn clear(path: &Path) -> anyhow::Result<()> {
    let shown = path.display();
    match existing(path).map_err(|e| anyhow::anyhow!("proxy.socket `{shown}`: {e}"))? {
        Existing::Nothing => Ok(()),
        Existing::Stale => std::fs::remove_file(path)
            .map_err(|e| anyhow::anyhow!("proxy.socket `{shown}`: a stale socket: {e}")),
        Existing::Live => anyhow::bail!("proxy.socket `{shown}`: another process listens on it"),
        Existing::NotASocket => anyhow::bail!("proxy.socket `{shown}`: exists and is not a socket"),
    }
}

fn bind_unix(path: &Path) -> anyhow::Result<SocketFile> {
    clear(path)?;
    let fail = |e: io::Error| anyhow::anyhow!("proxy.socket `{}`: {e}", path.display());
    let socket =
        socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).map_err(fail)?;
    socket
        .bind(&socket2::SockAddr::unix(path).map_err(fail)?)
        .map_err(fail)?;
    // The file exists from here on: removed on every way out.
    let ready = (|| -> io::Result<(UnixListener, u64)> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))?;
        let inode = std::fs::symlink_metadata(path)?.ino();
        socket.listen(BACKLOG)?;
        socket.set_nonblocking(true)?;
        let std = std::os::unix::net::UnixListener::from(socket);
        Ok((UnixListener::from_std(std)?, inode))
    })();
    match ready {
        Ok((listener, inode)) => Ok(SocketFile {
            listener,
            path: path.to_path_buf(),
            inode,
        }),
        Err(e) => {
            let _ = std::fs::remove_file(path);
            Err(fail(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_at_the_path_decides_whether_to_bind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        assert_eq!(existing(&path).unwrap(), Existing::Nothing);
        let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert_eq!(existing(&path).unwrap(), Existing::Live);
        drop(live);
        assert_eq!(existing(&path).unwrap(), Existing::Stale);
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(existing(&file).unwrap(), Existing::NotASocket);
    }

    #[tokio::test]
    async fn the_socket_replaces_a_stale_file_refuses_a_live_one_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let l = Listeners::bind("127.0.0.1:0", Some(&path)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o777, "world-connectable, as mariadbd's");
        let err = Listeners::bind("127.0.0.1:0", Some(&path)).err().unwrap();
        assert!(err.to_string().contains("another process listens"), "{err}");
        let client = UnixStream::connect(&path).await.unwrap();
        assert!(matches!(l.accept().await.unwrap(), Incoming::Unix(_)));
        drop(client);
        drop(l);
        assert!(!path.exists(), "removed when the proxy stops");
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let err = Listeners::bind("127.0.0.1:0", Some(&file)).err().unwrap();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert!(file.exists(), "never deleted");
    }
}
