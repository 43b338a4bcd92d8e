//! Port 443 demultiplexing and the ClientHello SNI parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_core::demux::{Opening, classify, classify_inner, client_hello_sni};

fuzz_target!(|data: &[u8]| {
    if let Opening::Tls { sni: Some(s) } = classify(data) {
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        );
    }
    let _ = classify_inner(data);
    let _ = client_hello_sni(data);
});
