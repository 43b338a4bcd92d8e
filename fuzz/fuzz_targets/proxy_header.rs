//! The PROXY protocol header parser (v1 and v2): no panic, and a header's length
//! never past the bytes given; its prefixes are incomplete, never another header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_core::proxy_protocol::{Header, parse};

fuzz_target!(|data: &[u8]| {
    if let Ok(Header::Proxy { len, .. } | Header::Local { len }) = parse(data) {
        assert!(len <= data.len());
        let whole = parse(&data[..len]);
        assert_eq!(whole, parse(data), "the header alone parses the same");
        if len > 1 {
            assert!(!matches!(
                parse(&data[..len - 1]),
                Ok(Header::Proxy { .. } | Header::Local { .. })
            ));
        }
    }
});
