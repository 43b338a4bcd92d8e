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
    /// frame) or, with no channel, by a peer (the payload alone). The
    /// payload starts with a sequence number and the send time, in ns since
    /// `origin`, and should be `size` bytes as `fill` made it; `last` is when
    /// that socket last got one, `end` when sending ends. Frames not on
    /// `channel` are not counted.
    pub(crate) fn count(
        &mut self,
        d: &[u8],
        channel: Option<u16>,
        size: usize,
        (origin, end): (Instant, Instant),
        last: &mut Option<Instant>,
    ) {
        let p = match channel {
            Some(channel) => {
                if d.len() < 4 + 16 || d[..2] != channel.to_be_bytes() {
                    return;
                }
                let len = usize::from(u16::from_be_bytes([d[2], d[3]]));
                d.get(4..4 + len)
            }
            None => Some(d),
        };
        let Some(p) = p.filter(|p| p.len() >= 16) else {
            self.corrupt += 1;
            return;
        };
        let len = p.len();
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

/// A client's (or a peer's) UDP socket in an event loop.
pub(crate) struct Client {
    pub(crate) sock: MioUdp,
    /// The channel its ChannelData comes on; none for a peer.
    pub(crate) channel: Option<u16>,
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
    let mut socks = Vec::with_capacity(clients.len());
    let mut turns = Vec::with_capacity(clients.len());
    for (turn, channel) in clients {
        socks.push((udp_of(&turn)?, Some(channel)));
        turns.push(turn);
    }
    let (poll, socks) = register_sockets(socks)?;
    Ok((poll, socks, turns))
}

/// A copy of `turn`'s UDP socket.
pub(crate) fn udp_of(turn: &TurnClient) -> io::Result<UdpSocket> {
    turn.udp_socket()
        .ok_or_else(|| io::Error::other("an event loop drives UDP clients only"))?
        .try_clone()
}

/// Registers `socks` (each with the channel its datagrams come on, none for
/// a peer's socket) for reading with a new poll, made non-blocking; the poll
/// and the sockets (token = index).
pub(crate) fn register_sockets(
    socks: Vec<(UdpSocket, Option<u16>)>,
) -> io::Result<(Poll, Vec<Client>)> {
    let poll = Poll::new()?;
    let mut out = Vec::with_capacity(socks.len());
    for (i, (sock, channel)) in socks.into_iter().enumerate() {
        sock.set_nonblocking(true)?;
        let mut sock = MioUdp::from_std(sock);
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE)?;
        out.push(Client {
            sock,
            channel,
            sent: 0,
            last: None,
        });
    }
    Ok((poll, out))
}

/// Deals `items` round robin into `loops` shares (at least one, at most one
/// an item).
pub(crate) fn deal<T>(items: impl IntoIterator<Item = T>, loops: usize) -> Vec<Vec<T>> {
    let items: Vec<T> = items.into_iter().collect();
    let loops = loops.clamp(1, items.len().max(1));
    let mut shares: Vec<Vec<T>> = (0..loops).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        if let Some(share) = shares.get_mut(i % loops) {
            share.push(item);
        }
    }
    shares
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
            if let Some(c) = socks.get_mut(k % count)
                && let Some(channel) = c.channel
            {
                frame[..2].copy_from_slice(&channel.to_be_bytes());
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
