//! The Binding responders end to end: any input yields silence or a response that
//! parses, carries a valid FINGERPRINT and answers the request's transaction; the
//! classic (RFC 3489) one answers only a cookie-less Binding, at its transaction,
//! never more than 32 bytes over the request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stun_core::Message;
use stun_core::binding::{self, Outcome};
use stun_core::classic::{self, Answer};

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
    match classic::respond(data, src, &mut out) {
        Answer::Mapped(n) | Answer::Refused { len: n, .. } => {
            assert!(classic::is_classic(data));
            assert_eq!(data.get(..2), Some(&[0u8, 1][..]), "Binding requests only");
            assert_eq!(out.get(4..20), data.get(4..20), "the transaction id");
            assert!(n <= data.len() + 32, "bounded answer");
            assert_eq!(usize::from(u16::from_be_bytes([out[2], out[3]])) + 20, n);
        }
        Answer::Drop => {}
    }
});
