//! The state image reader fed arbitrary records (behind a valid header, and
//! as they come): no panic; a refused image leaves the server holding nothing
//! and every relay socket and quota it asked for given back; an accepted one
//! holds what it says, and is written and read back the same.
#![no_main]

use std::collections::HashMap;
use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use stun_core::credentials::{Algorithm, Key};
use turn_core::Instant;
use turn_core::server::{BindError, Config, Host, QuotaError, RelayHandle, Server, Slot};

#[derive(Default)]
struct CountingHost {
    bound: HashMap<SocketAddr, RelayHandle>,
    quotas: usize,
}

impl Host for CountingHost {
    fn long_term_key(&mut self, _: &str, _: &str, _: Algorithm) -> Option<Key> {
        None
    }
    fn is_relay(&mut self, a: SocketAddr) -> bool {
        self.bound.contains_key(&a)
    }
    fn bind_relay(&mut self, h: RelayHandle, a: SocketAddr) -> Result<(), BindError> {
        // One socket per address, as a real host.
        if self.bound.insert(a, h).is_some() {
            return Err(BindError::InUse);
        }
        Ok(())
    }
    fn close_relay(&mut self, _: RelayHandle, a: SocketAddr) {
        self.bound.remove(&a);
    }
    fn acquire_quota(&mut self, _: &str) -> Result<(), QuotaError> {
        self.quotas += 1;
        Ok(())
    }
    fn release_quota(&mut self, _: &str) {
        self.quotas -= 1;
    }
    fn random(&mut self, buf: &mut [u8]) {
        buf.fill(4);
    }
}

fn server() -> Server<Vec<Slot<4, 4>>, 4, 4> {
    let mut cfg = Config::new("fuzz");
    cfg.relay_v4 = Some("10.0.0.1".parse().unwrap());
    cfg.relay_v6 = Some("fd00::1".parse().unwrap());
    Server::new(cfg, vec![Slot::EMPTY; 8], [1; 32]).unwrap()
}

fn check(image: &[u8]) {
    let mut s = server();
    let mut h = CountingHost::default();
    let now = Instant::from_secs(1_000);
    match s.read_image(&mut h, image, now) {
        Ok(n) => {
            assert_eq!(s.allocation_count(), n);
            assert_eq!(h.quotas, n);
            let mut buf = vec![0u8; s.image_len()];
            let len = s.write_image(now, &mut buf).expect("image_len is enough");
            let mut again = server();
            let mut h2 = CountingHost::default();
            assert_eq!(again.read_image(&mut h2, &buf[..len], now), Ok(n));
            assert_eq!(h2.bound.len(), h.bound.len());
        }
        Err(_) => {
            assert_eq!(s.allocation_count(), 0);
            assert!(h.bound.is_empty());
            assert_eq!(h.quotas, 0);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    // Behind a valid header: the records themselves.
    let mut image = b"CWSI\x01\x00".to_vec();
    image.extend_from_slice(data);
    check(&image);
});
