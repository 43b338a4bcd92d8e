//! Writing responses: error responses with the attributes each code needs, and
//! success responses, with MESSAGE-INTEGRITY when the request was authenticated and
//! FINGERPRINT always.

use stun_core::attributes::{ErrorCode, Nonce, Realm, Software, UnknownAttributes};
use stun_core::{AttributeType, Class, EncodeError, Message, MessageBuilder};

use super::config::Config;

/// Writes an error response to `req` with `code`; `extra` adds the attributes the
/// code needs (see [`challenge`], [`unknown`]); `key` adds MESSAGE-INTEGRITY (for
/// authenticated requests).
pub(crate) fn error(
    out: &mut [u8],
    req: &Message<&[u8]>,
    code: ErrorCode<'_>,
    key: Option<&[u8]>,
    extra: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), EncodeError>,
) -> Result<usize, EncodeError> {
    let mut b = MessageBuilder::response(out, req, Class::Error)?;
    b.add(&code)?;
    extra(&mut b)?;
    if let Some(k) = key {
        b.add_message_integrity(k)?;
    }
    b.add_fingerprint()?;
    Ok(b.finish())
}

/// REALM and NONCE, for 401 and 438.
pub(crate) fn challenge(
    b: &mut MessageBuilder<'_>,
    realm: &str,
    nonce: &str,
) -> Result<(), EncodeError> {
    b.add(&Realm(realm))?;
    b.add(&Nonce(nonce))
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
/// SOFTWARE, MESSAGE-INTEGRITY with `key`, and FINGERPRINT.
pub(crate) fn success(
    out: &mut [u8],
    cfg: &Config,
    req: &Message<&[u8]>,
    key: &[u8],
    attrs: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), EncodeError>,
) -> Result<usize, EncodeError> {
    let mut b = MessageBuilder::response(out, req, Class::Success)?;
    attrs(&mut b)?;
    if let Some(s) = cfg.software() {
        b.add(&Software(s))?;
    }
    b.add_message_integrity(key)?;
    b.add_fingerprint()?;
    Ok(b.finish())
}
