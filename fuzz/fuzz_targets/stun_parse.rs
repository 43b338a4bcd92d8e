//! STUN message parsing: the header and attribute walk, then every attribute
//! decoded by type, including the lazily walked lists.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stun_core::attributes::AnyAttribute;
use stun_core::{AttributeType, Message};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::new_checked(data) else {
        return;
    };
    let tid = m.transaction_id();
    for a in m.attributes() {
        assert!(a.offset() + 4 + a.value().len() <= data.len());
        match a.decode_any(&tid) {
            Ok(AnyAttribute::UnknownAttributes(u)) => {
                let _ = u.iter().count();
            }
            Ok(AnyAttribute::PasswordAlgorithms(p)) => {
                for alg in p.iter() {
                    let _ = alg.params.len();
                }
            }
            _ => {}
        }
    }
    let _ = m.unknown_comprehension_required(AttributeType::is_known);
});
