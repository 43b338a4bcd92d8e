//! The TURN server fed arbitrary client packets and peer datagrams: no panic, every
//! reply parses with a valid FINGERPRINT, and no allocation appears without
//! credentials (the fuzzer cannot forge MESSAGE-INTEGRITY).
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use stun_core::credentials::{Algorithm, Key};
use turn_core::server::{
    BindError, Config, Host, Outgoing, PEER_HEADROOM, PeerBuffer, QuotaError, RelayHandle, Server,
    Slot,
};
use turn_core::{FiveTuple, Instant, Transport, UnixTime};

struct FuzzHost;

impl Host for FuzzHost {
    fn long_term_key(&mut self, u: &str, r: &str, a: Algorithm) -> Option<Key> {
        Some(Key::derive(a, u, r, "secret-the-fuzzer-does-not-know"))
    }
    fn is_relay(&mut self, _: SocketAddr) -> bool {
        true
    }
    fn bind_relay(&mut self, _: RelayHandle, _: SocketAddr) -> Result<(), BindError> {
        Ok(())
    }
    fn close_relay(&mut self, _: RelayHandle, _: SocketAddr) {}
    fn acquire_quota(&mut self, _: &str) -> Result<(), QuotaError> {
        Ok(())
    }
    fn release_quota(&mut self, _: &str) {}
    fn reserve_port(&mut self, _: [u8; 8], _: SocketAddr, _: Instant) -> Result<(), BindError> {
        Ok(())
    }
    fn claim_port(&mut self, _: &[u8; 8], _: RelayHandle, _: Instant) -> Option<SocketAddr> {
        None
    }
    fn expire_reservations(&mut self, _: Instant) {}
    fn random(&mut self, buf: &mut [u8]) {
        buf.fill(4);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut cfg = Config::new("fuzz");
    cfg.relay_v4 = Some("10.0.0.1".parse().unwrap());
    let mut s: Server<Vec<Slot<4, 4>>, 4, 4> =
        Server::new(cfg, vec![Slot::EMPTY; 4], [1; 32]).unwrap();
    let tuple = FiveTuple {
        client: "192.0.2.1:1000".parse().unwrap(),
        server: "192.0.2.2:3478".parse().unwrap(),
        transport: if data.first().is_some_and(|b| b & 1 == 1) {
            Transport::Tcp
        } else {
            Transport::Udp
        },
        socket: 0,
    };
    let mut out = [0u8; 1500];
    let mut h = FuzzHost;
    let now = Instant::from_secs(1_764_000_000);
    for chunk in data.split(|&b| b == 0xff) {
        match s.handle_client(now, UnixTime(now.as_secs()), &mut h, tuple, chunk, &mut out) {
            Outgoing::Client { bytes: reply, .. } if stun_core::classic::is_classic(chunk) => {
                // An RFC 3489 Binding: a classic answer, at its transaction.
                assert!(reply[..2] == [1, 1] || reply[..2] == [1, 0x11]);
                assert_eq!(reply.get(4..20), chunk.get(4..20));
                assert!(reply.len() <= chunk.len() + 32);
            }
            Outgoing::Client { bytes: reply, .. } => {
                let m = stun_core::Message::new_checked(reply).expect("replies parse");
                assert!(m.verify_fingerprint().is_ok());
            }
            Outgoing::Peer { bytes, .. } => {
                // The payload is part of what the client sent.
                let (start, end) = (
                    chunk.as_ptr() as usize,
                    chunk.as_ptr() as usize + chunk.len(),
                );
                let at = bytes.as_ptr() as usize;
                assert!(at >= start && at + bytes.len() <= end);
            }
            Outgoing::Nothing(_) => {}
        }
        let mut buf = vec![0u8; PEER_HEADROOM + chunk.len() + 3];
        buf[PEER_HEADROOM..PEER_HEADROOM + chunk.len()].copy_from_slice(chunk);
        let handle = RelayHandle {
            slot: 0,
            generation: 0,
            family: turn_core::server::RelayFamily::Ipv4,
        };
        if let Ok(mut datagram) = PeerBuffer::new(&mut buf, chunk.len()) {
            let _ = s.handle_peer(
                now,
                &mut h,
                handle,
                "8.8.8.8:1".parse().unwrap(),
                &mut datagram,
            );
        }
    }
    assert_eq!(s.allocation_count(), 0);
});
