//! Which peers a client may relay to: deny by default.
//!
//! A peer address is judged in this order; the first rule that matches decides:
//! 1. addresses that embed an IPv4 address (`::ffff:0:0/96` mapped, `::/96`
//!    compatible, `2002::/16` 6to4, `64:ff9b::/96` NAT64, `2001::/32` Teredo client)
//!    are converted to that IPv4 address, and the rest applies to it;
//! 2. one of this server's relayed addresses (a relay IP with a port in the relay
//!    range) is **allowed**, so relay-to-relay works;
//! 3. an entry of the configured **deny** list denies (`--deny-peer`);
//! 4. an entry of the configured **allow** list allows (`--allow-peer`): this is how
//!    the meeting server's media addresses on the private side are permitted;
//! 5. the built-in deny list denies: unspecified and "this network", loopback,
//!    private (10/8, 172.16/12, 192.168/16, fc00::/7), shared address space
//!    (100.64/10), link-local (169.254/16 with the 169.254.169.254 metadata service,
//!    fe80::/10), multicast, broadcast and reserved (224/3), documentation and
//!    benchmarking ranges, IETF protocol assignments, discard-only `100::/64`;
//! 6. the server's own addresses (listeners, relay and advertised addresses) deny;
//! 7. anything else is allowed.
//!
//! So an explicit deny entry beats an explicit allow entry, and an allow entry beats
//! the built-in list. Ranges are compared numerically on whole addresses.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// An address range: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Cidr {
    /// An IPv4 range.
    V4 {
        /// Network address as a number.
        net: u32,
        /// Prefix length, 0..=32.
        prefix: u8,
    },
    /// An IPv6 range.
    V6 {
        /// Network address as a number.
        net: u128,
        /// Prefix length, 0..=128.
        prefix: u8,
    },
}

const fn mask32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    }
}

const fn mask128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix as u32)
    }
}

/// Why text is not a CIDR range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CidrParseError;

impl core::fmt::Display for CidrParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("expected an address or a range such as 10.1.0.0/16 or fd00::/8")
    }
}

impl core::error::Error for CidrParseError {}

impl Cidr {
    /// An IPv4 range; the prefix is clamped to 32 and host bits are cleared.
    pub const fn v4(addr: Ipv4Addr, prefix: u8) -> Cidr {
        let prefix = if prefix > 32 { 32 } else { prefix };
        Cidr::V4 {
            net: addr.to_bits() & mask32(prefix),
            prefix,
        }
    }

    /// An IPv6 range; the prefix is clamped to 128 and host bits are cleared.
    pub const fn v6(addr: Ipv6Addr, prefix: u8) -> Cidr {
        let prefix = if prefix > 128 { 128 } else { prefix };
        Cidr::V6 {
            net: addr.to_bits() & mask128(prefix),
            prefix,
        }
    }

    /// The single address `ip`.
    pub const fn host(ip: IpAddr) -> Cidr {
        match ip {
            IpAddr::V4(a) => Cidr::v4(a, 32),
            IpAddr::V6(a) => Cidr::v6(a, 128),
        }
    }

    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address.
    pub fn parse(s: &str) -> Result<Cidr, CidrParseError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => {
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(CidrParseError);
                }
                (a, Some(p.parse::<u8>().map_err(|_| CidrParseError)?))
            }
            None => (s, None),
        };
        match addr.parse::<IpAddr>().map_err(|_| CidrParseError)? {
            IpAddr::V4(a) => match prefix {
                Some(p) if p > 32 => Err(CidrParseError),
                p => Ok(Cidr::v4(a, p.unwrap_or(32))),
            },
            IpAddr::V6(a) => match prefix {
                Some(p) if p > 128 => Err(CidrParseError),
                p => Ok(Cidr::v6(a, p.unwrap_or(128))),
            },
        }
    }

    /// Whether `ip` is in the range (IPv4 ranges never hold IPv6 addresses and the
    /// other way round; convert embedded addresses first).
    pub const fn contains(&self, ip: &IpAddr) -> bool {
        match (*self, ip) {
            (Cidr::V4 { net, prefix }, IpAddr::V4(a)) => a.to_bits() & mask32(prefix) == net,
            (Cidr::V6 { net, prefix }, IpAddr::V6(a)) => a.to_bits() & mask128(prefix) == net,
            _ => false,
        }
    }
}

impl core::fmt::Display for Cidr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Cidr::V4 { net, prefix } => write!(f, "{}/{prefix}", Ipv4Addr::from_bits(net)),
            Cidr::V6 { net, prefix } => write!(f, "{}/{prefix}", Ipv6Addr::from_bits(net)),
        }
    }
}

const fn c4(a: u8, b: u8, c: u8, d: u8, p: u8) -> Cidr {
    Cidr::v4(Ipv4Addr::new(a, b, c, d), p)
}

const fn c6(hi: u16, second: u16, p: u8) -> Cidr {
    Cidr::v6(Ipv6Addr::new(hi, second, 0, 0, 0, 0, 0, 0), p)
}

/// The built-in deny list (step 5 of the module docs).
pub const DEFAULT_DENY: &[Cidr] = &[
    c4(0, 0, 0, 0, 8),       // "this network", including 0.0.0.0
    c4(10, 0, 0, 0, 8),      // private
    c4(100, 64, 0, 0, 10),   // shared address space (CGN)
    c4(127, 0, 0, 0, 8),     // loopback
    c4(169, 254, 0, 0, 16),  // link-local, cloud metadata 169.254.169.254
    c4(172, 16, 0, 0, 12),   // private
    c4(192, 0, 0, 0, 24),    // IETF protocol assignments
    c4(192, 0, 2, 0, 24),    // TEST-NET-1
    c4(192, 88, 99, 0, 24),  // 6to4 relay anycast
    c4(192, 168, 0, 0, 16),  // private
    c4(198, 18, 0, 0, 15),   // benchmarking
    c4(198, 51, 100, 0, 24), // TEST-NET-2
    c4(203, 0, 113, 0, 24),  // TEST-NET-3
    c4(224, 0, 0, 0, 3),     // multicast, reserved, broadcast
    Cidr::v6(Ipv6Addr::UNSPECIFIED, 128),
    Cidr::v6(Ipv6Addr::LOCALHOST, 128),
    c6(0x0100, 0, 64),      // discard-only
    c6(0x2001, 0x0db8, 32), // documentation
    c6(0x2001, 0x0002, 48), // benchmarking
    c6(0xfc00, 0, 7),       // unique local
    c6(0xfe80, 0, 10),      // link-local
    c6(0xfec0, 0, 10),      // site-local (deprecated)
    c6(0xff00, 0, 8),       // multicast
];

/// The IPv4 address that an IPv6 address embeds, if it is of a form that does.
pub fn embedded_ipv4(ip: &Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = ip.to_bits();
    let low32 = Ipv4Addr::from_bits(bits as u32);
    let seg = ip.segments();
    if bits >> 32 == 0x0000_ffff {
        return Some(low32); // ::ffff:a.b.c.d (mapped)
    }
    if bits >> 32 == 0 && bits > 1 {
        return Some(low32); // ::a.b.c.d (compatible); :: and ::1 are judged as IPv6
    }
    if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return Some(low32); // 64:ff9b::a.b.c.d (NAT64)
    }
    if seg[0] == 0x2002 {
        return Some(Ipv4Addr::from_bits((bits >> 80) as u32)); // 2002:AABB:CCDD::/48 (6to4)
    }
    if seg[0] == 0x2001 && seg[1] == 0 {
        return Some(Ipv4Addr::from_bits(!(bits as u32))); // Teredo client, obfuscated
    }
    None
}

/// The address policies judge: IPv6 forms that embed IPv4 become that IPv4.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_ipv4(&v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The verdict on a peer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Verdict {
    /// Relaying is allowed.
    Allow,
    /// Denied by a configured `deny` entry.
    DeniedByConfig,
    /// Denied by the built-in list (loopback, private, ...).
    DeniedByDefault,
    /// Denied because it is one of this server's own addresses.
    DeniedOwnAddress,
}

/// The peer policy: configured allow and deny lists over the built-in rules.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    /// Ranges that may be relayed to despite the built-in deny list.
    pub allow: heapless::Vec<Cidr, 32>,
    /// Extra ranges that are never relayed to (beats `allow`).
    pub deny: heapless::Vec<Cidr, 32>,
    /// This server's own addresses (listeners, relay and advertised addresses).
    pub own: heapless::Vec<IpAddr, 8>,
}

impl PeerPolicy {
    /// Judges `peer`; `is_relayed` says whether an address is one of this server's
    /// relayed transport addresses (relay IP and a port in the relay range).
    pub fn check(&self, peer: SocketAddr, is_relayed: impl Fn(SocketAddr) -> bool) -> Verdict {
        let ip = normalize(peer.ip());
        if is_relayed(SocketAddr::new(ip, peer.port())) || is_relayed(peer) {
            return Verdict::Allow;
        }
        if self.deny.iter().any(|c| c.contains(&ip)) {
            return Verdict::DeniedByConfig;
        }
        if self.allow.iter().any(|c| c.contains(&ip)) {
            return Verdict::Allow;
        }
        if DEFAULT_DENY.iter().any(|c| c.contains(&ip)) {
            return Verdict::DeniedByDefault;
        }
        if self.own.iter().any(|o| normalize(*o) == ip) {
            return Verdict::DeniedOwnAddress;
        }
        Verdict::Allow
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn p(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parse_and_contains() {
        let c = Cidr::parse("10.1.2.3/16").unwrap();
        assert_eq!(c, Cidr::v4(Ipv4Addr::new(10, 1, 0, 0), 16));
        assert!(c.contains(&"10.1.255.255".parse().unwrap()));
        assert!(!c.contains(&"10.2.0.0".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("10.0.0.0/+8").is_err());
        assert!(
            Cidr::parse("fd00::/8")
                .unwrap()
                .contains(&"fdff::1".parse().unwrap())
        );
        assert_eq!(
            Cidr::parse("1.2.3.4").unwrap(),
            Cidr::v4(Ipv4Addr::new(1, 2, 3, 4), 32)
        );
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains(&"8.8.8.8".parse().unwrap())
        );
    }

    #[test]
    fn numeric_not_bytewise() {
        // 172.16/12 covers 172.16.0.0-172.31.255.255 only.
        let pol = PeerPolicy::default();
        let none = |_| false;
        assert_eq!(
            pol.check(p("172.31.255.255:1"), none),
            Verdict::DeniedByDefault
        );
        assert_eq!(pol.check(p("172.32.0.0:1"), none), Verdict::Allow);
        assert_eq!(pol.check(p("172.15.255.255:1"), none), Verdict::Allow);
        assert_eq!(
            pol.check(p("100.127.255.255:1"), none),
            Verdict::DeniedByDefault
        );
        assert_eq!(pol.check(p("100.128.0.0:1"), none), Verdict::Allow);
    }

    #[test]
    fn embedded_forms_are_converted() {
        let pol = PeerPolicy::default();
        let none = |_| false;
        for a in [
            "[::ffff:127.0.0.1]:1",
            "[::127.0.0.1]:1",
            "[::ffff:10.0.0.1]:1",
            "[64:ff9b::a9fe:a9fe]:1",
            "[2002:c0a8:0101::1]:1",
            "[2001:0:4136:e378:8000:63bf:f5ff:fffe]:1", // Teredo client 10.0.0.1
            "[::1]:1",
            "[::]:1",
        ] {
            assert_ne!(pol.check(p(a), none), Verdict::Allow, "{a}");
        }
        assert_eq!(pol.check(p("[2001:4860::8888]:1"), none), Verdict::Allow);
        assert_eq!(pol.check(p("[::ffff:8.8.8.8]:1"), none), Verdict::Allow);
    }

    #[test]
    fn precedence() {
        let mut pol = PeerPolicy::default();
        pol.allow.push(Cidr::parse("10.0.0.0/8").unwrap()).unwrap();
        pol.deny.push(Cidr::parse("10.9.0.0/16").unwrap()).unwrap();
        pol.own.push("198.18.0.1".parse().unwrap()).unwrap();
        pol.own.push("93.184.216.34".parse().unwrap()).unwrap();
        let none = |_| false;
        assert_eq!(pol.check(p("10.1.1.1:5000"), none), Verdict::Allow);
        assert_eq!(pol.check(p("10.9.1.1:5000"), none), Verdict::DeniedByConfig);
        assert_eq!(
            pol.check(p("93.184.216.34:1"), none),
            Verdict::DeniedOwnAddress
        );
        let relayed = |a: SocketAddr| a.ip() == p("93.184.216.34:1").ip() && a.port() >= 24000;
        assert_eq!(pol.check(p("93.184.216.34:24001"), relayed), Verdict::Allow);
        assert_eq!(
            pol.check(p("[::ffff:93.184.216.34]:24001"), relayed),
            Verdict::Allow
        );
    }
}
