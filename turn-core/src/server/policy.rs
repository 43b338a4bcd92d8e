//! Which peers a client may relay to: deny by default.
//!
//! A peer address is judged in this order; the first rule that matches decides:
//! 1. a **live relayed address** of this server (a relay or advertised IP, a port
//!    in the relay range, and a relay socket bound there right now) is **allowed**,
//!    so relay-to-relay works (a browser and the meeting server's call bridge often
//!    allocate on the same relay). The caller says what counts: for a permission,
//!    which is per IP, the relay IP itself; for a channel, the live address. Every
//!    packet is checked again, in both directions, so a permission for the
//!    server's IP never opens its other ports;
//! 2. an exact **local peer** (`allow_local_peer`: a transport address of this
//!    host an embedder or operator names, such as a media server beside the
//!    relay) is **allowed**, whatever the rules below say. Its IP's other ports
//!    stay denied (permissions for such an IP are kept per address, and every
//!    packet is checked again);
//! 3. the server's **own addresses** (relay and advertised IPs, which the server
//!    adds itself, and whatever the host adds: listeners, the admin interface) are
//!    **denied**, even when an allow entry covers them;
//! 4. an entry of the configured **deny** list denies (`--deny-peer`);
//! 5. every form of the address must then pass: an entry of the configured
//!    **allow** list (`--allow-peer`) passes it (this is how the meeting server's
//!    media addresses on the private side are permitted), else the built-in deny
//!    list denies it: unspecified and "this network", loopback, private (10/8,
//!    172.16/12, 192.168/16, fc00::/7), shared address space (100.64/10),
//!    link-local (169.254/16 with the 169.254.169.254 metadata service, fe80::/10),
//!    multicast, broadcast and reserved (224/3), documentation and benchmarking
//!    ranges, IETF protocol assignments, discard-only `100::/64`, and the local-use
//!    NAT64 prefix `64:ff9b:1::/48` (RFC 8215), whose embedding is not known;
//! 6. anything else is allowed.
//!
//! The **forms** of an address are the address itself and every IPv4 address it
//! embeds: IPv4-mapped `::ffff:0:0/96`, IPv4-translated
//! `::ffff:0:0:0/96`, IPv4-compatible `::/96`, NAT64 `64:ff9b::/96`, 6to4
//! `2002::/16` are judged by their IPv4 alone; Teredo `2001::/32` by the IPv6
//! address, its server's IPv4 and its client's (obfuscated) IPv4; an ISATAP
//! interface id (`::0:5efe:a.b.c.d`, `::200:5efe:a.b.c.d`) by the IPv6 address and
//! the IPv4 it names.
//!
//! So an explicit deny entry beats an explicit allow entry, an allow entry beats
//! the built-in list, and only an exact local peer beats the server's own
//! addresses. Ranges are compared numerically on whole addresses.

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

/// The built-in deny list (step 4 of the module docs).
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
    Cidr::v6(Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48), // local-use NAT64 (RFC 8215)
    c6(0x0100, 0, 64),                                           // discard-only
    c6(0x2001, 0x0db8, 32),                                      // documentation
    c6(0x2001, 0x0002, 48),                                      // benchmarking
    c6(0xfc00, 0, 7),                                            // unique local
    c6(0xfe80, 0, 10),                                           // link-local
    c6(0xfec0, 0, 10),                                           // site-local (deprecated)
    c6(0xff00, 0, 8),                                            // multicast
];

/// An exact transport address of this host that clients may relay to (an SFU
/// or media server beside the relay): an IP and a port, or a range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LocalPeer {
    /// The address (IPv4-mapped IPv6 is compared as IPv4).
    pub ip: IpAddr,
    /// The first port.
    pub first: u16,
    /// The last port (the first for a single one).
    pub last: u16,
}

/// Why text is not a local peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalPeerParseError;

impl core::fmt::Display for LocalPeerParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(
            "expected an address and a port or port range, such as 127.0.0.1:7882, \
             10.0.0.5:50000-50100 or [fd00::5]:7882 (port 0 is none)",
        )
    }
}

impl core::error::Error for LocalPeerParseError {}

impl LocalPeer {
    /// Parses `IP:PORT`, `IP:FIRST-LAST`, `[IPv6]:PORT` or `[IPv6]:FIRST-LAST`.
    ///
    /// ```
    /// use turn_core::server::policy::LocalPeer;
    /// let sfu = LocalPeer::parse("127.0.0.1:7882").unwrap();
    /// assert!(sfu.contains(&"127.0.0.1:7882".parse().unwrap()));
    /// assert!(!sfu.contains(&"127.0.0.1:3478".parse().unwrap()));
    /// let media = LocalPeer::parse("[fd00::5]:50000-50100").unwrap();
    /// assert!(media.contains(&"[fd00::5]:50042".parse().unwrap()));
    /// assert!(LocalPeer::parse("127.0.0.1").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<LocalPeer, LocalPeerParseError> {
        let (ip, ports) = match s.strip_prefix('[') {
            Some(rest) => rest.split_once("]:"),
            None => s.split_once(':'),
        }
        .ok_or(LocalPeerParseError)?;
        let ip: IpAddr = ip.parse().map_err(|_| LocalPeerParseError)?;
        let port = |p: &str| {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(LocalPeerParseError);
            }
            p.parse::<u16>().map_err(|_| LocalPeerParseError)
        };
        let (first, last) = match ports.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(ports)?, port(ports)?),
        };
        if first == 0 || first > last || ip.is_unspecified() || ip.is_multicast() {
            return Err(LocalPeerParseError);
        }
        Ok(LocalPeer {
            ip: ip.to_canonical(),
            first,
            last,
        })
    }

    /// Whether `addr` is one of its transport addresses.
    pub fn contains(&self, addr: &SocketAddr) -> bool {
        self.names_ip(addr.ip()) && (self.first..=self.last).contains(&addr.port())
    }

    /// Whether `ip` is its address: the same, or it wrapped as IPv4-mapped
    /// IPv6 (no other embedding: an entry names one address exactly).
    pub(crate) fn names_ip(&self, ip: IpAddr) -> bool {
        ip.to_canonical() == self.ip.to_canonical()
    }

    /// Whether it covers what `listener` listens on (a wildcard listener
    /// listens on every address): an entry must never open a TURN listener,
    /// an admin interface or a redirect port.
    pub fn covers_listener(&self, listener: SocketAddr) -> bool {
        (self.first..=self.last).contains(&listener.port())
            && (listener.ip().is_unspecified() || self.names_ip(listener.ip()))
    }

    /// Whether any of its ports lies in `first..=last`.
    pub(crate) fn overlaps(&self, first: u16, last: u16) -> bool {
        self.first <= last && first <= self.last
    }
}

impl core::fmt::Display for LocalPeer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let ip = self.ip;
        match (ip, self.first == self.last) {
            (IpAddr::V4(_), true) => write!(f, "{ip}:{}", self.first),
            (IpAddr::V4(_), false) => write!(f, "{ip}:{}-{}", self.first, self.last),
            (IpAddr::V6(_), true) => write!(f, "[{ip}]:{}", self.first),
            (IpAddr::V6(_), false) => write!(f, "[{ip}]:{}-{}", self.first, self.last),
        }
    }
}

/// The forms an address is judged in (see the module docs): up to three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forms([Option<IpAddr>; 3]);

impl Forms {
    fn of(items: [Option<IpAddr>; 3]) -> Forms {
        Forms(items)
    }

    /// Every form.
    pub(crate) fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.0.iter().flatten().copied()
    }
}

/// The forms of `ip`: the address itself unless it only wraps an IPv4 address,
/// and every IPv4 address it embeds.
pub(crate) fn forms(ip: IpAddr) -> Forms {
    let v6 = match ip {
        IpAddr::V4(_) => return Forms::of([Some(ip), None, None]),
        IpAddr::V6(a) => a,
    };
    let bits = v6.to_bits();
    let low32 = IpAddr::V4(Ipv4Addr::from_bits(bits as u32));
    let only = |v4: IpAddr| Forms::of([Some(v4), None, None]);
    let prefix96 = bits >> 32;
    if prefix96 == 0x0000_ffff || prefix96 == 0xffff_0000 {
        return only(low32); // ::ffff:a.b.c.d (mapped), ::ffff:0:a.b.c.d (translated)
    }
    if prefix96 == 0 && bits > 1 {
        return only(low32); // ::a.b.c.d (compatible); :: and ::1 are judged as IPv6
    }
    if prefix96 == 0x0064_ff9b_0000_0000_0000_0000 {
        return only(low32); // 64:ff9b::a.b.c.d (NAT64, well-known prefix)
    }
    if bits >> 112 == 0x2002 {
        // 2002:AABB:CCDD::/48 (6to4)
        return only(IpAddr::V4(Ipv4Addr::from_bits((bits >> 80) as u32)));
    }
    if bits >> 96 == 0x2001_0000 {
        // Teredo: server IPv4 in bits 32..64, client IPv4 obfuscated in the last 32.
        let server = IpAddr::V4(Ipv4Addr::from_bits((bits >> 64) as u32));
        let client = IpAddr::V4(Ipv4Addr::from_bits(!(bits as u32)));
        return Forms::of([Some(ip), Some(server), Some(client)]);
    }
    if (bits >> 32) as u32 & 0xfcff_ffff == 0x0000_5efe {
        return Forms::of([Some(ip), Some(low32), None]); // ISATAP interface id
    }
    Forms::of([Some(ip), None, None])
}

/// The address policies judge when one is needed: IPv6 forms that only wrap
/// IPv4 become that IPv4 (the first form).
pub(crate) fn normalize(ip: IpAddr) -> IpAddr {
    forms(ip)
        .iter()
        .last()
        .filter(|f| f.is_ipv4())
        .unwrap_or(ip)
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
    /// Denied because it is one of this server's own addresses (and not a live
    /// relayed address).
    DeniedOwnAddress,
}

/// Most own addresses a policy holds.
pub const OWN_MAX: usize = 32;
/// Most ranges in each of a policy's allow and deny lists.
pub const RANGES_MAX: usize = 32;
/// Most local peers a policy holds.
pub const LOCAL_MAX: usize = 16;

/// The peer policy: configured allow and deny lists over the built-in rules.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    /// Ranges that may be relayed to despite the built-in deny list.
    pub allow: heapless::Vec<Cidr, RANGES_MAX>,
    /// Extra ranges that are never relayed to (beats `allow`).
    pub deny: heapless::Vec<Cidr, RANGES_MAX>,
    /// This server's own addresses besides its relay and advertised addresses
    /// (which the server adds itself): listeners, the admin interface, the host's
    /// interface addresses when listening on a wildcard.
    pub own: heapless::Vec<IpAddr, OWN_MAX>,
    /// Exact transport addresses of this host clients may relay to (step 2 of
    /// the module docs), up to [`LOCAL_MAX`].
    pub local: heapless::Vec<LocalPeer, LOCAL_MAX>,
}

impl PeerPolicy {
    /// Adds `ip` to the own addresses (once); false when the list is full.
    pub fn add_own(&mut self, ip: IpAddr) -> bool {
        ip.is_unspecified() || self.own.contains(&ip) || self.own.push(ip).is_ok()
    }

    /// Whether `ip`, in any of its forms, is one of the own addresses.
    pub(crate) fn is_own(&self, ip: IpAddr) -> bool {
        forms(ip)
            .iter()
            .any(|f| self.own.iter().any(|o| *o == f || normalize(*o) == f))
    }

    /// Whether `peer` is an exact local peer (step 2 of the module docs).
    pub(crate) fn allows_local(&self, peer: SocketAddr) -> bool {
        self.local.iter().any(|l| l.contains(&peer))
    }

    /// Whether a local peer entry names `ip` (whose permissions are then kept
    /// per transport address).
    pub(crate) fn names_local_ip(&self, ip: IpAddr) -> bool {
        self.local.iter().any(|l| l.names_ip(ip))
    }

    /// Judges `peer`; `live_relayed` says whether an address is a relayed
    /// transport address of this server that is bound right now.
    pub fn check(
        &self,
        peer: SocketAddr,
        live_relayed: impl FnOnce(SocketAddr) -> bool,
    ) -> Verdict {
        if live_relayed(peer) || self.allows_local(peer) {
            return Verdict::Allow;
        }
        let forms = forms(peer.ip());
        if self.is_own(peer.ip()) {
            return Verdict::DeniedOwnAddress;
        }
        if forms
            .iter()
            .any(|f| self.deny.iter().any(|c| c.contains(&f)))
        {
            return Verdict::DeniedByConfig;
        }
        let denied = |f: IpAddr| {
            !self.allow.iter().any(|c| c.contains(&f))
                && DEFAULT_DENY.iter().any(|c| c.contains(&f))
        };
        if forms.iter().any(denied) {
            return Verdict::DeniedByDefault;
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
            "[::ffff:0:10.0.0.1]:1", // IPv4-translated (SIIT)
            "[::ffff:0:169.254.169.254]:1",
            "[64:ff9b::a9fe:a9fe]:1",
            "[64:ff9b:1::8.8.8.8]:1", // local-use NAT64: not known, denied
            "[64:ff9b:1:ffff::1]:1",
            "[2002:c0a8:0101::1]:1",
            "[2001:0:4136:e378:8000:63bf:f5ff:fffe]:1", // Teredo client 10.0.0.1
            "[2001:0:0a00:0001:8000:63bf:f7f7:f7f7]:1", // Teredo server 10.0.0.1, client 8.8.8.8
            "[2001:4860::5efe:10.0.0.1]:1",             // ISATAP interface id
            "[2001:4860::200:5efe:127.0.0.1]:1",        // ISATAP, global bit
            "[fe80::5efe:8.8.8.8]:1",                   // ISATAP on link-local
            "[::1]:1",
            "[::]:1",
        ] {
            assert_ne!(pol.check(p(a), none), Verdict::Allow, "{a}");
        }
        for a in [
            "[2001:4860::8888]:1",
            "[::ffff:8.8.8.8]:1",
            "[::ffff:0:8.8.8.8]:1",
            "[2001:4860::5efe:8.8.8.8]:1",
            "[2001:0:0808:0808:8000:63bf:f7f7:f7f7]:1", // Teredo 8.8.8.8 / 8.8.8.8
        ] {
            assert_eq!(pol.check(p(a), none), Verdict::Allow, "{a}");
        }
        assert_eq!(
            normalize("::ffff:0:1.2.3.4".parse().unwrap()),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn precedence() {
        let mut pol = PeerPolicy::default();
        pol.allow.push(Cidr::parse("10.0.0.0/8").unwrap()).unwrap();
        pol.allow
            .push(Cidr::parse("93.184.0.0/16").unwrap())
            .unwrap();
        pol.deny.push(Cidr::parse("10.9.0.0/16").unwrap()).unwrap();
        assert!(pol.add_own("10.0.0.5".parse().unwrap()));
        assert!(pol.add_own("93.184.216.34".parse().unwrap()));
        let none = |_| false;
        assert_eq!(pol.check(p("10.1.1.1:5000"), none), Verdict::Allow);
        assert_eq!(pol.check(p("10.9.1.1:5000"), none), Verdict::DeniedByConfig);
        // Own addresses lose nothing to an allow entry that covers them.
        assert_eq!(
            pol.check(p("10.0.0.5:3478"), none),
            Verdict::DeniedOwnAddress
        );
        assert_eq!(
            pol.check(p("93.184.216.34:1"), none),
            Verdict::DeniedOwnAddress
        );
        assert_eq!(
            pol.check(p("[::ffff:93.184.216.34]:1"), none),
            Verdict::DeniedOwnAddress
        );
        // A live relayed address is allowed; the same IP's other ports are not.
        let live = |a: SocketAddr| a == p("93.184.216.34:24001");
        assert_eq!(pol.check(p("93.184.216.34:24001"), live), Verdict::Allow);
        assert_eq!(
            pol.check(p("93.184.216.34:24002"), live),
            Verdict::DeniedOwnAddress
        );
        assert_eq!(
            pol.check(p("[::ffff:93.184.216.34]:24001"), live),
            Verdict::DeniedOwnAddress,
            "relayed addresses are judged as given, not in a wrapped form"
        );
        // Allowing a Teredo client's IPv4 is not enough when its server is denied.
        let mut pol = PeerPolicy::default();
        pol.allow.push(Cidr::parse("8.8.8.0/24").unwrap()).unwrap();
        assert_eq!(
            pol.check(p("[2001:0:0a00:0001:8000:63bf:f7f7:f7f7]:1"), none),
            Verdict::DeniedByDefault
        );
        assert!(!pol.add_own("0.0.0.0".parse().unwrap()) || pol.own.is_empty());
    }

    #[test]
    fn a_local_peer_beats_own_and_built_in_rules_on_its_ports_alone() {
        let mut pol = PeerPolicy::default();
        assert!(pol.add_own("127.0.0.1".parse().unwrap()));
        pol.local
            .push(LocalPeer::parse("127.0.0.1:7882").unwrap())
            .unwrap();
        pol.local
            .push(LocalPeer::parse("[::ffff:10.0.0.5]:50000-50002").unwrap())
            .unwrap();
        let none = |_| false;
        assert_eq!(pol.check(p("127.0.0.1:7882"), none), Verdict::Allow);
        assert_eq!(
            pol.check(p("[::ffff:127.0.0.1]:7882"), none),
            Verdict::Allow
        );
        assert_eq!(
            pol.check(p("127.0.0.1:3478"), none),
            Verdict::DeniedOwnAddress
        );
        assert_eq!(pol.check(p("10.0.0.5:50002"), none), Verdict::Allow);
        assert_eq!(
            pol.check(p("10.0.0.5:50003"), none),
            Verdict::DeniedByDefault
        );
        assert!(pol.names_local_ip("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!pol.names_local_ip("127.0.0.2".parse().unwrap()));
        for bad in [
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:9-8",
            "0.0.0.0:5",
            "[::]:5",
            "127.0.0.1:+5",
            "127.0.0.1:70000",
            "fd00::5:7882",
        ] {
            assert!(LocalPeer::parse(bad).is_err(), "{bad}");
        }
        let mut text: heapless::String<32> = heapless::String::new();
        use core::fmt::Write;
        write!(text, "{}", LocalPeer::parse("[fd00::5]:1-2").unwrap()).unwrap();
        assert_eq!(text, "[fd00::5]:1-2");
    }
}
