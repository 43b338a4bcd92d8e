//! Writing responses: error responses with the attributes each code needs, and
//! success responses, with MESSAGE-INTEGRITY when the request was authenticated and
//! FINGERPRINT always.

use stun_core::attributes::{ErrorCode, Nonce, Realm, Software, UnknownAttributes};
use stun_core::{AttributeType, Class, EncodeError, Message, MessageBuilder};

use super::config::Config;

/// Writes an error response to `req` with `code`. `key` adds MESSAGE-INTEGRITY (for
/// authenticated requests); `challenge` adds REALM and NONCE (401, 438);
/// `unknown` adds UNKNOWN-ATTRIBUTES (420).
pub(crate) fn error(
    out: &mut [u8],
    cfg: &Config,
    req: &Message<&[u8]>,
    code: ErrorCode<'_>,
    key: Option<&[u8]>,
    challenge: Option<&str>,
    unknown: Option<&[AttributeType]>,
    extra: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), EncodeError>,
) -> Result<usize, EncodeError> {
    let mut b = MessageBuilder::response(out, req, Class::Error)?;
    b.add(&code)?;
    if let Some(nonce) = challenge {
        b.add(&Realm(&cfg.realm))?;
        b.add(&Nonce(nonce))?;
    }
    if let Some(list) = unknown {
        b.add(&UnknownAttributes::new(list))?;
    }
    extra(&mut b)?;
    if let Some(k) = key {
        b.add_message_integrity(k)?;
    }
    b.add_fingerprint()?;
    Ok(b.finish())
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
