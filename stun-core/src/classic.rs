//! Classic STUN (RFC 3489): a Binding request from a client that predates the
//! magic cookie, answered as RFC 8489 §12.2 (RFC 5389 §12.2) says a current
//! server may: the 16-byte transaction id copied back, MAPPED-ADDRESS instead of
//! XOR-MAPPED-ADDRESS.
//!
//! What it never does, so an answer cannot be turned against a third party:
//! - send anywhere but the source (RESPONSE-ADDRESS is refused with 420, as is a
//!   CHANGE-REQUEST that asks for another address or port: a server with one
//!   address cannot honour it, and answering from the same one would mislead a
//!   client's NAT-type test);
//! - add SOURCE-ADDRESS, CHANGED-ADDRESS or SOFTWARE: a success is the header and
//!   MAPPED-ADDRESS, 32 bytes for IPv4 (44 for IPv6), at most 24 more than the
//!   20-byte request that draws it; an error is 56 bytes, at most 32 more than
//!   the request (with the attribute refused) that draws it.
//!
//! Anything else without the cookie (another method or class, a length that
//! disagrees, an attribute that overruns) is dropped in silence.
//!
//! ```
//! use stun_core::classic::{self, Answer};
//!
//! // A classic Binding request: type 0x0001, length 0, a 16-byte transaction id.
//! let mut request = [0u8; 20];
//! request[1] = 0x01;
//! request[4..20].copy_from_slice(&[9; 16]);
//! let mut out = [0u8; 64];
//! let Answer::Mapped(n) = classic::respond(&request, "192.0.2.7:4000".parse().unwrap(), &mut out)
//! else { panic!("a classic Binding is answered") };
//! assert_eq!(&out[..2], &[0x01, 0x01]); // Binding success
//! assert_eq!(&out[4..20], &[9; 16]); // the transaction id, cookie bytes included
//! assert_eq!(n, 32);
//! ```

use core::net::SocketAddr;

use crate::header::{HEADER_LEN, MAGIC_COOKIE};
use crate::wire::{self, pad4};

/// RFC 3489's RESPONSE-ADDRESS (send the answer elsewhere): refused.
pub const RESPONSE_ADDRESS: u16 = 0x0002;
/// RFC 3489's CHANGE-REQUEST: accepted when it asks for no change.
pub const CHANGE_REQUEST: u16 = 0x0003;
/// The reason phrase of the 420 error (padded with spaces to a multiple of four
/// bytes, as RFC 3489 §11.2.9 requires).
pub(crate) const UNKNOWN_PHRASE: &str = "Unknown Attribute";

/// What to do with a packet that lacks the magic cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use = "an answer was written into the buffer and must be sent"]
pub enum Answer {
    /// A Binding success with MAPPED-ADDRESS, this many bytes: send it to the
    /// source.
    Mapped(usize),
    /// A 420 naming this attribute (RESPONSE-ADDRESS, CHANGE-REQUEST asking for
    /// a change, or an unknown mandatory one), this many bytes: send it to the
    /// source.
    Refused {
        /// Bytes written.
        len: usize,
        /// The attribute refused (the first).
        attribute: u16,
    },
    /// Not a classic Binding request (or the answer did not fit): nothing to send.
    Drop,
}

/// Whether `packet` looks like an RFC 3489 message: a STUN type, a length that
/// matches, and no magic cookie.
pub fn is_classic(packet: &[u8]) -> bool {
    let (Some(ty), Some(len), Some(cookie)) = (
        wire::u16_at(packet, 0),
        wire::u16_at(packet, 2),
        wire::u32_at(packet, 4),
    ) else {
        return false;
    };
    ty & 0xC000 == 0
        && cookie != MAGIC_COOKIE
        && len % 4 == 0
        && HEADER_LEN + usize::from(len) == packet.len()
}

/// Answers a classic Binding request received from `source`. `out` should hold
/// at least 64 bytes.
pub fn respond(request: &[u8], source: SocketAddr, out: &mut [u8]) -> Answer {
    if !is_classic(request) || wire::u16_at(request, 0) != Some(0x0001) {
        return Answer::Drop;
    }
    let Some(tid) = request.get(4..HEADER_LEN) else {
        return Answer::Drop;
    };
    match refused_attribute(request) {
        Err(()) => Answer::Drop,
        Ok(Some(attribute)) => match write_refusal(tid, attribute, out) {
            Some(len) => Answer::Refused { len, attribute },
            None => Answer::Drop,
        },
        Ok(None) => match write_mapped(tid, source, out) {
            Some(len) => Answer::Mapped(len),
            None => Answer::Drop,
        },
    }
}

/// The first attribute the request must be refused for, `Err` when an attribute
/// overruns the message.
fn refused_attribute(request: &[u8]) -> Result<Option<u16>, ()> {
    let mut at = HEADER_LEN;
    while at < request.len() {
        let t = wire::u16_at(request, at).ok_or(())?;
        let len = usize::from(wire::u16_at(request, at + 2).ok_or(())?);
        let value = request.get(at + 4..at + 4 + len).ok_or(())?;
        let refused = match t {
            // No change asked: test I of a NAT-type test.
            CHANGE_REQUEST => wire::u32_at(value, 0).is_none_or(|flags| flags & 0x6 != 0),
            RESPONSE_ADDRESS => true,
            // USERNAME, PASSWORD, MESSAGE-INTEGRITY: RFC 3489's shared secrets,
            // which a Binding answered to anyone does not need.
            0x0006..=0x0008 => false,
            t => t < 0x8000,
        };
        if refused {
            return Ok(Some(t));
        }
        at += 4 + pad4(len);
    }
    Ok(None)
}

/// Header (type, length, the request's 16-byte transaction id).
fn header(out: &mut [u8], ty: u16, body: usize, tid: &[u8]) -> Option<()> {
    wire::put_u16(out, 0, ty)?;
    wire::put_u16(out, 2, u16::try_from(body).ok()?)?;
    wire::put(out, 4, tid)
}

fn write_mapped(tid: &[u8], source: SocketAddr, out: &mut [u8]) -> Option<usize> {
    let (family, addr_len) = match source {
        SocketAddr::V4(_) => (1u16, 4),
        SocketAddr::V6(_) => (2u16, 16),
    };
    let body = 4 + 4 + addr_len;
    header(out, 0x0101, body, tid)?;
    wire::put_u16(out, HEADER_LEN, 0x0001)?; // MAPPED-ADDRESS
    wire::put_u16(out, HEADER_LEN + 2, 4 + addr_len as u16)?;
    wire::put_u16(out, HEADER_LEN + 4, family)?;
    wire::put_u16(out, HEADER_LEN + 6, source.port())?;
    match source {
        SocketAddr::V4(a) => wire::put(out, HEADER_LEN + 8, &a.ip().octets())?,
        SocketAddr::V6(a) => wire::put(out, HEADER_LEN + 8, &a.ip().octets())?,
    }
    Some(HEADER_LEN + body)
}

fn write_refusal(tid: &[u8], attribute: u16, out: &mut [u8]) -> Option<usize> {
    let phrase = UNKNOWN_PHRASE.as_bytes();
    let code_len = 4 + pad4(phrase.len());
    // RFC 3489 §11.2.12: an odd list repeats an entry to fill four bytes.
    let body = 4 + code_len + 4 + 4;
    header(out, 0x0111, body, tid)?;
    let mut at = HEADER_LEN;
    wire::put_u16(out, at, 0x0009)?; // ERROR-CODE
    wire::put_u16(out, at + 2, code_len as u16)?;
    wire::put(out, at + 4, &[0, 0, 4, 20])?;
    wire::put(out, at + 8, phrase)?;
    // RFC 3489 pads the phrase with spaces.
    for i in phrase.len()..pad4(phrase.len()) {
        wire::put(out, at + 8 + i, b" ")?;
    }
    at += 4 + code_len;
    wire::put_u16(out, at, 0x000A)?; // UNKNOWN-ATTRIBUTES
    wire::put_u16(out, at + 2, 4)?;
    wire::put_u16(out, at + 4, attribute)?;
    wire::put_u16(out, at + 6, attribute)?;
    Some(HEADER_LEN + body)
}

#[cfg(test)]
mod test {
    use super::*;

    const TID: [u8; 16] = [0xA5; 16];

    fn request(attrs: &[(u16, &[u8])]) -> ([u8; 128], usize) {
        let mut b = [0u8; 128];
        let mut at = HEADER_LEN;
        for (t, v) in attrs {
            b[at..at + 2].copy_from_slice(&t.to_be_bytes());
            b[at + 2..at + 4].copy_from_slice(&(v.len() as u16).to_be_bytes());
            b[at + 4..at + 4 + v.len()].copy_from_slice(v);
            at += 4 + pad4(v.len());
        }
        b[..2].copy_from_slice(&1u16.to_be_bytes());
        b[2..4].copy_from_slice(&((at - HEADER_LEN) as u16).to_be_bytes());
        b[4..20].copy_from_slice(&TID);
        (b, at)
    }

    #[test]
    fn binding_gets_mapped_address_and_nothing_else() {
        let src: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        let (req, n) = request(&[(CHANGE_REQUEST, &[0, 0, 0, 0])]);
        let mut out = [0u8; 64];
        assert_eq!(respond(&req[..n], src, &mut out), Answer::Mapped(32));
        assert_eq!(
            out[..32],
            [
                0x01, 0x01, 0, 12, // success, 12 bytes
                0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5,
                0xA5, 0xA5, // transaction id
                0, 1, 0, 8, 0, 1, 0x9c, 0x40, 198, 51, 100, 7, // MAPPED-ADDRESS
            ]
        );
        let v6: SocketAddr = "[2001:db8::1]:5".parse().unwrap();
        assert_eq!(respond(&req[..n], v6, &mut out), Answer::Mapped(44));
        assert_eq!(out[24..26], [0, 2]);
    }

    #[test]
    fn elsewhere_or_changed_is_refused_with_420() {
        let src: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        let mut out = [0u8; 128];
        for (t, v) in [
            (RESPONSE_ADDRESS, &[0u8, 1, 0, 80, 192, 0, 2, 1][..]),
            (CHANGE_REQUEST, &[0, 0, 0, 6]),
            (CHANGE_REQUEST, &[0, 0, 0, 2]),
            (0x0042, &[1, 2, 3, 4]),
        ] {
            let (req, n) = request(&[(t, v)]);
            let Answer::Refused { len, attribute } = respond(&req[..n], src, &mut out) else {
                panic!("{t:#x} refused")
            };
            assert_eq!(attribute, t);
            assert_eq!(out[..2], [0x01, 0x11]);
            assert_eq!(out[4..20], TID);
            assert_eq!(out[24..28], [0, 0, 4, 20]);
            assert_eq!(len, 56);
            assert!(len - n <= 28, "no more than 28 bytes over the request");
            assert_eq!(&out[28..48], b"Unknown Attribute   ");
            assert_eq!(
                out[len - 4..len],
                [(t >> 8) as u8, t as u8, (t >> 8) as u8, t as u8]
            );
        }
        // Optional attributes and RFC 3489's shared-secret ones are ignored.
        let (req, n) = request(&[(0x8022, b"old"), (0x0006, b"user")]);
        assert!(matches!(
            respond(&req[..n], src, &mut out),
            Answer::Mapped(_)
        ));
    }

    #[test]
    fn anything_else_is_dropped() {
        let src: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        let mut out = [0u8; 64];
        let (mut req, n) = request(&[]);
        assert!(is_classic(&req[..n]));
        // A modern request is not classic.
        req[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        assert_eq!(respond(&req[..n], src, &mut out), Answer::Drop);
        let (mut req, n) = request(&[]);
        req[1] = 0x11; // an error response, not a request
        assert_eq!(respond(&req[..n], src, &mut out), Answer::Drop);
        let (req, n) = request(&[(0x8022, b"abcd")]);
        assert_eq!(
            respond(&req[..n - 4], src, &mut out),
            Answer::Drop,
            "length"
        );
        let (mut req, n) = request(&[(0x8022, b"abcd")]);
        req[23] = 40; // the attribute overruns
        assert_eq!(respond(&req[..n], src, &mut out), Answer::Drop);
        assert_eq!(respond(&req[..5], src, &mut out), Answer::Drop);
        let (req, n) = request(&[]);
        assert_eq!(respond(&req[..n], src, &mut [0u8; 31]), Answer::Drop);
    }
}
