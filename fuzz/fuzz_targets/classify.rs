#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sqlcache_fuzz::text_statement(data);
    sqlcache_fuzz::memo_agrees(data);
});
