//! WebSocket upgrades (RFC 6455 §4): the request must be a GET with `Upgrade:
//! websocket`, a `Connection` naming `upgrade`, a `Sec-WebSocket-Key` of 16 bytes
//! in base64, `Sec-WebSocket-Version: 13`, and no body. The tunnel may open only
//! when the upstream answers 101 with the matching `Sec-WebSocket-Accept`.

use base64::Engine;
use sha1::{Digest, Sha1};

use crate::http::Body;
use crate::refusal::{Reason, Refusal};

/// The GUID of RFC 6455 §1.3.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

fn header<'b>(headers: &[httparse::Header<'b>], name: &str) -> Option<&'b [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.trim_ascii())
}

pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// The Sec-WebSocket-Accept for `key`: base64(SHA-1(key + GUID)), 28 characters.
pub fn accept_key(key: &str) -> [u8; 28] {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID.as_bytes());
    let digest: [u8; 20] = h.finalize().into();
    let mut out = [0u8; 28];
    let _ = base64::engine::general_purpose::STANDARD.encode_slice(digest, &mut out);
    out
}

/// Judges an upgrade request: `Ok(None)` when there is no `Upgrade` header,
/// `Ok(Some(key))` for a valid WebSocket upgrade, and a refusal otherwise.
pub fn upgrade_request<'b>(
    method: &str,
    headers: &[httparse::Header<'b>],
    body: Body,
) -> Result<Option<&'b str>, Refusal> {
    let Some(upgrade) = header(headers, "upgrade") else {
        return Ok(None);
    };
    let bad = Refusal::new(Reason::BadUpgrade);
    if !has_token(upgrade, b"websocket") || method != "GET" || body != Body::None {
        return Err(bad);
    }
    if !header(headers, "connection").is_some_and(|c| has_token(c, b"upgrade")) {
        return Err(bad);
    }
    if header(headers, "sec-websocket-version") != Some(&b"13"[..]) {
        return Err(bad);
    }
    let key = header(headers, "sec-websocket-key").ok_or(bad)?;
    let mut decoded = [0u8; 18];
    match base64::engine::general_purpose::STANDARD.decode_slice(key, &mut decoded) {
        Ok(16) => {}
        _ => return Err(bad),
    }
    core::str::from_utf8(key).map(Some).map_err(|_| bad)
}

/// Whether an upstream response switches to the WebSocket protocol for `key`: 101,
/// `Upgrade: websocket`, `Connection: upgrade`, and the right accept value.
pub fn accepts(status: u16, headers: &[httparse::Header<'_>], key: &str) -> bool {
    status == 101
        && header(headers, "upgrade").is_some_and(|u| has_token(u, b"websocket"))
        && header(headers, "connection").is_some_and(|c| has_token(c, b"upgrade"))
        && header(headers, "sec-websocket-accept") == Some(&accept_key(key)[..])
}

#[cfg(test)]
mod test {
    use super::*;

    fn h<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    #[test]
    fn rfc6455_example_accept() {
        // RFC 6455 §1.3.
        assert_eq!(
            &accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn upgrade_requests() {
        let good = [
            h("Upgrade", "websocket"),
            h("Connection", "keep-alive, Upgrade"),
            h("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            h("Sec-WebSocket-Version", "13"),
        ];
        assert_eq!(
            upgrade_request("GET", &good, Body::None),
            Ok(Some("dGhlIHNhbXBsZSBub25jZQ=="))
        );
        assert!(upgrade_request("POST", &good, Body::None).is_err());
        assert!(
            upgrade_request("GET", &good, Body::Length(3)).is_err(),
            "an upgrade with a body is refused"
        );
        assert!(upgrade_request("GET", &good, Body::Chunked).is_err());
        let mut bad_key = good;
        bad_key[2] = h("Sec-WebSocket-Key", "c2hvcnQ=");
        assert!(upgrade_request("GET", &bad_key, Body::None).is_err());
        let mut v12 = good;
        v12[3] = h("Sec-WebSocket-Version", "12");
        assert!(upgrade_request("GET", &v12, Body::None).is_err());
        let mut no_conn = good;
        no_conn[1] = h("Connection", "keep-alive");
        assert!(upgrade_request("GET", &no_conn, Body::None).is_err());
        assert_eq!(upgrade_request("GET", &good[1..], Body::None), Ok(None));
        let h2c = [h("Upgrade", "h2c"), h("Connection", "Upgrade")];
        assert!(upgrade_request("GET", &h2c, Body::None).is_err());
    }

    #[test]
    fn switching_responses() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = [
            h("Upgrade", "websocket"),
            h("Connection", "Upgrade"),
            h("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ];
        assert!(accepts(101, &ok, key));
        assert!(!accepts(200, &ok, key));
        let mut wrong = ok;
        wrong[2] = h("Sec-WebSocket-Accept", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert!(!accepts(101, &wrong, key));
        assert!(!accepts(101, &ok[..2], key));
    }
}
