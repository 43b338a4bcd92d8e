//! A complete sans-IO STUN Binding responder (RFC 8489 §6.3): the caller hands in a
//! received datagram (or one framed STUN message from a stream) and the source
//! address it came from, and gets back a response written into its buffer, or the
//! reason to stay silent.
//!
//! Bad input gets what the RFC prescribes: a header that is not STUN, or a
//! FINGERPRINT that does not match, is dropped silently; an unknown
//! comprehension-required attribute earns 420 with UNKNOWN-ATTRIBUTES; a malformed
//! attribute or an unsupported method earns 400. Indications and responses get no
//! answer. A response is never more than a few dozen bytes larger than the smallest
//! request that can trigger it.

use core::fmt;
use core::net::SocketAddr;

use crate::attributes::{
    AnyAttribute, AttributeType, ErrorCode, Software, UnknownAttributes, XorMappedAddress,
};
use crate::builder::MessageBuilder;
use crate::error::{AttributeError, EncodeError, IntegrityError, ParseError};
use crate::header::{Class, Method};
use crate::message::Message;

/// What the responder did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a reply was written into the buffer and must be sent"]
pub enum Outcome {
    /// A success response of this many bytes was written: send it to the source.
    Success(usize),
    /// An error response of this many bytes was written: send it to the source.
    Error {
        /// Bytes written.
        len: usize,
        /// The STUN error code sent.
        code: u16,
        /// Why, for the log.
        why: Why,
    },
    /// Nothing to send.
    Drop(Why),
}

/// Why a request was refused or dropped: one log line's worth for an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Why {
    /// Not a STUN message (silently dropped).
    Malformed(ParseError),
    /// FINGERPRINT present but wrong (silently dropped).
    BadFingerprint(IntegrityError),
    /// An indication or a response: nothing to answer.
    NotARequest(Class),
    /// A request for a method this responder does not serve.
    UnsupportedMethod(Method),
    /// A comprehension-required attribute that is not understood (the first one).
    UnknownAttribute(AttributeType),
    /// An attribute whose value is malformed.
    BadAttribute(AttributeError),
    /// The response did not fit the caller's buffer.
    Encode(EncodeError),
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Malformed(e) => write!(f, "dropped: {e}"),
            Why::BadFingerprint(e) => write!(f, "dropped: {e}"),
            Why::NotARequest(c) => write!(f, "ignored: a {c} needs no answer"),
            Why::UnsupportedMethod(m) => write!(f, "refused: {m} is not served here"),
            Why::UnknownAttribute(t) => {
                write!(f, "refused: unknown comprehension-required attribute {t}")
            }
            Why::BadAttribute(e) => write!(f, "refused: {e}"),
            Why::Encode(e) => write!(f, "cannot answer: {e}"),
        }
    }
}

/// The checks every STUN server runs before looking at the method: structure,
/// FINGERPRINT, class, unknown comprehension-required attributes, and the decoding
/// of every known attribute.
///
/// `understood` says which attribute types the server understands. Returns the
/// parsed request, or an [`Outcome`] to act on instead (already written into `out`
/// when it is an error response).
pub(crate) fn check_request<'m>(
    request: &'m [u8],
    understood: impl Fn(AttributeType) -> bool,
    software: Option<&str>,
    out: &mut [u8],
) -> Result<Message<&'m [u8]>, Outcome> {
    let msg = Message::new_checked(request).map_err(|e| Outcome::Drop(Why::Malformed(e)))?;
    if msg.has_fingerprint() {
        msg.verify_fingerprint()
            .map_err(|e| Outcome::Drop(Why::BadFingerprint(e)))?;
    }
    if msg.class() != Class::Request {
        return Err(Outcome::Drop(Why::NotARequest(msg.class())));
    }
    let unknown = msg.unknown_comprehension_required(&understood);
    if let Some(first) = unknown.first() {
        return Err(error_response(
            &msg,
            ErrorCode::UNKNOWN_ATTRIBUTE,
            Some(&unknown),
            software,
            Why::UnknownAttribute(*first),
            out,
        ));
    }
    let tid = msg.transaction_id();
    for a in msg.attributes() {
        if let Err(e) = AnyAttribute::decode(a.attribute_type(), a.value(), &tid) {
            return Err(error_response(
                &msg,
                ErrorCode::BAD_REQUEST,
                None,
                software,
                Why::BadAttribute(e),
                out,
            ));
        }
    }
    Ok(msg)
}

/// Writes an error response to `request` with `code`, optional UNKNOWN-ATTRIBUTES,
/// SOFTWARE and FINGERPRINT.
pub(crate) fn error_response<T: AsRef<[u8]>>(
    request: &Message<T>,
    code: ErrorCode<'_>,
    unknown: Option<&[AttributeType]>,
    software: Option<&str>,
    why: Why,
    out: &mut [u8],
) -> Outcome {
    let write = |out: &mut [u8]| -> Result<usize, EncodeError> {
        let mut b = MessageBuilder::response(out, request, Class::Error)?;
        b.add(&code)?;
        if let Some(list) = unknown {
            b.add(&UnknownAttributes::new(list))?;
        }
        if let Some(s) = software {
            b.add(&Software(s))?;
        }
        b.add_fingerprint()?;
        Ok(b.finish())
    };
    match write(out) {
        Ok(len) => Outcome::Error {
            len,
            code: code.code,
            why,
        },
        Err(e) => Outcome::Drop(Why::Encode(e)),
    }
}

/// Answers one STUN message received from `source`.
///
/// `software` goes into the SOFTWARE attribute of every response (keep it short;
/// `None` omits it). `out` should hold at least 128 bytes.
pub fn respond(
    request: &[u8],
    source: SocketAddr,
    software: Option<&str>,
    out: &mut [u8],
) -> Outcome {
    let msg = match check_request(request, AttributeType::is_known, software, out) {
        Ok(m) => m,
        Err(outcome) => return outcome,
    };
    if msg.method() != Method::BINDING {
        return error_response(
            &msg,
            ErrorCode::BAD_REQUEST,
            None,
            software,
            Why::UnsupportedMethod(msg.method()),
            out,
        );
    }
    let write = |out: &mut [u8]| -> Result<usize, EncodeError> {
        let mut b = MessageBuilder::response(out, &msg, Class::Success)?;
        b.add(&XorMappedAddress(source))?;
        if let Some(s) = software {
            b.add(&Software(s))?;
        }
        b.add_fingerprint()?;
        Ok(b.finish())
    };
    match write(out) {
        Ok(len) => Outcome::Success(len),
        Err(e) => Outcome::Drop(Why::Encode(e)),
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::header::{MessageType, TransactionId};

    const SRC: &str = "198.51.100.7:40000";

    fn request(
        method: Method,
        class: Class,
        extra: &[(u16, &[u8])],
        fingerprint: bool,
    ) -> ([u8; 256], usize) {
        let mut buf = [0u8; 256];
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(method, class),
            TransactionId::new([5; 12]),
        )
        .unwrap();
        for (t, v) in extra {
            b.add_raw(AttributeType::new(*t), v).unwrap();
        }
        if fingerprint {
            b.add_fingerprint().unwrap();
        }
        let len = b.finish();
        (buf, len)
    }

    #[test]
    fn binding_success() {
        let (req, len) = request(Method::BINDING, Class::Request, &[], true);
        let mut out = [0u8; 128];
        let Outcome::Success(n) = respond(
            &req[..len],
            SRC.parse().unwrap(),
            Some("causeway"),
            &mut out,
        ) else {
            panic!("expected success")
        };
        let m = Message::new_checked(&out[..n]).unwrap();
        assert_eq!(m.class(), Class::Success);
        assert_eq!(m.transaction_id(), TransactionId::new([5; 12]));
        assert_eq!(
            m.attribute::<XorMappedAddress>().unwrap().unwrap().0,
            SRC.parse().unwrap()
        );
        assert_eq!(
            m.attribute::<Software>().unwrap(),
            Some(Software("causeway"))
        );
        m.verify_fingerprint().unwrap();
    }

    #[test]
    fn silence_for_garbage_and_bad_fingerprint_and_indications() {
        let mut out = [0u8; 128];
        let src = SRC.parse().unwrap();
        assert!(matches!(
            respond(b"hello", src, None, &mut out),
            Outcome::Drop(Why::Malformed(_))
        ));
        let (mut req, len) = request(Method::BINDING, Class::Request, &[], true);
        req[len - 1] ^= 1;
        assert!(matches!(
            respond(&req[..len], src, None, &mut out),
            Outcome::Drop(Why::BadFingerprint(_))
        ));
        let (req, len) = request(Method::BINDING, Class::Indication, &[], false);
        assert_eq!(
            respond(&req[..len], src, None, &mut out),
            Outcome::Drop(Why::NotARequest(Class::Indication))
        );
    }

    #[test]
    fn unknown_required_attribute_gets_420() {
        let (req, len) = request(
            Method::BINDING,
            Class::Request,
            &[(0x7f00, b"x"), (0xff00, b"y")],
            false,
        );
        let mut out = [0u8; 128];
        let Outcome::Error {
            len: n, code: 420, ..
        } = respond(&req[..len], SRC.parse().unwrap(), None, &mut out)
        else {
            panic!("expected 420")
        };
        let m = Message::new_checked(&out[..n]).unwrap();
        let list = m.attribute::<UnknownAttributes>().unwrap().unwrap();
        assert!(list.iter().eq([AttributeType::new(0x7f00)]));
    }

    #[test]
    fn malformed_attribute_and_other_methods_get_400() {
        let mut out = [0u8; 128];
        let src = SRC.parse().unwrap();
        let (req, len) = request(
            Method::BINDING,
            Class::Request,
            &[(0x0020, &[0, 1, 0])],
            false,
        );
        assert!(matches!(
            respond(&req[..len], src, None, &mut out),
            Outcome::Error {
                code: 400,
                why: Why::BadAttribute(_),
                ..
            }
        ));
        let (req, len) = request(Method::ALLOCATE, Class::Request, &[], false);
        assert!(matches!(
            respond(&req[..len], src, None, &mut out),
            Outcome::Error {
                code: 400,
                why: Why::UnsupportedMethod(Method::ALLOCATE),
                ..
            }
        ));
    }

    #[test]
    fn small_buffer_is_not_a_panic() {
        let (req, len) = request(Method::BINDING, Class::Request, &[], false);
        let mut out = [0u8; 24];
        assert!(matches!(
            respond(&req[..len], SRC.parse().unwrap(), None, &mut out),
            Outcome::Drop(Why::Encode(_))
        ));
    }
}
