//! The PROXY protocol (HAProxy's, versions 1 and 2), by which a TCP load balancer
//! in front says who its client really is: a header before the connection's own
//! bytes. A zero-copy view over the caller's buffer; the caller trusts it only on
//! connections from its configured load balancers, and on those requires it.
//!
//! - **v2**: the 12-byte signature, version 2 with `PROXY` (addresses follow) or
//!   `LOCAL` (the balancer's own health check: keep the connection's address), an
//!   address family (IPv4 or IPv6 over TCP or UDP, or unspecified), a length,
//!   the addresses, then TLVs, skipped. Headers longer than [`V2_MAX`] are refused:
//!   a balancer adds a few TLVs, not kilobytes.
//! - **v1**: one text line, `PROXY TCP4|TCP6 src dst sport dport\r\n` or
//!   `PROXY UNKNOWN ...\r\n`, at most 107 bytes.
//!
//! ```
//! use proxy_core::proxy_protocol::{parse, Header};
//! let buf = b"PROXY TCP4 198.51.100.7 192.0.2.1 56324 443\r\nGET / HTTP/1.1\r\n";
//! let Ok(Header::Proxy { len, source, .. }) = parse(buf) else { panic!() };
//! assert_eq!(source.to_string(), "198.51.100.7:56324");
//! assert!(buf[len..].starts_with(b"GET"));
//! ```

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::str::FromStr;

/// The v2 header's first 12 bytes.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 line, CRLF included (the specification's limit).
pub(crate) const V1_MAX: usize = 107;
/// Longest v2 header accepted: 16 bytes, IPv6 addresses, and TLVs to 512 bytes.
pub const V2_MAX: usize = 16 + 36 + 512;

/// What a buffer starting a connection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Header {
    /// Not all of the header has arrived; read more.
    NeedMore,
    /// A connection relayed for `source` (the client), which connected to
    /// `destination`; the connection's own bytes start at `len`.
    Proxy {
        /// The header's length.
        len: usize,
        /// The client's address.
        source: SocketAddr,
        /// The address the client connected to (the balancer's front).
        destination: SocketAddr,
    },
    /// The balancer's own connection (v2 `LOCAL`, v1 `UNKNOWN`, or an
    /// unspecified family): keep the connection's address; its bytes start at
    /// `len`.
    Local {
        /// The header's length.
        len: usize,
    },
}

/// Why a header is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ProxyHeaderError {
    /// The connection does not start with a PROXY header.
    Missing,
    /// A v1 line that is not `PROXY <family> <addresses> <ports>`.
    BadLine,
    /// A v1 line without CRLF within its 107 bytes.
    LineTooLong,
    /// A v2 version other than 2, or a command other than LOCAL or PROXY.
    BadVersion,
    /// A v2 family or protocol it does not know (UNIX sockets included).
    UnsupportedFamily,
    /// A v2 length too short for its addresses, or longer than [`V2_MAX`].
    BadLength,
}

impl ProxyHeaderError {
    /// What is wrong, for a log line.
    pub const fn as_str(&self) -> &'static str {
        match self {
            ProxyHeaderError::Missing => "no PROXY protocol header",
            ProxyHeaderError::BadLine => "malformed PROXY v1 line",
            ProxyHeaderError::LineTooLong => "PROXY v1 line longer than 107 bytes",
            ProxyHeaderError::BadVersion => "PROXY v2 header of an unknown version or command",
            ProxyHeaderError::UnsupportedFamily => "PROXY v2 header of an unsupported family",
            ProxyHeaderError::BadLength => "PROXY v2 header of a bad length",
        }
    }
}

impl fmt::Display for ProxyHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::error::Error for ProxyHeaderError {}

/// Whether `buf` starts (or, being short, may start) like a PROXY header: to
/// tell an operator that a balancer not configured as one sent it.
pub(crate) fn looks_like(buf: &[u8]) -> bool {
    let n = buf.len().min(V2_SIGNATURE.len());
    let v1 = b"PROXY ";
    let m = buf.len().min(v1.len());
    n > 0 && (buf.get(..n) == V2_SIGNATURE.get(..n) || buf.get(..m) == v1.get(..m))
}

/// Parses the PROXY header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Header, ProxyHeaderError> {
    if buf.is_empty() {
        return Ok(Header::NeedMore);
    }
    if !looks_like(buf) {
        return Err(ProxyHeaderError::Missing);
    }
    if buf.first() == Some(&b'P') {
        v1(buf)
    } else {
        v2(buf)
    }
}

fn v1(buf: &[u8]) -> Result<Header, ProxyHeaderError> {
    let window = buf.get(..buf.len().min(V1_MAX)).unwrap_or_default();
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(ProxyHeaderError::LineTooLong)
        } else {
            Ok(Header::NeedMore)
        };
    };
    let len = end + 2;
    let line = window
        .get(..end)
        .and_then(|l| core::str::from_utf8(l).ok())
        .ok_or(ProxyHeaderError::BadLine)?;
    let mut words = line.split(' ');
    if words.next() != Some("PROXY") {
        return Err(ProxyHeaderError::BadLine);
    }
    let v6 = match words.next() {
        Some("TCP4") => false,
        Some("TCP6") => true,
        Some("UNKNOWN") => return Ok(Header::Local { len }),
        _ => return Err(ProxyHeaderError::BadLine),
    };
    let mut next = || words.next().ok_or(ProxyHeaderError::BadLine);
    let (src, dst, sport, dport) = (next()?, next()?, next()?, next()?);
    if words.next().is_some() {
        return Err(ProxyHeaderError::BadLine);
    }
    let ip = |s: &str| -> Result<IpAddr, ProxyHeaderError> {
        let ip = if v6 {
            Ipv6Addr::from_str(s).map(IpAddr::V6)
        } else {
            Ipv4Addr::from_str(s).map(IpAddr::V4)
        };
        ip.map_err(|_| ProxyHeaderError::BadLine)
    };
    let port = |s: &str| -> Result<u16, ProxyHeaderError> {
        // Decimal without a sign or leading zeros, as the specification writes.
        if s.is_empty() || s.len() > 5 || (s.len() > 1 && s.starts_with('0')) {
            return Err(ProxyHeaderError::BadLine);
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProxyHeaderError::BadLine);
        }
        u16::from_str(s).map_err(|_| ProxyHeaderError::BadLine)
    };
    Ok(Header::Proxy {
        len,
        source: SocketAddr::new(ip(src)?, port(sport)?),
        destination: SocketAddr::new(ip(dst)?, port(dport)?),
    })
}

fn v2(buf: &[u8]) -> Result<Header, ProxyHeaderError> {
    let Some(head) = buf.get(..16) else {
        return Ok(Header::NeedMore);
    };
    let field = |i: usize| head.get(i).copied().unwrap_or(0);
    let (ver_cmd, family) = (field(12), field(13));
    let body = usize::from(u16::from_be_bytes([field(14), field(15)]));
    let len = 16 + body;
    if ver_cmd >> 4 != 2 || ver_cmd & 0x0f > 1 {
        return Err(ProxyHeaderError::BadVersion);
    }
    if len > V2_MAX {
        return Err(ProxyHeaderError::BadLength);
    }
    let Some(addrs) = buf.get(16..len) else {
        return Ok(Header::NeedMore);
    };
    if ver_cmd & 0x0f == 0 {
        return Ok(Header::Local { len });
    }
    let (source, destination) = match family {
        // AF_UNSPEC: the receiver keeps the connection's own address.
        0x00 => return Ok(Header::Local { len }),
        // AF_INET, over TCP or UDP.
        0x11 | 0x12 => {
            let a = addrs.get(..12).ok_or(ProxyHeaderError::BadLength)?;
            let ip = |i: usize| {
                let b = a.get(i..i + 4).unwrap_or(&[0; 4]);
                IpAddr::V4(Ipv4Addr::new(
                    b.first().copied().unwrap_or(0),
                    b.get(1).copied().unwrap_or(0),
                    b.get(2).copied().unwrap_or(0),
                    b.get(3).copied().unwrap_or(0),
                ))
            };
            (
                SocketAddr::new(ip(0), be16(a, 8)),
                SocketAddr::new(ip(4), be16(a, 10)),
            )
        }
        // AF_INET6, over TCP or UDP.
        0x21 | 0x22 => {
            let a = addrs.get(..36).ok_or(ProxyHeaderError::BadLength)?;
            let ip = |i: usize| {
                let mut o = [0u8; 16];
                if let Some(b) = a.get(i..i + 16) {
                    o.copy_from_slice(b);
                }
                IpAddr::V6(Ipv6Addr::from(o))
            };
            (
                SocketAddr::new(ip(0), be16(a, 32)),
                SocketAddr::new(ip(16), be16(a, 34)),
            )
        }
        _ => return Err(ProxyHeaderError::UnsupportedFamily),
    };
    Ok(Header::Proxy {
        len,
        source,
        destination,
    })
}

fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([
        b.get(i).copied().unwrap_or(0),
        b.get(i + 1).copied().unwrap_or(0),
    ])
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn v2_header(cmd: u8, family: u8, addrs: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | cmd);
        h.push(family);
        h.extend_from_slice(&((addrs.len() + tlvs.len()) as u16).to_be_bytes());
        h.extend_from_slice(addrs);
        h.extend_from_slice(tlvs);
        h
    }

    #[test]
    fn v1_both_families_and_unknown() {
        let b = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 443\r\nrest";
        assert_eq!(
            parse(b),
            Ok(Header::Proxy {
                len: b.len() - 4,
                source: "[2001:db8::7]:4000".parse().unwrap(),
                destination: "[2001:db8::1]:443".parse().unwrap(),
            })
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"),
            Ok(Header::Local { len: 35 })
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Ok(Header::Local { len: 15 }));
    }

    #[test]
    fn v1_refusals_and_partial_lines() {
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4"), Ok(Header::NeedMore));
        assert_eq!(parse(b"PRO"), Ok(Header::NeedMore));
        assert_eq!(parse(b""), Ok(Header::NeedMore));
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"[..],
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert_eq!(parse(bad), Err(ProxyHeaderError::BadLine), "{bad:?}");
        }
        let long = [b'P', b'R', b'O', b'X', b'Y', b' ']
            .into_iter()
            .chain(core::iter::repeat_n(b'1', 200))
            .collect::<Vec<_>>();
        assert_eq!(parse(&long), Err(ProxyHeaderError::LineTooLong));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(ProxyHeaderError::Missing));
        assert_eq!(parse(&[0x16, 3, 1]), Err(ProxyHeaderError::Missing));
    }

    #[test]
    fn v2_both_families_local_and_tlvs_skipped() {
        let mut a4 = Vec::new();
        a4.extend_from_slice(&[198, 51, 100, 7, 192, 0, 2, 1]);
        a4.extend_from_slice(&56324u16.to_be_bytes());
        a4.extend_from_slice(&443u16.to_be_bytes());
        let tlv = [0x04, 0x00, 0x02, 0xAB, 0xCD]; // PP2_TYPE_NOOP
        let mut h = v2_header(1, 0x11, &a4, &tlv);
        let header_len = h.len();
        h.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(
            parse(&h),
            Ok(Header::Proxy {
                len: header_len,
                source: "198.51.100.7:56324".parse().unwrap(),
                destination: "192.0.2.1:443".parse().unwrap(),
            })
        );
        let mut a6 = Vec::new();
        a6.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        a6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        a6.extend_from_slice(&[0x0f, 0xa0, 0x01, 0xbb]);
        let h = v2_header(1, 0x21, &a6, &[]);
        let Ok(Header::Proxy { source, .. }) = parse(&h) else {
            panic!()
        };
        assert_eq!(source, "[2001:db8::7]:4000".parse().unwrap());
        // LOCAL, and PROXY of an unspecified family: the balancer's own.
        assert_eq!(
            parse(&v2_header(0, 0x11, &a4, &[])),
            Ok(Header::Local { len: 28 })
        );
        assert_eq!(
            parse(&v2_header(1, 0x00, &[], &[])),
            Ok(Header::Local { len: 16 })
        );
        // Every prefix is NeedMore.
        for n in 1..h.len() {
            assert_eq!(parse(&h[..n]), Ok(Header::NeedMore), "{n}");
        }
    }

    #[test]
    fn v2_refusals() {
        let a4 = [0u8; 12];
        let mut bad_version = v2_header(1, 0x11, &a4, &[]);
        bad_version[12] = 0x11;
        assert_eq!(parse(&bad_version), Err(ProxyHeaderError::BadVersion));
        let mut bad_cmd = v2_header(1, 0x11, &a4, &[]);
        bad_cmd[12] = 0x22;
        assert_eq!(parse(&bad_cmd), Err(ProxyHeaderError::BadVersion));
        assert_eq!(
            parse(&v2_header(1, 0x31, &[0; 216], &[])),
            Err(ProxyHeaderError::UnsupportedFamily)
        );
        assert_eq!(
            parse(&v2_header(1, 0x21, &a4, &[])),
            Err(ProxyHeaderError::BadLength),
            "IPv6 in 12 bytes"
        );
        assert_eq!(
            parse(&v2_header(1, 0x11, &a4, &[0; 600])),
            Err(ProxyHeaderError::BadLength)
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_stays_in_bounds(bytes in proptest::collection::vec(0u8..=255, 0..700), sig: bool) {
            let mut b = if sig { V2_SIGNATURE.to_vec() } else { b"PROXY ".to_vec() };
            b.extend_from_slice(&bytes);
            if let Ok(Header::Proxy { len, .. } | Header::Local { len }) = parse(&b) {
                proptest::prop_assert!(len <= b.len());
            }
        }
    }
}
