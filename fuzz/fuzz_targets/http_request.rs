//! HTTP request heads: parsing and every smuggling check, then the full decision
//! (routing, normalisation, allow list) on what passes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_core::allow::Rule;
use proxy_core::decide::{Config, decide};
use proxy_core::http::{Limits, Parsed, parse_request};
use proxy_core::route::Site;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let Ok(Parsed::Complete(head)) = parse_request(data, &mut headers, Limits::default()) else {
        return;
    };
    assert!(head.head_len <= data.len());
    let sites = [Site {
        host: "join.example.com",
        upstream: 0,
    }];
    let rules = [Rule::web_bridge_default(443)];
    let cfg = Config {
        sites: &sites,
        rules: &rules,
        port: 443,
    };
    let mut buf = [0u8; 4096];
    if let Ok(f) = decide(&cfg, &head, None, &mut buf) {
        assert!(f.path.starts_with('/'));
        assert!(!f.path.contains("/../") && !f.path.contains("//") && !f.path.contains('\\'));
    }
});
