//! The heads the proxy forwards, written into the caller's buffer: the request
//! head for the web bridge and the response head for the browser.
//!
//! - **Hop-by-hop fields** (RFC 9110 §7.6.1) are removed in both directions:
//!   `Connection`, `Keep-Alive`, `TE`, `Trailer`, `Proxy-Connection`,
//!   `Proxy-Authorization`, `Proxy-Authenticate`, `Upgrade`, and every field the
//!   `Connection` field names. On a WebSocket upgrade the proxy checked, and on the
//!   101 that accepts it, `Connection: Upgrade` and `Upgrade: websocket` are
//!   written again. Fields that frame the message (`Content-Length`,
//!   `Transfer-Encoding`) and `Host` are never removed: a request whose
//!   `Connection` names them is refused by [`crate::http`].
//! - **Forwarding fields**: as the internet-facing edge, the proxy passes on
//!   nothing a client claims about the path it took. `X-Forwarded-For`,
//!   `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Real-IP` and `Forwarded` from the
//!   client are dropped, and each is written once from what the proxy saw: the
//!   client's address, `https`, and the Host it asked for.

use core::fmt::Write as _;
use core::net::IpAddr;

/// The request head could not be written: `out` is too small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSmall;

/// Fields removed in both directions, besides those `Connection` names.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "upgrade",
];

/// Fields a client may not set: the proxy writes them itself.
const FORWARDING: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
];

/// Fields that must survive whatever `Connection` names.
pub(crate) const NEVER_HOP_BY_HOP: &[&str] = &["host", "content-length", "transfer-encoding"];

/// Most tokens a `Connection` field may carry.
pub(crate) const MAX_CONNECTION_TOKENS: usize = 16;

/// The tokens of every `Connection` field, or `None` when there are more than
/// [`MAX_CONNECTION_TOKENS`].
pub(crate) fn connection_tokens<'b>(
    headers: &[httparse::Header<'b>],
) -> Option<heapless::Vec<&'b [u8], MAX_CONNECTION_TOKENS>> {
    let mut tokens = heapless::Vec::new();
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
    {
        for t in h.value.split(|&b| b == b',') {
            let t = t.trim_ascii();
            if !t.is_empty() {
                tokens.push(t).ok()?;
            }
        }
    }
    Some(tokens)
}

/// Whether the field `name` is dropped when forwarding: hop-by-hop (listed, or
/// named by `Connection`), or, in requests, a forwarding field.
fn dropped(name: &str, named: &[&[u8]], request: bool) -> bool {
    let is = |list: &[&str]| list.iter().any(|h| name.eq_ignore_ascii_case(h));
    is(HOP_BY_HOP)
        || (request && is(FORWARDING))
        || (named
            .iter()
            .any(|t| name.as_bytes().eq_ignore_ascii_case(t))
            && !is(NEVER_HOP_BY_HOP))
}

/// A writer into a fixed buffer.
struct Out<'o> {
    buf: &'o mut [u8],
    len: usize,
}

impl Out<'_> {
    fn put(&mut self, s: &[u8]) -> Result<(), TooSmall> {
        let dst = self
            .buf
            .get_mut(self.len..self.len + s.len())
            .ok_or(TooSmall)?;
        dst.copy_from_slice(s);
        self.len += s.len();
        Ok(())
    }

    /// The end-to-end fields of a request's or a response's `headers`, as they
    /// came.
    fn fields(&mut self, headers: &[httparse::Header<'_>], request: bool) -> Result<(), TooSmall> {
        let named = connection_tokens(headers).unwrap_or_default();
        for h in headers.iter().filter(|h| !h.name.is_empty()) {
            if dropped(h.name, &named, request) {
                continue;
            }
            self.put(h.name.as_bytes())?;
            self.put(b": ")?;
            self.put(h.value)?;
            self.put(b"\r\n")?;
        }
        Ok(())
    }
}

impl core::fmt::Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.put(s.as_bytes()).map_err(|_| core::fmt::Error)
    }
}

/// What the proxy saw of a request, for the head it forwards.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method token.
    pub method: &'a str,
    /// The normalised path the allow list judged.
    pub path: &'a str,
    /// The query, if any.
    pub query: Option<&'a str>,
    /// The Host the client asked for (a configured join URL, routing checked it).
    pub host: &'a str,
    /// The client's address, as the proxy saw it.
    pub client: IpAddr,
    /// Whether it is a WebSocket upgrade the proxy checked.
    pub websocket: bool,
}

/// Writes the request head for the web bridge: the request line with `req`'s
/// path, the client's end-to-end fields, the forwarding fields, and the upgrade
/// fields of a WebSocket. Returns its length.
pub fn write_request(
    out: &mut [u8],
    req: &Request<'_>,
    headers: &[httparse::Header<'_>],
) -> Result<usize, TooSmall> {
    let mut o = Out { buf: out, len: 0 };
    o.put(req.method.as_bytes())?;
    o.put(b" ")?;
    o.put(req.path.as_bytes())?;
    if let Some(q) = req.query {
        o.put(b"?")?;
        o.put(q.as_bytes())?;
    }
    o.put(b" HTTP/1.1\r\n")?;
    o.fields(headers, true)?;
    if req.websocket {
        o.put(b"Connection: Upgrade\r\nUpgrade: websocket\r\n")?;
    }
    let ip = req.client;
    let v6 = ip.is_ipv6();
    let (open, close) = if v6 { ("\"[", "]\"") } else { ("", "") };
    write!(
        o,
        "X-Forwarded-For: {ip}\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: {host}\r\n\
         X-Real-IP: {ip}\r\nForwarded: for={open}{ip}{close};proto=https;host=\"{host}\"\r\n\r\n",
        host = req.host,
    )
    .map_err(|_| TooSmall)?;
    Ok(o.len)
}

/// What the proxy decided about a response it relays.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: &'a str,
    /// Whether it is the 101 accepting a WebSocket upgrade the proxy checked.
    pub upgrade: bool,
    /// Whether the proxy closes the client's connection after it.
    pub close: bool,
}

/// Writes the response head for the browser: the status line, the web bridge's
/// end-to-end fields, `Connection: close` when the proxy closes after it, and the
/// upgrade fields of an accepted WebSocket. Returns its length.
pub fn write_response(
    out: &mut [u8],
    res: &Response<'_>,
    headers: &[httparse::Header<'_>],
) -> Result<usize, TooSmall> {
    let mut o = Out { buf: out, len: 0 };
    write!(o, "HTTP/1.1 {} ", res.status).map_err(|_| TooSmall)?;
    // The reason phrase is the web bridge's text: control bytes are not copied.
    for b in res
        .reason
        .bytes()
        .filter(|b| *b == b'\t' || (b' '..=b'~').contains(b))
    {
        o.put(&[b])?;
    }
    o.put(b"\r\n")?;
    // Forwarding fields are request fields: a response's are relayed as they are.
    o.fields(headers, false)?;
    if res.upgrade {
        o.put(b"Connection: Upgrade\r\nUpgrade: websocket\r\n")?;
    } else if res.close {
        o.put(b"Connection: close\r\n")?;
    }
    o.put(b"\r\n")?;
    Ok(o.len)
}

#[cfg(test)]
mod test {
    use super::*;

    fn fields(head: &[u8]) -> heapless::Vec<heapless::String<96>, 32> {
        let text = core::str::from_utf8(head).unwrap();
        text.split("\r\n")
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| heapless::String::try_from(l).unwrap())
            .collect()
    }

    fn req(raw: &[u8], websocket: bool, client: &str) -> heapless::Vec<u8, 2048> {
        let mut h = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Request::new(&mut h);
        r.parse(raw).unwrap();
        let mut out = [0u8; 2048];
        let n = write_request(
            &mut out,
            &Request {
                method: r.method.unwrap(),
                path: "/api/x",
                query: Some("a=1"),
                host: "join.example.com",
                client: client.parse().unwrap(),
                websocket,
            },
            r.headers,
        )
        .unwrap();
        heapless::Vec::from_slice(&out[..n]).unwrap()
    }

    #[test]
    fn hop_by_hop_fields_are_removed_from_requests() {
        let out = req(
            b"GET /api/../api/x HTTP/1.1\r\nHost: join.example.com\r\nConnection: keep-alive, X-Secret\r\n\
              Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nProxy-Connection: keep-alive\r\n\
              Proxy-Authorization: Basic Zm9vOmJhcg==\r\nX-Secret: 1\r\nUpgrade: h2c\r\nAccept: */*\r\n\r\n",
            false,
            "198.51.100.7",
        );
        assert!(out.starts_with(b"GET /api/x?a=1 HTTP/1.1\r\n"));
        let f = fields(&out);
        assert_eq!(f[0], "Host: join.example.com");
        assert_eq!(f[1], "Accept: */*");
        for gone in [
            "connection",
            "keep-alive",
            "te:",
            "trailer",
            "proxy-",
            "x-secret",
            "upgrade",
        ] {
            assert!(
                !f.iter().any(|l| l.to_ascii_lowercase().starts_with(gone)),
                "{gone}: {f:?}"
            );
        }
    }

    #[test]
    fn forwarding_fields_are_the_proxys_own_one_each() {
        let out = req(
            b"POST /x HTTP/1.1\r\nHost: join.example.com\r\nX-Forwarded-For: 10.0.0.1\r\n\
              x-forwarded-proto: http\r\nX-Forwarded-Host: evil\r\nX-Real-IP: 10.0.0.1\r\n\
              Forwarded: for=10.0.0.1\r\nContent-Length: 3\r\n\r\n",
            false,
            "2001:db8::7",
        );
        let f = fields(&out);
        let want = [
            "Host: join.example.com",
            "Content-Length: 3",
            "X-Forwarded-For: 2001:db8::7",
            "X-Forwarded-Proto: https",
            "X-Forwarded-Host: join.example.com",
            "X-Real-IP: 2001:db8::7",
            "Forwarded: for=\"[2001:db8::7]\";proto=https;host=\"join.example.com\"",
        ];
        assert_eq!(f.len(), want.len(), "{f:?}");
        for (got, want) in f.iter().zip(want) {
            assert_eq!(got, want);
        }
        let out = req(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false, "198.51.100.7");
        assert!(
            fields(&out)
                .iter()
                .any(|l| l == "Forwarded: for=198.51.100.7;proto=https;host=\"join.example.com\"")
        );
    }

    #[test]
    fn a_checked_upgrade_keeps_its_upgrade_fields() {
        let out = req(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            true,
            "198.51.100.7",
        );
        let f = fields(&out);
        assert!(f.iter().any(|l| l == "Connection: Upgrade"));
        assert!(f.iter().any(|l| l == "Upgrade: websocket"));
        assert!(f.iter().any(|l| l.starts_with("Sec-WebSocket-Key: ")));
        assert_eq!(f.iter().filter(|l| l.starts_with("Connection")).count(), 1);
    }

    fn res(raw: &[u8], upgrade: bool, close: bool) -> heapless::Vec<u8, 2048> {
        let mut h = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut h);
        r.parse(raw).unwrap();
        let mut out = [0u8; 2048];
        let n = write_response(
            &mut out,
            &Response {
                status: r.code.unwrap(),
                reason: r.reason.unwrap(),
                upgrade,
                close,
            },
            r.headers,
        )
        .unwrap();
        heapless::Vec::from_slice(&out[..n]).unwrap()
    }

    #[test]
    fn hop_by_hop_fields_are_removed_from_responses() {
        let out = res(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\nKeep-Alive: timeout=5\r\n\
              X-Internal: secret\r\nProxy-Authenticate: Basic\r\nContent-Length: 2\r\n\
              Upgrade: h2c\r\nX-Forwarded-For: 10.0.0.9\r\n\r\n",
            false,
            true,
        );
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
        let f = fields(&out);
        assert_eq!(
            f.as_slice(),
            &[
                "Content-Length: 2",
                "X-Forwarded-For: 10.0.0.9",
                "Connection: close"
            ]
        );
        let out = res(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            true,
            false,
        );
        let f = fields(&out);
        assert_eq!(
            f.as_slice(),
            &[
                "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                "Connection: Upgrade",
                "Upgrade: websocket"
            ]
        );
    }

    #[test]
    fn a_small_buffer_is_an_error_not_a_panic() {
        let mut h = [httparse::EMPTY_HEADER; 4];
        let mut r = httparse::Request::new(&mut h);
        r.parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let request = Request {
            method: "GET",
            path: "/",
            query: None,
            host: "a",
            client: "1.2.3.4".parse().unwrap(),
            websocket: false,
        };
        for n in 0..40 {
            let mut out = [0u8; 64];
            assert_eq!(
                write_request(&mut out[..n], &request, r.headers),
                Err(TooSmall)
            );
        }
    }
}
