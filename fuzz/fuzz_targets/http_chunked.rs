//! The chunked-body tracker, fed in arbitrary splits: it never claims more bytes
//! than it was given, and split feeding agrees with whole feeding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_core::body::Chunked;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let mut whole = Chunked::new();
    let whole_result = whole.feed(body);
    if let Ok(n) = whole_result {
        assert!(n <= body.len());
    }
    let at = usize::from(split).min(body.len());
    let mut parts = Chunked::new();
    let first = parts.feed(&body[..at]);
    let split_result = match first {
        Ok(n) if parts.is_done() => Ok(n),
        Ok(n) => parts.feed(&body[at..]).map(|m| n + m),
        Err(e) => Err(e),
    };
    assert_eq!(whole_result.is_ok(), split_result.is_ok());
    if let (Ok(a), Ok(b)) = (whole_result, split_result) {
        assert_eq!(a, b);
        assert_eq!(whole.is_done(), parts.is_done());
    }
});
