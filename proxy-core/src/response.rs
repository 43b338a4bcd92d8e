//! Responses the proxy writes itself (refusals, 301 redirects to HTTPS, 502 when a
//! web bridge cannot be reached), and the upstream response head, parsed to know
//! how its body is delimited.

use crate::http::RequestHead;
use crate::refusal::Refusal;
use crate::route::Site;

/// The reason phrase of the statuses the proxy sends.
pub(crate) const fn reason_phrase(status: u16) -> &'static str {
    match status {
        301 => "Moved Permanently",
        400 => "Bad Request",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// A writer into a fixed buffer; `None` once it is full.
struct Out<'o> {
    buf: &'o mut [u8],
    len: usize,
}

impl Out<'_> {
    fn put(&mut self, s: &[u8]) -> Option<()> {
        self.buf
            .get_mut(self.len..self.len + s.len())?
            .copy_from_slice(s);
        self.len += s.len();
        Some(())
    }

    fn num(&mut self, mut n: u64) -> Option<()> {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            *d.get_mut(i)? = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.put(d.get(i..)?)
    }
}

/// Writes a plain-text response `status` with `body`, closing the connection when
/// `close`. Returns its length, or `None` if `out` is too small.
pub fn write_status(out: &mut [u8], status: u16, body: &str, close: bool) -> Option<usize> {
    let mut o = Out { buf: out, len: 0 };
    o.put(b"HTTP/1.1 ")?;
    o.num(u64::from(status))?;
    o.put(b" ")?;
    o.put(reason_phrase(status).as_bytes())?;
    o.put(b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ")?;
    o.num(body.len() as u64 + 1)?;
    if close {
        o.put(b"\r\nConnection: close")?;
    }
    o.put(b"\r\n\r\n")?;
    o.put(body.as_bytes())?;
    o.put(b"\n")?;
    Some(o.len)
}

/// Writes the response for a refusal (its status, its reason as the body), with
/// `Connection: close` when `close` (see [`crate::http::after_refusal`]).
pub fn write_refusal(out: &mut [u8], r: &Refusal, close: bool) -> Option<usize> {
    let mut text = [0u8; 128];
    let reason = {
        let mut w = Out {
            buf: &mut text,
            len: 0,
        };
        let mut s: heapless::String<128> = heapless::String::new();
        let _ = core::fmt::write(&mut s, format_args!("{}", r.reason));
        w.put(s.as_bytes())?;
        w.len
    };
    let body = core::str::from_utf8(text.get(..reason)?).ok()?;
    write_status(out, r.status, body, close)
}

/// The host a plain-HTTP request is redirected to: the configured join URL its
/// Host names (in the configuration's spelling), else the first configured join
/// URL; `None` when there is none. The request's Host is never copied into the
/// redirect, so the proxy cannot be made to send browsers elsewhere.
pub(crate) fn redirect_host<'s>(sites: &[Site<'s>], host: &str) -> Option<&'s str> {
    let name = crate::route::split_port(host).map_or(host, |(n, _)| n);
    let name = name.strip_suffix('.').unwrap_or(name);
    sites
        .iter()
        .find(|s| s.host.eq_ignore_ascii_case(name))
        .or(sites.first())
        .map(|s| s.host)
}

/// Writes a 301 redirect of `head` to https on the default port, at the
/// configured join URL the request's Host names (never the Host itself), else
/// the first configured one, with the request's path and query. `None` when `out`
/// is too small, no join URL is configured, or the path holds bytes a Location
/// cannot carry.
pub fn write_redirect(out: &mut [u8], head: &RequestHead<'_>, sites: &[Site<'_>]) -> Option<usize> {
    let host = redirect_host(sites, head.host)?;
    let query = head.query.unwrap_or("");
    if host
        .bytes()
        .chain(head.path.bytes())
        .chain(query.bytes())
        .any(|b| b < 0x21 || b == 0x7f)
    {
        return None;
    }
    let mut o = Out { buf: out, len: 0 };
    o.put(b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://")?;
    o.put(host.as_bytes())?;
    // `//evil.example` as a path stays a path on the join URL's host.
    o.put(head.path.as_bytes())?;
    if let Some(q) = head.query {
        o.put(b"?")?;
        o.put(q.as_bytes())?;
    }
    o.put(b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    Some(o.len)
}

/// How an upstream response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body (1xx, 204, 304, or a response to HEAD).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked.
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// An upstream response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// Body framing.
    pub body: ResponseBody,
    /// Whether the upstream keeps the connection open.
    pub keep_alive: bool,
    /// Bytes of the head.
    pub head_len: usize,
}

/// Parses an upstream response head (after a request with `method`); `Ok(None)`
/// when incomplete; `Err(())` when it is not a response the proxy can relay safely
/// (ambiguous framing, as for requests).
#[allow(clippy::result_unit_err)]
pub fn parse_response<'b>(
    buf: &'b [u8],
    headers: &mut [httparse::Header<'b>],
    method: &str,
) -> Result<Option<ResponseHead>, ()> {
    let mut res = httparse::Response::new(headers);
    let head_len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let status = res.code.ok_or(())?;
    let version = res.version.ok_or(())?;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = version == 0;
    for h in res.headers.iter() {
        let v = h.value.trim_ascii();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = crate::http::content_length_value(v).ok_or(())?;
            if length.is_some_and(|l| l != n) {
                return Err(());
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || !v.eq_ignore_ascii_case(b"chunked") {
                return Err(());
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection")
            && crate::websocket::has_token(v, b"close")
        {
            close = true;
        }
    }
    if chunked && length.is_some() {
        return Err(());
    }
    let body = if (100..200).contains(&status) || status == 204 || status == 304 || method == "HEAD"
    {
        ResponseBody::None
    } else if chunked {
        ResponseBody::Chunked
    } else if let Some(n) = length {
        ResponseBody::Length(n)
    } else {
        close = true;
        ResponseBody::UntilClose
    };
    Ok(Some(ResponseHead {
        status,
        body,
        keep_alive: !close,
        head_len,
    }))
}

/// Whether the web bridge's connection may carry the next request after a
/// response with `head`: it said keep-alive, and sent nothing past the response's
/// end (`extra` bytes: more than its Content-Length, or a body after HEAD, 204 or
/// 304). A bridge that says more than it framed is out of step; its next bytes
/// would be taken as the next response.
pub fn reusable(head: &ResponseHead, extra: usize) -> bool {
    head.keep_alive && extra == 0 && head.body != ResponseBody::UntilClose
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::http::{Limits, Parsed, parse_request};
    use crate::refusal::Reason;

    #[test]
    fn writes() {
        let mut out = [0u8; 256];
        let n = write_refusal(&mut out, &Refusal::new(Reason::NotAllowed), false).unwrap();
        let s = core::str::from_utf8(&out[..n]).unwrap();
        assert!(s.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(s.ends_with("\r\n\r\npath not in the allow list\n"));
        assert!(!s.contains("Connection: close"));
        let n = write_refusal(&mut out, &Refusal::new(Reason::NotAllowed), true).unwrap();
        assert!(
            core::str::from_utf8(&out[..n])
                .unwrap()
                .contains("Connection: close")
        );
        let mut tiny = [0u8; 10];
        assert_eq!(write_status(&mut tiny, 502, "bad gateway", true), None);
    }

    fn location(raw: &[u8], sites: &[Site<'_>]) -> Option<heapless::String<128>> {
        let mut h = [httparse::EMPTY_HEADER; 8];
        let Ok(Parsed::Complete(head)) = parse_request(raw, &mut h, Limits::default()) else {
            panic!("a valid request")
        };
        let mut out = [0u8; 256];
        let n = write_redirect(&mut out, &head, sites)?;
        let s = core::str::from_utf8(&out[..n]).unwrap();
        let l = s
            .lines()
            .find_map(|l| l.strip_prefix("Location: "))
            .unwrap();
        Some(heapless::String::try_from(l).unwrap())
    }

    #[test]
    fn redirects_name_a_configured_join_url_never_the_request_host() {
        let sites = [
            Site {
                host: "join.example.com",
                upstream: 0,
            },
            Site {
                host: "meet.example.org",
                upstream: 1,
            },
        ];
        let loc = |raw: &[u8]| location(raw, &sites).unwrap();
        assert_eq!(
            loc(b"GET /a?b=1 HTTP/1.1\r\nHost: JOIN.example.com:80\r\n\r\n"),
            "https://join.example.com/a?b=1"
        );
        assert_eq!(
            loc(b"GET / HTTP/1.1\r\nHost: meet.example.org.\r\n\r\n"),
            "https://meet.example.org/"
        );
        // Any other Host (an attacker's, an IP literal) goes to the first join URL.
        assert_eq!(
            loc(b"GET /x HTTP/1.1\r\nHost: evil.example.net\r\n\r\n"),
            "https://join.example.com/x"
        );
        assert_eq!(
            loc(b"GET /x HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n"),
            "https://join.example.com/x"
        );
        assert_eq!(
            loc(b"GET //evil.example.net/ HTTP/1.1\r\nHost: evil.example.net\r\n\r\n"),
            "https://join.example.com//evil.example.net/"
        );
        // No join URL at all: no redirect.
        assert_eq!(
            location(b"GET / HTTP/1.1\r\nHost: join.example.com\r\n\r\n", &[]),
            None
        );
    }

    #[test]
    fn a_bridge_that_says_more_than_it_framed_is_not_reused() {
        let mut h = [httparse::EMPTY_HEADER; 16];
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            &mut h,
            "GET",
        )
        .unwrap()
        .unwrap();
        assert!(reusable(&r, 0));
        assert!(!reusable(&r, 1));
        let mut h = [httparse::EMPTY_HEADER; 16];
        let r = parse_response(b"HTTP/1.1 204 No Content\r\n\r\n", &mut h, "GET")
            .unwrap()
            .unwrap();
        assert!(!reusable(&r, 5), "a body after 204");
        let mut h = [httparse::EMPTY_HEADER; 16];
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\n",
            &mut h,
            "HEAD",
        )
        .unwrap()
        .unwrap();
        assert!(!reusable(&r, 0), "it said close");
    }

    #[test]
    fn response_framing() {
        let mut h = [httparse::EMPTY_HEADER; 16];
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            &mut h,
            "GET",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (r.status, r.body, r.keep_alive, r.head_len),
            (200, ResponseBody::Length(5), true, 38)
        );
        let mut h = [httparse::EMPTY_HEADER; 16];
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            &mut h,
            "GET",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.body, ResponseBody::Chunked);
        let mut h = [httparse::EMPTY_HEADER; 16];
        let r = parse_response(b"HTTP/1.1 200 OK\r\n\r\n", &mut h, "GET")
            .unwrap()
            .unwrap();
        assert_eq!((r.body, r.keep_alive), (ResponseBody::UntilClose, false));
        let mut h = [httparse::EMPTY_HEADER; 16];
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            &mut h,
            "HEAD",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.body, ResponseBody::None);
        let mut h = [httparse::EMPTY_HEADER; 16];
        assert!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                &mut h,
                "GET"
            )
            .is_err()
        );
        let mut h = [httparse::EMPTY_HEADER; 16];
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\n", &mut h, "GET"),
            Ok(None)
        );
    }
}
