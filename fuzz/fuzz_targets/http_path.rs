//! Path normalisation: idempotent, never climbs above the root, never leaves dot
//! segments, encoded slashes or backslashes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_core::path::normalize;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = core::str::from_utf8(data) else {
        return;
    };
    let mut buf = [0u8; 4096];
    let Ok(n) = normalize(s, &mut buf) else {
        return;
    };
    let n = n.to_string();
    for seg in n.split('/') {
        assert!(seg != "." && seg != "..", "{n}");
    }
    assert!(
        !n.contains('\\')
            && !n.to_ascii_lowercase().contains("%2f")
            && !n.to_ascii_lowercase().contains("%2e")
    );
    let mut again = [0u8; 4096];
    assert_eq!(
        normalize(&n, &mut again).ok(),
        Some(n.as_str()),
        "normalisation is idempotent"
    );
});
