#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shardio_fuzz::http_chunked(data));
