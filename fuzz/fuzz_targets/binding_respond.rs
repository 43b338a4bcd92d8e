//! The Binding responder end to end: any input yields silence or a response that
//! parses, carries a valid FINGERPRINT and answers the request's transaction.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stun_core::Message;
use stun_core::binding::{self, Outcome};

fuzz_target!(|data: &[u8]| {
    let mut out = [0u8; 512];
    let src = "192.0.2.1:3478".parse().expect("literal");
    match binding::respond(data, src, Some("causeway"), &mut out) {
        Outcome::Success(n) | Outcome::Error { len: n, .. } => {
            let reply = Message::new_checked(&out[..n]).expect("our response parses");
            reply
                .verify_fingerprint()
                .expect("our FINGERPRINT is valid");
            let req = Message::new_checked(data).expect("answered requests parse");
            assert_eq!(reply.transaction_id(), req.transaction_id());
        }
        Outcome::Drop(_) => {}
    }
});
