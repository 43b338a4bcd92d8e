//! One proxied browser connection: requests read and judged one after another,
//! forwarded to the web bridge with their bodies streamed, responses streamed back,
//! and WebSocket upgrades turned into a tunnel once the bridge accepts them.

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, warn};
use proxy_core::body::{Chunked, Framing, Length};
use proxy_core::decide::{self, Forward};
use proxy_core::http::{Body, Limits, Parsed, RequestHead, parse_request};
use proxy_core::response::{
    ResponseBody, parse_response, write_redirect, write_refusal, write_status,
};
use proxy_core::timer::RequestTimer;
use proxy_core::{Refusal, websocket};

use super::Proxy;
use super::io::{CLIENT, Io, UPSTREAM};
use crate::link::Link;

/// Idle time allowed in a WebSocket tunnel and between keep-alive requests.
const IDLE: Duration = Duration::from_secs(600);
/// Chunk of body copied at a time.
const COPY: usize = 16 * 1024;

fn millis() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn deadline_of(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms.saturating_sub(millis()))
}

/// What ended the exchange of one request.
enum Next {
    /// Read the next request on the same connection.
    KeepAlive,
    /// Close the connection.
    Close,
}

/// Serves the connection until it closes.
pub(super) fn serve(
    proxy: &Proxy,
    mut client: Link,
    mut buf: Vec<u8>,
    sni: Option<String>,
    peer: SocketAddr,
) {
    let Ok(mut io) = Io::new() else { return };
    if io.register(&mut client, CLIENT).is_err() {
        return;
    }
    let tls = client.tls.is_some();
    let mut upstream: Option<(usize, Link)> = None;
    loop {
        let next = exchange(
            proxy,
            &mut io,
            &mut client,
            &mut buf,
            sni.as_deref(),
            peer,
            tls,
            &mut upstream,
        );
        match next {
            Ok(Next::KeepAlive) => continue,
            Ok(Next::Close) => break,
            Err(e) => {
                debug!("https {peer}: {e}");
                break;
            }
        }
    }
    client.close();
}

/// Reads one request head into `buf` (which may already hold some of it).
fn read_head(
    proxy: &Proxy,
    io: &mut Io,
    client: &mut Link,
    buf: &mut Vec<u8>,
    first: bool,
) -> io::Result<Result<usize, Refusal>> {
    let mut timer = RequestTimer::new(proxy.deadlines, millis());
    let limits = Limits::default();
    let mut chunk = [0u8; 4096];
    loop {
        {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            match parse_request(buf, &mut headers, limits) {
                Ok(Parsed::Complete(head)) => {
                    timer.head_done(millis());
                    return Ok(Ok(head.head_len));
                }
                Ok(Parsed::Partial) => {}
                Err(r) => return Ok(Err(r)),
            }
        }
        // Before the first byte of a request on a kept-alive connection, the
        // idle limit applies; after it, the head deadline.
        let deadline = if buf.is_empty() && !first {
            Instant::now() + IDLE
        } else {
            deadline_of(timer.poll_timeout().unwrap_or(0))
        };
        match io.read(client, &mut chunk, deadline) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::TimedOut && !buf.is_empty() => {
                return Ok(timer.check(millis()).map(|()| 0));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Answers with a refusal, logging it; returns whether to go on.
fn refuse(
    io: &mut Io,
    client: &mut Link,
    r: &Refusal,
    peer: SocketAddr,
    what: &str,
    body: Body,
) -> io::Result<Next> {
    if r.status == 403 || r.status == 405 || r.status == 421 {
        info!("https {peer} {what}: {r}");
    } else {
        debug!("https {peer} {what}: {r}");
    }
    let mut out = [0u8; 512];
    if let Some(n) = write_refusal(&mut out, r) {
        io.write_all(client, &out[..n], Instant::now() + Duration::from_secs(5))?;
    }
    // A body the proxy did not read makes the next request's start unknown.
    Ok(if r.must_close() || body != Body::None {
        Next::Close
    } else {
        Next::KeepAlive
    })
}

#[allow(clippy::too_many_arguments)]
fn exchange(
    proxy: &Proxy,
    io: &mut Io,
    client: &mut Link,
    buf: &mut Vec<u8>,
    sni: Option<&str>,
    peer: SocketAddr,
    tls: bool,
    upstream: &mut Option<(usize, Link)>,
) -> io::Result<Next> {
    let first = upstream.is_none();
    let head_len = match read_head(proxy, io, client, buf, first)? {
        Ok(n) => n,
        Err(r) => return refuse(io, client, &r, peer, "request", Body::None).map(|_| Next::Close),
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let head = match parse_request(buf, &mut headers, Limits::default()) {
        Ok(Parsed::Complete(h)) if h.head_len == head_len => h,
        _ => return Ok(Next::Close),
    };
    let what = format!("{} {} {}", head.host, head.method, head.path);
    if !tls {
        // Plain HTTP reached the TLS port: send the browser to https.
        let mut out = [0u8; 8192];
        if let Some(n) = write_redirect(&mut out, &head) {
            io.write_all(client, &out[..n], Instant::now() + Duration::from_secs(5))?;
        }
        return Ok(Next::Close);
    }
    let cfg = decide::Config {
        sites: &proxy.sites,
        rules: &proxy.rules,
        port: proxy.port,
    };
    let mut path_buf = [0u8; 4096];
    let forward = match decide::decide(&cfg, &head, sni, &mut path_buf) {
        Ok(f) => f,
        Err(r) => return refuse(io, client, &r, peer, &what, head.body),
    };
    // A connection to the right web bridge, reused across requests.
    if upstream
        .as_ref()
        .is_none_or(|(i, _)| *i != forward.upstream)
    {
        *upstream = None;
        let Some(u) = proxy.upstreams.get(forward.upstream) else {
            return Ok(Next::Close);
        };
        match u.connect(&proxy.client_tls, Duration::from_secs(10)) {
            Ok(mut link) => {
                io.register(&mut link, UPSTREAM)?;
                *upstream = Some((forward.upstream, link));
            }
            Err(e) => {
                warn!(
                    "https {peer} {what}: web bridge connection failed for join URL `{}` ({u}): {e}",
                    head.host
                );
                let mut out = [0u8; 512];
                if let Some(n) = write_status(&mut out, 502, "web bridge unreachable", true) {
                    io.write_all(client, &out[..n], Instant::now() + Duration::from_secs(5))?;
                }
                return Ok(Next::Close);
            }
        }
    }
    let up_head = upstream_head(buf, &head, &forward, peer);
    let body = head.body;
    let keep_alive = head.keep_alive;
    let method = head.method.to_string();
    let ws_key = head.websocket_key.map(str::to_string);
    let leftover = buf.split_off(head_len);
    let Some((_, up)) = upstream.as_mut() else {
        return Ok(Next::Close);
    };
    let send = Instant::now() + Duration::from_millis(proxy.upstream_timeout_ms);
    if let Err(e) = io.write_all(up, &up_head, send) {
        *upstream = None;
        return bad_gateway(
            io,
            client,
            peer,
            &what,
            &format!("sending the request: {e}"),
        );
    }
    *buf = leftover;
    // The request body, streamed.
    if let Err(e) = copy_body(proxy, io, client, up, buf, body) {
        *upstream = None;
        return Err(e);
    }
    // The response head.
    let Some((_, up)) = upstream.as_mut() else {
        return Ok(Next::Close);
    };
    let mut rbuf = Vec::with_capacity(4096);
    let deadline = Instant::now() + Duration::from_millis(proxy.upstream_timeout_ms);
    let mut chunk = [0u8; COPY];
    let (status, rbody, up_keep, rhead_len, accepted) = loop {
        let mut rh = [httparse::EMPTY_HEADER; 64];
        match parse_response(&rbuf, &mut rh, &method) {
            Ok(Some(h)) if (100..200).contains(&h.status) && h.status != 101 => {
                // Interim (100 Continue, 103 Early Hints): relayed as is; the
                // final head follows.
                io.write_all(client, &rbuf[..h.head_len], Instant::now() + IDLE)?;
                rbuf.drain(..h.head_len);
                continue;
            }
            Ok(Some(h)) => {
                let accepted = ws_key
                    .as_deref()
                    .is_some_and(|k| websocket::accepts(h.status, &rh, k));
                break (h.status, h.body, h.keep_alive, h.head_len, accepted);
            }
            Ok(None) if rbuf.len() < 64 * 1024 => {}
            _ => {
                *upstream = None;
                return bad_gateway(io, client, peer, &what, "invalid response head");
            }
        }
        match io.read(up, &mut chunk, deadline) {
            Ok(0) => {
                *upstream = None;
                return bad_gateway(io, client, peer, &what, "closed before answering");
            }
            Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
            Err(e) => {
                *upstream = None;
                return bad_gateway(io, client, peer, &what, &format!("no answer: {e}"));
            }
        }
    };
    debug!("https {peer} {what}: {status}");
    let to_client = Instant::now() + IDLE;
    if accepted {
        io.write_all(client, &rbuf, to_client)?;
        let Some((_, up)) = upstream.take() else {
            return Ok(Next::Close);
        };
        tunnel(io, client, up, std::mem::take(buf), peer, &what);
        return Ok(Next::Close);
    }
    if status == 101 {
        // Switched protocols without a valid accept: relayed, and neither side
        // is HTTP any more.
        io.write_all(client, &rbuf[..rhead_len], to_client)?;
        *upstream = None;
        return Ok(Next::Close);
    }
    // A refused upgrade is relayed as an ordinary response; no tunnel opens.
    let rest = rbuf.split_off(rhead_len);
    io.write_all(client, &rbuf, to_client)?;
    let Some((_, up)) = upstream.as_mut() else {
        return Ok(Next::Close);
    };
    let framing = match rbody {
        ResponseBody::Length(n) => Some(Framing::Length(Length::new(n))),
        ResponseBody::Chunked => Some(Framing::Chunked(Chunked::new())),
        ResponseBody::None | ResponseBody::UntilClose => None,
    };
    if let Some(framing) = framing
        && !relay_response(io, up, client, framing, &rest, proxy)?
    {
        return Ok(Next::Close);
    }
    if rbody == ResponseBody::UntilClose {
        io.write_all(client, &rest, to_client)?;
        loop {
            let n = io.read(up, &mut chunk, deadline_refresh(proxy))?;
            if n == 0 {
                break;
            }
            io.write_all(client, &chunk[..n], to_client)?;
        }
        *upstream = None;
        return Ok(Next::Close);
    }
    if !up_keep {
        *upstream = None;
    }
    Ok(if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    })
}

fn deadline_refresh(proxy: &Proxy) -> Instant {
    Instant::now() + Duration::from_millis(proxy.upstream_timeout_ms)
}

/// 502 to the browser, and the cause in the log.
fn bad_gateway(
    io: &mut Io,
    client: &mut Link,
    peer: SocketAddr,
    what: &str,
    cause: &str,
) -> io::Result<Next> {
    warn!("https {peer} {what}: web bridge failed: {cause}");
    let mut out = [0u8; 512];
    if let Some(n) = write_status(&mut out, 502, "web bridge failed", true) {
        io.write_all(client, &out[..n], Instant::now() + Duration::from_secs(5))?;
    }
    Ok(Next::Close)
}

/// The request head for the web bridge: the normalised path the allow list judged,
/// the client's header fields unchanged, and X-Forwarded-For/-Proto.
fn upstream_head(buf: &[u8], head: &RequestHead<'_>, f: &Forward<'_>, peer: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.head_len + 128);
    let _ = write!(out, "{} {}", head.method, f.path);
    if let Some(q) = head.query {
        let _ = write!(out, "?{q}");
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // The header fields: from after the request line to before the final CRLF.
    let line_end = buf
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(0, |p| p + 2);
    if let Some(fields) = buf.get(line_end..head.head_len.saturating_sub(2)) {
        out.extend_from_slice(fields);
    }
    let _ = write!(
        out,
        "X-Forwarded-For: {}\r\nX-Forwarded-Proto: https\r\n\r\n",
        peer.ip()
    );
    out
}

/// Streams the request body from the client (starting with what is in `buf`) to
/// the web bridge; leaves in `buf` whatever follows it.
fn copy_body(
    proxy: &Proxy,
    io: &mut Io,
    client: &mut Link,
    up: &mut Link,
    buf: &mut Vec<u8>,
    body: Body,
) -> io::Result<()> {
    let mut timer = RequestTimer::new(proxy.deadlines, millis());
    timer.head_done(millis());
    let framing = match body {
        Body::None => return Ok(()),
        Body::Length(n) => Framing::Length(Length::new(n)),
        Body::Chunked => Framing::Chunked(Chunked::new()),
    };
    let pending = std::mem::take(buf);
    let timing = Timing::Request {
        timer: &mut timer,
        write: Instant::now() + Duration::from_millis(proxy.upstream_timeout_ms),
    };
    let done = stream_framed(io, client, up, framing, &pending, timing, buf)?;
    if done {
        Ok(())
    } else {
        Err(io::ErrorKind::UnexpectedEof.into())
    }
}

/// Streams a framed response body from the web bridge to the client; false when
/// the web bridge closed before its end.
fn relay_response(
    io: &mut Io,
    up: &mut Link,
    client: &mut Link,
    framing: Framing,
    pending: &[u8],
    proxy: &Proxy,
) -> io::Result<bool> {
    // Whatever the web bridge sends after its response is not ours to relay.
    let mut after = Vec::new();
    let timing = Timing::Response {
        read: Duration::from_millis(proxy.upstream_timeout_ms),
        write: Instant::now() + IDLE,
    };
    stream_framed(io, up, client, framing, pending, timing, &mut after)
}

/// How the reads and writes of a body are timed.
enum Timing<'t> {
    /// A client's request body: reads under its header/body timer, writes within
    /// the upstream timeout.
    Request {
        timer: &'t mut RequestTimer,
        write: Instant,
    },
    /// A web bridge's response body: each read within the upstream timeout,
    /// writes to the client within the idle time.
    Response { read: Duration, write: Instant },
}

impl Timing<'_> {
    fn read_deadline(&self) -> Instant {
        match self {
            Timing::Request { timer, .. } => deadline_of(timer.poll_timeout().unwrap_or(0)),
            Timing::Response { read, .. } => Instant::now() + *read,
        }
    }

    fn write_deadline(&self) -> Instant {
        match self {
            Timing::Request { write, .. } | Timing::Response { write, .. } => *write,
        }
    }

    fn progressed(&mut self) {
        if let Timing::Request { timer, .. } = self {
            timer.body_progress(millis());
        }
    }
}

/// Streams one framed body from `from` to `to`: first what `pending` holds, then
/// what is read, until the framing says the body ended. Bytes past the end go to
/// `after`. Returns false when `from` closed first; a framing error is an error.
fn stream_framed(
    io: &mut Io,
    from: &mut Link,
    to: &mut Link,
    mut framing: Framing,
    pending: &[u8],
    mut timing: Timing<'_>,
    after: &mut Vec<u8>,
) -> io::Result<bool> {
    let bad = |r: Refusal| io::Error::other(r.to_string());
    let take = framing.feed(pending).map_err(bad)?;
    io.write_all(to, &pending[..take], timing.write_deadline())?;
    after.extend_from_slice(&pending[take..]);
    let mut chunk = [0u8; COPY];
    while !framing.is_done() {
        let got = io.read(from, &mut chunk, timing.read_deadline())?;
        if got == 0 {
            return Ok(false);
        }
        timing.progressed();
        let take = framing.feed(&chunk[..got]).map_err(bad)?;
        io.write_all(to, &chunk[..take], timing.write_deadline())?;
        after.extend_from_slice(&chunk[take..got]);
    }
    Ok(true)
}

/// Relays a WebSocket both ways until either side closes or it idles out.
fn tunnel(
    io: &mut Io,
    client: &mut Link,
    mut up: Link,
    pending_to_up: Vec<u8>,
    peer: SocketAddr,
    what: &str,
) {
    let mut to_up = pending_to_up;
    let mut to_client: Vec<u8> = Vec::new();
    let mut chunk = [0u8; COPY];
    let (mut client_open, mut up_open) = (true, true);
    debug!("https {peer} {what}: WebSocket open");
    while client_open && up_open {
        let mut progress = false;
        pump(
            client,
            &mut up,
            &mut to_up,
            &mut client_open,
            &mut chunk,
            &mut progress,
        );
        pump(
            &mut up,
            client,
            &mut to_client,
            &mut up_open,
            &mut chunk,
            &mut progress,
        );
        if !progress && io.wait(Instant::now() + IDLE).is_err() {
            break;
        }
    }
    up.close();
    let _ = client.flush();
    debug!("https {peer} {what}: WebSocket closed");
}

/// Moves what `from` has to `to` (queueing what `to` cannot take yet).
fn pump(
    from: &mut Link,
    to: &mut Link,
    queue: &mut Vec<u8>,
    open: &mut bool,
    chunk: &mut [u8],
    progress: &mut bool,
) {
    // First what is queued.
    while !queue.is_empty() {
        match to.write_plain(queue) {
            Ok(0) => {
                *open = false;
                return;
            }
            Ok(n) => {
                queue.drain(..n);
                *progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => {
                *open = false;
                return;
            }
        }
    }
    let _ = to.flush();
    // Then new bytes, while the queue stays small.
    while queue.len() < 256 * 1024 {
        match from.read_plain(chunk) {
            Ok(0) => {
                *open = false;
                return;
            }
            Ok(n) => {
                *progress = true;
                match to.write_plain(&chunk[..n]) {
                    Ok(m) if m < n => queue.extend_from_slice(&chunk[m..n]),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        queue.extend_from_slice(&chunk[..n])
                    }
                    Err(_) => {
                        *open = false;
                        return;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => {
                *open = false;
                return;
            }
        }
    }
    let _ = to.flush();
}
