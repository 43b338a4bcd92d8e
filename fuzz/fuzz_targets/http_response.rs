//! Upstream response heads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_core::response::parse_response;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    if let Ok(Some(h)) = parse_response(data, &mut headers, "GET") {
        assert!(h.head_len <= data.len());
    }
});
