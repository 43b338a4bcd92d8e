//! [`MessageBuilder`]: encodes a STUN message into the caller's buffer.

use crate::attributes::{Attribute, AttributeType};
use crate::error::EncodeError;
use crate::header::{Class, HEADER_LEN, MAGIC_COOKIE, MessageType, TransactionId, field};
use crate::integrity;
use crate::message::Message;
use crate::wire::{self, pad4};

/// Which attributes may still be added (RFC 8489 §14.5-14.7 ordering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Open,
    AfterIntegrity,
    AfterIntegritySha256,
    Done,
}

/// Writes a STUN message into a caller-owned buffer, attribute by attribute.
///
/// The header's length field is kept current after every attribute, so
/// MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are computed exactly as
/// RFC 8489 §14.5-14.7 describe. Every method returns an error instead of
/// panicking when the buffer is too small, and a failed call leaves the message as
/// it was before the call.
///
/// ```
/// use stun_core::{MessageBuilder, MessageType, Method, Class, TransactionId};
/// use stun_core::attributes::{Lifetime, Username};
///
/// let mut buf = [0u8; 96];
/// let mut b = MessageBuilder::new(
///     &mut buf,
///     MessageType::new(Method::REFRESH, Class::Request),
///     TransactionId::new([1; 12]),
/// )?;
/// b.add(&Lifetime(0))?;
/// b.add(&Username("alice"))?;
/// b.add_message_integrity(b"key")?;
/// b.add_fingerprint()?;
/// assert_eq!(b.finish(), 20 + 8 + 12 + 24 + 8);
/// # Ok::<(), stun_core::EncodeError>(())
/// ```
#[derive(Debug)]
pub struct MessageBuilder<'b> {
    buf: &'b mut [u8],
    len: usize,
    tid: TransactionId,
    stage: Stage,
    padding: u8,
}

impl<'b> MessageBuilder<'b> {
    /// Starts a message of type `message_type` with transaction id `tid`.
    pub fn new(
        buf: &'b mut [u8],
        message_type: MessageType,
        tid: TransactionId,
    ) -> Result<MessageBuilder<'b>, EncodeError> {
        let available = buf.len();
        let header = buf
            .get_mut(..HEADER_LEN)
            .ok_or(EncodeError::BufferTooSmall {
                required: HEADER_LEN,
                available,
            })?;
        header.fill(0);
        let ok = wire::put_u16(header, field::TYPE.start, message_type.to_wire())
            .and_then(|()| wire::put_u32(header, field::COOKIE.start, MAGIC_COOKIE))
            .and_then(|()| wire::put(header, field::TRANSACTION_ID.start, tid.as_bytes()));
        debug_assert!(ok.is_some());
        Ok(MessageBuilder {
            buf,
            len: HEADER_LEN,
            tid,
            stage: Stage::Open,
            padding: 0,
        })
    }

    /// Starts a response of class `class` to `request`: same method, same
    /// transaction id.
    pub fn response<T: AsRef<[u8]>>(
        buf: &'b mut [u8],
        request: &Message<T>,
        class: Class,
    ) -> Result<MessageBuilder<'b>, EncodeError> {
        MessageBuilder::new(
            buf,
            MessageType::new(request.method(), class),
            request.transaction_id(),
        )
    }

    /// The transaction id being written.
    pub fn transaction_id(&self) -> TransactionId {
        self.tid
    }

    /// Sets the byte that pads attribute values to a multiple of four (zero by
    /// default). Receivers ignore padding; RFC 5769's vectors pad with spaces.
    pub fn set_padding(&mut self, byte: u8) {
        self.padding = byte;
    }

    /// Bytes written so far (a complete message at every point between calls).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a message has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Finishes the message and returns its length in bytes.
    pub fn finish(self) -> usize {
        self.len
    }

    /// Finishes the message and returns it.
    pub fn into_bytes(self) -> &'b mut [u8] {
        let len = self.len;
        let buf = self.buf;
        let (done, _) = buf.split_at_mut(len.min(buf.len()));
        done
    }

    /// Checks that `t` may follow what was written and that `value_len` bytes fit;
    /// writes the attribute header and zeroed padding. Nothing counts until
    /// [`Self::commit`].
    fn reserve(&mut self, t: AttributeType, value_len: usize) -> Result<Slot, EncodeError> {
        let stage = self.check_stage(t)?;
        let len16 =
            u16::try_from(value_len).map_err(|_| EncodeError::InvalidValue { attribute: t })?;
        let end = self.len + 4 + pad4(value_len);
        if end - HEADER_LEN > usize::from(u16::MAX) {
            return Err(EncodeError::MessageTooLong);
        }
        let available = self.buf.len();
        let slot = self
            .buf
            .get_mut(self.len..end)
            .ok_or(EncodeError::BufferTooSmall {
                required: end,
                available,
            })?;
        slot.fill(0);
        if let Some(pad) = slot.get_mut(4 + value_len..) {
            pad.fill(self.padding);
        }
        wire::put_u16(slot, 0, t.value())
            .and_then(|()| wire::put_u16(slot, 2, len16))
            .ok_or(EncodeError::InvalidValue { attribute: t })?;
        let value = self.len + 4;
        Ok(Slot {
            value: value..value + value_len,
            end,
            stage,
        })
    }

    /// The stage after adding `t`, or the error if `t` may not follow.
    fn check_stage(&self, t: AttributeType) -> Result<Stage, EncodeError> {
        Ok(match t {
            AttributeType::MESSAGE_INTEGRITY if self.stage < Stage::AfterIntegrity => {
                Stage::AfterIntegrity
            }
            AttributeType::MESSAGE_INTEGRITY_SHA256 if self.stage < Stage::AfterIntegritySha256 => {
                Stage::AfterIntegritySha256
            }
            AttributeType::FINGERPRINT if self.stage < Stage::Done => Stage::Done,
            _ if self.stage == Stage::Open => Stage::Open,
            _ => return Err(EncodeError::AfterIntegrity { attribute: t }),
        })
    }

    /// Makes a reserved attribute part of the message.
    fn commit(&mut self, slot: &Slot) {
        self.len = slot.end;
        self.stage = slot.stage;
        self.set_length_field(slot.end);
    }

    /// Writes `end - 20` into the header's length field.
    fn set_length_field(&mut self, end: usize) {
        // `reserve` checked that the body fits in 16 bits.
        let body = u16::try_from(end - HEADER_LEN).unwrap_or(u16::MAX);
        let _ = wire::put_u16(self.buf, field::LENGTH.start, body);
    }

    /// Appends a typed attribute.
    pub fn add<'a, A: Attribute<'a>>(&mut self, attribute: &A) -> Result<(), EncodeError> {
        let slot = self.reserve(A::TYPE, attribute.value_len())?;
        let out = self
            .buf
            .get_mut(slot.value.clone())
            .ok_or(EncodeError::InvalidValue { attribute: A::TYPE })?;
        attribute.encode_value(out, &self.tid)?;
        self.commit(&slot);
        Ok(())
    }

    /// Appends an attribute from its type and raw value bytes.
    pub fn add_raw(&mut self, t: AttributeType, value: &[u8]) -> Result<(), EncodeError> {
        let slot = self.reserve(t, value.len())?;
        wire::put(self.buf, slot.value.start, value)
            .ok_or(EncodeError::InvalidValue { attribute: t })?;
        self.commit(&slot);
        Ok(())
    }

    /// Appends an attribute whose `value_len` value bytes the caller already placed
    /// right after where its header goes (at offset `len() + 4` of the buffer): only
    /// the header and the padding are written. This lets a relay wrap a payload it
    /// received into a DATA attribute without copying it.
    pub fn add_in_place(&mut self, t: AttributeType, value_len: usize) -> Result<(), EncodeError> {
        let end = self.len + 4 + pad4(value_len);
        let available = self.buf.len();
        if end > available {
            return Err(EncodeError::BufferTooSmall {
                required: end,
                available,
            });
        }
        let stage = self.check_stage(t)?;
        let len16 =
            u16::try_from(value_len).map_err(|_| EncodeError::InvalidValue { attribute: t })?;
        if end - HEADER_LEN > usize::from(u16::MAX) {
            return Err(EncodeError::MessageTooLong);
        }
        let at = self.len;
        wire::put_u16(self.buf, at, t.value())
            .and_then(|()| wire::put_u16(self.buf, at + 2, len16))
            .ok_or(EncodeError::InvalidValue { attribute: t })?;
        if let Some(pad) = self.buf.get_mut(at + 4 + value_len..end) {
            pad.fill(self.padding);
        }
        let slot = Slot {
            value: at + 4..at + 4 + value_len,
            end,
            stage,
        };
        self.commit(&slot);
        Ok(())
    }

    /// Appends MESSAGE-INTEGRITY: HMAC-SHA1 with `key` over the message so far,
    /// with the length field covering the attribute itself (RFC 8489 §14.5).
    ///
    /// `key` is the short-term password, or a long-term key from
    /// [`crate::credentials`].
    pub fn add_message_integrity(&mut self, key: &[u8]) -> Result<(), EncodeError> {
        let slot = self.reserve(AttributeType::MESSAGE_INTEGRITY, integrity::SHA1_LEN)?;
        let covered = self.buf.get(..self.len).unwrap_or(&[]);
        let mac = integrity::hmac_sha1(key, covered, slot.end);
        wire::put(self.buf, slot.value.start, &mac).ok_or(EncodeError::InvalidValue {
            attribute: AttributeType::MESSAGE_INTEGRITY,
        })?;
        self.commit(&slot);
        Ok(())
    }

    /// Appends MESSAGE-INTEGRITY-SHA256 with the full 32-byte HMAC-SHA256.
    pub fn add_message_integrity_sha256(&mut self, key: &[u8]) -> Result<(), EncodeError> {
        self.add_message_integrity_sha256_truncated(key, integrity::SHA256_LEN)
    }

    /// Appends MESSAGE-INTEGRITY-SHA256 truncated to `len` bytes (16..=32, a
    /// multiple of four), keeping the leftmost bytes (RFC 8489 §14.6).
    pub fn add_message_integrity_sha256_truncated(
        &mut self,
        key: &[u8],
        len: usize,
    ) -> Result<(), EncodeError> {
        let attribute = AttributeType::MESSAGE_INTEGRITY_SHA256;
        if !crate::attributes::MessageIntegritySha256::valid_len(len) {
            return Err(EncodeError::InvalidValue { attribute });
        }
        let slot = self.reserve(attribute, len)?;
        let covered = self.buf.get(..self.len).unwrap_or(&[]);
        let mac = integrity::hmac_sha256(key, covered, slot.end);
        let truncated = mac
            .get(..len)
            .ok_or(EncodeError::InvalidValue { attribute })?;
        wire::put(self.buf, slot.value.start, truncated)
            .ok_or(EncodeError::InvalidValue { attribute })?;
        self.commit(&slot);
        Ok(())
    }

    /// Appends FINGERPRINT: CRC-32 of the message so far XORed with 0x5354554E,
    /// with the length field covering the attribute itself (RFC 8489 §14.7).
    pub fn add_fingerprint(&mut self) -> Result<(), EncodeError> {
        let slot = self.reserve(AttributeType::FINGERPRINT, 4)?;
        let covered = self.buf.get(..self.len).unwrap_or(&[]);
        let crc = integrity::fingerprint(covered, slot.end);
        wire::put_u32(self.buf, slot.value.start, crc).ok_or(EncodeError::InvalidValue {
            attribute: AttributeType::FINGERPRINT,
        })?;
        self.commit(&slot);
        Ok(())
    }
}

/// An attribute reserved but not yet committed.
struct Slot {
    value: core::ops::Range<usize>,
    end: usize,
    stage: Stage,
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::attributes::{Lifetime, Software, Username};
    use crate::header::Method;

    fn builder(buf: &mut [u8]) -> MessageBuilder<'_> {
        MessageBuilder::new(
            buf,
            MessageType::new(Method::ALLOCATE, Class::Request),
            TransactionId::new([3; 12]),
        )
        .unwrap()
    }

    #[test]
    fn too_small_is_an_error_and_changes_nothing() {
        let mut tiny = [0u8; 19];
        assert_eq!(
            MessageBuilder::new(
                &mut tiny,
                MessageType::new(Method::BINDING, Class::Request),
                TransactionId::new([0; 12])
            )
            .unwrap_err(),
            EncodeError::BufferTooSmall {
                required: 20,
                available: 19
            }
        );
        let mut buf = [0u8; 30];
        let mut b = builder(&mut buf);
        b.add(&Lifetime(1)).unwrap();
        assert_eq!(
            b.add(&Software("abc")).unwrap_err(),
            EncodeError::BufferTooSmall {
                required: 36,
                available: 30
            }
        );
        assert_eq!(b.len(), 28);
        let len = b.finish();
        let m = Message::new_checked(&buf[..len]).unwrap();
        assert_eq!(m.attributes().count(), 1);
    }

    #[test]
    fn ordering_rules() {
        let mut buf = [0u8; 200];
        let mut b = builder(&mut buf);
        b.add_message_integrity(b"k").unwrap();
        assert_eq!(
            b.add(&Lifetime(1)).unwrap_err(),
            EncodeError::AfterIntegrity {
                attribute: AttributeType::LIFETIME
            }
        );
        assert!(b.add_message_integrity(b"k").is_err());
        b.add_message_integrity_sha256(b"k").unwrap();
        assert!(b.add_message_integrity_sha256(b"k").is_err());
        b.add_fingerprint().unwrap();
        assert!(b.add_fingerprint().is_err());
        let len = b.finish();
        let m = Message::new_checked(&buf[..len]).unwrap();
        assert!(m.verify_integrity(b"k").is_ok());
        assert!(m.verify_integrity_sha256(b"k").is_ok());
        assert!(m.verify_fingerprint().is_ok());
    }

    #[test]
    fn padding_is_zeroed() {
        let mut buf = [0xffu8; 64];
        let mut b = builder(&mut buf);
        b.add(&Username("abcde")).unwrap();
        let len = b.finish();
        assert_eq!(len, 32);
        assert_eq!(&buf[29..32], &[0, 0, 0]);
        assert_eq!(&buf[2..4], &[0, 12]);
    }

    #[test]
    fn in_place_value() {
        let mut buf = [0xeeu8; 64];
        buf[24..29].copy_from_slice(b"hello");
        let mut b = builder(&mut buf);
        b.add_in_place(AttributeType::DATA, 5).unwrap();
        let len = b.finish();
        assert_eq!(len, 32);
        let m = Message::new_checked(&buf[..len]).unwrap();
        let data = m.raw_attribute(AttributeType::DATA).unwrap();
        assert_eq!(data.value(), b"hello");
        assert_eq!(data.value_range(), 24..29);
        assert_eq!(&buf[29..32], &[0, 0, 0]);
        let mut small = [0u8; 30];
        let mut b = builder(&mut small);
        assert!(b.add_in_place(AttributeType::DATA, 8).is_err());
        assert_eq!(b.len(), 20);
    }

    #[test]
    fn truncated_sha256() {
        let mut buf = [0u8; 128];
        let mut b = builder(&mut buf);
        assert!(b.add_message_integrity_sha256_truncated(b"k", 18).is_err());
        b.add_message_integrity_sha256_truncated(b"k", 16).unwrap();
        let len = b.finish();
        let m = Message::new_checked(&buf[..len]).unwrap();
        assert!(m.verify_integrity_sha256(b"k").is_ok());
        assert!(m.verify_integrity_sha256(b"K").is_err());
    }
}
