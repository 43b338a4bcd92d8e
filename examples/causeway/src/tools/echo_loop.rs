//! `causeway load --mode echo --threads N`: the echo load of many clients
//! driven from a few event loops instead of a thread each, so that thousands
//! of allocations at a modest rate (a meeting's participants) cost the
//! generator little. Each client allocates and binds its channel with the
//! blocking client, then its UDP socket is driven here: ChannelData framed by
//! hand, sends spread evenly over each interval, echoes read as they come.

use std::io;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use mio::net::UdpSocket as MioUdp;
use mio::{Events, Interest, Poll, Token};
use turn_core::adapters::std::client::TurnClient;

use super::load::{fill, filled};

/// What one loop's clients saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) corrupt: u64,
    /// Round trips (one-way delays for `--mode from-peer`), microseconds.
    pub(crate) rtts: Vec<u64>,
    /// The longest time a client waited between two echoes while sending,
    /// microseconds.
    pub(crate) gap: u64,
}

impl Seen {
    /// Counts datagram `d` read by a client on `channel` (a ChannelData
    /// frame whose payload starts with a sequence number and the send time,
    /// in ns since `origin`, and should be `size` bytes as `fill` made it);
    /// `last` is when that client last got one, `end` when sending ends.
    /// Frames not on `channel` are not counted.
    pub(crate) fn count(
        &mut self,
        d: &[u8],
        channel: u16,
        size: usize,
        (origin, end): (Instant, Instant),
        last: &mut Option<Instant>,
    ) {
        if d.len() < 4 + 16 || d[..2] != channel.to_be_bytes() {
            return;
        }
        let len = usize::from(u16::from_be_bytes([d[2], d[3]]));
        let Some(p) = d.get(4..4 + len).filter(|p| p.len() >= 16) else {
            self.corrupt += 1;
            return;
        };
        let seq = u64::from_be_bytes(p[..8].try_into().unwrap_or_default());
        let ns = u64::from_be_bytes(p[8..16].try_into().unwrap_or_default());
        let at = Instant::now();
        let elapsed = (at - origin).as_nanos() as u64;
        self.rtts.push(elapsed.saturating_sub(ns) / 1000);
        self.received += 1;
        // Every byte must come as sent.
        if len != size || !filled(&p[16..], seq) {
            self.corrupt += 1;
        }
        if at < end
            && let Some(before) = last.replace(at)
        {
            self.gap = self.gap.max((at - before).as_micros() as u64);
        }
    }
}

/// A client's UDP socket in an event loop.
pub(crate) struct Client {
    pub(crate) sock: MioUdp,
    pub(crate) channel: u16,
    /// Datagrams it sent (the echo load).
    pub(crate) sent: u64,
    /// When it last got one.
    pub(crate) last: Option<Instant>,
}

/// Registers `clients`' UDP sockets (non-blocking copies) for reading with a
/// new poll; the poll, the sockets (token = index) and the clients.
pub(crate) fn register(
    clients: Vec<(TurnClient, u16)>,
) -> io::Result<(Poll, Vec<Client>, Vec<TurnClient>)> {
    let poll = Poll::new()?;
    let mut socks = Vec::with_capacity(clients.len());
    let mut turns = Vec::with_capacity(clients.len());
    for (i, (turn, channel)) in clients.into_iter().enumerate() {
        let sock: UdpSocket = turn
            .udp_socket()
            .ok_or_else(|| io::Error::other("an event loop drives UDP clients only"))?
            .try_clone()?;
        sock.set_nonblocking(true)?;
        let mut sock = MioUdp::from_std(sock);
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE)?;
        socks.push(Client {
            sock,
            channel,
            sent: 0,
            last: None,
        });
        turns.push(turn);
    }
    Ok((poll, socks, turns))
}

/// Reads every client `events` names until its socket would block, counting
/// what came into `seen` (see [`Seen::count`]).
pub(crate) fn read_ready(
    events: &Events,
    socks: &mut [Client],
    seen: &mut Seen,
    size: usize,
    times: (Instant, Instant),
) {
    let mut buf = [0u8; 2048];
    for ev in events.iter() {
        let Some(c) = socks.get_mut(ev.token().0) else {
            continue;
        };
        loop {
            let got = match c.sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => continue,
            };
            if let Some(d) = buf.get(..got) {
                seen.count(d, c.channel, size, times, &mut c.last);
            }
        }
    }
}

/// Drives `clients` (allocated, each with `channel` bound to the peer) at
/// `rate` packets/s each, `size`-byte payloads, for `duration`; then waits
/// up to 5 s for the echoes still on their way.
pub(crate) fn drive(
    clients: Vec<(TurnClient, u16)>,
    rate: u64,
    size: usize,
    duration: Duration,
) -> io::Result<(Seen, Vec<TurnClient>)> {
    let (mut poll, mut socks, turns) = register(clients)?;
    let n = socks.len().max(1) as u64;
    // One send every `step`, round robin: each client every 1/rate s.
    let step = Duration::from_nanos(1_000_000_000 / rate.max(1) / n).max(Duration::from_nanos(1));
    let mut seen = Seen::default();
    let mut events = Events::with_capacity(1024);
    let mut frame = vec![0u8; 4 + size];
    let origin = Instant::now();
    let end = origin + duration;
    let drain_end = end + Duration::from_secs(5);
    let mut next = origin;
    let mut k: usize = 0;
    loop {
        let now = Instant::now();
        if now >= drain_end || (now >= end && seen.received >= seen.sent) {
            break;
        }
        while now >= next && now < end {
            let count = socks.len().max(1);
            if let Some(c) = socks.get_mut(k % count) {
                frame[..2].copy_from_slice(&c.channel.to_be_bytes());
                frame[2..4].copy_from_slice(&(size as u16).to_be_bytes());
                let payload = &mut frame[4..];
                payload[..8].copy_from_slice(&c.sent.to_be_bytes());
                let ns = origin.elapsed().as_nanos() as u64;
                payload[8..16].copy_from_slice(&ns.to_be_bytes());
                fill(&mut payload[16..], c.sent);
                if c.sock.send(&frame).is_ok() {
                    c.sent += 1;
                    seen.sent += 1;
                }
            }
            k += 1;
            next += step;
        }
        let wait = if now < end {
            next.saturating_duration_since(now)
        } else {
            Duration::from_millis(5)
        };
        poll.poll(&mut events, Some(wait.min(Duration::from_millis(5))))?;
        read_ready(&events, &mut socks, &mut seen, size, (origin, end));
    }
    Ok((seen, turns))
}
