//! What a new connection on port 443 carries, from its first bytes: a TLS
//! ClientHello (and the SNI host it names), STUN/TURN over TCP, or plain HTTP; and,
//! once TLS is removed, TURN over TLS or HTTPS. This is how TURN and the web proxy
//! share port 443 without giving up TCP 3478.
//!
//! A ChannelData message never opens a connection (a channel needs an allocation
//! first), so the first byte separates STUN (0-3), TLS (22) and HTTP methods
//! (upper-case letters) without ambiguity.

/// What the first bytes of a connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening<'a> {
    /// Not enough bytes yet: read more (up to [`MAX_OPENING`]).
    NeedMore,
    /// A TLS ClientHello; `sni` is the host it asks for, if any.
    Tls {
        /// The server_name extension's host name.
        sni: Option<&'a str>,
    },
    /// STUN (a TURN client over plain TCP).
    Stun,
    /// Plain HTTP.
    Http,
    /// A PROXY protocol header (v1 or v2, see
    /// [`proxy_protocol`](crate::proxy_protocol)): a load balancer's, which a
    /// connection from an address not configured as one must not send.
    ProxyHeader,
    /// Anything else: close the connection.
    Unknown,
}

/// Most bytes to wait for before deciding: a whole TLS record.
pub const MAX_OPENING: usize = 5 + 16_384;

const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Classifies the opening bytes of a connection.
pub fn classify(bytes: &[u8]) -> Opening<'_> {
    match bytes.first() {
        None => Opening::NeedMore,
        Some(0..=3) => {
            if bytes.len() < 8 {
                Opening::NeedMore
            } else if bytes.get(4..8) == Some(&stun_core::MAGIC_COOKIE.to_be_bytes()[..]) {
                Opening::Stun
            } else {
                Opening::Unknown
            }
        }
        Some(&HANDSHAKE) => match client_hello_sni(bytes) {
            Ok(sni) => Opening::Tls { sni },
            Err(SniError::NeedMore) if bytes.len() < MAX_OPENING => Opening::NeedMore,
            Err(_) => Opening::Unknown,
        },
        Some(b'A'..=b'Z') => match http_method_prefix(bytes) {
            Opening::Http if bytes.starts_with(b"PROXY ") => Opening::ProxyHeader,
            o => o,
        },
        Some(b'\r') => {
            let sig = crate::proxy_protocol::V2_SIGNATURE;
            let n = bytes.len().min(sig.len());
            if bytes.get(..n) != sig.get(..n) {
                Opening::Unknown
            } else if n < sig.len() {
                Opening::NeedMore
            } else {
                Opening::ProxyHeader
            }
        }
        _ => Opening::Unknown,
    }
}

/// What the first plaintext bytes inside TLS are.
pub fn classify_inner(bytes: &[u8]) -> Opening<'_> {
    match bytes.first() {
        Some(&HANDSHAKE) => Opening::Unknown,
        _ => classify(bytes),
    }
}

/// An upper-case token then a space: an HTTP method.
fn http_method_prefix(bytes: &[u8]) -> Opening<'_> {
    for (i, b) in bytes.iter().enumerate().take(16) {
        match b {
            b'A'..=b'Z' | b'-' => {}
            b' ' if i > 0 => return Opening::Http,
            _ => return Opening::Unknown,
        }
    }
    if bytes.len() < 16 {
        Opening::NeedMore
    } else {
        Opening::Unknown
    }
}

/// Why no SNI could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SniError {
    /// The record is not complete yet.
    NeedMore,
    /// Not a well-formed ClientHello.
    Malformed,
}

/// The host name of the server_name extension of the ClientHello in the TLS record
/// at the start of `bytes`; `Ok(None)` when it has none.
pub fn client_hello_sni(bytes: &[u8]) -> Result<Option<&str>, SniError> {
    use SniError::{Malformed, NeedMore};
    if bytes.len() < 5 {
        return Err(NeedMore);
    }
    if bytes.first() != Some(&HANDSHAKE) || bytes.get(1) != Some(&3) {
        return Err(Malformed);
    }
    let record_len = usize::from(u16_at(bytes, 3).ok_or(NeedMore)?);
    // A plaintext record carries at most 2^14 bytes (RFC 8446 §5.1).
    if record_len > 16_384 {
        return Err(Malformed);
    }
    let record = bytes.get(5..5 + record_len).ok_or(NeedMore)?;
    if record.first() != Some(&CLIENT_HELLO) {
        return Err(Malformed);
    }
    let hs_len = (usize::from(*record.get(1).ok_or(Malformed)?) << 16)
        | usize::from(u16_at(record, 2).ok_or(Malformed)?);
    // A ClientHello split over several records is not examined (SNI unknown).
    let Some(hello) = record.get(4..4 + hs_len) else {
        return Ok(None);
    };
    // client_version (2) + random (32)
    let mut at = 34;
    let sid_len = usize::from(*hello.get(at).ok_or(Malformed)?);
    at += 1 + sid_len;
    let cs_len = usize::from(u16_at(hello, at).ok_or(Malformed)?);
    at += 2 + cs_len;
    let comp_len = usize::from(*hello.get(at).ok_or(Malformed)?);
    at += 1 + comp_len;
    if at == hello.len() {
        return Ok(None); // no extensions
    }
    let ext_len = usize::from(u16_at(hello, at).ok_or(Malformed)?);
    at += 2;
    let exts = hello.get(at..at + ext_len).ok_or(Malformed)?;
    let mut e = 0;
    while e < exts.len() {
        let ty = u16_at(exts, e).ok_or(Malformed)?;
        let len = usize::from(u16_at(exts, e + 2).ok_or(Malformed)?);
        let data = exts.get(e + 4..e + 4 + len).ok_or(Malformed)?;
        if ty == EXT_SERVER_NAME {
            let list_len = usize::from(u16_at(data, 0).ok_or(Malformed)?);
            let list = data.get(2..2 + list_len).ok_or(Malformed)?;
            let mut n = 0;
            while n < list.len() {
                let name_type = *list.get(n).ok_or(Malformed)?;
                let name_len = usize::from(u16_at(list, n + 1).ok_or(Malformed)?);
                let name = list.get(n + 3..n + 3 + name_len).ok_or(Malformed)?;
                if name_type == 0 {
                    let ok = !name.is_empty()
                        && name
                            .iter()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
                    if !ok {
                        return Err(Malformed);
                    }
                    return core::str::from_utf8(name).map(Some).map_err(|_| Malformed);
                }
                n += 3 + name_len;
            }
            return Ok(None);
        }
        e += 4 + len;
    }
    Ok(None)
}

#[cfg(test)]
mod test {
    use super::*;

    /// A minimal TLS 1.2-style ClientHello record with an SNI of `host`.
    pub(crate) fn hello(host: &str) -> heapless::Vec<u8, 512> {
        let mut ext: heapless::Vec<u8, 256> = heapless::Vec::new();
        let name = host.as_bytes();
        let _ = ext.extend_from_slice(&[0, 0]); // server_name
        let _ = ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
        let _ = ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        let _ = ext.push(0);
        let _ = ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        let _ = ext.extend_from_slice(name);
        let mut body: heapless::Vec<u8, 512> = heapless::Vec::new();
        let _ = body.extend_from_slice(&[3, 3]);
        let _ = body.extend_from_slice(&[7; 32]);
        let _ = body.push(0); // session id
        let _ = body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one cipher suite
        let _ = body.extend_from_slice(&[1, 0]); // null compression
        let _ = body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        let _ = body.extend_from_slice(&ext);
        let mut hs: heapless::Vec<u8, 512> = heapless::Vec::new();
        let _ = hs.push(1);
        let _ = hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        let _ = hs.extend_from_slice(&body);
        let mut rec: heapless::Vec<u8, 512> = heapless::Vec::new();
        let _ = rec.extend_from_slice(&[22, 3, 1]);
        let _ = rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        let _ = rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn tls_with_sni() {
        let h = hello("join.example.com");
        assert_eq!(
            classify(&h),
            Opening::Tls {
                sni: Some("join.example.com")
            }
        );
        for cut in 0..h.len() {
            assert_eq!(classify(&h[..cut]), Opening::NeedMore, "cut at {cut}");
        }
        let mut bad = h.clone();
        bad[h.len() - 3] = b'/';
        assert_eq!(classify(&bad), Opening::Unknown);
        // A ClientHello longer than its first record (split over records): TLS,
        // SNI unknown.
        let mut split = h.clone();
        split[6..9].copy_from_slice(&[0, 0x40, 0]);
        assert_eq!(classify(&split), Opening::Tls { sni: None });
    }

    #[test]
    fn stun_http_unknown() {
        let mut stun = [0u8; 20];
        stun[1] = 1;
        stun[4..8].copy_from_slice(&stun_core::MAGIC_COOKIE.to_be_bytes());
        assert_eq!(classify(&stun), Opening::Stun);
        assert_eq!(classify(&stun[..5]), Opening::NeedMore);
        stun[4] = 0;
        assert_eq!(classify(&stun), Opening::Unknown);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Opening::Http);
        assert_eq!(classify(b"GE"), Opening::NeedMore);
        assert_eq!(classify(b"get / HTTP/1.1"), Opening::Unknown);
        assert_eq!(classify(b"\x40\x00\x00\x04abcd"), Opening::Unknown);
        assert_eq!(classify_inner(b"POST /x HTTP/1.1"), Opening::Http);
        assert_eq!(classify_inner(&hello("a")), Opening::Unknown);
    }

    #[test]
    fn proxy_headers_are_told_apart() {
        let v1 = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
        assert_eq!(classify(v1), Opening::ProxyHeader);
        assert_eq!(classify(b"PROXY"), Opening::NeedMore);
        assert_eq!(classify(b"PROXYX / HTTP/1.1"), Opening::Http);
        let v2 = crate::proxy_protocol::V2_SIGNATURE;
        assert_eq!(classify(&v2), Opening::ProxyHeader);
        assert_eq!(classify(&v2[..5]), Opening::NeedMore);
        assert_eq!(classify(b"\r\nGET"), Opening::Unknown);
    }
}
