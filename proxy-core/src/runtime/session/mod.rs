//! One proxied browser connection, as a session: requests read and judged one
//! after another (pipelined ones in order), each answered exactly once: refused
//! (then the connection reads the next request or closes, as proxy-core decides),
//! redirected, or forwarded to the web bridge with hop-by-hop fields removed and
//! forwarding fields set, its body streamed, the response streamed back, and a
//! WebSocket upgrade turned into a tunnel once the bridge accepts it.

use crate::runtime::prelude::*;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::body::{Chunked, Framing, Length};
use crate::decide;
use crate::forward::{self, Request, Response};
use crate::http::{AfterRefusal, Body, Limits, Parsed, after_refusal, parse_request};
use crate::response::{
    ResponseBody, ResponseHead, parse_response, redirect_host, reusable, write_redirect,
    write_refusal, write_status,
};
use crate::timer::{Expired, RequestTimer};
use crate::{Reason, Refusal, websocket};
use log::{debug, info, warn};
use stun_core::escape::Escaped;

mod response;

use super::Proxy;
use super::io::{CLIENT, Io, UPSTREAM};
use super::link::Link;
use super::stream::{self, COPY, Pace, Reads, Streamed, deadline_of, millis};

/// Idle time allowed in a WebSocket tunnel.
const TUNNEL_IDLE: Duration = Duration::from_secs(600);
/// Room for the head forwarded to the web bridge beyond the client's own head.
const HEAD_EXTRA: usize = 1024;

/// What the exchange of one request leaves the connection to do.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Read the next request on the same connection.
    KeepAlive,
    /// Close the connection.
    Close,
}

/// A request judged: what to do with it.
enum Judged {
    /// Send these bytes, then close (redirects).
    Answer(Vec<u8>),
    /// Refuse, then close or read the next request.
    Refuse(Refusal, AfterRefusal, String),
    /// Forward.
    Forward(Plan),
}

/// A request to forward, with the head for the web bridge already written.
struct Plan {
    upstream: usize,
    head: Vec<u8>,
    head_len: usize,
    body: Body,
    keep_alive: bool,
    method: String,
    websocket_key: Option<String>,
    host: String,
    what: String,
}

/// Serves the connection until it closes.
pub(super) fn serve(
    proxy: &Proxy,
    client: Link,
    buffered: Vec<u8>,
    sni: Option<String>,
    peer: SocketAddr,
) {
    let Ok(io) = Io::new() else { return };
    let mut s = Session {
        proxy,
        io,
        tls: client.tls.is_some(),
        client,
        buf: buffered,
        sni,
        peer,
        upstream: None,
        served: 0,
    };
    if s.io.register(&mut s.client, CLIENT).is_err() {
        return;
    }
    loop {
        match s.request() {
            Ok(Next::KeepAlive) => s.served += 1,
            Ok(Next::Close) => break,
            Err(e) => {
                debug!("https {peer}: {e}");
                break;
            }
        }
    }
    s.client.close();
}

/// One browser connection and the web bridge connection it reuses.
struct Session<'p> {
    proxy: &'p Proxy,
    io: Io,
    client: Link,
    /// Bytes from the client not consumed yet: the next request's start (and
    /// pipelined ones after it).
    buf: Vec<u8>,
    sni: Option<String>,
    peer: SocketAddr,
    tls: bool,
    /// A kept-alive connection to the web bridge of this index.
    upstream: Option<(usize, Link)>,
    /// Requests answered so far.
    served: u64,
}

impl Session<'_> {
    /// Reads until a whole head is buffered; its length, or the refusal (a bad or
    /// slow head). A kept-alive connection that idles out ends with `TimedOut`.
    fn read_head(&mut self) -> io::Result<Result<usize, Refusal>> {
        let d = self.proxy.deadlines;
        let mut timer = if self.served == 0 || !self.buf.is_empty() {
            RequestTimer::new(d, millis())
        } else {
            RequestTimer::idle(d, millis())
        };
        let mut chunk = [0u8; 4096];
        loop {
            {
                let mut headers = [httparse::EMPTY_HEADER; 64];
                match parse_request(&self.buf, &mut headers, Limits::default()) {
                    Ok(Parsed::Complete(head)) => return Ok(Ok(head.head_len)),
                    Ok(Parsed::Partial) => {}
                    Err(r) => return Ok(Err(r)),
                }
            }
            let deadline = deadline_of(timer.poll_timeout().unwrap_or(0));
            match self.io.read(&mut self.client, &mut chunk, deadline) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    self.buf
                        .extend_from_slice(chunk.get(..n).unwrap_or_default());
                    timer.bytes_arrived(millis());
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => match timer.check(millis()) {
                    Ok(()) => {}
                    Err(Expired::Idle) => return Err(e),
                    Err(Expired::Refuse(r)) => return Ok(Err(r)),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads, judges and answers one request.
    fn request(&mut self) -> io::Result<Next> {
        let head_len = match self.read_head()? {
            Ok(n) => n,
            Err(r) => return self.refuse(&r, AfterRefusal::Close, "request"),
        };
        let buf = std::mem::take(&mut self.buf);
        let judged = self.judge(&buf, head_len);
        match judged {
            Judged::Answer(bytes) => {
                self.io
                    .write_all(&mut self.client, &bytes, self.proxy.send_stall)?;
                Ok(Next::Close)
            }
            Judged::Refuse(r, after, what) => {
                if let AfterRefusal::Next { consumed } = after {
                    self.buf = buf.get(consumed..).unwrap_or_default().to_vec();
                }
                self.refuse(&r, after, &what)
            }
            Judged::Forward(plan) => {
                self.buf = buf.get(plan.head_len..).unwrap_or_default().to_vec();
                self.forward(plan)
            }
        }
    }

    /// Decides on the head at the start of `buf`.
    fn judge(&self, buf: &[u8], head_len: usize) -> Judged {
        if self.served == 0 && self.proxy.is_draining() {
            let r = Refusal::new(Reason::Draining);
            return Judged::Refuse(r, AfterRefusal::Close, "request while draining".into());
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let head = match parse_request(buf, &mut headers, Limits::default()) {
            Ok(Parsed::Complete(h)) if h.head_len == head_len => h,
            _ => {
                let r = Refusal::new(Reason::Malformed);
                return Judged::Refuse(r, AfterRefusal::Close, "request".into());
            }
        };
        let what = format!(
            "{} {} {}",
            Escaped::new(head.host),
            Escaped::new(head.method),
            Escaped::new(head.path).max(200)
        );
        let p = self.proxy;
        let sites = p.sites();
        if !self.tls {
            // Plain HTTP reached the TLS port: send the browser to https, at a
            // configured join URL.
            let mut out = vec![0u8; 8192];
            return match write_redirect(&mut out, &head, &sites) {
                Some(n) => {
                    out.truncate(n);
                    Judged::Answer(out)
                }
                None => {
                    let reason = match redirect_host(&sites, head.host) {
                        None => Reason::UnknownHost,
                        Some(_) => Reason::Malformed,
                    };
                    Judged::Refuse(Refusal::new(reason), AfterRefusal::Close, what)
                }
            };
        }
        let cfg = decide::Config {
            sites: &sites,
            rules: &p.rules,
            port: p.port,
        };
        let mut path_buf = [0u8; 4096];
        let f = match decide::decide(&cfg, &head, self.sni.as_deref(), &mut path_buf) {
            Ok(f) => f,
            Err(r) => return Judged::Refuse(r, after_refusal(&r, Some(&head)), what),
        };
        let mut out = vec![0u8; head_len + HEAD_EXTRA + 2 * head.host.len() + f.path.len()];
        let req = Request {
            method: head.method,
            path: f.path,
            query: head.query,
            host: head.host,
            client: self.peer.ip(),
            websocket: f.websocket,
        };
        let n = match forward::write_request(
            &mut out,
            &req,
            headers.get(..head.header_count).unwrap_or_default(),
        ) {
            Ok(n) => n,
            Err(_) => {
                let r = Refusal::new(Reason::HeadersTooLarge);
                return Judged::Refuse(r, AfterRefusal::Close, what);
            }
        };
        out.truncate(n);
        Judged::Forward(Plan {
            upstream: f.upstream,
            head: out,
            head_len,
            body: head.body,
            keep_alive: head.keep_alive,
            method: head.method.to_string(),
            websocket_key: head.websocket_key.map(str::to_string),
            host: head.host.to_string(),
            what,
        })
    }

    /// Answers with a refusal and logs it once; returns what follows.
    fn refuse(&mut self, r: &Refusal, after: AfterRefusal, what: &str) -> io::Result<Next> {
        let peer = self.peer;
        if matches!(r.status, 403 | 405 | 421) {
            info!("https {peer} {what}: {r}");
        } else {
            debug!("https {peer} {what}: {r}");
        }
        let close = after == AfterRefusal::Close;
        let mut out = [0u8; 512];
        if let Some(n) = write_refusal(&mut out, r, close) {
            self.io.write_all(
                &mut self.client,
                out.get(..n).unwrap_or_default(),
                self.proxy.send_stall,
            )?;
        }
        Ok(if close { Next::Close } else { Next::KeepAlive })
    }

    /// 502 to the browser, and the cause in the log.
    fn bad_gateway(&mut self, what: &str, cause: &str) -> io::Result<Next> {
        warn!("https {} {what}: web bridge failed: {cause}", self.peer);
        self.upstream = None;
        let mut out = [0u8; 512];
        if let Some(n) = write_status(&mut out, 502, "web bridge failed", true) {
            self.io.write_all(
                &mut self.client,
                out.get(..n).unwrap_or_default(),
                self.proxy.send_stall,
            )?;
        }
        Ok(Next::Close)
    }

    /// A connection to web bridge `index`: the kept-alive one if it is still
    /// clean (open, and nothing unasked for waiting on it), else a new one.
    /// `false` when it cannot be reached (the browser got its 502).
    fn connect(&mut self, plan: &Plan) -> io::Result<bool> {
        if let Some((i, link)) = self.upstream.as_mut()
            && *i == plan.upstream
            && clean(link)
        {
            return Ok(true);
        }
        self.upstream = None;
        let p = self.proxy;
        let Some(u) = p.upstreams.get(plan.upstream) else {
            return Ok(false);
        };
        match u.connect(&p.client_tls, Duration::from_secs(10)) {
            Ok(mut link) => {
                self.io.register(&mut link, UPSTREAM)?;
                self.upstream = Some((plan.upstream, link));
                Ok(true)
            }
            Err(e) => {
                warn!(
                    "https {} {}: web bridge connection failed for join URL `{}` ({u}): {e}",
                    self.peer,
                    plan.what,
                    Escaped::new(&plan.host)
                );
                let mut out = [0u8; 512];
                if let Some(n) = write_status(&mut out, 502, "web bridge unreachable", true) {
                    self.io.write_all(
                        &mut self.client,
                        out.get(..n).unwrap_or_default(),
                        self.proxy.send_stall,
                    )?;
                }
                Ok(false)
            }
        }
    }

    /// Forwards a judged request and relays the answer.
    fn forward(&mut self, plan: Plan) -> io::Result<Next> {
        if !self.connect(&plan)? {
            return Ok(Next::Close);
        }
        let upstream = self.proxy.upstream_timeout;
        let Some((_, up)) = self.upstream.as_mut() else {
            return Ok(Next::Close);
        };
        if let Err(e) = self.io.write_all(up, &plan.head, upstream) {
            return self.bad_gateway(&plan.what, &format!("sending the request: {e}"));
        }
        // The request body, streamed under the client's body timer.
        let framing = match plan.body {
            Body::None => None,
            Body::Length(n) => Some(Framing::Length(Length::new(n))),
            Body::Chunked => Some(Framing::Chunked(Chunked::new())),
        };
        if let Some(framing) = framing {
            let mut timer = RequestTimer::new(self.proxy.deadlines, millis());
            timer.head_done(millis());
            let pending = std::mem::take(&mut self.buf);
            let pace = Pace {
                reads: Reads::Client(&mut timer),
                stall: upstream,
            };
            let streamed = stream::framed(
                &mut self.io,
                &mut self.client,
                up,
                framing,
                &pending,
                pace,
                &mut self.buf,
            );
            match streamed {
                Ok(Streamed::Done) => {}
                Ok(Streamed::TooSlow(r)) => {
                    self.upstream = None;
                    return self.refuse(&r, AfterRefusal::Close, &plan.what);
                }
                Ok(Streamed::Closed) | Err(_) => {
                    self.upstream = None;
                    return Ok(Next::Close);
                }
            }
        }
        self.relay_response(plan)
    }
}

/// The reason phrase of the response head at the start of `buf`.
fn response_reason(buf: &[u8]) -> Option<&str> {
    let line = buf.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    line.splitn(3, ' ').nth(2)
}

/// Whether a kept-alive web bridge connection can carry the next request: it is
/// open, and has sent nothing nobody asked for.
fn clean(link: &mut Link) -> bool {
    let mut probe = [0u8; 1];
    matches!(link.read_plain(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
