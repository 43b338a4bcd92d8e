//! The request half: a head read and judged with proxy-core's decisions
//! (refused, redirected, or planned for a web bridge with its forwarding head
//! written), the web bridge connection found, and the body streamed up under the
//! client's body timer.

use stun_core::escape::Escaped;

use super::*;
use crate::body::{Chunked, Length};
use crate::decide;
use crate::forward::{self, Request};
use crate::http::{Limits, Parsed, RequestHead, after_refusal, parse_request};
use crate::response::{redirect_host, write_redirect, write_refusal};
use crate::{Reason, Refusal as R};

/// Room for the head forwarded to the web bridge beyond the client's own head.
const HEAD_EXTRA: usize = 1024;

/// A request judged: what to do with it.
enum Judged {
    /// Send these bytes, then close (redirects).
    Answer(Vec<u8>),
    /// Refuse, then close or read the next request.
    Refuse(R, AfterRefusal, String),
    /// Forward; the head was this long.
    Forward(Box<Plan>, usize),
}

impl Conn {
    /// Reads until a whole head is buffered, then acts on it.
    pub(super) fn head(&mut self, cx: &mut Ctx<'_>, mut timer: RequestTimer) -> bool {
        if !self.client.has_room() {
            // Answers the browser has not read yet: no more requests until it
            // does (pipelining cannot make the answers pile up here).
            self.phase = Phase::Head(timer);
            return false;
        }
        // Parsed once: what to do is decided while the head borrows the buffer,
        // and done after.
        let judged = {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            match parse_request(&self.cin, &mut headers, Limits::default()) {
                Ok(Parsed::Complete(head)) => Ok(Some(self.judge(&head, &headers))),
                Ok(Parsed::Partial) => Ok(None),
                Err(r) => Err(r),
            }
        };
        match judged {
            Err(r) => {
                self.refuse(cx, &r, AfterRefusal::Close, "request");
                true
            }
            Ok(Some(judged)) => {
                self.judged(cx, judged);
                true
            }
            Ok(None) => match self.read_client(cx, HEAD_BUFFER) {
                Ok(0) => {
                    self.phase = Phase::Head(timer);
                    false
                }
                Ok(_) => {
                    timer.bytes_arrived(ms(cx.now));
                    self.phase = Phase::Head(timer);
                    true
                }
                // The browser closed (or the stream failed) between requests.
                Err(()) => {
                    self.pool_up(cx);
                    self.phase = Phase::Done;
                    false
                }
            },
        }
    }

    /// Acts on what was decided of the head at the start of `cin`.
    fn judged(&mut self, cx: &mut Ctx<'_>, judged: Judged) {
        match judged {
            Judged::Answer(bytes) => self.answer_and_close(cx, &bytes),
            Judged::Refuse(r, after, what) => {
                if let AfterRefusal::Next { consumed } = after {
                    self.cin.drain(..consumed.min(self.cin.len()));
                }
                self.refuse(cx, &r, after, &what);
            }
            Judged::Forward(plan, head_len) => {
                self.cin.drain(..head_len.min(self.cin.len()));
                self.forward(cx, plan);
            }
        }
    }

    /// Decides on `head`, parsed at the start of `cin` with its `headers`.
    fn judge(&self, head: &RequestHead<'_>, headers: &[httparse::Header<'_>]) -> Judged {
        let cfg = &self.cfg;
        let head_len = head.head_len;
        let what = format!(
            "{} {} {}",
            Escaped::new(head.host),
            Escaped::new(head.method),
            Escaped::new(head.path).max(200)
        );
        let sites = cfg.sites();
        if !self.tls {
            // Plain HTTP reached the TLS port: send the browser to https, at a
            // configured join URL.
            let mut out = vec![0u8; 8192];
            return match write_redirect(&mut out, head, &sites) {
                Some(n) => {
                    out.truncate(n);
                    Judged::Answer(out)
                }
                None => {
                    let reason = match redirect_host(&sites, head.host) {
                        None => Reason::UnknownHost,
                        Some(_) => Reason::Malformed,
                    };
                    Judged::Refuse(R::new(reason), AfterRefusal::Close, what)
                }
            };
        }
        // Draining: a new connection's first request is refused (redirects to
        // https still go out above); a kept-alive one's next request is
        // answered, and the connection closed after it (see the response).
        if self.served == 0 && cfg.is_draining() {
            let r = R::new(Reason::Draining);
            return Judged::Refuse(r, AfterRefusal::Close, "request while draining".into());
        }
        let dcfg = decide::Config {
            sites: &sites,
            rules: &cfg.rules,
            port: self.port,
        };
        let mut path_buf = [0u8; 4096];
        // The SNI the front read, or (a connection whose handshake ran here)
        // the one this session negotiated.
        let negotiated = match &self.client.link.tls {
            Some(rustls::Connection::Server(c)) if self.sni.is_none() => c.server_name(),
            _ => None,
        };
        let sni = self.sni.as_deref().or(negotiated);
        let f = match decide::decide(&dcfg, head, sni, &mut path_buf) {
            Ok(f) => f,
            Err(r) => {
                // Which port was expected: an embedder behind a NAT sets it
                // (ProxyBuilder::port), or the listener's own is taken.
                let what = if r.reason == Reason::WrongPort {
                    format!("{what} (join URLs are served on port {})", self.port)
                } else {
                    what
                };
                return Judged::Refuse(r, after_refusal(&r, Some(head)), what);
            }
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
                let r = R::new(Reason::HeadersTooLarge);
                return Judged::Refuse(r, AfterRefusal::Close, what);
            }
        };
        out.truncate(n);
        let plan = Plan {
            upstream: f.upstream,
            head: out,
            body: head.body,
            keep_alive: head.keep_alive,
            method: head.method.to_string(),
            websocket_key: head.websocket_key.map(str::to_string),
            host: head.host.to_string(),
            what,
            reused: false,
            interims: 0,
        };
        Judged::Forward(Box::new(plan), head_len)
    }

    /// Answers with a refusal and logs it once; then closes or reads the next
    /// request, as proxy-core decided.
    pub(super) fn refuse(&mut self, cx: &mut Ctx<'_>, r: &R, after: AfterRefusal, what: &str) {
        let peer = self.peer;
        if matches!(r.status, 403 | 405 | 421) {
            client_log!(cx, log::Level::Info, "https {peer} {what}: {r}");
        } else {
            client_log!(cx, log::Level::Debug, "https {peer} {what}: {r}");
        }
        let close = after == AfterRefusal::Close;
        let mut out = [0u8; 512];
        let n = write_refusal(&mut out, r, close).unwrap_or(0);
        let bytes = out.get(..n).unwrap_or_default();
        if close {
            self.answer_and_close(cx, bytes);
        } else {
            self.client.queue(bytes, cx.now);
            self.next_request(cx);
        }
    }

    /// The exchange is over and the connection stays: read the next request.
    pub(super) fn next_request(&mut self, cx: &mut Ctx<'_>) {
        self.served += 1;
        let d = self.cfg.deadlines;
        let timer = if self.cin.is_empty() {
            RequestTimer::idle(d, ms(cx.now))
        } else {
            RequestTimer::new(d, ms(cx.now))
        };
        if self.cin.is_empty() && self.cin.capacity() > 4096 {
            self.cin = Vec::new();
        }
        self.phase = Phase::Head(timer);
    }

    /// Finds a connection to the plan's web bridge (kept by this connection,
    /// else from the pool, else a new one) and starts the request on it.
    fn forward(&mut self, cx: &mut Ctx<'_>, mut plan: Box<Plan>) {
        if self.up_idle.take().is_some()
            && let Some(up) = self.up.as_mut()
        {
            // Unstirred since its response, nothing can wait on it: no probe.
            if up.index == plan.upstream && (!self.up_stirred || clean(&mut up.side.link)) {
                self.cfg.counters.reused();
            } else {
                self.up = None;
            }
        }
        if self.up.is_none()
            && let Some(side) = cx.pool.take(
                (self.cfg.generation, plan.upstream),
                cx.registry,
                cx.up_token,
                cx.now,
            )
        {
            self.cfg.counters.reused();
            self.up = Some(Up {
                index: plan.upstream,
                side,
            });
        }
        if self.up.is_some() {
            plan.reused = true;
            self.start_request(cx, plan);
        } else {
            self.phase = Phase::Connect {
                plan,
                dial: Box::new(Dial::Resolving),
                until: cx.now + DIAL_TIME,
            };
        }
    }

    /// The kept-alive connection failed before answering a request that may be
    /// sent again: it goes on a new connection.
    pub(super) fn retry(&mut self, cx: &mut Ctx<'_>, mut plan: Box<Plan>, cause: &str) {
        client_log!(
            cx,
            log::Level::Debug,
            "https {} {}: kept-alive web bridge connection failed ({cause}); sent again on a new one",
            self.peer,
            plan.what
        );
        self.up = None;
        self.uin.clear();
        plan.reused = false;
        self.cfg.counters.retried();
        self.phase = Phase::Connect {
            plan,
            dial: Box::new(Dial::Resolving),
            until: cx.now + DIAL_TIME,
        };
    }

    /// Queues the head for the web bridge and goes on with the body, if any.
    pub(super) fn start_request(&mut self, cx: &mut Ctx<'_>, plan: Box<Plan>) {
        let Some(up) = self.up.as_mut() else {
            self.phase = Phase::Done;
            return;
        };
        up.side.queue(&plan.head, cx.now);
        let framing = match plan.body {
            Body::None => None,
            Body::Length(n) => Some(Framing::Length(Length::new(n))),
            Body::Chunked => Some(Framing::Chunked(Chunked::new())),
        };
        let mut timer = RequestTimer::new(self.cfg.deadlines, ms(cx.now));
        timer.head_done(ms(cx.now));
        self.phase = Phase::Request {
            plan,
            framing,
            timer,
        };
    }

    /// Streams the request body up, bounded by the web bridge side's queue.
    pub(super) fn request_body(
        &mut self,
        cx: &mut Ctx<'_>,
        plan: Box<Plan>,
        framing: Option<Framing>,
        mut timer: RequestTimer,
    ) -> bool {
        let Some(mut framing) = framing.filter(|f| !f.is_done()) else {
            timer.done();
            self.phase = Phase::Response {
                plan,
                until: cx.now + self.cfg.upstream_timeout,
            };
            return true;
        };
        let Some(up) = self.up.as_mut() else {
            return false;
        };
        if !up.side.has_room() {
            self.phase = Phase::Request {
                plan,
                framing: Some(framing),
                timer,
            };
            return false;
        }
        let mut progress = false;
        if self.cin.is_empty() {
            let room = up.side.room();
            match self.read_client(cx, room) {
                Ok(0) => {}
                Ok(n) => {
                    timer.body_progress(ms(cx.now), n as u64);
                    progress = true;
                }
                Err(()) => {
                    // The browser left mid-body: the half-sent request goes too.
                    self.up = None;
                    return false;
                }
            }
        }
        if !self.cin.is_empty() {
            let take = match framing.feed(&self.cin) {
                Ok(n) => n.min(self.cin.len()),
                Err(r) => {
                    client_log!(
                        cx,
                        log::Level::Debug,
                        "https {} {}: request body: {r}",
                        self.peer,
                        plan.what
                    );
                    self.up = None;
                    return false;
                }
            };
            let Some(up) = self.up.as_mut() else {
                return false;
            };
            up.side
                .queue(self.cin.get(..take).unwrap_or_default(), cx.now);
            self.cin.drain(..take);
            progress = true;
        }
        self.phase = Phase::Request {
            plan,
            framing: Some(framing),
            timer,
        };
        progress
    }
}
