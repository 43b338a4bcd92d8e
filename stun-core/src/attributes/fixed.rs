//! Fixed-size attributes: numbers, flags and tokens of TURN (RFC 8656, RFC 6062) and
//! ICE (RFC 8445). Reserved bits are written as zero and ignored when read.

use super::{Attribute, AttributeType, bad_length, written};
use crate::error::{AttributeError, AttributeErrorKind, EncodeError};
use crate::header::TransactionId;
use crate::wire;

/// Decodes a value that must be exactly `N` bytes.
fn exact<const N: usize>(
    attribute: AttributeType,
    value: &[u8],
) -> Result<[u8; N], AttributeError> {
    value
        .try_into()
        .map_err(|_| bad_length(attribute, value.len()))
}

macro_rules! number_attribute {
    ($(#[$doc:meta])* $name:ident($int:ty), $ty:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub struct $name(pub $int);

        impl<'a> Attribute<'a> for $name {
            const TYPE: AttributeType = AttributeType::$ty;

            fn decode(value: &'a [u8], _: &TransactionId) -> Result<Self, AttributeError> {
                exact(Self::TYPE, value).map(|b| $name(<$int>::from_be_bytes(b)))
            }

            fn value_len(&self) -> usize {
                core::mem::size_of::<$int>()
            }

            fn encode_value(&self, out: &mut [u8], _: &TransactionId) -> Result<(), EncodeError> {
                written(wire::put(out, 0, &self.0.to_be_bytes()), Self::TYPE)
            }
        }
    };
}

number_attribute!(
    /// LIFETIME: seconds an allocation should live (0 in a Refresh deletes it).
    Lifetime(u32), LIFETIME
);
number_attribute!(
    /// PRIORITY: the ICE priority of the peer-reflexive candidate.
    Priority(u32), PRIORITY
);
number_attribute!(
    /// CONNECTION-ID: identifies a peer TCP connection (RFC 6062).
    ConnectionId(u32), CONNECTION_ID
);
number_attribute!(
    /// ICE-CONTROLLED: the agent is controlled; carries its tie-breaker.
    IceControlled(u64), ICE_CONTROLLED
);
number_attribute!(
    /// ICE-CONTROLLING: the agent is controlling; carries its tie-breaker.
    IceControlling(u64), ICE_CONTROLLING
);

macro_rules! flag_attribute {
    ($(#[$doc:meta])* $name:ident, $ty:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub struct $name;

        impl<'a> Attribute<'a> for $name {
            const TYPE: AttributeType = AttributeType::$ty;

            fn decode(value: &'a [u8], _: &TransactionId) -> Result<Self, AttributeError> {
                exact::<0>(Self::TYPE, value).map(|_| $name)
            }

            fn value_len(&self) -> usize {
                0
            }

            fn encode_value(&self, _: &mut [u8], _: &TransactionId) -> Result<(), EncodeError> {
                Ok(())
            }
        }
    };
}

flag_attribute!(
    /// DONT-FRAGMENT: the client asks that the relay set the DF bit toward peers.
    DontFragment, DONT_FRAGMENT
);
flag_attribute!(
    /// USE-CANDIDATE: the controlling ICE agent nominates this pair.
    UseCandidate, USE_CANDIDATE
);

/// CHANNEL-NUMBER: the channel of a ChannelBind (0x4000..=0x4FFF when valid; the
/// codec returns whatever number is on the wire and TURN checks the range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ChannelNumber(pub u16);

impl<'a> Attribute<'a> for ChannelNumber {
    const TYPE: AttributeType = AttributeType::CHANNEL_NUMBER;

    fn decode(value: &'a [u8], _: &TransactionId) -> Result<Self, AttributeError> {
        let b: [u8; 4] = exact(Self::TYPE, value)?;
        Ok(ChannelNumber(u16::from_be_bytes([b[0], b[1]])))
    }

    fn value_len(&self) -> usize {
        4
    }

    fn encode_value(&self, out: &mut [u8], _: &TransactionId) -> Result<(), EncodeError> {
        written(wire::put_u32(out, 0, u32::from(self.0) << 16), Self::TYPE)
    }
}

/// REQUESTED-TRANSPORT: the transport protocol of the relayed address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RequestedTransport {
    /// The IANA protocol number (17 for UDP, 6 for TCP).
    pub protocol: u8,
}

impl RequestedTransport {
    /// UDP (protocol 17).
    pub const UDP: RequestedTransport = RequestedTransport { protocol: 17 };
    /// TCP (protocol 6, RFC 6062).
    pub const TCP: RequestedTransport = RequestedTransport { protocol: 6 };
}

impl<'a> Attribute<'a> for RequestedTransport {
    const TYPE: AttributeType = AttributeType::REQUESTED_TRANSPORT;

    fn decode(value: &'a [u8], _: &TransactionId) -> Result<Self, AttributeError> {
        let b: [u8; 4] = exact(Self::TYPE, value)?;
        Ok(RequestedTransport { protocol: b[0] })
    }

    fn value_len(&self) -> usize {
        4
    }

    fn encode_value(&self, out: &mut [u8], _: &TransactionId) -> Result<(), EncodeError> {
        written(wire::put(out, 0, &[self.protocol, 0, 0, 0]), Self::TYPE)
    }
}

/// An address family as carried by REQUESTED-ADDRESS-FAMILY and
/// ADDITIONAL-ADDRESS-FAMILY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AddressFamily {
    /// IPv4 (0x01).
    Ipv4,
    /// IPv6 (0x02).
    Ipv6,
}

impl AddressFamily {
    /// The wire value.
    pub const fn to_wire(self) -> u8 {
        match self {
            AddressFamily::Ipv4 => super::address::FAMILY_IPV4,
            AddressFamily::Ipv6 => super::address::FAMILY_IPV6,
        }
    }

    /// The family of an address.
    pub const fn of(addr: &core::net::IpAddr) -> AddressFamily {
        match addr {
            core::net::IpAddr::V4(_) => AddressFamily::Ipv4,
            core::net::IpAddr::V6(_) => AddressFamily::Ipv6,
        }
    }
}

/// Decodes a 4-byte family value. An unknown family yields
/// [`AttributeErrorKind::AddressFamily`], which TURN answers with 440.
fn decode_family(attribute: AttributeType, value: &[u8]) -> Result<AddressFamily, AttributeError> {
    let b: [u8; 4] = exact(attribute, value)?;
    match b[0] {
        super::address::FAMILY_IPV4 => Ok(AddressFamily::Ipv4),
        super::address::FAMILY_IPV6 => Ok(AddressFamily::Ipv6),
        found => Err(AttributeError::new(
            attribute,
            AttributeErrorKind::AddressFamily { found },
        )),
    }
}

macro_rules! family_attribute {
    ($(#[$doc:meta])* $name:ident, $ty:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub struct $name(pub AddressFamily);

        impl<'a> Attribute<'a> for $name {
            const TYPE: AttributeType = AttributeType::$ty;

            fn decode(value: &'a [u8], _: &TransactionId) -> Result<Self, AttributeError> {
                decode_family(Self::TYPE, value).map($name)
            }

            fn value_len(&self) -> usize {
                4
            }

            fn encode_value(&self, out: &mut [u8], _: &TransactionId) -> Result<(), EncodeError> {
                written(wire::put(out, 0, &[self.0.to_wire(), 0, 0, 0]), Self::TYPE)
            }
        }
    };
}

family_attribute!(
    /// REQUESTED-ADDRESS-FAMILY: the family of the relayed address (default IPv4).
    RequestedAddressFamily, REQUESTED_ADDRESS_FAMILY
);
family_attribute!(
    /// ADDITIONAL-ADDRESS-FAMILY: also allocate an address of this family (IPv6 only).
    AdditionalAddressFamily, ADDITIONAL_ADDRESS_FAMILY
);

/// EVEN-PORT: ask for an even relayed port, and with `reserve_next` also reserve the
/// next higher port (for RTP/RTCP pairs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EvenPort {
    /// The R bit.
    pub reserve_next: bool,
}

impl<'a> Attribute<'a> for EvenPort {
    const TYPE: AttributeType = AttributeType::EVEN_PORT;

    fn decode(value: &'a [u8], _: &TransactionId) -> Result<Self, AttributeError> {
        let [b]: [u8; 1] = exact(Self::TYPE, value)?;
        Ok(EvenPort {
            reserve_next: b & 0x80 != 0,
        })
    }

    fn value_len(&self) -> usize {
        1
    }

    fn encode_value(&self, out: &mut [u8], _: &TransactionId) -> Result<(), EncodeError> {
        let bit = if self.reserve_next { 0x80 } else { 0 };
        written(wire::put(out, 0, &[bit]), Self::TYPE)
    }
}

/// RESERVATION-TOKEN: names a relayed port reserved by an earlier EVEN-PORT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReservationToken(pub [u8; 8]);

impl<'a> Attribute<'a> for ReservationToken {
    const TYPE: AttributeType = AttributeType::RESERVATION_TOKEN;

    fn decode(value: &'a [u8], _: &TransactionId) -> Result<Self, AttributeError> {
        exact(Self::TYPE, value).map(ReservationToken)
    }

    fn value_len(&self) -> usize {
        8
    }

    fn encode_value(&self, out: &mut [u8], _: &TransactionId) -> Result<(), EncodeError> {
        written(wire::put(out, 0, &self.0), Self::TYPE)
    }
}

/// ICMP: an ICMP error the relay received from a peer, in a Data indication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Icmp {
    /// ICMP type (its meaning depends on the peer's address family).
    pub icmp_type: u8,
    /// ICMP code.
    pub code: u8,
    /// Error data (for example the MTU of a Packet Too Big).
    pub data: u32,
}

impl<'a> Attribute<'a> for Icmp {
    const TYPE: AttributeType = AttributeType::ICMP;

    fn decode(value: &'a [u8], _: &TransactionId) -> Result<Self, AttributeError> {
        let b: [u8; 8] = exact(Self::TYPE, value)?;
        Ok(Icmp {
            icmp_type: b[2],
            code: b[3],
            data: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        })
    }

    fn value_len(&self) -> usize {
        8
    }

    fn encode_value(&self, out: &mut [u8], _: &TransactionId) -> Result<(), EncodeError> {
        written(
            wire::put(out, 0, &[0, 0, self.icmp_type, self.code])
                .and_then(|()| wire::put_u32(out, 4, self.data)),
            Self::TYPE,
        )
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const TID: TransactionId = TransactionId::new([0; 12]);

    #[test]
    fn lengths_are_exact() {
        assert!(Lifetime::decode(&[0, 0, 1], &TID).is_err());
        assert!(IceControlling::decode(&[0; 4], &TID).is_err());
        assert!(DontFragment::decode(&[0], &TID).is_err());
        assert!(EvenPort::decode(&[0, 0, 0, 0], &TID).is_err());
        assert!(ChannelNumber::decode(&[0x40, 0], &TID).is_err());
    }

    #[test]
    fn fields() {
        assert_eq!(
            ChannelNumber::decode(&[0x40, 0x01, 0xff, 0xff], &TID).unwrap(),
            ChannelNumber(0x4001)
        );
        assert_eq!(
            RequestedTransport::decode(&[17, 1, 2, 3], &TID).unwrap(),
            RequestedTransport::UDP
        );
        assert_eq!(
            EvenPort::decode(&[0x80], &TID).unwrap(),
            EvenPort { reserve_next: true }
        );
        assert_eq!(
            RequestedAddressFamily::decode(&[3, 0, 0, 0], &TID)
                .unwrap_err()
                .kind,
            AttributeErrorKind::AddressFamily { found: 3 }
        );
        let icmp = Icmp {
            icmp_type: 3,
            code: 4,
            data: 1400,
        };
        let mut out = [0u8; 8];
        icmp.encode_value(&mut out, &TID).unwrap();
        assert_eq!(Icmp::decode(&out, &TID).unwrap(), icmp);
    }
}
