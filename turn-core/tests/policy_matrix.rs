//! The peer-policy matrix: every denied range, in every encoding that embeds IPv4,
//! through CreatePermission, ChannelBind and Send, is refused with 403 or dropped;
//! an allowed public peer and the server's own relayed address still work.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use common::*;
use stun_core::attributes::*;
use stun_core::{Class, Method};
use turn_core::Instant;

const T0: Instant = Instant::from_secs(1_764_000_000);

/// One address inside each built-in denied IPv4 range, edges included.
const DENIED_V4: &[[u8; 4]] = &[
    [0, 0, 0, 0],
    [0, 255, 255, 255],
    [10, 0, 0, 1],
    [10, 255, 255, 255],
    [100, 64, 0, 1],
    [100, 127, 255, 254],
    [127, 0, 0, 1],
    [127, 255, 255, 254],
    [169, 254, 169, 254],
    [172, 16, 0, 1],
    [172, 31, 255, 255],
    [192, 0, 0, 8],
    [192, 0, 2, 1],
    [192, 88, 99, 1],
    [192, 168, 1, 1],
    [198, 18, 0, 1],
    [198, 19, 255, 255],
    [198, 51, 100, 1],
    [203, 0, 113, 1],
    [224, 0, 0, 1],
    [239, 255, 255, 250],
    [240, 0, 0, 1],
    [255, 255, 255, 255],
];

const DENIED_V6: &[&str] = &[
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "fdff::1",
    "ff02::1",
    "2001:db8::1",
    "100::1",
    // Local-use NAT64 (RFC 8215): the embedding is not known, so denied.
    "64:ff9b:1::808:808",
    "64:ff9b:1:ffff::1",
];

/// The IPv4 address in every encoding the policy must see through.
fn encodings(v4: Ipv4Addr) -> Vec<IpAddr> {
    let [a, b, c, d] = v4.octets();
    let w1 = u16::from_be_bytes([a, b]);
    let w2 = u16::from_be_bytes([c, d]);
    vec![
        IpAddr::V4(v4),
        IpAddr::V6(v4.to_ipv6_mapped()),
        IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, w1, w2)),
        IpAddr::V6(Ipv6Addr::new(0x2002, w1, w2, 0, 0, 0, 0, 1)),
        IpAddr::V6(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, w1, w2)),
        // IPv4-translated (SIIT, ::ffff:0:0:0/96).
        IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, w1, w2)),
        // Teredo with it as the client (obfuscated), and as the server.
        IpAddr::V6(Ipv6Addr::new(
            0x2001, 0, 0x4136, 0xe378, 0x8000, 0x63bf, !w1, !w2,
        )),
        IpAddr::V6(Ipv6Addr::new(
            0x2001, 0, w1, w2, 0x8000, 0x63bf, !0x0808, !0x0808,
        )),
        // ISATAP interface ids under a public prefix (local and global forms).
        IpAddr::V6(Ipv6Addr::new(0x2001, 0x4860, 0, 0, 0, 0x5efe, w1, w2)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0x4860, 0, 0, 0x0200, 0x5efe, w1, w2)),
    ]
}

fn dual_stack() -> (TestServer, FakeHost, Client) {
    let mut cfg = config();
    cfg.relay_v6 = Some("fd00::5".parse().unwrap());
    let mut s = server_with(cfg, 4);
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    let r = c.request(&mut s, &mut h, T0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add(&AdditionalAddressFamily(AddressFamily::Ipv6))
            .unwrap();
    });
    assert_success(&r, &c);
    (s, h, c)
}

#[test]
fn every_denied_range_in_every_encoding_is_refused() {
    let (mut s, mut h, mut c) = dual_stack();
    let mut peers: Vec<SocketAddr> = DENIED_V4
        .iter()
        .flat_map(|o| encodings(Ipv4Addr::from(*o)))
        .map(|ip| SocketAddr::new(ip, 3000))
        .collect();
    peers.extend(
        DENIED_V6
            .iter()
            .map(|a| SocketAddr::new(a.parse().unwrap(), 3000)),
    );
    for (channel, peer) in (0x4000u16..).zip(peers.iter()) {
        let p = *peer;
        let r = c.request(&mut s, &mut h, T0, Method::CREATE_PERMISSION, &move |b| {
            b.add(&XorPeerAddress(p)).unwrap()
        });
        assert_eq!(r.code(), Some(403), "CreatePermission to {peer}");
        let r = c.bind(&mut s, &mut h, T0, channel, &peer.to_string());
        assert_eq!(r.code(), Some(403), "ChannelBind to {peer}");
        let ind = c.send_indication(&peer.to_string(), b"x");
        let (o, _) = c.send_raw(&mut s, &mut h, T0, &ind);
        assert!(matches!(o, Answer::Nothing(_)), "Send to {peer}: {o:?}");
    }
    let a = s.allocations().next().unwrap();
    assert_eq!(a.permission_count(), 0);
    assert_eq!(a.channel_count(), 0);
    assert_eq!(a.traffic().to_peer_packets, 0);
}

#[test]
fn public_peers_and_relayed_addresses_are_allowed() {
    let (mut s, mut h, mut c) = dual_stack();
    for peer in [
        "8.8.8.8:3000",
        "[2001:4860:4860::8888]:3000",
        "[::ffff:8.8.4.4]:3000",
    ] {
        assert_success(&c.permit(&mut s, &mut h, T0, peer), &c);
    }
    let ind = c.send_indication("8.8.8.8:3000", b"x");
    assert!(matches!(
        c.send_raw(&mut s, &mut h, T0, &ind).0,
        Answer::ToPeer { .. }
    ));
    // The relayed address of another allocation on this server (private relay IP,
    // external IP) is allowed: relay to relay.
    let mut b = Client::new("198.51.100.9:1", "bob", "builder");
    let rb = relayed(&b.allocate(&mut s, &mut h, T0));
    assert_success(&c.permit(&mut s, &mut h, T0, &rb.to_string()), &c);
    let private = format!("10.0.0.5:{}", rb.port());
    assert_success(&c.bind(&mut s, &mut h, T0, 0x4100, &private), &c);
}

#[test]
fn allow_list_opens_private_ranges_and_deny_list_wins() {
    let mut cfg = config();
    cfg.policy
        .allow
        .push(turn_core::server::policy::Cidr::parse("10.20.0.0/16").unwrap())
        .unwrap();
    cfg.policy
        .deny
        .push(turn_core::server::policy::Cidr::parse("10.20.30.0/24").unwrap())
        .unwrap();
    cfg.policy
        .deny
        .push(turn_core::server::policy::Cidr::parse("8.8.8.0/24").unwrap())
        .unwrap();
    let mut s = server_with(cfg, 2);
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    c.allocate(&mut s, &mut h, T0);
    assert_eq!(
        c.permit(&mut s, &mut h, T0, "10.20.1.1:5000").class(),
        Class::Success
    );
    assert_eq!(
        c.permit(&mut s, &mut h, T0, "[::ffff:10.20.1.2]:5000")
            .code(),
        Some(443)
    );
    assert_eq!(
        c.permit(&mut s, &mut h, T0, "10.20.30.1:5000").code(),
        Some(403)
    );
    assert_eq!(
        c.permit(&mut s, &mut h, T0, "10.21.0.1:5000").code(),
        Some(403)
    );
    assert_eq!(c.permit(&mut s, &mut h, T0, "8.8.8.8:53").code(), Some(403));
}
