#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sqlcache_fuzz::sink_record(data));
