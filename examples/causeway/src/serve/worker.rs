//! One worker: an event loop over its own listening sockets and TCP clients.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{debug, info};
use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use stun_core::binding::{self, Outcome};

use super::limiter::LogLimiter;
use super::tcp::{Conn, ReadState};
use crate::config::Config;

const WAKER: Token = Token(0);
const FIRST_LISTENER: usize = 1;
const FIRST_CONN: usize = 1 << 20;
/// How often idle connections are swept.
const TICK: Duration = Duration::from_secs(1);

/// The sockets one worker listens on.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    pub(crate) udp: Vec<UdpSocket>,
    pub(crate) tcp: Vec<TcpListener>,
}

/// An event loop and everything it owns.
pub(crate) struct Worker {
    id: usize,
    poll: Poll,
    waker: Arc<Waker>,
    udp: Vec<(UdpSocket, SocketAddr)>,
    tcp: Vec<TcpListener>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    live_conns: usize,
    cfg: Arc<Config>,
    shutdown: Arc<AtomicBool>,
    logs: LogLimiter,
    rx: Vec<u8>,
    tx: Vec<u8>,
}

impl Worker {
    pub(crate) fn new(
        id: usize,
        listeners: Listeners,
        cfg: Arc<Config>,
        shutdown: Arc<AtomicBool>,
    ) -> io::Result<Worker> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut udp = Vec::new();
        let mut token = FIRST_LISTENER;
        for mut s in listeners.udp {
            poll.registry()
                .register(&mut s, Token(token), Interest::READABLE)?;
            token += 1;
            let local = s.local_addr()?;
            udp.push((s, local));
        }
        let mut tcp = Vec::new();
        for mut l in listeners.tcp {
            poll.registry()
                .register(&mut l, Token(token), Interest::READABLE)?;
            token += 1;
            tcp.push(l);
        }
        Ok(Worker {
            id,
            poll,
            waker,
            udp,
            tcp,
            conns: Vec::new(),
            free: Vec::new(),
            live_conns: 0,
            cfg,
            shutdown,
            logs: LogLimiter::new(20, Instant::now()),
            rx: vec![0; 65536],
            tx: vec![0; 2048],
        })
    }

    /// Wakes the worker from another thread (to stop it).
    pub(crate) fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Runs until the shutdown flag is set.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        while !self.shutdown.load(Ordering::Relaxed) {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                log::error!("worker {}: event loop failed: {e}", self.id);
                return;
            }
            for ev in events.iter() {
                let t = ev.token().0;
                if t == WAKER.0 {
                    continue;
                }
                if t >= FIRST_CONN {
                    self.on_conn(t - FIRST_CONN);
                } else if t - FIRST_LISTENER < self.udp.len() {
                    self.on_udp(t - FIRST_LISTENER);
                } else {
                    self.on_accept(t - FIRST_LISTENER - self.udp.len());
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.sweep_idle(now);
                next_tick = now + TICK;
            }
        }
        debug!("worker {} stopped", self.id);
    }

    /// Answers one STUN packet; returns the length of the reply in `out`, if any.
    fn answer(
        &mut self,
        transport: &str,
        peer: SocketAddr,
        packet: &[u8],
        now: Instant,
    ) -> Option<usize> {
        let software = self.cfg.software();
        match binding::respond(packet, peer, software, &mut self.tx) {
            Outcome::Success(n) => Some(n),
            Outcome::Error { len, code, why } => {
                if let Some(suppressed) = self.logs.allow(now) {
                    info!(
                        "{transport} {peer}: answered {code}: {why}{}",
                        note(suppressed)
                    );
                }
                Some(len)
            }
            Outcome::Drop(why) => {
                debug!("{transport} {peer}: {why}");
                None
            }
        }
    }

    fn on_udp(&mut self, i: usize) {
        loop {
            let Some((sock, _)) = self.udp.get(i) else {
                return;
            };
            let (n, peer) = match sock.recv_from(&mut self.rx) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors from earlier sends surface here on Linux; keep going.
                Err(_) => continue,
            };
            let now = Instant::now();
            let packet = std::mem::take(&mut self.rx);
            let reply = self.answer("udp", peer, &packet[..n], now);
            self.rx = packet;
            if let (Some(len), Some((sock, _))) = (reply, self.udp.get(i)) {
                // A full socket buffer drops the reply, as a lost datagram would.
                let _ = sock.send_to(&self.tx[..len], peer);
            }
        }
    }

    fn on_accept(&mut self, i: usize) {
        loop {
            let Some(listener) = self.tcp.get(i) else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("tcp accept failed: {e}");
                    return;
                }
            };
            if self.live_conns >= self.cfg.tcp.max_connections {
                let now = Instant::now();
                if let Some(s) = self.logs.allow(now) {
                    info!(
                        "tcp {peer}: refused: {} connections already open on worker {} \
                         (tcp.max_connections){}",
                        self.live_conns,
                        self.id,
                        note(s)
                    );
                }
                continue;
            }
            let _ = stream.set_nodelay(true);
            let idx = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let mut conn = Conn::new(stream, peer, Instant::now());
            if self
                .poll
                .registry()
                .register(
                    &mut conn.stream,
                    Token(FIRST_CONN + idx),
                    Interest::READABLE,
                )
                .is_err()
            {
                self.free.push(idx);
                continue;
            }
            self.conns[idx] = Some(conn);
            self.live_conns += 1;
            debug!("tcp {peer}: connected");
        }
    }

    fn on_conn(&mut self, idx: usize) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let now = Instant::now();
        let peer = conn.peer;
        let mut state = conn.read_frames(now, |frame, wbuf| {
            if let Some(len) = self.answer("tcp", peer, frame, now) {
                wbuf.extend_from_slice(&self.tx[..len]);
            }
        });
        if state == ReadState::Open && !conn.flush() {
            state = ReadState::Closed("write error");
        }
        if let ReadState::Closed(why) = state {
            debug!("tcp {peer}: {why}");
            self.close(idx, conn);
            return;
        }
        let want = conn.has_pending_write();
        if want != conn.wants_write {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = self.poll.registry().reregister(
                &mut conn.stream,
                Token(FIRST_CONN + idx),
                interest,
            );
            conn.wants_write = want;
        }
        self.conns[idx] = Some(conn);
    }

    fn close(&mut self, idx: usize, mut conn: Conn) {
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.free.push(idx);
        self.live_conns -= 1;
    }

    fn sweep_idle(&mut self, now: Instant) {
        let limit = Duration::from_secs(self.cfg.tcp.idle_timeout_secs);
        for idx in 0..self.conns.len() {
            let idle = self.conns[idx]
                .as_ref()
                .is_some_and(|c| now.saturating_duration_since(c.last_active) > limit);
            if idle && let Some(conn) = self.conns[idx].take() {
                debug!("tcp {}: closed after {} s idle", conn.peer, limit.as_secs());
                self.close(idx, conn);
            }
        }
    }
}

/// " (N similar lines suppressed)" when N > 0.
fn note(suppressed: u64) -> String {
    if suppressed == 0 {
        String::new()
    } else {
        format!(" ({suppressed} similar lines suppressed)")
    }
}
