//! What the property tests and the fuzz regression test run over arbitrary bytes.

#![allow(unreachable_pub)]

use std::net::SocketAddr;

use stun_core::attributes::AnyAttribute;
use stun_core::channel_data::ChannelData;
use stun_core::{AttributeType, Class, Message, binding, demux};

/// Runs every parser and verifier over `bytes`, touching every byte they expose.
pub fn exercise(bytes: &[u8]) {
    if let Ok(m) = Message::new_checked(bytes) {
        let tid = m.transaction_id();
        for a in m.attributes() {
            assert!(a.offset() + 4 + a.value().len() <= bytes.len());
            if let Ok(AnyAttribute::UnknownAttributes(u)) = a.decode_any(&tid) {
                let _ = u.iter().count();
            }
            if let Ok(AnyAttribute::PasswordAlgorithms(p)) = a.decode_any(&tid) {
                let _ = p.iter().count();
            }
        }
        let _ = m.verify_integrity(b"key");
        let _ = m.verify_integrity_sha256(b"key");
        let _ = m.verify_fingerprint();
        let _ = m.unknown_comprehension_required(AttributeType::is_known);
        let _ = format!("{m:?}");
    }
    if let Ok(c) = ChannelData::new_checked(bytes) {
        assert!(c.data().len() + 4 <= bytes.len());
    }
    let _ = demux::classify(bytes);
    let _ = demux::stream_frame(bytes);
    let mut out = [0u8; 256];
    let src: SocketAddr = "192.0.2.1:1".parse().unwrap();
    match binding::respond(bytes, src, Some("causeway"), &mut out) {
        binding::Outcome::Success(n) | binding::Outcome::Error { len: n, .. } => {
            let m = Message::new_checked(&out[..n]).expect("our responses parse");
            assert!(m.verify_fingerprint().is_ok());
            assert_eq!(m.method(), Message::new_checked(bytes).unwrap().method());
            assert!(matches!(m.class(), Class::Success | Class::Error));
        }
        binding::Outcome::Drop(_) => {}
    }
}
