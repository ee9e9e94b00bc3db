//! Micro-benchmark of the cache-hit path without I/O: build the key from
//! session state and statement, look it up, check its tag tokens, and copy
//! the ready-to-send response into a write buffer (what a hit does before its
//! one `write`).

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use mysql_common::value::Value;
use sqlcache::cache::key::{build_key, KeyState, BINARY, TEXT};
use sqlcache::cache::{Cache, Lookup, Tag};
use sqlcache::config::CacheConfig;

fn hit_path(c: &mut Criterion) {
    let cache = Cache::new(CacheConfig::default());
    let state = KeyState {
        user: Some("app"),
        db: Some("sbtest"),
        names: "utf8mb4 COLLATE utf8mb4_general_ci",
        sql_mode: None,
        time_zone: None,
        deprecate_eof: true,
    };
    let text = b"SELECT c FROM sbtest1 WHERE id=4711";
    let prepared = b"SELECT c FROM sbtest1 WHERE id=?";
    let params = [Value::Int(4711)];
    let types = [3u8, 0]; // MYSQL_TYPE_LONG, signed: what sysbench declares
    let response = Bytes::from(vec![7u8; 180]);
    let tags = [
        Tag::row("sbtest", "sbtest1", "4711"),
        Tag::table("sbtest", "sbtest1"),
    ];
    let mut key = Vec::with_capacity(256);
    for (proto, body, p) in [
        (TEXT, &text[..], (&[][..], &[][..])),
        (BINARY, &prepared[..], (&params[..], &types[..])),
    ] {
        build_key(&mut key, &state, proto, body, p);
        cache.insert(
            key.clone(),
            response.clone(),
            cache.tokens.guard(&tags),
            Duration::from_secs(600),
            None,
        );
    }
    let mut out = Vec::with_capacity(4096);
    c.bench_function("hit/text", |b| {
        b.iter(|| {
            build_key(&mut key, &state, TEXT, text, (&[], &[]));
            let Lookup::Hit(bytes, _) = cache.lookup(&key) else {
                panic!("miss")
            };
            out.clear();
            out.extend_from_slice(&bytes);
        })
    });
    c.bench_function("hit/prepared", |b| {
        b.iter(|| {
            build_key(&mut key, &state, BINARY, prepared, (&params, &types));
            let Lookup::Hit(bytes, _) = cache.lookup(&key) else {
                panic!("miss")
            };
            out.clear();
            out.extend_from_slice(&bytes);
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = hit_path
}
criterion_main!(benches);
