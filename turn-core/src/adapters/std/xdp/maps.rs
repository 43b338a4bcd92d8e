//! The program's map entries as bytes, laid out as `relay.bpf.c` declares them
//! (`struct to_peer_key`, `struct from_peer_key`, `struct route`).

use std::net::{IpAddr, SocketAddr};

pub(super) const KEY: usize = 40;
pub(super) const ROUTE: usize = 64;
/// A `to_peer_key` or a `from_peer_key`.
pub(super) type Key = [u8; KEY];
/// A `route`.
pub(super) type Route = [u8; ROUTE];

/// An address in the program's form: 16 bytes (IPv4 in the first 4) and its family.
pub(super) fn addr(ip: IpAddr) -> ([u8; 16], u8) {
    match ip {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (b, 4)
        }
        IpAddr::V6(a) => (a.octets(), 6),
    }
}

/// The program's `to_peer_key`: a client's ChannelData at a listener.
pub(super) fn to_peer_key(client: SocketAddr, server: SocketAddr, channel: u16) -> Key {
    let (c, family) = addr(client.ip());
    let (s, _) = addr(server.ip());
    let mut k = [0u8; KEY];
    k[..16].copy_from_slice(&c);
    k[16..32].copy_from_slice(&s);
    k[32..34].copy_from_slice(&client.port().to_be_bytes());
    k[34..36].copy_from_slice(&server.port().to_be_bytes());
    k[36..38].copy_from_slice(&channel.to_be_bytes());
    k[38] = family;
    k
}

/// The program's `from_peer_key`: a peer's datagram at a relay address.
pub(super) fn from_peer_key(peer: SocketAddr, relay: SocketAddr) -> Key {
    let (p, family) = addr(peer.ip());
    let (r, _) = addr(relay.ip());
    let mut k = [0u8; KEY];
    k[..16].copy_from_slice(&p);
    k[16..32].copy_from_slice(&r);
    k[32..34].copy_from_slice(&peer.port().to_be_bytes());
    k[34..36].copy_from_slice(&relay.port().to_be_bytes());
    k[36] = family;
    k
}

/// The program's `route`, with the counters of `old` kept.
pub(super) fn route(
    src: SocketAddr,
    dst: SocketAddr,
    channel: u16,
    until_ns: u64,
    old: Option<Route>,
) -> Route {
    let (s, family) = addr(src.ip());
    let (d, _) = addr(dst.ip());
    let mut r = old.unwrap_or([0u8; ROUTE]);
    r[..16].copy_from_slice(&s);
    r[16..32].copy_from_slice(&d);
    r[32..34].copy_from_slice(&src.port().to_be_bytes());
    r[34..36].copy_from_slice(&dst.port().to_be_bytes());
    r[36..38].copy_from_slice(&channel.to_be_bytes());
    r[38] = family;
    r[39] = 0;
    r[40..48].copy_from_slice(&until_ns.to_ne_bytes());
    r
}

/// `N` bytes of `b` at `at` (zeros past its end).
pub(super) fn bytes<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut o = [0u8; N];
    if let Some(src) = b.get(at..at + N) {
        o.copy_from_slice(src);
    }
    o
}

pub(super) fn counters(r: &Route) -> (u64, u64) {
    (
        u64::from_ne_bytes(bytes(r, 48)),
        u64::from_ne_bytes(bytes(r, 56)),
    )
}

/// The address (and port) at `at` of a key or route, in `family`.
pub(super) fn socket_addr(b: &[u8], at: usize, port_at: usize, family: u8) -> SocketAddr {
    let ip = if family == 4 {
        IpAddr::from(bytes::<4>(b, at))
    } else {
        IpAddr::from(bytes::<16>(b, at))
    };
    SocketAddr::new(ip, u16::from_be_bytes(bytes(b, port_at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_routes_have_the_programs_layout() {
        let client: SocketAddr = "198.51.100.7:50000".parse().unwrap();
        let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let k = to_peer_key(client, server, 0x4001);
        assert_eq!(&k[..4], &[198, 51, 100, 7]);
        assert_eq!(&k[16..20], &[192, 0, 2, 1]);
        assert_eq!(&k[32..34], &50000u16.to_be_bytes());
        assert_eq!(&k[34..36], &3478u16.to_be_bytes());
        assert_eq!(&k[36..38], &[0x40, 0x01]);
        assert_eq!(k[38], 4);
        let peer: SocketAddr = "[2001:db8::9]:40000".parse().unwrap();
        let relay: SocketAddr = "[2001:db8::1]:50001".parse().unwrap();
        let k = from_peer_key(peer, relay);
        assert_eq!(k[36], 6);
        assert_eq!(socket_addr(&k, 0, 32, 6), peer);
        assert_eq!(socket_addr(&k, 16, 34, 6), relay);

        let mut old = [0u8; ROUTE];
        old[48..56].copy_from_slice(&7u64.to_ne_bytes());
        let r = route(server, client, 0x4001, 99, Some(old));
        assert_eq!(counters(&r), (7, 0), "counters survive an update");
        assert_eq!(&r[40..48], &99u64.to_ne_bytes());
        assert_eq!(socket_addr(&r, 16, 34, 4), client);
    }
}
