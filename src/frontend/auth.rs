//! Connection phase: handshake v10, optional TLS upgrade, authentication.
//!
//! Policy: the proxy is the server for its clients. It advertises the
//! backend's version string (clients pick collations and features from it),
//! a fresh random 20-byte scramble and a unique connection id, and verifies
//! `mysql_native_password` against `[[users]]`. A client that starts with
//! another plugin (MySQL 8's `caching_sha2_password`) is switched to
//! `mysql_native_password` with an AuthSwitchRequest. Failures answer error
//! 1045 / 28000 like MySQL does, with no hint of which part was wrong.

use bytes::BytesMut;
use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthSwitchRequest, HandshakePacket, HandshakeResponse, SslRequest};
use mysql_common::proto::MySerialize;
use rand::Rng;

use super::packet::{PacketConn, ProtoError};
use super::stream::ClientStream;
use super::wire;
use crate::config::Config;
use crate::credential::Secret;

pub const NATIVE: &[u8] = b"mysql_native_password";

/// Capabilities the proxy offers (TLS added when configured).
pub fn server_capabilities(tls: bool) -> CapabilityFlags {
    let mut c = CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_FOUND_ROWS
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_INTERACTIVE
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_MULTI_STATEMENTS
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_CONNECT_ATTRS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_DEPRECATE_EOF;
    if tls {
        c |= CapabilityFlags::CLIENT_SSL;
    }
    c
}

/// A fresh scramble: 20 printable bytes (some clients treat it as a C string).
pub fn new_scramble() -> [u8; 20] {
    let mut rng = rand::thread_rng();
    let mut s = [0u8; 20];
    for b in &mut s {
        *b = rng.gen_range(0x21..0x7F);
    }
    s
}

/// What the client asked for at login.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub password: String,
    pub db: Option<String>,
    pub collation: u8,
    pub caps: CapabilityFlags,
}

/// Result of checking a client's credentials.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthDecision {
    /// With the credential for backend logins as this user
    /// (`crate::credential`).
    Accept(String),
    /// The client used another plugin: switch it to mysql_native_password.
    Switch,
    Deny,
}

/// Pure check of one auth response against what the proxy holds for the
/// account (`None`: no such account).
pub fn check(
    plugin: Option<&[u8]>,
    response: &[u8],
    scramble: &[u8; 20],
    secret: Option<&Secret>,
) -> AuthDecision {
    let Some(secret) = secret else {
        return AuthDecision::Deny;
    };
    let native = plugin.is_none_or(|p| p == NATIVE);
    if secret.is_empty() && response.is_empty() {
        return AuthDecision::Accept(String::new());
    }
    if !native {
        return AuthDecision::Switch;
    }
    match secret.verify(scramble, response) {
        Some(credential) => AuthDecision::Accept(credential),
        None => AuthDecision::Deny,
    }
}

pub fn access_denied(buf: &mut Vec<u8>, user: &str, used_password: bool) {
    let msg = format!(
        "Access denied for user '{user}'@'sqlcache' (using password: {})",
        if used_password { "YES" } else { "NO" }
    );
    wire::err(buf, 1045, "28000", &msg);
}

/// Runs the connection phase up to (not including) the final OK.
pub async fn handshake(
    mut conn: PacketConn<ClientStream>,
    cfg: &Config,
    accounts: &super::accounts::Accounts,
    tls: Option<&tokio_rustls::TlsAcceptor>,
    server_version: &str,
    conn_id: u32,
) -> Result<(PacketConn<ClientStream>, Login, [u8; 20]), ProtoError> {
    let scramble = new_scramble();
    let caps = server_capabilities(tls.is_some());
    greet(&mut conn, caps, &scramble, server_version, conn_id).await?;
    let pkt = conn.read_packet().await?.ok_or(ProtoError::Closed)?;
    let (mut conn, pkt) = upgrade_tls(conn, pkt, tls).await?;
    let hello = parse_hello(&pkt)?;
    let client_caps = hello.caps;
    if !client_caps.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
        let why = "Client does not support the 4.1 protocol; upgrade the client";
        refuse(&mut conn, (1251, "08004", why)).await?;
        return Err(ProtoError::Malformed("pre-4.1 client".into()));
    }
    let require_tls = cfg.proxy.tls.as_ref().is_some_and(|t| t.required);
    if require_tls && !conn.stream_ref().is_secure() {
        let why = "Connections using insecure transport are prohibited (proxy.tls.required)";
        refuse(&mut conn, (3159, "HY000", why)).await?;
        return Err(ProtoError::Tls("client did not use TLS".into()));
    }
    let secret = accounts.secret(&hello.user).await;
    let authed = authenticate(
        &mut conn,
        hello.plugin.as_deref(),
        hello.auth,
        &scramble,
        secret.as_ref(),
    )
    .await?;
    let credential = match authed {
        Ok(c) => c,
        Err(used_password) => {
            let mut b = Vec::new();
            access_denied(&mut b, &hello.user, used_password);
            conn.write_packet(&b);
            conn.flush().await?;
            let why = format!("access denied for {}", hello.user);
            return Err(ProtoError::Malformed(why));
        }
    };
    let login = Login {
        user: hello.user,
        password: credential,
        db: hello.db,
        collation: hello.collation,
        caps: client_caps & caps,
    };
    Ok((conn, login, scramble))
}

/// What a client's handshake response says.
#[derive(Debug)]
pub struct Hello {
    pub user: String,
    pub caps: CapabilityFlags,
    /// The auth plugin the client used, when it named one.
    pub plugin: Option<Vec<u8>>,
    /// Its auth response (the proof, for mysql_native_password).
    pub auth: Vec<u8>,
    /// The database to start in (CLIENT_CONNECT_WITH_DB, non-empty).
    pub db: Option<String>,
    pub collation: u8,
}

/// Decodes a handshake response (pure: the connection phase's one decoder
/// of client bytes before authentication, fuzzed in `fuzz/`).
pub fn parse_hello(pkt: &[u8]) -> Result<Hello, ProtoError> {
    let resp = ParseBuf(pkt)
        .parse::<HandshakeResponse>(())
        .map_err(|e| ProtoError::Malformed(format!("handshake response: {e}")))?;
    let caps = resp.capabilities();
    let db = resp
        .db_name()
        .filter(|d| !d.is_empty() && caps.contains(CapabilityFlags::CLIENT_CONNECT_WITH_DB))
        .map(|d| String::from_utf8_lossy(d).into_owned());
    Ok(Hello {
        user: String::from_utf8_lossy(resp.user()).into_owned(),
        caps,
        plugin: resp.auth_plugin().map(|p| p.as_bytes().to_vec()),
        auth: resp.scramble_buf().to_vec(),
        db,
        collation: resp.collation(),
    })
}

/// Whether a client's first packet is an SSL request (the TLS handshake
/// comes next) rather than its handshake response.
pub fn asks_for_tls(pkt: &[u8]) -> Result<bool, ProtoError> {
    let caps = pkt
        .get(..4)
        .map(|b| CapabilityFlags::from_bits_truncate(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .ok_or_else(|| ProtoError::Malformed("short handshake response".into()))?;
    Ok(caps.contains(CapabilityFlags::CLIENT_SSL) && pkt.len() == 32)
}

/// The server greeting (protocol 10) with the scramble.
async fn greet(
    conn: &mut PacketConn<ClientStream>,
    caps: CapabilityFlags,
    scramble: &[u8; 20],
    server_version: &str,
    conn_id: u32,
) -> Result<(), ProtoError> {
    // Part 2 of the scramble is sent NUL-terminated (13 bytes), as servers do.
    let mut part1 = [0u8; 8];
    part1.copy_from_slice(&scramble[..8]);
    let mut part2 = scramble[8..].to_vec();
    part2.push(0);
    let hs = HandshakePacket::new(
        10,
        server_version.as_bytes(),
        conn_id,
        part1,
        Some(part2),
        caps,
        45, // utf8mb4_general_ci
        StatusFlags::SERVER_STATUS_AUTOCOMMIT,
        Some(NATIVE),
    );
    let mut payload = Vec::with_capacity(128);
    hs.serialize(&mut payload);
    conn.write_packet(&payload);
    conn.flush().await
}

/// A client's SSL request: the TLS handshake, then the real response read
/// over TLS. Any other first packet is the response itself.
async fn upgrade_tls(
    conn: PacketConn<ClientStream>,
    pkt: BytesMut,
    tls: Option<&tokio_rustls::TlsAcceptor>,
) -> Result<(PacketConn<ClientStream>, BytesMut), ProtoError> {
    if !asks_for_tls(&pkt)? {
        return Ok((conn, pkt));
    }
    let acceptor =
        tls.ok_or_else(|| ProtoError::Tls("client asked for TLS, none configured".into()))?;
    ParseBuf(&pkt)
        .parse::<SslRequest>(())
        .map_err(|e| ProtoError::Malformed(e.to_string()))?;
    let seq = conn.seq();
    let max = cfg_max_packet();
    let ClientStream::Plain(tcp) = conn.into_stream()? else {
        return Err(ProtoError::Tls("TLS requested twice".into()));
    };
    let tls_stream = acceptor
        .accept(tcp)
        .await
        .map_err(|e| ProtoError::Tls(e.to_string()))?;
    let mut conn = PacketConn::new(ClientStream::Tls(Box::new(tls_stream)), max);
    conn.set_seq(seq);
    let pkt = conn.read_packet().await?.ok_or(ProtoError::Closed)?;
    Ok((conn, pkt))
}

/// Checks the client's proof (switching it to mysql_native_password when
/// it used another plugin). The backend credential when accepted, else
/// whether the client sent a password (for the error text).
async fn authenticate(
    conn: &mut PacketConn<ClientStream>,
    plugin: Option<&[u8]>,
    mut response: Vec<u8>,
    scramble: &[u8; 20],
    secret: Option<&Secret>,
) -> Result<Result<String, bool>, ProtoError> {
    let mut decision = check(plugin, &response, scramble, secret);
    if decision == AuthDecision::Switch {
        let mut data = scramble.to_vec();
        data.push(0);
        let mut b = Vec::new();
        AuthSwitchRequest::new(NATIVE, data).serialize(&mut b);
        conn.write_packet(&b);
        conn.flush().await?;
        response = conn
            .read_packet()
            .await?
            .ok_or(ProtoError::Closed)?
            .to_vec();
        decision = check(None, &response, scramble, secret);
    }
    Ok(match decision {
        AuthDecision::Accept(credential) => Ok(credential),
        _ => Err(!response.is_empty()),
    })
}

/// An error packet, then the caller ends the connection.
async fn refuse(
    conn: &mut PacketConn<ClientStream>,
    (code, state, why): (u16, &str, &str),
) -> Result<(), ProtoError> {
    let mut b = Vec::new();
    wire::err(&mut b, code, state, why);
    conn.write_packet(&b);
    conn.flush().await
}

/// Largest client packet accepted (MySQL's own hard limit).
pub fn cfg_max_packet() -> usize {
    1 << 30
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(p: &str) -> Option<Secret> {
        Some(Secret::Plain(p.into()))
    }

    #[test]
    fn native_password_is_verified() {
        let s = new_scramble();
        let good = mysql_common::scramble::scramble_native(&s, b"pw").unwrap();
        let pw = plain("pw");
        let accept = AuthDecision::Accept("pw".into());
        assert_eq!(check(Some(NATIVE), &good, &s, pw.as_ref()), accept);
        assert_eq!(check(None, &good, &s, pw.as_ref()), accept);
        let other = plain("other");
        assert_eq!(
            check(Some(NATIVE), &good, &s, other.as_ref()),
            AuthDecision::Deny
        );
        assert_eq!(
            check(Some(NATIVE), b"", &s, pw.as_ref()),
            AuthDecision::Deny
        );
        assert_eq!(check(Some(NATIVE), &good, &s, None), AuthDecision::Deny);
    }

    #[test]
    fn empty_password_and_other_plugins() {
        let s = new_scramble();
        let sha2 = Some(&b"caching_sha2_password"[..]);
        let (empty, pw) = (plain(""), plain("pw"));
        assert_eq!(
            check(sha2, b"", &s, empty.as_ref()),
            AuthDecision::Accept(String::new())
        );
        assert_eq!(
            check(Some(NATIVE), b"x", &s, empty.as_ref()),
            AuthDecision::Deny
        );
        assert_eq!(check(sha2, &[1; 32], &s, pw.as_ref()), AuthDecision::Switch);
        assert_eq!(check(sha2, &[1; 32], &s, None), AuthDecision::Deny);
    }

    #[test]
    fn scramble_is_printable_and_fresh() {
        let a = new_scramble();
        assert!(a.iter().all(|b| (0x21..0x7F).contains(b)));
        assert_ne!(a, new_scramble());
    }
}
