//! `causeway load --mode from-peer`: the echo load's reverse direction, what a
//! relay does with media coming in from the far side. Each client allocates
//! and binds a channel to one of this process's peers (client i to peer i mod
//! `--peers`); one thread sends `--size`-byte datagrams from each client's
//! peer to its relayed address, `--rate` a second per client spread evenly,
//! and `--threads` event loops read what the server relays to the clients as
//! ChannelData. It reports what was sent and delivered, the loss, and the
//! one-way delay (the sender and the readers share this process's clock).
//!
//! With `--burst N` each client gets its datagrams N at a time, sent with one
//! `sendmsg` (UDP GSO: the kernel cuts the N segments), as a video frame's
//! packets arrive: N times fewer sends for the generator, so it can offer a
//! relay more than its one-`sendto`-a-datagram limit.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mio::Events;
use quinn_udp::{Transmit, UdpSocketState};
use turn_core::adapters::std::client::TurnClient;

use super::echo_loop::{Seen, read_ready, register};
use super::load::fill;

/// How long the readers wait, after the last send, for what is still on its
/// way (a busy machine delays it).
const DRAIN: Duration = Duration::from_secs(5);

/// A client as the sender sees it: which peer sends to it, and where.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    /// Index of its peer socket.
    pub(crate) peer: usize,
    /// Its relayed address.
    pub(crate) relayed: SocketAddr,
}

/// What the sender and the readers share: the time base, the totals, and
/// whether sending ended.
struct Shared {
    origin: Instant,
    end: Instant,
    sent: AtomicU64,
    received: AtomicU64,
    sending_done: AtomicBool,
}

impl Shared {
    /// Whether the readers may stop: sending ended and everything came, or
    /// the drain time passed.
    fn finished(&self, now: Instant) -> bool {
        now >= self.end + DRAIN
            || (self.sending_done.load(Ordering::Acquire)
                && self.received.load(Ordering::Relaxed) >= self.sent.load(Ordering::Relaxed))
    }
}

/// How the load goes: datagrams a second per client, their size, for how
/// long, how many at a time to a client, and how many event loops read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    pub(crate) rate: u64,
    pub(crate) size: usize,
    pub(crate) duration: Duration,
    pub(crate) burst: usize,
    pub(crate) loops: usize,
}

/// Runs the load: `peers` send to `targets` (`clients[i]` is the client of
/// `targets[i]`, its channel bound to that target's peer) as `pace` says.
/// Returns what was seen and the clients (to deallocate).
pub(crate) fn run(
    peers: Vec<UdpSocket>,
    targets: Vec<Target>,
    clients: Vec<(TurnClient, u16)>,
    pace: Pace,
) -> io::Result<(Seen, Vec<TurnClient>)> {
    let Pace {
        rate,
        size,
        duration,
        burst,
        loops,
    } = pace;
    let origin = Instant::now();
    let shared = Arc::new(Shared {
        origin,
        end: origin + duration,
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        sending_done: AtomicBool::new(false),
    });
    let loops = loops.clamp(1, clients.len().max(1));
    let mut shares: Vec<Vec<(TurnClient, u16)>> = (0..loops).map(|_| Vec::new()).collect();
    for (i, c) in clients.into_iter().enumerate() {
        if let Some(share) = shares.get_mut(i % loops) {
            share.push(c);
        }
    }
    let readers: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let shared = shared.clone();
            thread::spawn(move || read(share, size, &shared))
        })
        .collect();
    let sent = send(&peers, &targets, (rate, size, burst), &shared)?;
    shared.sent.store(sent, Ordering::Relaxed);
    shared.sending_done.store(true, Ordering::Release);
    let mut seen = Seen {
        sent,
        ..Seen::default()
    };
    let mut turns = Vec::new();
    for r in readers {
        let (got, t) = r
            .join()
            .map_err(|_| io::Error::other("a reader panicked"))??;
        seen.received += got.received;
        seen.corrupt += got.corrupt;
        seen.rtts.extend(got.rtts);
        seen.gap = seen.gap.max(got.gap);
        turns.extend(t);
    }
    Ok((seen, turns))
}

/// Sends round robin, a burst of `burst` datagrams every burst/(rate x
/// clients) s, until the end; returns how many datagrams went.
fn send(
    peers: &[UdpSocket],
    targets: &[Target],
    (rate, size, burst): (u64, usize, usize),
    at: &Shared,
) -> io::Result<u64> {
    let size = size.max(16);
    let burst = burst.max(1);
    // One GSO send a burst where the kernel takes it, else a send a datagram.
    let states = peers
        .iter()
        .map(|s| UdpSocketState::new(s.into()))
        .collect::<io::Result<Vec<_>>>()?;
    let gso = burst > 1 && states.iter().all(|s| s.max_gso_segments() >= burst);
    let n = targets.len().max(1) as u64;
    let step = Duration::from_nanos(1_000_000_000 * burst as u64 / rate.max(1) / n)
        .max(Duration::from_nanos(1));
    let mut seqs = vec![0u64; targets.len()];
    let mut frames = vec![0u8; size * burst];
    let (mut next, mut k, mut sent) = (at.origin, 0usize, 0u64);
    loop {
        let now = Instant::now();
        if now >= at.end {
            return Ok(sent);
        }
        while next <= now {
            let i = k % targets.len().max(1);
            if let (Some(t), Some(seq)) = (targets.get(i), seqs.get_mut(i))
                && let (Some(sock), Some(state)) = (peers.get(t.peer), states.get(t.peer))
            {
                let ns = at.origin.elapsed().as_nanos() as u64;
                for (j, d) in frames.chunks_exact_mut(size).enumerate() {
                    let s = *seq + j as u64;
                    d[..8].copy_from_slice(&s.to_be_bytes());
                    d[8..16].copy_from_slice(&ns.to_be_bytes());
                    fill(&mut d[16..], s);
                }
                let went = if gso {
                    let t = Transmit {
                        destination: t.relayed,
                        ecn: None,
                        contents: &frames,
                        segment_size: Some(size),
                        src_ip: None,
                    };
                    if state.try_send(sock.into(), &t).is_ok() {
                        burst
                    } else {
                        0
                    }
                } else {
                    frames
                        .chunks_exact(size)
                        .take_while(|d| sock.send_to(d, t.relayed).is_ok())
                        .count()
                };
                *seq += went as u64;
                sent += went as u64;
            }
            k += 1;
            next += step;
        }
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// Reads `clients`' sockets until [`Shared::finished`].
fn read(
    clients: Vec<(TurnClient, u16)>,
    size: usize,
    at: &Shared,
) -> io::Result<(Seen, Vec<TurnClient>)> {
    let (mut poll, mut socks, turns) = register(clients)?;
    // Room for what the server sends while this loop waits for a core.
    for c in &socks {
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&c.sock, 1 << 20);
    }
    let mut seen = Seen::default();
    let mut events = Events::with_capacity(1024);
    while !at.finished(Instant::now()) {
        poll.poll(&mut events, Some(Duration::from_millis(5)))?;
        let before = seen.received;
        read_ready(
            &events,
            &mut socks,
            &mut seen,
            size.max(16),
            (at.origin, at.end),
        );
        at.received
            .fetch_add(seen.received - before, Ordering::Relaxed);
    }
    Ok((seen, turns))
}
