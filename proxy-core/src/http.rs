//! The HTTP/1.1 request head: parsed with `httparse` into the caller's header
//! slots, then checked against request smuggling and ambiguity (RFC 9112 §6, §11):
//!
//! - exactly one Host;
//! - Content-Length only as plain digits, and several only if identical;
//! - Transfer-Encoding only as one final `chunked`, and never with Content-Length;
//! - no obs-fold, no whitespace before a colon, no bare CR, no NUL;
//! - bounded head size, field count and target length.
//!
//! Lenient parsing is never on: what does not pass is refused with the status and
//! reason of [`crate::Refusal`], and the connection is closed when framing is
//! in doubt.

use crate::refusal::{Reason, Refusal};
use crate::websocket;

/// Size limits for request heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest head in bytes (431 past it).
    pub max_head: usize,
    /// Longest request target (414 past it).
    pub max_target: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_target: 4096,
        }
    }
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Body {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
}

/// A request head that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'b> {
    /// The method token.
    pub method: &'b str,
    /// The path part of the target (not yet normalised).
    pub path: &'b str,
    /// The query, without `?`, if any.
    pub query: Option<&'b str>,
    /// The Host header's value.
    pub host: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// How the body is delimited.
    pub body: Body,
    /// The WebSocket key, if this is a valid upgrade request.
    pub websocket_key: Option<&'b str>,
    /// Whether the connection stays open after this exchange (HTTP/1.1 without
    /// `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// Bytes of the head, CRLFCRLF included.
    pub head_len: usize,
    /// How many of the caller's header slots the head filled.
    pub header_count: usize,
}

/// The outcome of parsing what has arrived so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'b> {
    /// The head is not complete: read more.
    Partial,
    /// A complete, valid head.
    Complete(RequestHead<'b>),
}

fn refuse<T>(reason: Reason) -> Result<T, Refusal> {
    Err(Refusal::new(reason))
}

/// What becomes of a connection after its request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRefusal {
    /// Answer with `Connection: close`, then close.
    Close,
    /// Answer, drop the refused head (`consumed` bytes), and read the next request.
    Next {
        /// The head's length.
        consumed: usize,
    },
}

/// Decides what follows a refusal: every request gets exactly one answer, then
/// the connection closes (the framing is in doubt, the client asked for it, or a
/// body the proxy did not read is in the way) or reads the *next* request.
pub fn after_refusal(r: &Refusal, head: Option<&RequestHead<'_>>) -> AfterRefusal {
    match head {
        Some(h) if !r.must_close() && h.keep_alive && h.body == Body::None => AfterRefusal::Next {
            consumed: h.head_len,
        },
        _ => AfterRefusal::Close,
    }
}

/// Scans the head's bytes for what `httparse` would reject without saying why, so
/// the log names the actual problem.
fn precheck(head: &[u8]) -> Result<(), Refusal> {
    for (i, &b) in head.iter().enumerate() {
        match b {
            0 => return refuse(Reason::BadBytes),
            // A CR must be followed by LF (unless the head is cut right after it)...
            b'\r' if head.get(i + 1).is_some_and(|&n| n != b'\n') => {
                return refuse(Reason::BadBytes);
            }
            // ...and every LF preceded by CR: httparse accepts a bare LF as a line
            // end, but the forwarded head is cut at CRLFs, so a bare LF would let
            // the proxy and the web bridge see different requests.
            b'\n' if i == 0 || head.get(i - 1) != Some(&b'\r') => {
                return refuse(Reason::BadBytes);
            }
            b'\n' => match head.get(i + 1) {
                Some(b' ' | b'\t') => return refuse(Reason::ObsFold),
                _ => {
                    // A header line: whitespace before its colon?
                    let line = head.get(i + 1..).unwrap_or(&[]);
                    let end = line
                        .iter()
                        .position(|&c| c == b'\r' || c == b'\n')
                        .unwrap_or(line.len());
                    let line = line.get(..end).unwrap_or(&[]);
                    if let Some(colon) = line.iter().position(|&c| c == b':')
                        && colon > 0
                        && matches!(line.get(colon - 1), Some(b' ' | b'\t'))
                    {
                        return refuse(Reason::SpaceBeforeColon);
                    }
                }
            },
            _ => {}
        }
    }
    Ok(())
}

/// A Content-Length value: digits only (no sign, no list), at most 19 of them so
/// it cannot overflow; `None` otherwise.
pub(crate) fn content_length_value(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |a, d| a * 10 + u64::from(d - b'0')))
}

/// Parses and checks a request head from `buf` into `headers` slots.
pub fn parse_request<'b>(
    buf: &'b [u8],
    headers: &mut [httparse::Header<'b>],
    limits: Limits,
) -> Result<Parsed<'b>, Refusal> {
    // Refuse what can already be judged before the head is complete.
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    let scanned = buf.get(..end.unwrap_or(buf.len())).unwrap_or(&[]);
    precheck(scanned)?;
    let Some(head_len) = end else {
        if buf.len() >= limits.max_head {
            return refuse(Reason::HeadersTooLarge);
        }
        // A request line longer than the target limit need not be waited for.
        if !buf.contains(&b'\n') && buf.len() > limits.max_target + 16 {
            return refuse(Reason::UriTooLong);
        }
        return Ok(Parsed::Partial);
    };
    if head_len > limits.max_head {
        return refuse(Reason::HeadersTooLarge);
    }
    let mut req = httparse::Request::new(headers);
    match req.parse(buf.get(..head_len).unwrap_or(&[])) {
        Ok(httparse::Status::Complete(n)) if n == head_len => {}
        Ok(_) => return refuse(Reason::Malformed),
        Err(httparse::Error::TooManyHeaders) => return refuse(Reason::HeadersTooLarge),
        Err(httparse::Error::Version) => return refuse(Reason::Version),
        Err(_) => return refuse(Reason::Malformed),
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return refuse(Reason::Malformed);
    };
    if target.len() > limits.max_target {
        return refuse(Reason::UriTooLong);
    }
    if !target.starts_with('/') {
        return refuse(Reason::NotOriginForm);
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };

    let mut host = None;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut connection_close = version == 0;
    for h in req.headers.iter() {
        let value = h.value.trim_ascii();
        if h.name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return refuse(Reason::BadHost);
            }
            host = Some(core::str::from_utf8(value).map_err(|_| Refusal::new(Reason::BadHost))?);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let Some(n) = content_length_value(value) else {
                return refuse(Reason::BadContentLength);
            };
            if content_length.is_some_and(|c| c != n) {
                return refuse(Reason::BadContentLength);
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || version == 0 || !value.eq_ignore_ascii_case(b"chunked") {
                return refuse(Reason::BadTransferEncoding);
            }
            chunked = true;
        }
    }
    // `Connection` names fields the proxy removes before forwarding: never one
    // that frames the message or routes it, or the web bridge would read
    // something else than the proxy judged.
    let tokens = crate::forward::connection_tokens(req.headers)
        .ok_or(Refusal::new(Reason::BadConnection))?;
    for t in &tokens {
        if crate::forward::NEVER_HOP_BY_HOP
            .iter()
            .any(|n| t.eq_ignore_ascii_case(n.as_bytes()))
        {
            return refuse(Reason::BadConnection);
        }
        if t.eq_ignore_ascii_case(b"close") {
            connection_close = true;
        } else if t.eq_ignore_ascii_case(b"keep-alive") && version == 0 {
            connection_close = false;
        }
    }
    let Some(host) = host.filter(|h| !h.is_empty()) else {
        return refuse(Reason::BadHost);
    };
    if chunked && content_length.is_some() {
        return refuse(Reason::LengthAndChunked);
    }
    let body = match (chunked, content_length) {
        (true, _) => Body::Chunked,
        (false, Some(0)) | (false, None) => Body::None,
        (false, Some(n)) => Body::Length(n),
    };
    let websocket_key = websocket::upgrade_request(method, req.headers, body)?;
    Ok(Parsed::Complete(RequestHead {
        method,
        path,
        query,
        host,
        version,
        body,
        websocket_key,
        keep_alive: !connection_close,
        head_len,
        header_count: req.headers.len(),
    }))
}

#[cfg(test)]
mod test {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Parsed<'_>, Refusal> {
        let mut h = [httparse::EMPTY_HEADER; 32];
        let r = parse_request(raw, &mut h, Limits::default());
        // The headers slots borrow from `raw`, so this is fine to return.
        r.map(|p| match p {
            Parsed::Partial => Parsed::Partial,
            Parsed::Complete(c) => Parsed::Complete(c),
        })
    }

    fn reason(raw: &[u8]) -> Reason {
        parse(raw).unwrap_err().reason
    }

    #[test]
    fn good_requests() {
        let Parsed::Complete(h) =
            parse(b"GET /a/b?x=1 HTTP/1.1\r\nHost: join.example.com\r\n\r\n").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (h.method, h.path, h.query, h.host),
            ("GET", "/a/b", Some("x=1"), "join.example.com")
        );
        assert_eq!(h.body, Body::None);
        assert!(h.keep_alive);
        let Parsed::Complete(h) = parse(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello").unwrap() else { panic!() };
        assert_eq!(h.body, Body::Length(5));
        assert!(!h.keep_alive);
        let Parsed::Complete(h) =
            parse(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap()
        else {
            panic!()
        };
        assert_eq!(h.body, Body::Chunked);
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap(),
            Parsed::Partial
        );
        // A read that ends between CR and LF is only partial.
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r").unwrap(),
            Parsed::Partial
        );
    }

    #[test]
    fn smuggling_and_ambiguity_are_refused() {
        let cases: &[(&[u8], Reason)] = &[
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", Reason::LengthAndChunked),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", Reason::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", Reason::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", Reason::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\n", Reason::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", Reason::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Reason::BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", Reason::BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Reason::BadTransferEncoding),
            (b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", Reason::BadTransferEncoding),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", Reason::ObsFold),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 0\r\n\r\n", Reason::SpaceBeforeColon),
            (b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", Reason::BadBytes),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\0c\r\n\r\n", Reason::BadBytes),
            // A bare LF: httparse takes it as a line end, the forwarded head would not.
            (b"POST /api HTTP/1.1\nContent-Length: 5\r\nHost: a\r\n\r\n", Reason::BadBytes),
            (b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", Reason::BadBytes),
            (b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", Reason::BadBytes),
            (b"GET / HTTP/1.1\r\n\r\n", Reason::BadHost),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Reason::BadHost),
            (b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", Reason::NotOriginForm),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", Reason::Version),
            (b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n", Reason::Malformed),
        ];
        for (raw, why) in cases {
            assert_eq!(
                reason(raw),
                *why,
                "{}",
                core::str::from_utf8(raw).unwrap_or("?")
            );
        }
        let refusal = parse(cases[0].0).unwrap_err();
        assert_eq!(refusal.status, 400);
        assert!(refusal.must_close());
    }

    #[test]
    fn after_a_refusal_the_connection_reads_the_next_request_or_closes() {
        let forbidden = Refusal::new(Reason::NotAllowed);
        let raw = b"GET /secret HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let Ok(Parsed::Complete(h)) = parse(raw) else {
            panic!()
        };
        assert_eq!(
            after_refusal(&forbidden, Some(&h)),
            AfterRefusal::Next { consumed: 33 }
        );
        assert!(raw[33..].starts_with(b"GET / "));
        for raw in [
            &b"GET /secret HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"[..],
            b"POST /secret HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody",
            b"GET /secret HTTP/1.0\r\nHost: a\r\n\r\n",
        ] {
            let Ok(Parsed::Complete(h)) = parse(raw) else {
                panic!()
            };
            assert_eq!(after_refusal(&forbidden, Some(&h)), AfterRefusal::Close);
        }
        let Ok(Parsed::Complete(h)) = parse(raw) else {
            panic!()
        };
        assert_eq!(
            after_refusal(&Refusal::new(Reason::AmbiguousPath), Some(&h)),
            AfterRefusal::Close
        );
        assert_eq!(after_refusal(&forbidden, None), AfterRefusal::Close);
    }

    #[test]
    fn limits() {
        let mut long = [b'a'; 5000];
        long[..5].copy_from_slice(b"GET /");
        assert_eq!(parse(&long).unwrap_err().status, 414);
        let mut h = [httparse::EMPTY_HEADER; 2];
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(
            parse_request(raw, &mut h, Limits::default())
                .unwrap_err()
                .status,
            431
        );
        let mut h = [httparse::EMPTY_HEADER; 2];
        let mut req = [b'x'; 20020];
        req[..18].copy_from_slice(b"GET / HTTP/1.1\r\nX:");
        assert_eq!(
            parse_request(&req, &mut h, Limits::default())
                .unwrap_err()
                .status,
            431
        );
    }
}
