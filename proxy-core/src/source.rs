//! The source a per-address limit counts. An IPv4 address is one source; an
//! IPv6 client holds a whole network (a /64 per subscriber is the rule), so
//! counting each address would let one client open as many connections as it
//! has addresses: IPv6 sources are their network of a prefix length, /64 by
//! default. IPv4-mapped IPv6 addresses count as their IPv4 address.
//!
//! ```
//! use proxy_core::source::{source_key, DEFAULT_V6_PREFIX};
//! let a = source_key("2001:db8:1:2::10".parse().unwrap(), DEFAULT_V6_PREFIX);
//! let b = source_key("2001:db8:1:2:ffff::1".parse().unwrap(), DEFAULT_V6_PREFIX);
//! assert_eq!(a, b, "one /64, one source");
//! assert_eq!(a.to_string(), "2001:db8:1:2::");
//! assert_eq!(source_key("::ffff:192.0.2.7".parse().unwrap(), 64).to_string(), "192.0.2.7");
//! ```

use core::net::{IpAddr, Ipv6Addr};

/// The prefix length an IPv6 source is counted by, by default.
pub const DEFAULT_V6_PREFIX: u8 = 64;

/// The source `ip` counts as: itself for IPv4, its network of `v6_prefix` bits
/// (clamped to 128) for IPv6.
pub fn source_key(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let prefix = u32::from(v6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_from_none_to_all() {
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(source_key(ip, 128), ip);
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(source_key(ip, 0), v6("::"));
        assert_eq!(source_key(ip, 200), ip, "clamped");
        assert_eq!(source_key(ip, 32), v6("2001:db8::"));
        let v4: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(source_key(v4, 0), v4, "IPv4 is always the address");
    }
}
