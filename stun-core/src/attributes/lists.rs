//! List attributes: UNKNOWN-ATTRIBUTES (RFC 8489 §14.13) and PASSWORD-ALGORITHMS /
//! PASSWORD-ALGORITHM (RFC 8489 §14.11-14.12).
//!
//! A decoded list borrows the wire bytes and is walked lazily; a list to encode
//! borrows a slice of typed values. Both iterate the same way.

use super::{Attribute, AttributeType, bad_length, written};
use crate::error::{AttributeError, EncodeError};
use crate::header::TransactionId;
use crate::wire;

#[derive(Debug, Clone, Copy)]
enum Repr<'a, T> {
    Wire(&'a [u8]),
    Values(&'a [T]),
}

/// UNKNOWN-ATTRIBUTES: the comprehension-required attributes a 420 response did not
/// understand.
#[derive(Debug, Clone, Copy)]
pub struct UnknownAttributes<'a>(Repr<'a, AttributeType>);

impl<'a> UnknownAttributes<'a> {
    /// A list to encode.
    pub const fn new(types: &'a [AttributeType]) -> Self {
        UnknownAttributes(Repr::Values(types))
    }

    /// The attribute types, in order.
    pub fn iter(&self) -> impl Iterator<Item = AttributeType> + 'a {
        let (wire, values): (&[u8], &[AttributeType]) = match self.0 {
            Repr::Wire(w) => (w, &[]),
            Repr::Values(v) => (&[], v),
        };
        wire.chunks_exact(2)
            .map(|c| {
                AttributeType::new(u16::from_be_bytes([
                    c.first().copied().unwrap_or(0),
                    c.get(1).copied().unwrap_or(0),
                ]))
            })
            .chain(values.iter().copied())
    }
}

impl PartialEq for UnknownAttributes<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for UnknownAttributes<'_> {}

impl<'a> Attribute<'a> for UnknownAttributes<'a> {
    const TYPE: AttributeType = AttributeType::UNKNOWN_ATTRIBUTES;

    fn decode(value: &'a [u8], _: &TransactionId) -> Result<Self, AttributeError> {
        if !value.len().is_multiple_of(2) {
            return Err(bad_length(Self::TYPE, value.len()));
        }
        Ok(UnknownAttributes(Repr::Wire(value)))
    }

    fn value_len(&self) -> usize {
        match self.0 {
            Repr::Wire(w) => w.len(),
            Repr::Values(v) => v.len() * 2,
        }
    }

    fn encode_value(&self, out: &mut [u8], _: &TransactionId) -> Result<(), EncodeError> {
        for (i, t) in self.iter().enumerate() {
            written(wire::put_u16(out, i * 2, t.value()), Self::TYPE)?;
        }
        Ok(())
    }
}

/// One password algorithm and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PasswordAlgorithm<'a> {
    /// The algorithm number (0x0001 MD5, 0x0002 SHA-256).
    pub algorithm: u16,
    /// Its parameters (empty for both registered algorithms).
    pub params: &'a [u8],
}

impl PasswordAlgorithm<'static> {
    /// MD5, the RFC 5389 long-term key.
    pub const MD5: PasswordAlgorithm<'static> = PasswordAlgorithm {
        algorithm: 0x0001,
        params: &[],
    };
    /// SHA-256 (RFC 8489).
    pub const SHA256: PasswordAlgorithm<'static> = PasswordAlgorithm {
        algorithm: 0x0002,
        params: &[],
    };
}

impl<'a> PasswordAlgorithm<'a> {
    /// Reads one entry at the start of `bytes`; returns it and the bytes it took
    /// (with padding). `None` when the entry is truncated.
    fn read(bytes: &'a [u8]) -> Option<(PasswordAlgorithm<'a>, usize)> {
        let algorithm = wire::u16_at(bytes, 0)?;
        let len = usize::from(wire::u16_at(bytes, 2)?);
        let params = bytes.get(4..4 + len)?;
        let used = 4 + wire::pad4(len);
        // The last entry's padding may be cut by the attribute's own length.
        Some((
            PasswordAlgorithm { algorithm, params },
            used.min(bytes.len()),
        ))
    }

    const fn wire_len(&self) -> usize {
        4 + wire::pad4(self.params.len())
    }

    fn write(&self, out: &mut [u8], at: usize) -> Option<()> {
        let len = u16::try_from(self.params.len()).ok()?;
        wire::put_u16(out, at, self.algorithm)?;
        wire::put_u16(out, at + 2, len)?;
        wire::put(out, at + 4, self.params)?;
        // Zero the padding if the slot has it.
        let pad_start = at + 4 + self.params.len();
        let pad_end = (at + self.wire_len()).min(out.len());
        if let Some(pad) = out.get_mut(pad_start..pad_end) {
            pad.fill(0);
        }
        Some(())
    }
}

impl<'a> Attribute<'a> for PasswordAlgorithm<'a> {
    const TYPE: AttributeType = AttributeType::PASSWORD_ALGORITHM;

    fn decode(value: &'a [u8], _: &TransactionId) -> Result<Self, AttributeError> {
        match PasswordAlgorithm::read(value) {
            Some((alg, _)) if 4 + alg.params.len() == value.len() => Ok(alg),
            _ => Err(bad_length(Self::TYPE, value.len())),
        }
    }

    fn value_len(&self) -> usize {
        4 + self.params.len()
    }

    fn encode_value(&self, out: &mut [u8], _: &TransactionId) -> Result<(), EncodeError> {
        written(self.write(out, 0), Self::TYPE)
    }
}

/// PASSWORD-ALGORITHMS: the algorithms a server supports, in its order of preference.
#[derive(Debug, Clone, Copy)]
pub struct PasswordAlgorithms<'a>(Repr<'a, PasswordAlgorithm<'a>>);

impl<'a> PasswordAlgorithms<'a> {
    /// A list to encode.
    pub const fn new(algorithms: &'a [PasswordAlgorithm<'a>]) -> Self {
        PasswordAlgorithms(Repr::Values(algorithms))
    }

    /// The algorithms, in order.
    pub fn iter(&self) -> impl Iterator<Item = PasswordAlgorithm<'a>> + 'a {
        let (mut wire, values): (&'a [u8], &'a [PasswordAlgorithm<'a>]) = match self.0 {
            Repr::Wire(w) => (w, &[]),
            Repr::Values(v) => (&[], v),
        };
        core::iter::from_fn(move || {
            let (alg, used) = PasswordAlgorithm::read(wire)?;
            wire = wire.get(used..).unwrap_or(&[]);
            Some(alg)
        })
        .chain(values.iter().copied())
    }
}

impl PartialEq for PasswordAlgorithms<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for PasswordAlgorithms<'_> {}

impl<'a> Attribute<'a> for PasswordAlgorithms<'a> {
    const TYPE: AttributeType = AttributeType::PASSWORD_ALGORITHMS;

    fn decode(value: &'a [u8], _: &TransactionId) -> Result<Self, AttributeError> {
        // Validate the whole list now so iteration never meets a truncated entry.
        let mut rest = value;
        while !rest.is_empty() {
            let (_, used) =
                PasswordAlgorithm::read(rest).ok_or(bad_length(Self::TYPE, value.len()))?;
            rest = rest.get(used..).unwrap_or(&[]);
        }
        Ok(PasswordAlgorithms(Repr::Wire(value)))
    }

    fn value_len(&self) -> usize {
        match self.0 {
            Repr::Wire(w) => w.len(),
            Repr::Values(v) => v.iter().map(PasswordAlgorithm::wire_len).sum(),
        }
    }

    fn encode_value(&self, out: &mut [u8], _: &TransactionId) -> Result<(), EncodeError> {
        let mut at = 0;
        for alg in self.iter() {
            written(alg.write(out, at), Self::TYPE)?;
            at += alg.wire_len();
        }
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const TID: TransactionId = TransactionId::new([0; 12]);

    #[test]
    fn unknown_attributes() {
        let list = [AttributeType::new(0x7001), AttributeType::new(0x0031)];
        let a = UnknownAttributes::new(&list);
        let mut out = [0u8; 4];
        a.encode_value(&mut out, &TID).unwrap();
        assert_eq!(out, [0x70, 0x01, 0x00, 0x31]);
        let b = UnknownAttributes::decode(&out, &TID).unwrap();
        assert_eq!(a, b);
        assert!(UnknownAttributes::decode(&out[..3], &TID).is_err());
    }

    #[test]
    fn password_algorithms() {
        let list = [PasswordAlgorithm::SHA256, PasswordAlgorithm::MD5];
        let a = PasswordAlgorithms::new(&list);
        assert_eq!(a.value_len(), 8);
        let mut out = [0u8; 8];
        a.encode_value(&mut out, &TID).unwrap();
        assert_eq!(out, [0, 2, 0, 0, 0, 1, 0, 0]);
        let b = PasswordAlgorithms::decode(&out, &TID).unwrap();
        assert_eq!(a, b);
        assert!(PasswordAlgorithms::decode(&out[..6], &TID).is_err());
        // An entry with params whose padding is cut by the end of the value.
        let odd = [0, 9, 0, 1, 0xaa];
        let c = PasswordAlgorithms::decode(&odd, &TID).unwrap();
        assert_eq!(c.iter().count(), 1);
        assert!(PasswordAlgorithms::decode(&[0, 9, 0, 2, 0xaa], &TID).is_err());
    }

    #[test]
    fn password_algorithm() {
        let mut out = [0u8; 4];
        PasswordAlgorithm::SHA256
            .encode_value(&mut out, &TID)
            .unwrap();
        assert_eq!(
            PasswordAlgorithm::decode(&out, &TID).unwrap(),
            PasswordAlgorithm::SHA256
        );
        assert!(PasswordAlgorithm::decode(&[0, 2, 0, 1], &TID).is_err());
    }
}
