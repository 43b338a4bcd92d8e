//! `causeway load --mode from-peer` and `--mode to-peer`: one half of the
//! echo load alone, for a relay's limit in one direction.
//!
//! - from-peer, what a relay does with media coming in from the far side:
//!   each client allocates and binds a channel to one of this process's peers
//!   (client i to peer i mod `--peers`); one thread sends datagrams from each
//!   client's peer to its relayed address, and `--threads` event loops read
//!   what the server relays to the clients as ChannelData.
//! - to-peer, the media a relay sends on: each client binds a channel to
//!   `--peer` (a sink elsewhere, which counts what arrives: this process
//!   counts only what it sent) or to one of this process's `--peers`, read by
//!   `--threads` event loops; one thread sends ChannelData from each client.
//!
//! Each stream carries `--size`-byte payloads, `--rate` a second per client,
//! spread evenly. It reports what was sent and delivered, the loss, and the
//! one-way delay (the sender and the readers share this process's clock).
//!
//! With `--burst N` each client's datagrams go N at a time in one `sendmsg`
//! (UDP GSO: the kernel cuts the N segments), as a video frame's packets
//! come: N times fewer sends for the generator, so it can offer a relay more
//! than its one-`sendto`-a-datagram limit.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mio::Events;
use quinn_udp::{Transmit, UdpSocketState};
use turn_core::adapters::std::client::TurnClient;

use super::echo_loop::{Seen, deal, read_ready, register_sockets, udp_of};
use super::echo_peer_ip;
use super::load::{LoadArgs, allocated, fill, percentile};

/// How long the readers wait, after the last send, for what is still on its
/// way (a busy machine delays it).
const DRAIN: Duration = Duration::from_secs(5);

/// One stream of the load: which socket sends it, where to, and the channel
/// it is framed on (a client's ChannelData to the server), or none (a
/// peer's datagrams to a relayed address).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    /// Index of the sending socket.
    pub(crate) from: usize,
    /// Where it goes.
    pub(crate) to: SocketAddr,
    /// The channel its datagrams are framed on.
    pub(crate) channel: Option<u16>,
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

/// How the load goes: datagrams a second per stream, their payload size, for
/// how long, how many at a time to a stream, and how many event loops read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    pub(crate) rate: u64,
    pub(crate) size: usize,
    pub(crate) duration: Duration,
    pub(crate) burst: usize,
    pub(crate) loops: usize,
}

impl Pace {
    fn of(args: &LoadArgs) -> Pace {
        Pace {
            rate: args.rate,
            size: args.size.max(16),
            duration: Duration::from_secs(args.duration),
            burst: usize::from(args.burst),
            loops: args.threads.unwrap_or(1),
        }
    }
}

/// Runs the load: `senders` send `targets` as `pace` says while event loops
/// read `readers` (each with the channel its datagrams come on; none: what
/// is sent is counted elsewhere, and `received` stays 0).
pub(crate) fn run(
    senders: &[UdpSocket],
    targets: &[Target],
    readers: Vec<(UdpSocket, Option<u16>)>,
    pace: Pace,
) -> io::Result<Seen> {
    let origin = Instant::now();
    let shared = Arc::new(Shared {
        origin,
        end: origin + pace.duration,
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        sending_done: AtomicBool::new(false),
    });
    let loops: Vec<_> = if readers.is_empty() {
        Vec::new()
    } else {
        deal(readers, pace.loops)
    }
    .into_iter()
    .map(|share| {
        let shared = shared.clone();
        thread::spawn(move || read(share, pace.size, &shared))
    })
    .collect();
    let sent = send(senders, targets, pace, &shared)?;
    shared.sent.store(sent, Ordering::Relaxed);
    shared.sending_done.store(true, Ordering::Release);
    let mut seen = Seen {
        sent,
        ..Seen::default()
    };
    for r in loops {
        let got = r
            .join()
            .map_err(|_| io::Error::other("a reader panicked"))??;
        seen.received += got.received;
        seen.corrupt += got.corrupt;
        seen.rtts.extend(got.rtts);
        seen.gap = seen.gap.max(got.gap);
    }
    Ok(seen)
}

/// Sends round robin, a burst of `pace.burst` datagrams every burst/(rate x
/// streams) s, until the end; returns how many datagrams went.
fn send(senders: &[UdpSocket], targets: &[Target], pace: Pace, at: &Shared) -> io::Result<u64> {
    let size = pace.size.max(16);
    let burst = pace.burst.max(1);
    // One GSO send a burst where the kernel takes it, else a send a datagram.
    let states = senders
        .iter()
        .map(|s| UdpSocketState::new(s.into()))
        .collect::<io::Result<Vec<_>>>()?;
    let gso = burst > 1 && states.iter().all(|s| s.max_gso_segments() >= burst);
    let n = targets.len().max(1) as u64;
    let step = Duration::from_nanos(1_000_000_000 * burst as u64 / pace.rate.max(1) / n)
        .max(Duration::from_nanos(1));
    let mut seqs = vec![0u64; targets.len()];
    let mut frames = Vec::new();
    let (mut next, mut k, mut sent) = (at.origin, 0usize, 0u64);
    loop {
        let now = Instant::now();
        if now >= at.end {
            return Ok(sent);
        }
        while next <= now {
            let i = k % targets.len().max(1);
            if let (Some(t), Some(seq)) = (targets.get(i), seqs.get_mut(i))
                && let (Some(sock), Some(state)) = (senders.get(t.from), states.get(t.from))
            {
                let segment = frame(&mut frames, t.channel, size, burst, *seq, at.origin);
                let went = if gso {
                    let tx = Transmit {
                        destination: t.to,
                        ecn: None,
                        contents: &frames,
                        segment_size: Some(segment),
                        src_ip: None,
                    };
                    if state.try_send(sock.into(), &tx).is_ok() {
                        burst
                    } else {
                        0
                    }
                } else {
                    frames
                        .chunks_exact(segment)
                        .take_while(|d| sock.send_to(d, t.to).is_ok())
                        .count()
                };
                *seq += went as u64;
                sent += went as u64;
            }
            k += 1;
            next += step;
        }
        pause_until(next);
    }
}

/// Waits until `next`: sleeps, or spins when it is nearer than a sleep's
/// own overshoot, so that fast paces stay even instead of coming in bunches
/// (which a receiver's ring, 256 frames on a veth, would drop).
fn pause_until(next: Instant) {
    const SPIN: Duration = Duration::from_micros(200);
    let wait = next.saturating_duration_since(Instant::now());
    if wait > SPIN {
        thread::sleep(wait - SPIN);
    }
    while Instant::now() < next {
        std::hint::spin_loop();
    }
}

/// Writes `burst` datagrams into `frames`, numbered from `seq`, each a
/// `size`-byte payload (its number, the time since `origin`, then `fill`),
/// framed as ChannelData on `channel` if there is one; returns one
/// datagram's length.
fn frame(
    frames: &mut Vec<u8>,
    channel: Option<u16>,
    size: usize,
    burst: usize,
    seq: u64,
    origin: Instant,
) -> usize {
    let head = if channel.is_some() { 4 } else { 0 };
    let segment = head + size;
    frames.resize(segment * burst, 0);
    let ns = origin.elapsed().as_nanos() as u64;
    for (j, d) in frames.chunks_exact_mut(segment).enumerate() {
        if let Some(ch) = channel {
            d[..2].copy_from_slice(&ch.to_be_bytes());
            d[2..4].copy_from_slice(&(size as u16).to_be_bytes());
        }
        let (p, s) = (&mut d[head..], seq + j as u64);
        p[..8].copy_from_slice(&s.to_be_bytes());
        p[8..16].copy_from_slice(&ns.to_be_bytes());
        fill(&mut p[16..], s);
    }
    segment
}

/// Reads `socks` until [`Shared::finished`].
fn read(socks: Vec<(UdpSocket, Option<u16>)>, size: usize, at: &Shared) -> io::Result<Seen> {
    let (mut poll, mut socks) = register_sockets(socks)?;
    // Room for what comes while this loop waits for a core.
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
    Ok(seen)
}

/// `n` UDP sockets of this process on the loopback address the server's
/// peers get (see [`echo_peer_ip`]), with room to send bursts.
fn own_peers(server: SocketAddr, n: usize) -> Result<Vec<UdpSocket>, String> {
    let ip = echo_peer_ip(server.ip(), server);
    (0..n.max(1))
        .map(|_| {
            let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).map_err(|e| e.to_string())?;
            let _ = rustix::net::sockopt::set_socket_send_buffer_size(&sock, 4 << 20);
            Ok(sock)
        })
        .collect()
}

/// `args.clients` allocations, client i with a channel bound to `peers[i mod
/// N]`: each client with its channel.
fn bound(args: &LoadArgs, peers: &[SocketAddr]) -> Result<Vec<(TurnClient, u16)>, String> {
    let (cfg, tls) = (args.server.client_config()?, args.server.tls()?);
    (0..args.clients)
        .map(|i| {
            let mut turn = allocated(&cfg, tls.as_ref())?;
            let peer = peers.get(i % peers.len().max(1)).ok_or("no peer")?;
            let channel = turn
                .bind_channel(*peer, Duration::from_secs(10))
                .map_err(|e| e.to_string())?;
            Ok((turn, channel))
        })
        .collect()
}

fn addrs(socks: &[UdpSocket]) -> Result<Vec<SocketAddr>, String> {
    socks
        .iter()
        .map(|s| s.local_addr().map_err(|e| e.to_string()))
        .collect()
}

/// `--mode from-peer`: `--peers` sockets of this process send to the
/// clients' relayed addresses (client i's channel bound to peer i mod N).
pub(crate) fn from_peer(args: &LoadArgs) -> Result<(), String> {
    let peers = own_peers(args.server.addr()?, args.peers)?;
    let clients = bound(args, &addrs(&peers)?)?;
    let mut targets = Vec::with_capacity(clients.len());
    let mut readers = Vec::with_capacity(clients.len());
    for (i, (turn, channel)) in clients.iter().enumerate() {
        let to = turn
            .relayed()
            .ok_or("an allocation without a relayed address")?;
        targets.push(Target {
            from: i % peers.len(),
            to,
            channel: None,
        });
        readers.push((udp_of(turn).map_err(|e| e.to_string())?, Some(*channel)));
    }
    finish(
        args,
        "from-peer",
        run(&peers, &targets, readers, Pace::of(args)),
        clients,
    )
}

/// `--peers` ports of a sink from `--peer`'s on: client i's channel goes to
/// the i mod N-th (a server that tells sessions apart by their peer, as
/// coturn's --multiplex-peer, needs one each).
fn sink_ports(sink: SocketAddr, n: usize) -> Result<Vec<SocketAddr>, String> {
    (0..n.max(1))
        .map(|i| {
            u16::try_from(i)
                .ok()
                .and_then(|i| sink.port().checked_add(i))
                .map(|port| SocketAddr::new(sink.ip(), port))
                .ok_or_else(|| format!("--peers {n} from {sink} runs past port 65535"))
        })
        .collect()
}

/// `--mode to-peer`: the clients send ChannelData to `--peer` (a sink that
/// counts elsewhere; with `--peers N`, N ports of it from that one on) or to
/// `--peers` sockets of this process.
pub(crate) fn to_peer(args: &LoadArgs) -> Result<(), String> {
    let (peers, readers) = match args.peer {
        Some(sink) => (sink_ports(sink, args.peers)?, Vec::new()),
        None => {
            let own = own_peers(args.server.addr()?, args.peers)?;
            (addrs(&own)?, own.into_iter().map(|s| (s, None)).collect())
        }
    };
    let clients = bound(args, &peers)?;
    let mut senders = Vec::with_capacity(clients.len());
    let mut targets = Vec::with_capacity(clients.len());
    for (i, (turn, channel)) in clients.iter().enumerate() {
        let sock = udp_of(turn).map_err(|e| e.to_string())?;
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(&sock, 1 << 20);
        senders.push(sock);
        targets.push(Target {
            from: i,
            to: turn.server(),
            channel: Some(*channel),
        });
    }
    let counted = !readers.is_empty();
    let seen = run(&senders, &targets, readers, Pace::of(args));
    if !counted {
        let seen = seen.map_err(|e| format!("the to-peer load failed: {e}"))?;
        println!(
            "to-peer: clients={} size={} sent={} rate={:.0} pkt/s (counted at {}, {} port(s))",
            args.clients,
            args.size.max(16),
            seen.sent,
            seen.sent as f64 / args.duration.max(1) as f64,
            args.peer.map(|p| p.to_string()).unwrap_or_default(),
            peers.len(),
        );
        return close(clients);
    }
    finish(args, "to-peer", seen, clients)
}

/// Prints the result line of a counted one-way load, then deallocates.
fn finish(
    args: &LoadArgs,
    label: &str,
    seen: io::Result<Seen>,
    clients: Vec<(TurnClient, u16)>,
) -> Result<(), String> {
    let mut seen = seen.map_err(|e| format!("the {label} load failed: {e}"))?;
    seen.rtts.sort_unstable();
    let secs = args.duration.max(1) as f64;
    let (sent, received) = (seen.sent, seen.received);
    println!(
        "{label}: clients={} size={} sent={sent} received={received} corrupt={} \
         loss={:.3}% rate={:.0} pkt/s delay_p50_us={} delay_p99_us={} delay_max_us={} gap_max_us={}",
        args.clients,
        args.size.max(16),
        seen.corrupt,
        if sent > 0 {
            100.0 * (sent - received.min(sent)) as f64 / sent as f64
        } else {
            0.0
        },
        received as f64 / secs,
        percentile(&seen.rtts, 0.5),
        percentile(&seen.rtts, 0.99),
        seen.rtts.last().copied().unwrap_or(0),
        seen.gap,
    );
    close(clients)
}

fn close(clients: Vec<(TurnClient, u16)>) -> Result<(), String> {
    for (mut turn, _) in clients {
        let _ = turn.deallocate(Duration::ZERO);
    }
    Ok(())
}
