//! One proxied browser connection as a state machine an event loop drives: the
//! request head read and judged (proxy-core decides), the web bridge dialled
//! without blocking (or taken from the keep-alive pool), the request and its
//! body streamed up, the response streamed back, and a WebSocket upgrade turned
//! into a tunnel once the bridge accepts it. Every read is bounded by the queue
//! of the side it goes to (backpressure both ways); every wait has a deadline.
//!
//! [`Conn::advance`] does all that can be done now and returns; the loop calls
//! it again on the next event of either socket, and [`Conn::expire`] when
//! [`Conn::deadline`] passes.

use crate::runtime::prelude::*;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::body::Framing;
use crate::http::{AfterRefusal, Body};
use crate::response::ResponseHead;
use crate::timer::{Expired, RequestTimer};

use super::Config;
use super::admission::Ticket;
use super::link::Link;
use super::pool::Pool;
use super::side::Side;

/// Writes a log line a client caused, within its loop's budget of lines (the
/// count of lines held back goes with the next one written): a client that
/// pipelines refused requests, or a flood of them, cannot fill the disk.
macro_rules! client_log {
    ($cx:expr, $level:expr, $($arg:tt)+) => {
        if log::log_enabled!($level)
            && let Some(held) = $cx.logs.allow(ms($cx.now))
        {
            log::log!($level, "{}{}", format_args!($($arg)+), stun_core::escape::Held(held));
        }
    };
}

mod dial;
mod request;
mod response;

pub(crate) use dial::Dial;

/// Idle time allowed in a WebSocket tunnel.
const TUNNEL_IDLE: Duration = Duration::from_secs(600);
/// Longest time to dial a web bridge (TCP and TLS).
const DIAL_TIME: Duration = Duration::from_secs(10);
/// Most bytes of a request head buffered (the parser refuses longer heads).
const HEAD_BUFFER: usize = 64 * 1024;
/// How long a browser connection keeps its idle web bridge connection for its
/// next request before the pool gets it for everyone's.
const KEEP_UP: Duration = Duration::from_secs(1);

/// Milliseconds on the monotonic clock, the proxy timers' time.
pub(crate) fn ms(now: Instant) -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

/// The instant of a timer's millisecond deadline.
fn instant_of(ms: u64) -> Instant {
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch + Duration::from_millis(ms)
}

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// What a connection's handler needs from its loop.
pub(crate) struct Ctx<'a> {
    pub(crate) now: Instant,
    /// Bytes read land here first.
    pub(crate) scratch: &'a mut [u8],
    /// Idle web bridge connections of this loop.
    pub(crate) pool: &'a mut Pool,
    pub(crate) registry: &'a mio::Registry,
    /// The web bridge side's token.
    pub(crate) up_token: mio::Token,
    /// The loop's budget of log lines clients cause.
    pub(crate) logs: &'a mut stun_core::escape::LineBudget,
}

/// A request to forward, with the head for the web bridge already written.
pub(crate) struct Plan {
    upstream: usize,
    head: Vec<u8>,
    body: Body,
    keep_alive: bool,
    method: String,
    websocket_key: Option<String>,
    host: String,
    what: String,
    /// Whether it went on a kept-alive connection (one a web bridge may close
    /// just as the request arrives: a request that changes nothing is then
    /// sent again on a new connection).
    reused: bool,
    /// Interim (1xx) responses relayed so far.
    interims: u8,
}

impl Plan {
    /// Whether it may be sent again: nothing was answered, it has no body, and
    /// its method changes nothing.
    fn retriable(&self) -> bool {
        self.reused
            && self.body == Body::None
            && matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS")
    }
}

/// Where the connection is.
enum Phase {
    /// Reading a request head.
    Head(RequestTimer),
    /// Dialling the web bridge for `plan`.
    Connect {
        plan: Box<Plan>,
        dial: Box<Dial>,
        until: Instant,
    },
    /// Sending the request (its head is queued) and streaming its body.
    Request {
        plan: Box<Plan>,
        framing: Option<Framing>,
        timer: RequestTimer,
    },
    /// Waiting for the web bridge's response head.
    Response { plan: Box<Plan>, until: Instant },
    /// Streaming the response body (`framing: None` is until the bridge closes).
    Body {
        head: ResponseHead,
        framing: Option<Framing>,
        close: bool,
        until: Instant,
    },
    /// Relaying a WebSocket.
    Tunnel { last: Instant },
    /// Sending what is queued, then closing.
    Closing { until: Instant, notified: bool },
    /// Finished: the loop drops it.
    Done,
}

/// The web bridge connection a request uses.
struct Up {
    index: usize,
    side: Side,
}

/// One browser connection.
pub(crate) struct Conn {
    /// The port its browser reached (the Host header must name it).
    port: u16,
    client: Side,
    up: Option<Up>,
    /// Since when `up` has been idle, kept for the next request.
    up_idle: Option<Instant>,
    /// Whether `up`'s socket had an event since it became idle.
    up_stirred: bool,
    /// Client bytes not consumed yet: the next request's start.
    cin: Vec<u8>,
    /// Web bridge bytes not consumed yet: a response head being read.
    uin: Vec<u8>,
    phase: Phase,
    peer: SocketAddr,
    sni: Option<String>,
    tls: bool,
    /// Requests answered so far.
    served: u64,
    /// Whether it is counted among the open tunnels.
    counted_tunnel: bool,
    /// The configuration it was handed over under (a reload leaves it).
    pub(crate) cfg: Arc<Config>,
    _ticket: Ticket,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.counted_tunnel {
            self.cfg.counters.tunnel_closed();
        }
    }
}

impl Conn {
    /// A connection handed over with the plaintext already read.
    pub(crate) fn new(
        cfg: Arc<Config>,
        link: Link,
        buffered: Vec<u8>,
        sni: Option<String>,
        peer: SocketAddr,
        ticket: Ticket,
        now: Instant,
    ) -> Conn {
        let local_port = link.sock.local_addr().map_or(443, |a| a.port());
        Conn {
            port: cfg.port.unwrap_or(local_port),
            tls: link.tls.is_some(),
            client: Side::new(link, now, cfg.budget.clone()),
            up: None,
            up_idle: None,
            up_stirred: false,
            cin: buffered,
            uin: Vec::new(),
            phase: Phase::Head(RequestTimer::new(cfg.deadlines, ms(now))),
            peer,
            sni,
            served: 0,
            counted_tunnel: false,
            cfg,
            _ticket: ticket,
        }
    }

    /// The client's socket, to register.
    pub(crate) fn client_socket(&mut self) -> &mut mio::net::TcpStream {
        &mut self.client.link.sock
    }

    /// Whether it has finished.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Whether it waits for a web bridge's name to resolve.
    pub(crate) fn is_resolving(&self) -> bool {
        matches!(&self.phase, Phase::Connect { dial, .. } if matches!(**dial, Dial::Resolving | Dial::Tunnel))
    }

    /// Does everything that can be done without waiting.
    pub(crate) fn advance(&mut self, cx: &mut Ctx<'_>) {
        loop {
            // The phases first, as far as they go, so what they queue goes out
            // together (a response head and its body in one record and write).
            let mut progress = false;
            for _ in 0..64 {
                if !self.step(cx) {
                    break;
                }
                progress = true;
                if matches!(self.phase, Phase::Done) {
                    return;
                }
            }
            match self.client.flush(cx.now) {
                Ok(p) => progress |= p,
                Err(e) => {
                    client_log!(cx, log::Level::Debug, "https {}: {e}", self.peer);
                    self.phase = Phase::Done;
                    return;
                }
            }
            if let Some(up) = self.up.as_mut() {
                match up.side.flush(cx.now) {
                    Ok(p) => progress |= p,
                    Err(e) => self.upstream_failed(cx, &format!("sending: {e}")),
                }
            }
            if matches!(self.phase, Phase::Done) || !progress {
                return;
            }
        }
    }

    /// The web bridge side's socket had an event (`readable`: data, its end or
    /// an error): a kept connection is probed before it is reused.
    pub(crate) fn up_event(&mut self, readable: bool) {
        self.up_stirred = true;
        if readable && let Some(up) = self.up.as_mut() {
            up.side.link.readable();
        }
    }

    /// The browser side's socket is readable (data, its end or an error).
    pub(crate) fn client_readable(&mut self) {
        self.client.link.readable();
    }

    /// One pass of the current phase; whether anything moved.
    fn step(&mut self, cx: &mut Ctx<'_>) -> bool {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Head(timer) => self.head(cx, timer),
            Phase::Connect { plan, dial, until } => self.connect(cx, plan, dial, until),
            Phase::Request {
                plan,
                framing,
                timer,
            } => self.request_body(cx, plan, framing, timer),
            Phase::Response { plan, until } => self.response_head(cx, plan, until),
            Phase::Body {
                head,
                framing,
                close,
                until,
            } => self.response_body(cx, head, framing, close, until),
            Phase::Tunnel { last } => self.tunnel(cx, last),
            Phase::Closing { until, notified } => {
                // The close_notify goes after the last queued byte.
                let notify = !notified && !self.client.has_queued();
                if notify {
                    self.client.close();
                }
                let notified = notified || notify;
                if (!notified || self.client.pending()) && cx.now < until {
                    self.phase = Phase::Closing { until, notified };
                }
                notify
            }
            Phase::Done => false,
        }
    }

    /// When it must be looked at again if nothing happens.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let cfg = &self.cfg;
        let phase = match &self.phase {
            Phase::Head(timer) => {
                let timer = timer.poll_timeout().map(instant_of);
                let pool = self.up_idle.map(|t| t + KEEP_UP);
                [timer, pool].into_iter().flatten().min()
            }
            Phase::Request { timer, .. } => timer.poll_timeout().map(instant_of),
            Phase::Connect { until, .. }
            | Phase::Response { until, .. }
            | Phase::Closing { until, .. } => Some(*until),
            Phase::Body { until, .. } => (self.client.has_room()).then_some(*until),
            Phase::Tunnel { last } => Some(*last + TUNNEL_IDLE),
            Phase::Done => None,
        };
        let client = self
            .client
            .pending()
            .then(|| self.client.wrote_at + cfg.send_stall);
        let up = self
            .up
            .as_ref()
            .filter(|u| u.side.pending())
            .map(|u| u.side.wrote_at + cfg.upstream_timeout);
        [phase, client, up].into_iter().flatten().min()
    }

    /// The deadline passed at `cx.now`: whatever was waited for is given up.
    pub(crate) fn expire(&mut self, cx: &mut Ctx<'_>) {
        let now = cx.now;
        if self.client.pending() && now >= self.client.wrote_at + self.cfg.send_stall {
            client_log!(
                cx,
                log::Level::Debug,
                "https {}: the browser stopped reading",
                self.peer
            );
            self.phase = Phase::Done;
            return;
        }
        if self
            .up
            .as_ref()
            .is_some_and(|u| u.side.pending() && now >= u.side.wrote_at + self.cfg.upstream_timeout)
        {
            self.upstream_failed(cx, "sending: timed out");
            return;
        }
        if self.up_idle.is_some_and(|t| now >= t + KEEP_UP) {
            self.pool_up(cx);
        }
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Head(timer) => match timer.check(ms(now)) {
                Ok(()) => self.phase = Phase::Head(timer),
                Err(Expired::Idle) => {}
                Err(Expired::Refuse(r)) => self.refuse(cx, &r, AfterRefusal::Close, "request"),
            },
            Phase::Request {
                plan,
                framing,
                timer,
            } => match timer.check(ms(now)) {
                Ok(()) => {
                    self.phase = Phase::Request {
                        plan,
                        framing,
                        timer,
                    }
                }
                Err(Expired::Refuse(r)) => {
                    // Too slow a body: refused, and the bridge connection (with
                    // half a request on it) dropped.
                    self.up = None;
                    self.refuse(cx, &r, AfterRefusal::Close, &plan.what);
                }
                Err(Expired::Idle) => self.up = None,
            },
            Phase::Connect { plan, dial, until } => {
                if now >= until {
                    self.dial_failed(cx, &plan, dial.timed_out());
                } else {
                    self.phase = Phase::Connect { plan, dial, until };
                }
            }
            Phase::Response { plan, until } => {
                if now >= until {
                    self.bad_gateway(cx, &plan.what, "no answer: timed out");
                } else {
                    self.phase = Phase::Response { plan, until };
                }
            }
            Phase::Tunnel { last } if now < last + TUNNEL_IDLE => {
                self.phase = Phase::Tunnel { last };
            }
            Phase::Tunnel { .. } => client_log!(
                cx,
                log::Level::Debug,
                "https {}: WebSocket idle, closed",
                self.peer
            ),
            Phase::Body { .. } | Phase::Closing { .. } | Phase::Done => {}
        }
    }

    /// Gives the idle web bridge connection to the loop's pool.
    pub(super) fn pool_up(&mut self, cx: &mut Ctx<'_>) {
        if self.up_idle.take().is_some()
            && let Some(up) = self.up.take()
        {
            let cfg = &self.cfg;
            let (bridge, until) = ((cfg.generation, up.index), cx.now + cfg.pool_idle);
            cx.pool
                .put(bridge, up.side, cx.registry, cfg.pool_per_bridge, until);
        }
    }

    /// Queues `bytes` for the browser and closes after them.
    fn answer_and_close(&mut self, cx: &mut Ctx<'_>, bytes: &[u8]) {
        self.client.queue(bytes, cx.now);
        self.close(cx);
    }

    /// Sends what is queued, then closes (the web bridge connection goes to the
    /// pool if it is idle and clean, else it is closed).
    fn close(&mut self, cx: &mut Ctx<'_>) {
        self.pool_up(cx);
        if let Some(mut up) = self.up.take() {
            up.side.close();
        }
        self.phase = Phase::Closing {
            until: cx.now + self.cfg.send_stall,
            notified: false,
        };
    }

    /// A write to the web bridge failed: 502 if the browser waits for an
    /// answer, else the end of the connection.
    fn upstream_failed(&mut self, cx: &mut Ctx<'_>, cause: &str) {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Request { plan, .. } | Phase::Response { plan, .. } if plan.retriable() => {
                self.retry(cx, plan, cause)
            }
            Phase::Request { plan, .. } | Phase::Response { plan, .. } => {
                self.bad_gateway(cx, &plan.what, cause)
            }
            Phase::Tunnel { .. } => self.close(cx),
            other => {
                self.phase = other;
                self.up = None;
            }
        }
    }

    /// Reads from the browser into `cin`, up to `limit` bytes in it; how many
    /// it read. `Err` when the browser ended the stream or the read failed.
    fn read_client(&mut self, cx: &mut Ctx<'_>, limit: usize) -> Result<usize, ()> {
        let room = limit.saturating_sub(self.cin.len()).min(cx.scratch.len());
        if room == 0 {
            return Ok(0);
        }
        match self
            .client
            .read(cx.scratch.get_mut(..room).unwrap_or_default())
        {
            Ok(super::side::Read::Data(n)) => {
                self.cin
                    .extend_from_slice(cx.scratch.get(..n).unwrap_or_default());
                Ok(n)
            }
            Ok(super::side::Read::Later) => Ok(0),
            Ok(super::side::Read::End) => Err(()),
            Err(e) => {
                client_log!(cx, log::Level::Debug, "https {}: {e}", self.peer);
                Err(())
            }
        }
    }
}

/// Whether a kept-alive web bridge connection can carry the next request: it is
/// open, and has sent nothing nobody asked for.
pub(crate) fn clean(link: &mut Link) -> bool {
    let mut probe = [0u8; 1];
    // Asked of the kernel, whatever an earlier read found.
    link.readable();
    matches!(link.read_plain(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
