//! Attribute types and their typed values.
//!
//! Each attribute is a small type implementing [`Attribute`]: it decodes from the
//! value bytes of a [`RawAttribute`](crate::RawAttribute) without copying (text and
//! byte attributes borrow from the message) and encodes into a
//! [`MessageBuilder`](crate::MessageBuilder). [`AnyAttribute`] decodes whatever
//! attribute comes next when the caller does not know which to expect.
//!
//! The modules group them by shape: [`address`] (MAPPED-ADDRESS and the XOR
//! addresses), [`text`] (USERNAME, REALM, NONCE, SOFTWARE, ALTERNATE-DOMAIN),
//! [`error_code`] (ERROR-CODE, ADDRESS-ERROR-CODE), [`fixed`] (fixed-size numbers and
//! flags of STUN, TURN and ICE), [`lists`] (UNKNOWN-ATTRIBUTES, PASSWORD-ALGORITHMS)
//! and [`auth`] (MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256, FINGERPRINT, USERHASH,
//! DATA).

use core::fmt;

use crate::error::{AttributeError, AttributeErrorKind, EncodeError};
use crate::header::TransactionId;

pub mod address;
pub mod auth;
pub mod error_code;
pub mod fixed;
pub mod lists;
pub mod text;

pub use address::{
    AlternateServer, MappedAddress, OtherAddress, ResponseOrigin, XorMappedAddress, XorPeerAddress,
    XorRelayedAddress,
};
pub use auth::{Data, Fingerprint, MessageIntegrity, MessageIntegritySha256, Userhash};
pub use error_code::{AddressErrorCode, ErrorCode};
pub use fixed::{
    AdditionalAddressFamily, AddressFamily, ChannelNumber, ConnectionId, DontFragment, EvenPort,
    IceControlled, IceControlling, Icmp, Lifetime, Priority, RequestedAddressFamily,
    RequestedTransport, ReservationToken, UseCandidate,
};
pub use lists::{PasswordAlgorithm, PasswordAlgorithms, UnknownAttributes};
pub use text::{AlternateDomain, Nonce, Realm, Software, Username};

/// A 16-bit attribute type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AttributeType(u16);

macro_rules! attribute_types {
    ($($(#[$doc:meta])* $name:ident = $value:literal, $text:literal;)*) => {
        impl AttributeType {
            $($(#[$doc])* pub const $name: AttributeType = AttributeType($value);)*

            /// The attribute's registered name, or `None` if this crate does not know it.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some($text),)*
                    _ => None,
                }
            }
        }
    };
}

attribute_types! {
    /// MAPPED-ADDRESS (RFC 8489).
    MAPPED_ADDRESS = 0x0001, "MAPPED-ADDRESS";
    /// USERNAME (RFC 8489).
    USERNAME = 0x0006, "USERNAME";
    /// MESSAGE-INTEGRITY (RFC 8489).
    MESSAGE_INTEGRITY = 0x0008, "MESSAGE-INTEGRITY";
    /// ERROR-CODE (RFC 8489).
    ERROR_CODE = 0x0009, "ERROR-CODE";
    /// UNKNOWN-ATTRIBUTES (RFC 8489).
    UNKNOWN_ATTRIBUTES = 0x000A, "UNKNOWN-ATTRIBUTES";
    /// CHANNEL-NUMBER (RFC 8656).
    CHANNEL_NUMBER = 0x000C, "CHANNEL-NUMBER";
    /// LIFETIME (RFC 8656).
    LIFETIME = 0x000D, "LIFETIME";
    /// XOR-PEER-ADDRESS (RFC 8656).
    XOR_PEER_ADDRESS = 0x0012, "XOR-PEER-ADDRESS";
    /// DATA (RFC 8656).
    DATA = 0x0013, "DATA";
    /// REALM (RFC 8489).
    REALM = 0x0014, "REALM";
    /// NONCE (RFC 8489).
    NONCE = 0x0015, "NONCE";
    /// XOR-RELAYED-ADDRESS (RFC 8656).
    XOR_RELAYED_ADDRESS = 0x0016, "XOR-RELAYED-ADDRESS";
    /// REQUESTED-ADDRESS-FAMILY (RFC 8656).
    REQUESTED_ADDRESS_FAMILY = 0x0017, "REQUESTED-ADDRESS-FAMILY";
    /// EVEN-PORT (RFC 8656).
    EVEN_PORT = 0x0018, "EVEN-PORT";
    /// REQUESTED-TRANSPORT (RFC 8656).
    REQUESTED_TRANSPORT = 0x0019, "REQUESTED-TRANSPORT";
    /// DONT-FRAGMENT (RFC 8656).
    DONT_FRAGMENT = 0x001A, "DONT-FRAGMENT";
    /// MESSAGE-INTEGRITY-SHA256 (RFC 8489).
    MESSAGE_INTEGRITY_SHA256 = 0x001C, "MESSAGE-INTEGRITY-SHA256";
    /// PASSWORD-ALGORITHM (RFC 8489).
    PASSWORD_ALGORITHM = 0x001D, "PASSWORD-ALGORITHM";
    /// USERHASH (RFC 8489).
    USERHASH = 0x001E, "USERHASH";
    /// XOR-MAPPED-ADDRESS (RFC 8489).
    XOR_MAPPED_ADDRESS = 0x0020, "XOR-MAPPED-ADDRESS";
    /// RESERVATION-TOKEN (RFC 8656).
    RESERVATION_TOKEN = 0x0022, "RESERVATION-TOKEN";
    /// PRIORITY (RFC 8445).
    PRIORITY = 0x0024, "PRIORITY";
    /// USE-CANDIDATE (RFC 8445).
    USE_CANDIDATE = 0x0025, "USE-CANDIDATE";
    /// CONNECTION-ID (RFC 6062).
    CONNECTION_ID = 0x002A, "CONNECTION-ID";
    /// ADDITIONAL-ADDRESS-FAMILY (RFC 8656).
    ADDITIONAL_ADDRESS_FAMILY = 0x8000, "ADDITIONAL-ADDRESS-FAMILY";
    /// ADDRESS-ERROR-CODE (RFC 8656).
    ADDRESS_ERROR_CODE = 0x8001, "ADDRESS-ERROR-CODE";
    /// PASSWORD-ALGORITHMS (RFC 8489).
    PASSWORD_ALGORITHMS = 0x8002, "PASSWORD-ALGORITHMS";
    /// ALTERNATE-DOMAIN (RFC 8489).
    ALTERNATE_DOMAIN = 0x8003, "ALTERNATE-DOMAIN";
    /// ICMP (RFC 8656).
    ICMP = 0x8004, "ICMP";
    /// SOFTWARE (RFC 8489).
    SOFTWARE = 0x8022, "SOFTWARE";
    /// ALTERNATE-SERVER (RFC 8489).
    ALTERNATE_SERVER = 0x8023, "ALTERNATE-SERVER";
    /// FINGERPRINT (RFC 8489).
    FINGERPRINT = 0x8028, "FINGERPRINT";
    /// ICE-CONTROLLED (RFC 8445).
    ICE_CONTROLLED = 0x8029, "ICE-CONTROLLED";
    /// ICE-CONTROLLING (RFC 8445).
    ICE_CONTROLLING = 0x802A, "ICE-CONTROLLING";
    /// RESPONSE-ORIGIN (RFC 5780).
    RESPONSE_ORIGIN = 0x802B, "RESPONSE-ORIGIN";
    /// OTHER-ADDRESS (RFC 5780).
    OTHER_ADDRESS = 0x802C, "OTHER-ADDRESS";
}

impl AttributeType {
    /// An attribute type from its number.
    pub const fn new(value: u16) -> AttributeType {
        AttributeType(value)
    }

    /// The 16-bit type number.
    pub const fn value(self) -> u16 {
        self.0
    }

    /// Types 0x0000-0x7FFF must be understood by the receiver: an unknown one in a
    /// request earns a 420 (Unknown Attribute) error.
    pub const fn is_comprehension_required(self) -> bool {
        self.0 < 0x8000
    }

    /// Whether this crate decodes the attribute.
    pub const fn is_known(self) -> bool {
        self.name().is_some()
    }
}

impl fmt::Display for AttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} (0x{:04x})", self.0),
            None => write!(f, "0x{:04x}", self.0),
        }
    }
}

impl fmt::Debug for AttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A typed STUN attribute: how its value decodes from, and encodes to, the wire.
///
/// `decode` receives exactly the value bytes (without header or padding) and the
/// message's transaction id (the XOR address attributes need it). `encode_value`
/// receives a slice of exactly `value_len()` bytes.
pub trait Attribute<'a>: Sized {
    /// The attribute's type number.
    const TYPE: AttributeType;

    /// Decodes the value bytes.
    fn decode(value: &'a [u8], tid: &TransactionId) -> Result<Self, AttributeError>;

    /// Length of the encoded value, without padding.
    fn value_len(&self) -> usize;

    /// Writes the value into `out`, which is exactly `value_len()` bytes long.
    fn encode_value(&self, out: &mut [u8], tid: &TransactionId) -> Result<(), EncodeError>;
}

/// Builds the error for a value of the wrong length.
pub(crate) const fn bad_length(attribute: AttributeType, found: usize) -> AttributeError {
    AttributeError::new(attribute, AttributeErrorKind::Length { found })
}

/// Maps a failed checked write to the error the builder reports.
pub(crate) fn written(res: Option<()>, attribute: AttributeType) -> Result<(), EncodeError> {
    res.ok_or(EncodeError::InvalidValue { attribute })
}

macro_rules! any_attribute {
    ($($variant:ident $(<$lt:lifetime>)?),* $(,)?) => {
        /// Any attribute this crate decodes, or the raw bytes of one it does not know.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum AnyAttribute<'a> {
            $($variant($variant $(<$lt>)?),)*
            /// An attribute type this crate does not decode.
            Unknown {
                /// Its type.
                attribute: AttributeType,
                /// Its value bytes.
                value: &'a [u8],
            },
        }

        impl<'a> AnyAttribute<'a> {
            /// Decodes an attribute of type `attribute` from its value bytes.
            pub fn decode(
                attribute: AttributeType,
                value: &'a [u8],
                tid: &TransactionId,
            ) -> Result<AnyAttribute<'a>, AttributeError> {
                $(if attribute == <$variant as Attribute>::TYPE {
                    return $variant::decode(value, tid).map(AnyAttribute::$variant);
                })*
                Ok(AnyAttribute::Unknown { attribute, value })
            }

            /// The attribute's type.
            pub fn attribute_type(&self) -> AttributeType {
                match self {
                    $(AnyAttribute::$variant(_) => <$variant as Attribute>::TYPE,)*
                    AnyAttribute::Unknown { attribute, .. } => *attribute,
                }
            }
        }
    };
}

any_attribute! {
    MappedAddress, XorMappedAddress, XorPeerAddress, XorRelayedAddress, AlternateServer,
    ResponseOrigin, OtherAddress,
    Username<'a>, Realm<'a>, Nonce<'a>, Software<'a>, AlternateDomain<'a>,
    ErrorCode<'a>, AddressErrorCode<'a>,
    UnknownAttributes<'a>, PasswordAlgorithms<'a>, PasswordAlgorithm<'a>,
    MessageIntegrity<'a>, MessageIntegritySha256<'a>, Fingerprint, Userhash<'a>, Data<'a>,
    ChannelNumber, Lifetime, RequestedAddressFamily, AdditionalAddressFamily, EvenPort,
    RequestedTransport, DontFragment, ReservationToken, Icmp, ConnectionId,
    Priority, UseCandidate, IceControlled, IceControlling,
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn names_and_display() {
        assert_eq!(
            AttributeType::XOR_PEER_ADDRESS.name(),
            Some("XOR-PEER-ADDRESS")
        );
        extern crate std;
        use std::string::ToString;
        assert_eq!(AttributeType::LIFETIME.to_string(), "LIFETIME (0x000d)");
        assert_eq!(AttributeType::new(0x7777).to_string(), "0x7777");
        assert!(AttributeType::new(0x7777).is_comprehension_required());
        assert!(!AttributeType::SOFTWARE.is_comprehension_required());
    }

    #[test]
    fn any_attribute_dispatches_on_type() {
        let tid = TransactionId::new([0; 12]);
        let a = AnyAttribute::decode(AttributeType::LIFETIME, &[0, 0, 2, 88], &tid).unwrap();
        assert_eq!(a, AnyAttribute::Lifetime(Lifetime(600)));
        assert_eq!(a.attribute_type(), AttributeType::LIFETIME);
        let u = AnyAttribute::decode(AttributeType::new(0x7001), &[1], &tid).unwrap();
        assert!(matches!(u, AnyAttribute::Unknown { .. }));
    }
}
