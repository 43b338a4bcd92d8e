//! ERROR-CODE (RFC 8489 §14.8) and ADDRESS-ERROR-CODE (RFC 8656 §18.12), with the
//! error codes of STUN and TURN and their reason phrases.

use super::text::decode_text;
use super::{Attribute, AttributeType, written};
use crate::error::{AttributeError, AttributeErrorKind, EncodeError};
use crate::header::TransactionId;
use crate::wire;

/// Longest reason phrase (128 characters of up to 6 bytes, less one).
const MAX_REASON: usize = 763;

/// Splits a code into the class and number fields; `None` outside 300..=699.
fn split(code: u16) -> Option<(u8, u8)> {
    if (300..700).contains(&code) {
        Some(((code / 100) as u8, (code % 100) as u8))
    } else {
        None
    }
}

/// Reads the class/number pair at `at` and the reason after it.
fn decode_code(attribute: AttributeType, value: &[u8]) -> Result<(u16, &str), AttributeError> {
    let head = wire::u32_at(value, 0).ok_or(AttributeError::new(
        attribute,
        AttributeErrorKind::Length { found: value.len() },
    ))?;
    let class = ((head >> 8) & 0x7) as u16;
    let number = (head & 0xff) as u16;
    if !(3..=6).contains(&class) || number > 99 {
        return Err(AttributeError::new(attribute, AttributeErrorKind::Value));
    }
    let reason = decode_text(attribute, value.get(4..).unwrap_or(&[]), MAX_REASON)?;
    Ok((class * 100 + number, reason))
}

fn encode_code(
    attribute: AttributeType,
    first_byte: u8,
    code: u16,
    reason: &str,
    out: &mut [u8],
) -> Result<(), EncodeError> {
    let (class, number) = split(code).ok_or(EncodeError::InvalidValue { attribute })?;
    if reason.len() > MAX_REASON {
        return Err(EncodeError::InvalidValue { attribute });
    }
    written(
        wire::put(out, 0, &[first_byte, 0, class, number])
            .and_then(|()| wire::put(out, 4, reason.as_bytes())),
        attribute,
    )
}

/// ERROR-CODE: a numeric code (300..=699) and a reason phrase for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ErrorCode<'a> {
    /// The code, 300..=699.
    pub code: u16,
    /// The reason phrase.
    pub reason: &'a str,
}

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $reason:literal;)*) => {
        impl ErrorCode<'static> {
            $($(#[$doc])* pub const $name: ErrorCode<'static> = ErrorCode { code: $code, reason: $reason };)*

            /// The registered error for `code`, with its standard reason phrase.
            pub const fn from_code(code: u16) -> Option<ErrorCode<'static>> {
                match code {
                    $($code => Some(Self::$name),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    /// 300 Try Alternate.
    TRY_ALTERNATE = 300, "Try Alternate";
    /// 400 Bad Request.
    BAD_REQUEST = 400, "Bad Request";
    /// 401 Unauthorized.
    UNAUTHORIZED = 401, "Unauthorized";
    /// 403 Forbidden.
    FORBIDDEN = 403, "Forbidden";
    /// 420 Unknown Attribute.
    UNKNOWN_ATTRIBUTE = 420, "Unknown Attribute";
    /// 437 Allocation Mismatch.
    ALLOCATION_MISMATCH = 437, "Allocation Mismatch";
    /// 438 Stale Nonce.
    STALE_NONCE = 438, "Stale Nonce";
    /// 440 Address Family not Supported.
    ADDRESS_FAMILY_NOT_SUPPORTED = 440, "Address Family not Supported";
    /// 441 Wrong Credentials.
    WRONG_CREDENTIALS = 441, "Wrong Credentials";
    /// 442 Unsupported Transport Protocol.
    UNSUPPORTED_TRANSPORT_PROTOCOL = 442, "Unsupported Transport Protocol";
    /// 443 Peer Address Family Mismatch.
    PEER_ADDRESS_FAMILY_MISMATCH = 443, "Peer Address Family Mismatch";
    /// 446 Connection Already Exists (RFC 6062).
    CONNECTION_ALREADY_EXISTS = 446, "Connection Already Exists";
    /// 447 Connection Timeout or Failure (RFC 6062).
    CONNECTION_TIMEOUT_OR_FAILURE = 447, "Connection Timeout or Failure";
    /// 486 Allocation Quota Reached.
    ALLOCATION_QUOTA_REACHED = 486, "Allocation Quota Reached";
    /// 487 Role Conflict (RFC 8445).
    ROLE_CONFLICT = 487, "Role Conflict";
    /// 500 Server Error.
    SERVER_ERROR = 500, "Server Error";
    /// 508 Insufficient Capacity.
    INSUFFICIENT_CAPACITY = 508, "Insufficient Capacity";
}

impl<'a> Attribute<'a> for ErrorCode<'a> {
    const TYPE: AttributeType = AttributeType::ERROR_CODE;

    fn decode(value: &'a [u8], _: &TransactionId) -> Result<Self, AttributeError> {
        decode_code(Self::TYPE, value).map(|(code, reason)| ErrorCode { code, reason })
    }

    fn value_len(&self) -> usize {
        4 + self.reason.len()
    }

    fn encode_value(&self, out: &mut [u8], _: &TransactionId) -> Result<(), EncodeError> {
        encode_code(Self::TYPE, 0, self.code, self.reason, out)
    }
}

/// ADDRESS-ERROR-CODE: why the allocation of one address family failed when both
/// were requested (RFC 8656 §18.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AddressErrorCode<'a> {
    /// The family byte (0x01 IPv4, 0x02 IPv6).
    pub family: u8,
    /// The code, 300..=699.
    pub code: u16,
    /// The reason phrase.
    pub reason: &'a str,
}

impl<'a> Attribute<'a> for AddressErrorCode<'a> {
    const TYPE: AttributeType = AttributeType::ADDRESS_ERROR_CODE;

    fn decode(value: &'a [u8], _: &TransactionId) -> Result<Self, AttributeError> {
        let (code, reason) = decode_code(Self::TYPE, value)?;
        let family = value.first().copied().unwrap_or(0);
        Ok(AddressErrorCode {
            family,
            code,
            reason,
        })
    }

    fn value_len(&self) -> usize {
        4 + self.reason.len()
    }

    fn encode_value(&self, out: &mut [u8], _: &TransactionId) -> Result<(), EncodeError> {
        encode_code(Self::TYPE, self.family, self.code, self.reason, out)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const TID: TransactionId = TransactionId::new([0; 12]);

    #[test]
    fn round_trip() {
        let e = ErrorCode::STALE_NONCE;
        let mut out = [0u8; 15];
        e.encode_value(&mut out, &TID).unwrap();
        assert_eq!(&out[..4], &[0, 0, 4, 38]);
        assert_eq!(ErrorCode::decode(&out, &TID).unwrap(), e);
    }

    #[test]
    fn rejects_out_of_range() {
        assert!(ErrorCode::decode(&[0, 0, 2, 0], &TID).is_err());
        assert!(ErrorCode::decode(&[0, 0, 4, 100], &TID).is_err());
        assert!(ErrorCode::decode(&[0, 0, 4], &TID).is_err());
        let mut out = [0u8; 4];
        assert!(
            ErrorCode {
                code: 700,
                reason: ""
            }
            .encode_value(&mut out, &TID)
            .is_err()
        );
    }

    #[test]
    fn address_error_code() {
        let a = AddressErrorCode {
            family: 2,
            code: 440,
            reason: "no v6",
        };
        let mut out = [0u8; 9];
        a.encode_value(&mut out, &TID).unwrap();
        assert_eq!(AddressErrorCode::decode(&out, &TID).unwrap(), a);
    }

    #[test]
    fn registry() {
        assert_eq!(
            ErrorCode::from_code(441),
            Some(ErrorCode::WRONG_CREDENTIALS)
        );
        assert_eq!(ErrorCode::from_code(499), None);
    }
}
