//! A firmware-style program around stun-core's Binding responder: what a board with
//! a network driver would run per received datagram, minus the driver. It exists to
//! prove the codec links without a heap and to measure its flash and RAM cost.
#![no_std]
#![no_main]

use core::hint::black_box;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use cortex_m_rt::entry;
use stun_core::binding::{self, Outcome};

/// A Binding request with FINGERPRINT, as a client would send it.
static REQUEST: [u8; 28] = [
    0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x80,
    0x28, 0x00, 0x04, 0x5b, 0x20, 0xf9, 0xcc,
];

#[entry]
fn main() -> ! {
    let mut rx = [0u8; 576];
    let mut tx = [0u8; 576];
    let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 40000);
    rx[..REQUEST.len()].copy_from_slice(&REQUEST);
    loop {
        let n = black_box(REQUEST.len());
        let sent = match binding::respond(black_box(&rx[..n]), src, Some("causeway"), &mut tx) {
            Outcome::Success(len) | Outcome::Error { len, .. } => len,
            Outcome::Drop(_) => 0,
        };
        black_box(&tx[..sent]);
        // What an authenticated server adds per request: MESSAGE-INTEGRITY (HMAC-SHA1)
        // with a long-term key (MD5), so their code counts in the flash figure.
        if let Ok(m) = stun_core::Message::new_checked(black_box(&rx[..n])) {
            let key = stun_core::credentials::long_term_key("user", "realm", black_box("pass"));
            let _ = black_box(m.verify_integrity(&key));
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        cortex_m::asm::udf();
    }
}
