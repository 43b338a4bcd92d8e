//! [`Message`]: a checked, zero-copy view over a STUN message in the caller's buffer.

use core::fmt;

use crate::attributes::{AnyAttribute, Attribute, AttributeType};
use crate::error::{AttributeError, ParseError};
use crate::header::{Class, HEADER_LEN, MAGIC_COOKIE, MessageType, Method, TransactionId, field};
use crate::wire::{self, pad4};

/// A STUN message: a view over bytes that [`Message::new_checked`] validated.
///
/// Validation covers the header (top bits, magic cookie, length a multiple of four
/// and equal to the bytes given) and the layout of every attribute (each declared
/// length, padded, fits). After that no accessor panics and attribute iteration
/// never fails; decoding a value into a typed attribute can still fail, and says
/// which attribute and why.
///
/// Attributes are seen as RFC 8489 §14.5-14.7 say a receiver sees them: after
/// MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count, after
/// MESSAGE-INTEGRITY-SHA256 only FINGERPRINT, and nothing after FINGERPRINT.
#[derive(Clone, Copy)]
pub struct Message<T> {
    buf: T,
    /// Offsets of the attribute headers that count; 0 when absent.
    integrity: u32,
    integrity_sha256: u32,
    fingerprint: u32,
}

/// Where the receiver is in the RFC 8489 §14.5-14.7 ordering rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Open,
    AfterIntegrity,
    AfterIntegritySha256,
    Done,
}

impl Stage {
    /// Whether an attribute of type `t` counts at this stage, and the stage after it.
    fn step(self, t: AttributeType) -> (bool, Stage) {
        match (self, t) {
            (Stage::Done, _) => (false, Stage::Done),
            (_, AttributeType::FINGERPRINT) => (true, Stage::Done),
            (Stage::Open | Stage::AfterIntegrity, AttributeType::MESSAGE_INTEGRITY_SHA256) => {
                (true, Stage::AfterIntegritySha256)
            }
            (Stage::Open, AttributeType::MESSAGE_INTEGRITY) => (true, Stage::AfterIntegrity),
            (Stage::Open, _) => (true, Stage::Open),
            (s, _) => (false, s),
        }
    }
}

impl<T: AsRef<[u8]>> Message<T> {
    /// Validates `buf` as one complete STUN message and wraps it.
    pub fn new_checked(buf: T) -> Result<Message<T>, ParseError> {
        let bytes = buf.as_ref();
        let (ty, length, cookie) = match (
            wire::u16_at(bytes, field::TYPE.start),
            wire::u16_at(bytes, field::LENGTH.start),
            wire::u32_at(bytes, field::COOKIE.start),
        ) {
            (Some(t), Some(l), Some(c)) if bytes.len() >= HEADER_LEN => (t, l, c),
            _ => {
                return Err(ParseError::Truncated {
                    needed: HEADER_LEN,
                    available: bytes.len(),
                });
            }
        };
        if ty & 0xC000 != 0 {
            return Err(ParseError::NotStun);
        }
        if cookie != MAGIC_COOKIE {
            return Err(ParseError::BadMagicCookie { found: cookie });
        }
        if length % 4 != 0 {
            return Err(ParseError::UnalignedLength { length });
        }
        let end = HEADER_LEN + usize::from(length);
        if end != bytes.len() {
            return Err(ParseError::LengthMismatch {
                declared: end,
                actual: bytes.len(),
            });
        }

        let mut msg = Message {
            buf,
            integrity: 0,
            integrity_sha256: 0,
            fingerprint: 0,
        };
        let bytes = msg.buf.as_ref();
        let mut at = HEADER_LEN;
        let mut stage = Stage::Open;
        while at < end {
            // `end - at` is a non-zero multiple of four, so the header is there.
            let t = AttributeType::new(wire::u16_at(bytes, at).unwrap_or(0));
            let len = usize::from(wire::u16_at(bytes, at + 2).unwrap_or(0));
            let next = at + 4 + pad4(len);
            if next > end {
                return Err(ParseError::AttributeOverrun {
                    attribute: t,
                    offset: at,
                    length: len,
                    available: end - at - 4,
                });
            }
            let (counts, after) = stage.step(t);
            if counts {
                let offset = at as u32;
                match t {
                    AttributeType::MESSAGE_INTEGRITY => msg.integrity = offset,
                    AttributeType::MESSAGE_INTEGRITY_SHA256 => msg.integrity_sha256 = offset,
                    AttributeType::FINGERPRINT => msg.fingerprint = offset,
                    _ => {}
                }
            }
            stage = after;
            at = next;
        }
        Ok(msg)
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// The whole message, header included.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// Method and class.
    pub fn message_type(&self) -> MessageType {
        MessageType::from_wire(wire::u16_at(self.as_bytes(), field::TYPE.start).unwrap_or(0))
    }

    /// The class (request, indication, success, error).
    pub fn class(&self) -> Class {
        self.message_type().class
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.message_type().method
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> TransactionId {
        let mut id = [0u8; 12];
        if let Some(src) = self.as_bytes().get(field::TRANSACTION_ID) {
            id.copy_from_slice(src);
        }
        TransactionId::new(id)
    }

    /// Length of the attribute section (the header's length field).
    pub fn body_len(&self) -> usize {
        self.as_bytes().len() - HEADER_LEN
    }

    /// The attributes that count, in order (see the type's docs for which count).
    pub fn attributes(&self) -> Attributes<'_> {
        Attributes {
            bytes: self.as_bytes(),
            at: HEADER_LEN,
            stage: Stage::Open,
        }
    }

    /// The first attribute of type `t`, undecoded.
    pub fn raw_attribute(&self, t: AttributeType) -> Option<RawAttribute<'_>> {
        self.attributes().find(|a| a.attribute_type() == t)
    }

    /// Whether an attribute of type `t` is present.
    pub fn has(&self, t: AttributeType) -> bool {
        self.raw_attribute(t).is_some()
    }

    /// Decodes the first attribute of type `A`; `Ok(None)` when absent.
    pub fn attribute<'a, A: Attribute<'a>>(&'a self) -> Result<Option<A>, AttributeError> {
        match self.raw_attribute(A::TYPE) {
            Some(raw) => A::decode(raw.value, &self.transaction_id()).map(Some),
            None => Ok(None),
        }
    }

    /// Decodes every attribute of type `A` (for example each XOR-PEER-ADDRESS of a
    /// CreatePermission).
    pub fn attributes_of<'a, A: Attribute<'a> + 'a>(
        &'a self,
    ) -> impl Iterator<Item = Result<A, AttributeError>> + 'a {
        let tid = self.transaction_id();
        self.attributes()
            .filter(|a| a.attribute_type() == A::TYPE)
            .map(move |a| A::decode(a.value, &tid))
    }

    /// The comprehension-required attributes (type < 0x8000) that `understood`
    /// rejects, for a 420 response. Holds at most [`UnknownAttributeList`]'s capacity;
    /// further ones are dropped (the 420 lists the first ones).
    pub fn unknown_comprehension_required(
        &self,
        understood: impl Fn(AttributeType) -> bool,
    ) -> UnknownAttributeList {
        let mut list = UnknownAttributeList::new();
        for a in self.attributes() {
            let t = a.attribute_type();
            if t.is_comprehension_required() && !understood(t) && !list.contains(&t) {
                // A full list keeps the first entries: the 420 names enough to act on.
                let _ = list.push(t);
            }
        }
        list
    }

    /// Offset of the MESSAGE-INTEGRITY attribute header that counts.
    pub(crate) fn integrity_offset(&self) -> Option<usize> {
        (self.integrity != 0).then_some(self.integrity as usize)
    }

    /// Offset of the MESSAGE-INTEGRITY-SHA256 attribute header that counts.
    pub(crate) fn integrity_sha256_offset(&self) -> Option<usize> {
        (self.integrity_sha256 != 0).then_some(self.integrity_sha256 as usize)
    }

    /// Offset of the FINGERPRINT attribute header that counts.
    pub(crate) fn fingerprint_offset(&self) -> Option<usize> {
        (self.fingerprint != 0).then_some(self.fingerprint as usize)
    }
}

/// Attribute types collected for UNKNOWN-ATTRIBUTES.
pub type UnknownAttributeList = heapless::Vec<AttributeType, 16>;

impl<T: AsRef<[u8]>> fmt::Debug for Message<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Message");
        d.field("type", &self.message_type())
            .field("transaction_id", &self.transaction_id());
        let tid = self.transaction_id();
        for a in self.attributes() {
            match AnyAttribute::decode(a.attribute_type(), a.value(), &tid) {
                Ok(v) => d.field("attribute", &v),
                Err(e) => d.field("malformed", &e),
            };
        }
        d.finish()
    }
}

/// One attribute's type and value bytes (padding excluded), borrowed from a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttribute<'a> {
    attribute_type: AttributeType,
    value: &'a [u8],
    offset: usize,
}

impl<'a> RawAttribute<'a> {
    /// The attribute's type.
    pub fn attribute_type(&self) -> AttributeType {
        self.attribute_type
    }

    /// The value bytes, without padding.
    pub fn value(&self) -> &'a [u8] {
        self.value
    }

    /// Offset of the attribute's header from the start of the message.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Where the value lies in the message (padding excluded): for relaying a
    /// DATA payload in place.
    pub fn value_range(&self) -> core::ops::Range<usize> {
        let start = self.offset + 4;
        start..start + self.value.len()
    }

    /// Decodes the value as attribute `A` (which should have this attribute's type).
    pub fn decode<A: Attribute<'a>>(&self, tid: &TransactionId) -> Result<A, AttributeError> {
        A::decode(self.value, tid)
    }

    /// Decodes the value as whatever attribute its type says.
    pub fn decode_any(&self, tid: &TransactionId) -> Result<AnyAttribute<'a>, AttributeError> {
        AnyAttribute::decode(self.attribute_type, self.value, tid)
    }
}

/// Iterator over the attributes of a [`Message`] that count.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    bytes: &'a [u8],
    at: usize,
    stage: Stage,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = RawAttribute<'a>;

    fn next(&mut self) -> Option<RawAttribute<'a>> {
        loop {
            let at = self.at;
            let t = AttributeType::new(wire::u16_at(self.bytes, at)?);
            let len = usize::from(wire::u16_at(self.bytes, at + 2)?);
            let value = self.bytes.get(at + 4..at + 4 + len)?;
            self.at = at + 4 + pad4(len);
            let (counts, after) = self.stage.step(t);
            self.stage = after;
            if counts {
                return Some(RawAttribute {
                    attribute_type: t,
                    value,
                    offset: at,
                });
            }
            if after == Stage::Done {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::attributes::{Lifetime, Software, XorPeerAddress};

    fn header(len: u16) -> [u8; 20] {
        let mut h = [0u8; 20];
        h[0..2].copy_from_slice(&0x0003u16.to_be_bytes());
        h[2..4].copy_from_slice(&len.to_be_bytes());
        h[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        h[8..20].copy_from_slice(&[9; 12]);
        h
    }

    fn msg(attrs: &[u8]) -> [u8; 128] {
        let mut b = [0u8; 128];
        b[..20].copy_from_slice(&header(attrs.len() as u16));
        b[20..20 + attrs.len()].copy_from_slice(attrs);
        b
    }

    #[test]
    fn header_checks() {
        assert_eq!(
            Message::new_checked(&[0u8; 19][..]).unwrap_err(),
            ParseError::Truncated {
                needed: 20,
                available: 19
            }
        );
        let mut h = header(0);
        h[0] = 0x40;
        assert_eq!(
            Message::new_checked(&h[..]).unwrap_err(),
            ParseError::NotStun
        );
        let mut h = header(0);
        h[4] = 0;
        assert!(matches!(
            Message::new_checked(&h[..]).unwrap_err(),
            ParseError::BadMagicCookie { .. }
        ));
        let h = header(2);
        assert_eq!(
            Message::new_checked(&h[..]).unwrap_err(),
            ParseError::UnalignedLength { length: 2 }
        );
        let h = header(4);
        assert_eq!(
            Message::new_checked(&h[..]).unwrap_err(),
            ParseError::LengthMismatch {
                declared: 24,
                actual: 20
            }
        );
        let h = header(0);
        let m = Message::new_checked(&h[..]).unwrap();
        assert_eq!(m.method(), Method::ALLOCATE);
        assert_eq!(m.class(), Class::Request);
        assert_eq!(m.transaction_id(), TransactionId::new([9; 12]));
        assert_eq!(m.attributes().count(), 0);
    }

    #[test]
    fn attribute_overrun() {
        // LIFETIME claiming 8 bytes in a 8-byte body.
        let attrs = [0x00, 0x0d, 0x00, 0x08, 0, 0, 0, 1];
        let b = msg(&attrs);
        assert_eq!(
            Message::new_checked(&b[..28]).unwrap_err(),
            ParseError::AttributeOverrun {
                attribute: AttributeType::LIFETIME,
                offset: 20,
                length: 8,
                available: 4
            }
        );
        // Padding that runs past the end also counts.
        let attrs = [0x80, 0x22, 0x00, 0x05, b'a', b'b', b'c', b'd'];
        let b = msg(&attrs);
        assert!(matches!(
            Message::new_checked(&b[..28]).unwrap_err(),
            ParseError::AttributeOverrun { .. }
        ));
    }

    #[test]
    fn typed_access_and_duplicates() {
        let attrs = [
            0x00, 0x0d, 0x00, 0x04, 0, 0, 2, 0x58, // LIFETIME 600
            0x00, 0x0d, 0x00, 0x04, 0, 0, 0, 1, // LIFETIME 1 (ignored duplicate)
            0x80, 0x22, 0x00, 0x03, b'a', b'b', b'c', 0, // SOFTWARE "abc"
        ];
        let b = msg(&attrs);
        let m = Message::new_checked(&b[..20 + attrs.len()]).unwrap();
        assert_eq!(m.attribute::<Lifetime>().unwrap(), Some(Lifetime(600)));
        assert_eq!(m.attribute::<Software>().unwrap(), Some(Software("abc")));
        assert_eq!(m.attribute::<XorPeerAddress>().unwrap(), None);
        assert_eq!(m.attributes_of::<Lifetime>().count(), 2);
        assert_eq!(m.attributes().count(), 3);
    }

    #[test]
    fn attributes_after_integrity_are_ignored() {
        let mut attrs = [0u8; 4 + 20 + 8 + 8];
        // MESSAGE-INTEGRITY
        attrs[0..4].copy_from_slice(&[0x00, 0x08, 0x00, 0x14]);
        // LIFETIME after MI: ignored
        attrs[24..32].copy_from_slice(&[0x00, 0x0d, 0x00, 0x04, 0, 0, 0, 9]);
        // FINGERPRINT after MI: counts
        attrs[32..40].copy_from_slice(&[0x80, 0x28, 0x00, 0x04, 1, 2, 3, 4]);
        let b = msg(&attrs);
        let m = Message::new_checked(&b[..20 + attrs.len()]).unwrap();
        assert_eq!(m.attribute::<Lifetime>().unwrap(), None);
        assert_eq!(m.integrity_offset(), Some(20));
        assert_eq!(m.fingerprint_offset(), Some(52));
        let types: heapless::Vec<AttributeType, 4> =
            m.attributes().map(|a| a.attribute_type()).collect();
        assert_eq!(
            &types[..],
            &[AttributeType::MESSAGE_INTEGRITY, AttributeType::FINGERPRINT]
        );
    }

    #[test]
    fn unknown_comprehension_required() {
        let attrs = [
            0x7f, 0x01, 0x00, 0x00, // unknown required
            0xff, 0x01, 0x00, 0x00, // unknown optional
            0x00, 0x0d, 0x00, 0x04, 0, 0, 0, 1, // LIFETIME, known
            0x7f, 0x01, 0x00, 0x00, // repeated unknown
        ];
        let b = msg(&attrs);
        let m = Message::new_checked(&b[..20 + attrs.len()]).unwrap();
        let u = m.unknown_comprehension_required(AttributeType::is_known);
        assert_eq!(&u[..], &[AttributeType::new(0x7f01)]);
    }
}
