//! What each fuzz target does with its input: the proxy's own decoders, in
//! the order the proxy runs them on bytes from outside.
//!
//! Policy: every function here takes arbitrary bytes and calls only the
//! `sqlcache` library's public decoders — no reimplementation, no mocks.
//! A panic, an abort or a sanitizer report is a finding. Where the library
//! states an invariant that bytes from outside could break, it is asserted
//! here too (the verdict memo never changes a verdict; a decoded frame
//! never claims more bytes than it had), so the fuzzer also hunts wrong
//! answers, not only crashes. Findings become unit tests beside the code
//! they broke (`fuzz/README.md`).

use std::collections::HashMap;
use std::sync::Arc;

use mysql_common::constants::CapabilityFlags;
use sqlcache::cache::key::{build_key_with, BINARY, TEXT};
use sqlcache::classify::{self, Lexed};
use sqlcache::frontend::stmt::{parse_change_user, parse_execute, PreparedStmt};
use sqlcache::frontend::wire::Reader;

/// One COM_QUERY text, through everything the session runs before MySQL:
/// the key of the hit path, the proxy's own statements, the lexer, session
/// effects, KILL, the (memoized) classification and the rewrites.
pub fn text_statement(sql: &[u8]) {
    let mut key = Vec::new();
    build_key_with(&mut key, 1, TEXT, sql, (&[], &[]));
    if sqlcache::admin::status::is_sqlcache_statement(sql) {
        let _ = sqlcache::admin::status::Own::parse(sql);
        return;
    }
    let _ = classify::digest::digest(sql);
    let _ = classify::digest::normalize(sql, 1024);
    let text = String::from_utf8_lossy(sql);
    let lexed = Lexed::new(&text);
    let fx = classify::analyze_lexed(&lexed);
    let _ = classify::kill_of(&lexed);
    let (memo, _) = classify::classify_memo(&lexed);
    if fx.probes_socket {
        let _ = sqlcache::frontend::commands::hide_socket(&text);
    }
    if fx.reads_connection_id {
        let _ = classify::rewrite::own_connection_id(&text, 7);
    }
    assert_eq!(
        memo,
        classify::classify_lexed(&lexed),
        "memo changed the verdict of {text:?}"
    );
}

/// `sql`, then the same statement with its digits changed: the second is
/// likely of the same shape, so the memo answers it from the template the
/// first taught it — which must equal a fresh classification.
pub fn memo_agrees(data: &[u8]) {
    let Some((&shift, sql)) = data.split_first() else {
        return;
    };
    let other: Vec<u8> = sql
        .iter()
        .map(|&b| match b {
            b'0'..=b'9' => b'0' + (b - b'0' + shift % 10) % 10,
            _ => b,
        })
        .collect();
    for s in [sql, sql, &other[..]] {
        let text = String::from_utf8_lossy(s);
        let lexed = Lexed::new(&text);
        let (memo, _) = classify::classify_memo(&lexed);
        assert_eq!(
            memo,
            classify::classify_lexed(&lexed),
            "memo changed the verdict of {text:?}"
        );
    }
}

/// A prepared statement as the session holds it, `n` parameters, with or
/// without types remembered from an earlier execution.
pub fn prepared(sql: &[u8], n: u16, types: Option<&[u8]>, long: &[u16]) -> PreparedStmt {
    PreparedStmt {
        sql: Arc::from(sql),
        digest: 0,
        verdict: Arc::new(classify::classify(&String::from_utf8_lossy(sql))),
        num_params: n,
        columns: Arc::from(Vec::new()),
        param_types: types.map(Arc::from),
        long_data: long.iter().map(|&i| (i, b"long".to_vec())).collect(),
    }
}

/// One COM_STMT_EXECUTE body against `stmt`: decoded, keyed as a hit
/// would be, its key values canonicalised, and encoded for the backend.
pub fn execute(body: &[u8], stmt: &PreparedStmt) {
    let Ok(exec) = parse_execute(body, stmt) else {
        return;
    };
    assert!(exec.params.len() == stmt.num_params as usize);
    let types = exec
        .new_types
        .or(stmt.param_types.as_deref())
        .unwrap_or_default();
    let mut key = Vec::new();
    build_key_with(&mut key, 1, BINARY, &stmt.sql, (&exec.params, types));
    for p in &exec.params {
        let _ = sqlcache::cache::canonical_int(p);
    }
    let encoded = exec.encode(types, stmt.long_data.clone());
    assert!(encoded.bytes.len() <= body.len() + types.len() + 1);
}

/// `stmt_execute`'s input: parameter count, remembered types, long data,
/// then the packet body.
pub fn execute_input(data: &[u8]) {
    let mut r = Reader::new(data);
    let (Some(n), Some(flags)) = (r.u8(), r.u8()) else {
        return;
    };
    let n = u16::from(n % 40);
    let types = if flags & 1 == 1 {
        match r.take(2 * n as usize) {
            Some(t) => Some(t),
            None => return,
        }
    } else {
        None
    };
    let long: Vec<u16> = (0..n).filter(|i| flags & 2 == 2 && i % 3 == 0).collect();
    let stmt = prepared(b"SELECT * FROM t WHERE id = ?", n, types, &long);
    execute(r.rest(), &stmt);
}

/// The client's byte stream after the handshake, framed by the proxy's own
/// packet reader (sequence ids, continuations, size limit), each command
/// decoded as the session decodes it.
pub fn client_stream(data: &[u8]) {
    use sqlcache::frontend::packet::PacketConn;
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
    }
    RT.with(|rt| {
        rt.block_on(async {
            let stream = tokio::io::join(data, tokio::io::sink());
            let mut conn = PacketConn::new(stream, 1 << 20);
            let mut stmts: HashMap<u32, PreparedStmt> = HashMap::new();
            loop {
                conn.set_seq(0);
                let Ok(Some(pkt)) = conn.read_packet().await else {
                    return;
                };
                let Some((&cmd, body)) = pkt.split_first() else {
                    return;
                };
                command(cmd, body, &mut stmts);
            }
        })
    })
}

fn command(cmd: u8, body: &[u8], stmts: &mut HashMap<u32, PreparedStmt>) {
    match cmd {
        0x03 => text_statement(body),
        0x04 => {
            let _ = String::from_utf8_lossy(Reader::new(body).cstr());
        }
        0x11 => {
            let _ = parse_change_user(body, CapabilityFlags::all());
            let _ = parse_change_user(body, CapabilityFlags::empty());
        }
        0x16 => {
            text_statement(body);
            let n = body.iter().filter(|&&b| b == b'?').count().min(300) as u16;
            let id = stmts.len() as u32 + 1;
            stmts.insert(id, prepared(body, n, None, &[]));
        }
        0x17 => {
            if let Some(stmt) = Reader::new(body).u32().and_then(|id| stmts.get(&id)) {
                execute(body, stmt);
            }
        }
        0x18 => {
            let mut r = Reader::new(body);
            let _ = (r.u32(), r.u16(), r.rest());
        }
        _ => {}
    }
}

/// A handshake response (or SSL request): decoded, then checked against an
/// account with a password, one with a stored hash, and none.
pub fn handshake(data: &[u8]) {
    use sqlcache::credential::Secret;
    use sqlcache::frontend::auth::{asks_for_tls, check, parse_hello};
    let _ = asks_for_tls(data);
    let Ok(hello) = parse_hello(data) else {
        return;
    };
    let scramble = [7u8; 20];
    let hash = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"; // PASSWORD('password')
    let secrets = [
        Secret::Plain("pw".into()),
        Secret::Plain(String::new()),
        sqlcache::credential::parse_hash(hash).expect("a valid stored hash"),
    ];
    for s in &secrets {
        let _ = check(hello.plugin.as_deref(), &hello.auth, &scramble, Some(s));
    }
    let _ = check(hello.plugin.as_deref(), &hello.auth, &scramble, None);
}

/// A Kafka message for the invalidation feed, in each format: decoded, or
/// its fallback event when it cannot be.
pub fn feed_message(data: &[u8]) {
    use sqlcache::invalidation::decode::{decode, fallback, Format};
    let (key, value) = split_record(data);
    for format in [Format::Debezium, Format::Canal, Format::Maxwell] {
        let topic = "srv.db.t";
        match decode(format, topic, key, value) {
            Ok(events) => {
                let schema = sqlcache::backend::schema::SchemaCache::default();
                let _ = sqlcache::invalidation::resolve_all(&events, &schema);
            }
            Err(_) => {
                let _ = fallback(format, topic, value);
            }
        }
    }
}

/// A record for `sqlcache sink`: decoded, then every value of its images
/// written as a literal for each column type.
pub fn sink_record(data: &[u8]) {
    use sqlcache::sink::record::{decode, decode_key, Change, Decoded};
    use sqlcache::sink::values::{literal, ColType};
    let (key, value) = split_record(data);
    let _ = decode_key(key);
    let Ok(Decoded::Event(ev)) = decode(key, value) else {
        return;
    };
    let images = match &ev.change {
        Change::Upsert { after, before } => vec![Some(after), before.as_ref()],
        Change::Delete { before, key } => vec![before.as_ref(), key.as_ref()],
        Change::Truncate => vec![],
    };
    let types = [
        ColType::Int,
        ColType::UnsignedBigInt,
        ColType::Float,
        ColType::Double,
        ColType::Decimal,
        ColType::Date,
        ColType::DateTime(6),
        ColType::Timestamp,
        ColType::Time,
        ColType::Year,
        ColType::Text,
        ColType::Binary,
        ColType::Bit,
    ];
    let fields = ev.fields.as_deref().unwrap_or_default();
    for (name, v) in images.into_iter().flatten().flatten() {
        let field = fields.iter().find(|f| &f.name == name);
        for ty in &types {
            let _ = literal(name, ty, v, field);
        }
    }
}

/// `key NUL value`: no NUL is a record with a value only; an empty side is
/// absent (a tombstone's value).
fn split_record(data: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    let (key, value) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    (
        (!key.is_empty()).then_some(key),
        (!value.is_empty()).then_some(value),
    )
}

/// Bytes from an Ignite node, read as each frame the shared tier reads,
/// under each protocol version it speaks.
pub fn ignite_frames(data: &[u8]) {
    use sqlcache::cache::ignite::affinity::parse_partitions;
    use sqlcache::cache::ignite::codec::{
        inbound, object, parse_handshake, parse_map, parse_notification, parse_response, VERSIONS,
    };
    for v in VERSIONS {
        let _ = parse_handshake(v, data);
        if let Ok((_, payload)) = parse_response(v, data) {
            let _ = parse_map(payload);
            if let Ok(map) = parse_partitions(payload) {
                let _ = (map.partitions(1), map.nodes(1), map.primary(1, 7));
            }
            let mut p = payload;
            while !p.is_empty() && object(&mut p).is_ok() {}
        }
        let _ = inbound(v, data);
    }
    let _ = parse_notification(data);
    let _ = parse_map(data);
    let _ = parse_partitions(data);
}

/// A binlog file, read as the replication stream would deliver it
/// (`binlog::read_file`: each event cut out as one packet, size-checked,
/// read by mysql_common's stream reader and decoded by the proxy's
/// decoder), then turned into the changes the cache and `cdc` act on.
pub fn binlog(data: &[u8]) {
    for ev in sqlcache::binlog::read_file(data) {
        let _ = sqlcache::binlog::changes::changes(&ev.item);
        let _ = ev.pos.key();
    }
}
