//! Authentication and payload attributes: MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256,
//! FINGERPRINT, USERHASH, and TURN's DATA.
//!
//! These types only carry the bytes; computing and checking MACs and the CRC is the
//! job of [`crate::integrity`] and of the builder's `add_message_integrity*` and
//! `add_fingerprint`.

use super::{Attribute, AttributeType, bad_length, written};
use crate::error::{AttributeError, EncodeError};
use crate::header::TransactionId;
use crate::wire;

/// A fixed-length digest attribute: a view of exactly `$len` bytes.
macro_rules! digest_attribute {
    ($(#[$doc:meta])* $name:ident, $ty:ident, $len:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub struct $name<'a>(pub &'a [u8; $len]);

        impl<'a> Attribute<'a> for $name<'a> {
            const TYPE: AttributeType = AttributeType::$ty;

            fn decode(value: &'a [u8], _: &TransactionId) -> Result<Self, AttributeError> {
                value
                    .try_into()
                    .map($name)
                    .map_err(|_| bad_length(Self::TYPE, value.len()))
            }

            fn value_len(&self) -> usize {
                $len
            }

            fn encode_value(&self, out: &mut [u8], _: &TransactionId) -> Result<(), EncodeError> {
                written(wire::put(out, 0, self.0), Self::TYPE)
            }
        }
    };
}

digest_attribute!(
    /// MESSAGE-INTEGRITY: HMAC-SHA1 over the message (20 bytes).
    MessageIntegrity,
    MESSAGE_INTEGRITY,
    20
);

/// MESSAGE-INTEGRITY-SHA256: HMAC-SHA256 over the message, possibly truncated to
/// 16..=32 bytes in steps of four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MessageIntegritySha256<'a>(pub &'a [u8]);

impl MessageIntegritySha256<'_> {
    /// Whether `len` is a valid length for the attribute's value.
    pub(crate) const fn valid_len(len: usize) -> bool {
        len >= 16 && len <= 32 && len.is_multiple_of(4)
    }
}

impl<'a> Attribute<'a> for MessageIntegritySha256<'a> {
    const TYPE: AttributeType = AttributeType::MESSAGE_INTEGRITY_SHA256;

    fn decode(value: &'a [u8], _: &TransactionId) -> Result<Self, AttributeError> {
        if Self::valid_len(value.len()) {
            Ok(MessageIntegritySha256(value))
        } else {
            Err(bad_length(Self::TYPE, value.len()))
        }
    }

    fn value_len(&self) -> usize {
        self.0.len()
    }

    fn encode_value(&self, out: &mut [u8], _: &TransactionId) -> Result<(), EncodeError> {
        if !Self::valid_len(self.0.len()) {
            return Err(EncodeError::InvalidValue {
                attribute: Self::TYPE,
            });
        }
        written(wire::put(out, 0, self.0), Self::TYPE)
    }
}

/// FINGERPRINT: CRC-32 of the message XORed with 0x5354554E.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Fingerprint(pub u32);

impl<'a> Attribute<'a> for Fingerprint {
    const TYPE: AttributeType = AttributeType::FINGERPRINT;

    fn decode(value: &'a [u8], _: &TransactionId) -> Result<Self, AttributeError> {
        let b: [u8; 4] = value
            .try_into()
            .map_err(|_| bad_length(Self::TYPE, value.len()))?;
        Ok(Fingerprint(u32::from_be_bytes(b)))
    }

    fn value_len(&self) -> usize {
        4
    }

    fn encode_value(&self, out: &mut [u8], _: &TransactionId) -> Result<(), EncodeError> {
        written(wire::put_u32(out, 0, self.0), Self::TYPE)
    }
}

digest_attribute!(
    /// USERHASH: SHA-256 of `username ":" realm`, sent instead of USERNAME for
    /// anonymity (RFC 8489 §14.4); see [`crate::credentials::userhash`].
    Userhash,
    USERHASH,
    32
);

/// DATA: the application payload of a Send or Data indication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Data<'a>(pub &'a [u8]);

impl<'a> Attribute<'a> for Data<'a> {
    const TYPE: AttributeType = AttributeType::DATA;

    fn decode(value: &'a [u8], _: &TransactionId) -> Result<Self, AttributeError> {
        Ok(Data(value))
    }

    fn value_len(&self) -> usize {
        self.0.len()
    }

    fn encode_value(&self, out: &mut [u8], _: &TransactionId) -> Result<(), EncodeError> {
        written(wire::put(out, 0, self.0), Self::TYPE)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const TID: TransactionId = TransactionId::new([0; 12]);

    #[test]
    fn lengths() {
        assert!(MessageIntegrity::decode(&[0; 19], &TID).is_err());
        assert!(MessageIntegrity::decode(&[0; 20], &TID).is_ok());
        assert!(MessageIntegritySha256::decode(&[0; 12], &TID).is_err());
        assert!(MessageIntegritySha256::decode(&[0; 18], &TID).is_err());
        assert!(MessageIntegritySha256::decode(&[0; 36], &TID).is_err());
        assert!(MessageIntegritySha256::decode(&[0; 20], &TID).is_ok());
        assert!(Userhash::decode(&[0; 31], &TID).is_err());
        assert!(Fingerprint::decode(&[0; 5], &TID).is_err());
        assert_eq!(Data::decode(&[], &TID).unwrap(), Data(&[]));
    }
}
