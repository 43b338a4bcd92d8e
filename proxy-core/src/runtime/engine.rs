//! The proxy's event loops: a few threads (one per core by default), each with
//! its own mio poll, its connections in a slab, their deadlines in a heap and
//! its own pool of idle web bridge connections. A hand-off goes to the loop with
//! the fewest connections, with the configuration it is to be served under (a
//! reload's proxy shares the loops of the one it replaces, and connections
//! opened before keep their configuration). The loops end when the last proxy
//! sharing them is dropped and their last connection has closed.

use crate::runtime::prelude::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::{Events, Interest, Poll, Token, Waker};

use super::Config;
use super::admission::Ticket;
use super::conn::{Conn, Ctx};
use super::dns::Resolver;
use super::link::Link;
use super::pool::Pool;
use super::side::QUEUE;

/// The token of a loop's waker.
const WAKER: Token = Token(usize::MAX);
/// Longest sleep of a loop (pool sweeps and the end of a dropped proxy).
const TICK: Duration = Duration::from_secs(1);

/// A connection on its way to a loop.
pub(crate) struct Handoff {
    pub(crate) cfg: Arc<Config>,
    pub(crate) link: Link,
    pub(crate) buffered: Vec<u8>,
    pub(crate) sni: Option<String>,
    pub(crate) peer: SocketAddr,
    pub(crate) ticket: Ticket,
}

/// What a loop shares with the proxy.
struct LoopShared {
    inbox: Mutex<Vec<Handoff>>,
    waker: Arc<Waker>,
    /// Set when the proxy is dropped.
    closed: AtomicBool,
    /// Set by the resolver when an answer came in.
    answered: Arc<AtomicBool>,
    /// Connections it serves.
    conns: AtomicUsize,
}

/// The loops of one proxy.
pub(crate) struct Engine {
    loops: Vec<Arc<LoopShared>>,
    next: AtomicUsize,
}

impl Engine {
    /// Starts `n` loops, woken by `resolver`'s answers.
    pub(crate) fn start(n: usize, resolver: &Resolver) -> io::Result<Engine> {
        let mut loops = Vec::new();
        for i in 0..n.max(1) {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let answered = Arc::new(AtomicBool::new(false));
            resolver.wake_on_answer(waker.clone(), answered.clone());
            let shared = Arc::new(LoopShared {
                inbox: Mutex::new(Vec::new()),
                waker,
                closed: AtomicBool::new(false),
                answered,
                conns: AtomicUsize::new(0),
            });
            let s = shared.clone();
            std::thread::Builder::new()
                .name(format!("web-proxy-{i}"))
                .spawn(move || Loop::new(poll, s).run())?;
            loops.push(shared);
        }
        Ok(Engine {
            loops,
            next: AtomicUsize::new(0),
        })
    }

    /// Loops running.
    pub(crate) fn len(&self) -> usize {
        self.loops.len()
    }

    /// Gives `h` to the loop with the fewest connections.
    pub(crate) fn hand_off(&self, h: Handoff) {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.loops.len();
        let Some(target) = (0..n)
            .filter_map(|i| self.loops.get((start + i) % n))
            .min_by_key(|l| l.conns.load(Ordering::Relaxed))
        else {
            return;
        };
        target.conns.fetch_add(1, Ordering::Relaxed);
        target
            .inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(h);
        if let Err(e) = target.waker.wake() {
            warn!("web proxy: cannot wake an event loop: {e}");
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for l in &self.loops {
            l.closed.store(true, Ordering::SeqCst);
            let _ = l.waker.wake();
        }
    }
}

/// A connection in the slab.
struct Entry {
    conn: Conn,
    /// Told apart from an earlier connection in the same place.
    generation: u64,
    /// The earliest wake-up queued for it.
    armed: Option<Instant>,
}

/// One event loop.
struct Loop {
    poll: Poll,
    shared: Arc<LoopShared>,
    slab: Vec<Option<Entry>>,
    free: Vec<usize>,
    generations: u64,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    pool: Pool,
    scratch: Vec<u8>,
    /// Log lines its clients may cause (ten a second, the rest counted).
    logs: stun_core::escape::LineBudget,
}

impl Loop {
    fn new(poll: Poll, shared: Arc<LoopShared>) -> Loop {
        Loop {
            poll,
            shared,
            slab: Vec::new(),
            free: Vec::new(),
            generations: 0,
            timers: BinaryHeap::new(),
            pool: Pool::default(),
            scratch: vec![0u8; QUEUE / 2],
            logs: stun_core::escape::LineBudget::new(10),
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut swept = Instant::now();
        loop {
            let now = Instant::now();
            let timeout = self
                .timers
                .peek()
                .map_or(TICK, |Reverse((t, _, _))| t.saturating_duration_since(now))
                .min(TICK);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                warn!("web proxy: event loop failed: {e}");
                return;
            }
            let now = Instant::now();
            let mut woken = false;
            for ev in events.iter() {
                if ev.token() == WAKER {
                    woken = true;
                } else {
                    let idx = ev.token().0 >> 1;
                    let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                    if let Some(Some(e)) = self.slab.get_mut(idx) {
                        if ev.token().0 & 1 == 1 {
                            e.conn.up_event(readable);
                        } else if readable {
                            e.conn.client_readable();
                        }
                    }
                    self.drive(idx, now, false);
                }
            }
            if woken {
                self.take_inbox(now);
                if self.shared.answered.swap(false, Ordering::SeqCst) {
                    let waiting: Vec<usize> = (0..self.slab.len())
                        .filter(
                            |&i| matches!(self.slab.get(i), Some(Some(e)) if e.conn.is_resolving()),
                        )
                        .collect();
                    for i in waiting {
                        self.drive(i, now, false);
                    }
                }
            }
            self.fire_timers(now);
            if now.saturating_duration_since(swept) >= TICK {
                swept = now;
                self.pool.sweep(now);
            }
            if self.shared.closed.load(Ordering::SeqCst)
                && self.slab.iter().all(Option::is_none)
                && self.shared.inbox.lock().map_or(true, |i| i.is_empty())
            {
                debug!("web proxy: event loop ends (proxy replaced or dropped)");
                return;
            }
        }
    }

    /// Places the connections handed over since the last pass.
    fn take_inbox(&mut self, now: Instant) {
        let handed: Vec<Handoff> =
            std::mem::take(&mut *self.shared.inbox.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handed {
            let mut conn = Conn::new(h.cfg, h.link, h.buffered, h.sni, h.peer, h.ticket, now);
            let idx = self.free.pop().unwrap_or_else(|| {
                self.slab.push(None);
                self.slab.len() - 1
            });
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) =
                self.poll
                    .registry()
                    .register(conn.client_socket(), Token(idx << 1), interest)
            {
                debug!("https {}: cannot register: {e}", h.peer);
                self.free.push(idx);
                self.shared.conns.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            self.generations += 1;
            if let Some(slot) = self.slab.get_mut(idx) {
                *slot = Some(Entry {
                    conn,
                    generation: self.generations,
                    armed: None,
                });
            }
            // Its first request may be in already.
            self.drive(idx, now, false);
        }
    }

    /// Advances connection `idx` (after its deadline passed, if `expired`),
    /// drops it if it finished, else queues its next wake-up.
    fn drive(&mut self, idx: usize, now: Instant, expired: bool) {
        let Some(Some(entry)) = self.slab.get_mut(idx) else {
            return;
        };
        let mut cx = Ctx {
            now,
            scratch: &mut self.scratch,
            pool: &mut self.pool,
            registry: self.poll.registry(),
            up_token: Token((idx << 1) | 1),
            logs: &mut self.logs,
        };
        if expired {
            entry.conn.expire(&mut cx);
        }
        if !entry.conn.is_done() {
            entry.conn.advance(&mut cx);
        }
        if entry.conn.is_done() {
            if let Some(slot) = self.slab.get_mut(idx) {
                *slot = None;
            }
            self.free.push(idx);
            self.shared.conns.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        // Never in the past: a deadline that passed is handled on the next pass.
        if let Some(d) = entry
            .conn
            .deadline()
            .map(|d| d.max(now + Duration::from_millis(1)))
            && entry.armed.is_none_or(|a| d < a)
        {
            entry.armed = Some(d);
            self.timers.push(Reverse((d, idx, entry.generation)));
        }
    }

    /// Looks at the connections whose wake-up time came.
    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((t, idx, generation))) = self.timers.peek().copied() {
            if t > now {
                return;
            }
            self.timers.pop();
            let Some(Some(entry)) = self.slab.get_mut(idx) else {
                continue;
            };
            if entry.generation != generation || entry.armed != Some(t) {
                continue;
            }
            entry.armed = None;
            let expired = entry.conn.deadline().is_some_and(|d| d <= now);
            self.drive(idx, now, expired);
        }
    }
}
