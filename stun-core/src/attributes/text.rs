//! UTF-8 text attributes: USERNAME, REALM, NONCE, SOFTWARE and ALTERNATE-DOMAIN.
//!
//! Values borrow from the message. Lengths are bounded as RFC 8489 §14 bounds them
//! (USERNAME < 513 bytes; REALM, NONCE and SOFTWARE < 128 characters, hence at most
//! 763 bytes; ALTERNATE-DOMAIN at most 255 bytes).

use super::{Attribute, AttributeType, written};
use crate::error::{AttributeError, AttributeErrorKind, EncodeError};
use crate::header::TransactionId;

/// Checks the length bound and UTF-8 of a text value.
pub(crate) fn decode_text(
    attribute: AttributeType,
    value: &[u8],
    max: usize,
) -> Result<&str, AttributeError> {
    if value.len() > max {
        return Err(AttributeError::new(
            attribute,
            AttributeErrorKind::TooLong {
                max,
                found: value.len(),
            },
        ));
    }
    core::str::from_utf8(value)
        .map_err(|_| AttributeError::new(attribute, AttributeErrorKind::NotUtf8))
}

macro_rules! text_attribute {
    ($(#[$doc:meta])* $name:ident, $ty:ident, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub struct $name<'a>(pub &'a str);

        impl $name<'_> {
            /// The largest value length in bytes that this attribute accepts.
            pub const MAX_LEN: usize = $max;
        }

        impl<'a> Attribute<'a> for $name<'a> {
            const TYPE: AttributeType = AttributeType::$ty;

            fn decode(value: &'a [u8], _: &TransactionId) -> Result<Self, AttributeError> {
                decode_text(Self::TYPE, value, $max).map($name)
            }

            fn value_len(&self) -> usize {
                self.0.len()
            }

            fn encode_value(&self, out: &mut [u8], _: &TransactionId) -> Result<(), EncodeError> {
                if self.0.len() > $max {
                    return Err(EncodeError::InvalidValue { attribute: Self::TYPE });
                }
                written(crate::wire::put(out, 0, self.0.as_bytes()), Self::TYPE)
            }
        }
    };
}

text_attribute!(
    /// USERNAME: the user and (with long-term credentials) the realm's account name.
    Username, USERNAME, 512
);
text_attribute!(
    /// REALM: the authentication realm (the reference deployment uses `TANDBERG`).
    Realm, REALM, 763
);
text_attribute!(
    /// NONCE: the server's nonce, echoed by the client.
    Nonce, NONCE, 763
);
text_attribute!(
    /// SOFTWARE: the agent's name and version, for diagnostics only.
    Software, SOFTWARE, 763
);
text_attribute!(
    /// ALTERNATE-DOMAIN: the domain name of the ALTERNATE-SERVER, for TLS checks.
    AlternateDomain, ALTERNATE_DOMAIN, 255
);

#[cfg(test)]
mod test {
    use super::*;

    const TID: TransactionId = TransactionId::new([0; 12]);

    #[test]
    fn decode_and_bounds() {
        assert_eq!(Realm::decode(b"TANDBERG", &TID).unwrap(), Realm("TANDBERG"));
        assert_eq!(
            Username::decode(&[b'a'; 513], &TID).unwrap_err().kind,
            AttributeErrorKind::TooLong {
                max: 512,
                found: 513
            }
        );
        assert_eq!(
            Nonce::decode(&[0xff, 0xfe], &TID).unwrap_err().kind,
            AttributeErrorKind::NotUtf8
        );
        let long = [b'x'; 256];
        let s = core::str::from_utf8(&long).unwrap();
        let mut out = [0u8; 256];
        assert!(AlternateDomain(s).encode_value(&mut out, &TID).is_err());
    }
}
