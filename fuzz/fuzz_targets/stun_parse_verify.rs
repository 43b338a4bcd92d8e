//! STUN parsing followed by MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and
//! FINGERPRINT verification over whatever offsets the parser found. The first byte
//! picks the key length so keys of every size are tried.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stun_core::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&klen, rest)) = data.split_first() else {
        return;
    };
    let klen = usize::from(klen).min(rest.len());
    let (key, msg) = rest.split_at(klen);
    let Ok(m) = Message::new_checked(msg) else {
        return;
    };
    let _ = m.verify_integrity(key);
    let _ = m.verify_integrity_sha256(key);
    let _ = m.verify_fingerprint();
});
