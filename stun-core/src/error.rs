//! Error types. Each `Display` says what was wrong on the wire (which attribute, which
//! length), so a log line is enough to find the faulty peer or configuration.

use core::fmt;

use crate::attributes::AttributeType;

/// Why a datagram is not a well-formed STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ParseError {
    /// Fewer bytes than the 20-byte header.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The two most significant bits are not zero: this is not STUN (perhaps
    /// ChannelData, DTLS or RTP; see [`crate::demux`]).
    NotStun,
    /// The magic cookie is not 0x2112A442 (an RFC 3489 client, or not STUN).
    BadMagicCookie {
        /// The value found in bytes 4..8.
        found: u32,
    },
    /// The length field is not a multiple of four.
    UnalignedLength {
        /// The declared length.
        length: u16,
    },
    /// The length field disagrees with the number of bytes received.
    LengthMismatch {
        /// 20 + the declared length.
        declared: usize,
        /// Bytes received.
        actual: usize,
    },
    /// An attribute's declared length runs past the end of the message.
    AttributeOverrun {
        /// The attribute.
        attribute: AttributeType,
        /// Offset of its header from the start of the message.
        offset: usize,
        /// Its declared value length.
        length: usize,
        /// Bytes left in the message after its header.
        available: usize,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ParseError::Truncated { needed, available } => {
                write!(
                    f,
                    "truncated STUN message: {available} bytes, need {needed}"
                )
            }
            ParseError::NotStun => f.write_str("not a STUN message: first two bits are not zero"),
            ParseError::BadMagicCookie { found } => {
                write!(f, "bad magic cookie 0x{found:08x} (expected 0x2112a442)")
            }
            ParseError::UnalignedLength { length } => {
                write!(f, "STUN length {length} is not a multiple of 4")
            }
            ParseError::LengthMismatch { declared, actual } => write!(
                f,
                "STUN length field says {declared} bytes but {actual} were received"
            ),
            ParseError::AttributeOverrun {
                attribute,
                offset,
                length,
                available,
            } => write!(
                f,
                "attribute {attribute} at offset {offset} declares {length} bytes (padded to a \
                 multiple of 4) but only {available} remain"
            ),
        }
    }
}

impl core::error::Error for ParseError {}

/// What was wrong with one attribute's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum AttributeErrorKind {
    /// The value length is not one this attribute can have.
    Length {
        /// The length found.
        found: usize,
    },
    /// The value is longer than the attribute allows.
    TooLong {
        /// The largest allowed length.
        max: usize,
        /// The length found.
        found: usize,
    },
    /// An address family other than IPv4 (0x01) or IPv6 (0x02).
    AddressFamily {
        /// The family byte found.
        found: u8,
    },
    /// Text that is not UTF-8.
    NotUtf8,
    /// A field outside its allowed range (for example an ERROR-CODE class outside 3..=6).
    Value,
}

/// A malformed attribute value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AttributeError {
    /// The attribute.
    pub attribute: AttributeType,
    /// What was wrong.
    pub kind: AttributeErrorKind,
}

impl AttributeError {
    pub(crate) const fn new(attribute: AttributeType, kind: AttributeErrorKind) -> Self {
        AttributeError { attribute, kind }
    }
}

impl fmt::Display for AttributeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.attribute;
        match self.kind {
            AttributeErrorKind::Length { found } => {
                write!(f, "attribute {a} has an invalid length of {found} bytes")
            }
            AttributeErrorKind::TooLong { max, found } => {
                write!(
                    f,
                    "attribute {a} is {found} bytes long, more than the {max} allowed"
                )
            }
            AttributeErrorKind::AddressFamily { found } => {
                write!(f, "attribute {a} has unknown address family 0x{found:02x}")
            }
            AttributeErrorKind::NotUtf8 => write!(f, "attribute {a} is not valid UTF-8"),
            AttributeErrorKind::Value => write!(f, "attribute {a} has a value out of range"),
        }
    }
}

impl core::error::Error for AttributeError {}

/// Why a message could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// The caller's buffer is too small.
    BufferTooSmall {
        /// Total bytes the message needs so far.
        required: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// An attribute was added after MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 or
    /// FINGERPRINT, where RFC 8489 forbids it.
    AfterIntegrity {
        /// The attribute being added.
        attribute: AttributeType,
    },
    /// The value does not fit the attribute (too long, or out of range).
    InvalidValue {
        /// The attribute.
        attribute: AttributeType,
    },
    /// The message would exceed the 16-bit length field.
    MessageTooLong,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EncodeError::BufferTooSmall {
                required,
                available,
            } => write!(
                f,
                "buffer too small: message needs {required} bytes, buffer has {available}"
            ),
            EncodeError::AfterIntegrity { attribute } => write!(
                f,
                "attribute {attribute} cannot follow MESSAGE-INTEGRITY or FINGERPRINT"
            ),
            EncodeError::InvalidValue { attribute } => {
                write!(f, "value does not fit attribute {attribute}")
            }
            EncodeError::MessageTooLong => f.write_str("message longer than 65535 bytes"),
        }
    }
}

impl core::error::Error for EncodeError {}

/// Why a message failed MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 or FINGERPRINT
/// verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum IntegrityError {
    /// The attribute to verify is absent.
    Missing {
        /// The attribute looked for.
        attribute: AttributeType,
    },
    /// The HMAC does not match: the two sides use different keys (check credentials).
    Mismatch {
        /// The attribute that did not match.
        attribute: AttributeType,
    },
    /// MESSAGE-INTEGRITY-SHA256 is shorter than 16 bytes or not a multiple of 4.
    BadLength {
        /// The attribute.
        attribute: AttributeType,
    },
    /// The CRC-32 in FINGERPRINT does not match the message.
    FingerprintMismatch {
        /// The value computed over the message.
        computed: u32,
        /// The value carried by the message.
        found: u32,
    },
}

impl fmt::Display for IntegrityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IntegrityError::Missing { attribute } => write!(f, "no {attribute} attribute"),
            IntegrityError::Mismatch { attribute } => write!(
                f,
                "{attribute} check failed: the peers do not share the same key (check credentials)"
            ),
            IntegrityError::BadLength { attribute } => write!(f, "{attribute} has a bad length"),
            IntegrityError::FingerprintMismatch { computed, found } => write!(
                f,
                "FINGERPRINT mismatch: message carries 0x{found:08x}, computed 0x{computed:08x}"
            ),
        }
    }
}

impl core::error::Error for IntegrityError {}
