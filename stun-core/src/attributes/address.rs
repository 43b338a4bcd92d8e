//! Address attributes: MAPPED-ADDRESS, ALTERNATE-SERVER, RESPONSE-ORIGIN and
//! OTHER-ADDRESS in the clear, and XOR-MAPPED-ADDRESS, XOR-PEER-ADDRESS and
//! XOR-RELAYED-ADDRESS obfuscated with the magic cookie and transaction id
//! (RFC 8489 §14.1-14.2). IPv4 and IPv6.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Attribute, AttributeType, bad_length, written};
use crate::error::{AttributeError, AttributeErrorKind, EncodeError};
use crate::header::{MAGIC_COOKIE, TransactionId};
use crate::wire;

/// Family byte for IPv4.
pub const FAMILY_IPV4: u8 = 0x01;
/// Family byte for IPv6.
pub const FAMILY_IPV6: u8 = 0x02;

const IPV4_LEN: usize = 8;
const IPV6_LEN: usize = 20;

/// The 16 bytes that an IPv6 address is XORed with: cookie then transaction id.
fn xor_key(tid: &TransactionId) -> [u8; 16] {
    let mut key = [0u8; 16];
    for (k, b) in key
        .iter_mut()
        .zip(MAGIC_COOKIE.to_be_bytes().iter().chain(tid.as_bytes()))
    {
        *k = *b;
    }
    key
}

/// Decodes an address value; `xor` carries the transaction id for the XOR forms.
fn decode(
    attribute: AttributeType,
    value: &[u8],
    xor: Option<&TransactionId>,
) -> Result<SocketAddr, AttributeError> {
    let family = *value
        .get(1)
        .ok_or_else(|| bad_length(attribute, value.len()))?;
    let mut port = wire::u16_at(value, 2).ok_or_else(|| bad_length(attribute, value.len()))?;
    if xor.is_some() {
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    let ip = match family {
        FAMILY_IPV4 => {
            if value.len() != IPV4_LEN {
                return Err(bad_length(attribute, value.len()));
            }
            let mut raw =
                wire::u32_at(value, 4).ok_or_else(|| bad_length(attribute, value.len()))?;
            if xor.is_some() {
                raw ^= MAGIC_COOKIE;
            }
            IpAddr::V4(Ipv4Addr::from(raw))
        }
        FAMILY_IPV6 => {
            let raw: [u8; 16] = value
                .get(4..IPV6_LEN)
                .filter(|_| value.len() == IPV6_LEN)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| bad_length(attribute, value.len()))?;
            let mut octets = raw;
            if let Some(tid) = xor {
                for (o, k) in octets.iter_mut().zip(xor_key(tid)) {
                    *o ^= k;
                }
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        found => {
            return Err(AttributeError::new(
                attribute,
                AttributeErrorKind::AddressFamily { found },
            ));
        }
    };
    Ok(SocketAddr::new(ip, port))
}

const fn len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => IPV4_LEN,
        SocketAddr::V6(_) => IPV6_LEN,
    }
}

fn encode(
    attribute: AttributeType,
    addr: &SocketAddr,
    out: &mut [u8],
    xor: Option<&TransactionId>,
) -> Result<(), EncodeError> {
    let mut port = addr.port();
    if xor.is_some() {
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    let res = (|| {
        wire::put_u16(out, 2, port)?;
        match addr.ip() {
            IpAddr::V4(ip) => {
                wire::put(out, 0, &[0, FAMILY_IPV4])?;
                let mut raw = u32::from(ip);
                if xor.is_some() {
                    raw ^= MAGIC_COOKIE;
                }
                wire::put_u32(out, 4, raw)
            }
            IpAddr::V6(ip) => {
                wire::put(out, 0, &[0, FAMILY_IPV6])?;
                let mut octets = ip.octets();
                if let Some(tid) = xor {
                    for (o, k) in octets.iter_mut().zip(xor_key(tid)) {
                        *o ^= k;
                    }
                }
                wire::put(out, 4, &octets)
            }
        }
    })();
    written(res, attribute)
}

macro_rules! address_attribute {
    ($(#[$doc:meta])* $name:ident, $ty:ident, $xor:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(pub SocketAddr);

        impl<'a> Attribute<'a> for $name {
            const TYPE: AttributeType = AttributeType::$ty;

            fn decode(value: &'a [u8], tid: &TransactionId) -> Result<Self, AttributeError> {
                decode(Self::TYPE, value, $xor.then_some(tid)).map($name)
            }

            fn value_len(&self) -> usize {
                len(&self.0)
            }

            fn encode_value(&self, out: &mut [u8], tid: &TransactionId) -> Result<(), EncodeError> {
                encode(Self::TYPE, &self.0, out, $xor.then_some(tid))
            }
        }

        #[cfg(feature = "defmt")]
        impl defmt::Format for $name {
            fn format(&self, f: defmt::Formatter<'_>) {
                match self.0 {
                    SocketAddr::V4(a) => {
                        let o = a.ip().octets();
                        defmt::write!(f, "{}.{}.{}.{}:{}", o[0], o[1], o[2], o[3], a.port())
                    }
                    SocketAddr::V6(a) => defmt::write!(f, "[{=[u8]:x}]:{}", a.ip().octets(), a.port()),
                }
            }
        }
    };
}

address_attribute!(
    /// MAPPED-ADDRESS: the client's reflexive address in the clear (RFC 3489 clients).
    MappedAddress, MAPPED_ADDRESS, false
);
address_attribute!(
    /// ALTERNATE-SERVER: the server to try instead, with error 300 (Try Alternate).
    AlternateServer, ALTERNATE_SERVER, false
);
address_attribute!(
    /// RESPONSE-ORIGIN: the address a response was sent from (RFC 5780).
    ResponseOrigin, RESPONSE_ORIGIN, false
);
address_attribute!(
    /// OTHER-ADDRESS: the server's alternate address (RFC 5780).
    OtherAddress, OTHER_ADDRESS, false
);
address_attribute!(
    /// XOR-MAPPED-ADDRESS: the client's reflexive transport address.
    XorMappedAddress, XOR_MAPPED_ADDRESS, true
);
address_attribute!(
    /// XOR-PEER-ADDRESS: a peer's address as seen from the TURN server.
    XorPeerAddress, XOR_PEER_ADDRESS, true
);
address_attribute!(
    /// XOR-RELAYED-ADDRESS: the relayed transport address the server allocated.
    XorRelayedAddress, XOR_RELAYED_ADDRESS, true
);

#[cfg(test)]
mod test {
    use super::*;

    const TID: TransactionId = TransactionId::new([
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ]);

    #[test]
    fn xor_ipv4_rfc5769() {
        // RFC 5769 §2.2: 192.0.2.1 port 32853.
        let value = [0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43];
        let a = XorMappedAddress::decode(&value, &TID).unwrap();
        assert_eq!(a.0, "192.0.2.1:32853".parse().unwrap());
        let mut out = [0u8; 8];
        a.encode_value(&mut out, &TID).unwrap();
        assert_eq!(out, value);
    }

    #[test]
    fn xor_ipv6_rfc5769() {
        // RFC 5769 §2.3: 2001:db8:1234:5678:11:2233:4455:6677 port 32853.
        let value = [
            0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25,
            0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
        ];
        let a = XorMappedAddress::decode(&value, &TID).unwrap();
        assert_eq!(
            a.0,
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                .parse()
                .unwrap()
        );
        let mut out = [0u8; 20];
        a.encode_value(&mut out, &TID).unwrap();
        assert_eq!(out, value);
    }

    #[test]
    fn plain_address() {
        let value = [0x00, 0x01, 0x0d, 0x96, 192, 0, 2, 7];
        let a = MappedAddress::decode(&value, &TID).unwrap();
        assert_eq!(a.0, "192.0.2.7:3478".parse().unwrap());
    }

    #[test]
    fn malformed_addresses() {
        assert_eq!(
            XorPeerAddress::decode(&[0, 1, 0, 0, 1, 2, 3], &TID)
                .unwrap_err()
                .kind,
            AttributeErrorKind::Length { found: 7 }
        );
        assert_eq!(
            XorPeerAddress::decode(&[0, 2, 0, 0, 1, 2, 3, 4], &TID)
                .unwrap_err()
                .kind,
            AttributeErrorKind::Length { found: 8 }
        );
        assert_eq!(
            XorPeerAddress::decode(&[0, 3, 0, 0, 1, 2, 3, 4], &TID)
                .unwrap_err()
                .kind,
            AttributeErrorKind::AddressFamily { found: 3 }
        );
        assert!(XorPeerAddress::decode(&[], &TID).is_err());
        assert!(XorPeerAddress::decode(&[0, 1], &TID).is_err());
    }
}
