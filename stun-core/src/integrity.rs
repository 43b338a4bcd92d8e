//! MESSAGE-INTEGRITY (HMAC-SHA1), MESSAGE-INTEGRITY-SHA256 and FINGERPRINT (CRC-32):
//! computing them for the builder and verifying them in place on a parsed
//! [`Message`], without copying it.
//!
//! Each value covers the message up to (not including) its own attribute, with the
//! header's length field set as though the message ended just after that attribute
//! (RFC 8489 §14.5-14.7). Verification feeds the MAC the header with that adjusted
//! length, then the attribute bytes as they are, so the received buffer is never
//! modified. MACs are compared in constant time.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;

use crate::attributes::AttributeType;
use crate::error::IntegrityError;
use crate::header::{HEADER_LEN, field};
use crate::message::Message;
use crate::wire;

/// Length of a MESSAGE-INTEGRITY value.
pub const SHA1_LEN: usize = 20;
/// Length of a full MESSAGE-INTEGRITY-SHA256 value.
pub const SHA256_LEN: usize = 32;
/// The value XORed into the CRC-32 of FINGERPRINT ("STUN").
pub const FINGERPRINT_XOR: u32 = 0x5354_554E;

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Feeds `covered` to `update` with the length field replaced by `end - 20`.
fn feed(covered: &[u8], end: usize, mut update: impl FnMut(&[u8])) {
    let length = u16::try_from(end.saturating_sub(HEADER_LEN))
        .unwrap_or(u16::MAX)
        .to_be_bytes();
    update(covered.get(field::TYPE).unwrap_or(&[]));
    update(&length);
    update(covered.get(field::COOKIE.start..).unwrap_or(&[]));
}

fn mac_sha1(key: &[u8], covered: &[u8], end: usize) -> Hmac<Sha1> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail here.
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| <Hmac<Sha1> as KeyInit>::new(&Default::default()));
    feed(covered, end, |b| mac.update(b));
    mac
}

fn mac_sha256(key: &[u8], covered: &[u8], end: usize) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
    feed(covered, end, |b| mac.update(b));
    mac
}

/// HMAC-SHA1 of `covered` (the message before MESSAGE-INTEGRITY) for a message whose
/// length, as the MAC sees it, ends at `end`.
pub(crate) fn hmac_sha1(key: &[u8], covered: &[u8], end: usize) -> [u8; SHA1_LEN] {
    mac_sha1(key, covered, end).finalize().into_bytes().into()
}

/// HMAC-SHA256 of `covered`, as [`hmac_sha1`].
pub(crate) fn hmac_sha256(key: &[u8], covered: &[u8], end: usize) -> [u8; SHA256_LEN] {
    mac_sha256(key, covered, end).finalize().into_bytes().into()
}

/// FINGERPRINT value of `covered`, as [`hmac_sha1`].
pub(crate) fn fingerprint(covered: &[u8], end: usize) -> u32 {
    let mut digest = CRC32.digest();
    feed(covered, end, |b| digest.update(b));
    digest.finalize() ^ FINGERPRINT_XOR
}

impl<T: AsRef<[u8]>> Message<T> {
    /// Verifies MESSAGE-INTEGRITY with `key` (the short-term password or a long-term
    /// key from [`crate::credentials`]).
    pub fn verify_integrity(&self, key: &[u8]) -> Result<(), IntegrityError> {
        let attribute = AttributeType::MESSAGE_INTEGRITY;
        let at = self
            .integrity_offset()
            .ok_or(IntegrityError::Missing { attribute })?;
        let bytes = self.as_bytes();
        let end = at + 4 + SHA1_LEN;
        let (covered, tag) = match (bytes.get(..at), bytes.get(at + 4..end)) {
            (Some(c), Some(t)) if wire::u16_at(bytes, at + 2) == Some(SHA1_LEN as u16) => (c, t),
            _ => return Err(IntegrityError::BadLength { attribute }),
        };
        mac_sha1(key, covered, end)
            .verify_slice(tag)
            .map_err(|_| IntegrityError::Mismatch { attribute })
    }

    /// Verifies MESSAGE-INTEGRITY-SHA256 with `key`, accepting the truncated lengths
    /// RFC 8489 allows (16..=32 bytes).
    pub fn verify_integrity_sha256(&self, key: &[u8]) -> Result<(), IntegrityError> {
        let attribute = AttributeType::MESSAGE_INTEGRITY_SHA256;
        let at = self
            .integrity_sha256_offset()
            .ok_or(IntegrityError::Missing { attribute })?;
        let bytes = self.as_bytes();
        let len = usize::from(wire::u16_at(bytes, at + 2).unwrap_or(0));
        if !crate::attributes::MessageIntegritySha256::valid_len(len) {
            return Err(IntegrityError::BadLength { attribute });
        }
        let end = at + 4 + len;
        let (covered, tag) = match (bytes.get(..at), bytes.get(at + 4..end)) {
            (Some(c), Some(t)) => (c, t),
            _ => return Err(IntegrityError::BadLength { attribute }),
        };
        mac_sha256(key, covered, end)
            .verify_truncated_left(tag)
            .map_err(|_| IntegrityError::Mismatch { attribute })
    }

    /// Verifies FINGERPRINT.
    pub fn verify_fingerprint(&self) -> Result<(), IntegrityError> {
        let attribute = AttributeType::FINGERPRINT;
        let at = self
            .fingerprint_offset()
            .ok_or(IntegrityError::Missing { attribute })?;
        let bytes = self.as_bytes();
        if wire::u16_at(bytes, at + 2) != Some(4) {
            return Err(IntegrityError::BadLength { attribute });
        }
        let found = wire::u32_at(bytes, at + 4).ok_or(IntegrityError::BadLength { attribute })?;
        let computed = fingerprint(bytes.get(..at).unwrap_or(&[]), at + 8);
        if computed == found {
            Ok(())
        } else {
            Err(IntegrityError::FingerprintMismatch { computed, found })
        }
    }

    /// Whether the message carries a FINGERPRINT that counts.
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint_offset().is_some()
    }

    /// Whether the message carries MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256.
    pub fn has_integrity(&self) -> bool {
        self.integrity_offset().is_some() || self.integrity_sha256_offset().is_some()
    }
}
