//! Writing responses: error responses with the attributes each code needs, and
//! success responses, with MESSAGE-INTEGRITY when the request was authenticated and
//! FINGERPRINT always.

use stun_core::attributes::{
    ErrorCode, Nonce, PasswordAlgorithm, PasswordAlgorithms, Realm, Software, UnknownAttributes,
};
use stun_core::credentials::Algorithm;
use stun_core::{AttributeType, Class, EncodeError, Message, MessageBuilder};

use super::config::Config;

/// How a response to an authenticated request is signed: with the request's key,
/// as MESSAGE-INTEGRITY-SHA256 when the request was, else MESSAGE-INTEGRITY.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signer<'k> {
    pub(crate) key: &'k [u8],
    pub(crate) sha256: bool,
}

impl Signer<'_> {
    pub(crate) fn sign(&self, b: &mut MessageBuilder<'_>) -> Result<(), EncodeError> {
        if self.sha256 {
            b.add_message_integrity_sha256(self.key)
        } else {
            b.add_message_integrity(self.key)
        }
    }
}

/// Writes an error response to `req` with `code`; `extra` adds the attributes the
/// code needs (see [`challenge`], [`unknown`]); `signer` adds MESSAGE-INTEGRITY(-SHA256)
/// (for authenticated requests).
pub(crate) fn error(
    out: &mut [u8],
    req: &Message<&[u8]>,
    code: ErrorCode<'_>,
    signer: Option<Signer<'_>>,
    extra: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), EncodeError>,
) -> Result<usize, EncodeError> {
    let mut b = MessageBuilder::response(out, req, Class::Error)?;
    b.add(&code)?;
    extra(&mut b)?;
    if let Some(s) = signer {
        s.sign(&mut b)?;
    }
    b.add_fingerprint()?;
    Ok(b.finish())
}

/// REALM, NONCE and the PASSWORD-ALGORITHMS offered (if any), for 401 and 438.
pub(crate) fn challenge(
    b: &mut MessageBuilder<'_>,
    realm: &str,
    nonce: &str,
    algorithms: &[Algorithm],
) -> Result<(), EncodeError> {
    b.add(&Realm(realm))?;
    b.add(&Nonce(nonce))?;
    if !algorithms.is_empty() {
        let mut list = [PasswordAlgorithm::MD5; 2];
        for (slot, a) in list.iter_mut().zip(algorithms) {
            slot.algorithm = a.number();
        }
        let n = algorithms.len().min(list.len());
        b.add(&PasswordAlgorithms::new(list.get(..n).unwrap_or(&[])))?;
    }
    Ok(())
}

/// UNKNOWN-ATTRIBUTES, for 420.
pub(crate) fn unknown(
    b: &mut MessageBuilder<'_>,
    list: Option<&[AttributeType]>,
) -> Result<(), EncodeError> {
    match list {
        Some(l) => b.add(&UnknownAttributes::new(l)),
        None => Ok(()),
    }
}

/// Writes a success response to `req`: `attrs` adds the method's attributes, then
/// SOFTWARE, MESSAGE-INTEGRITY(-SHA256) with `signer`, and FINGERPRINT.
pub(crate) fn success(
    out: &mut [u8],
    cfg: &Config,
    req: &Message<&[u8]>,
    signer: Signer<'_>,
    attrs: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), EncodeError>,
) -> Result<usize, EncodeError> {
    let mut b = MessageBuilder::response(out, req, Class::Success)?;
    attrs(&mut b)?;
    if let Some(s) = cfg.software() {
        b.add(&Software(s))?;
    }
    signer.sign(&mut b)?;
    b.add_fingerprint()?;
    Ok(b.finish())
}
