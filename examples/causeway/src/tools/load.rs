//! `causeway load`: the load generator of the server benchmark, usable against any
//! TURN server.
//!
//! - `--mode echo`: several clients each allocate, bind a channel to a UDP echo
//!   peer, and send fixed-size ChannelData at a fixed rate; it reports packets/s
//!   received back, loss, round-trip time percentiles and the longest, and the
//!   longest time a client waited between two echoes while sending.
//! - `--mode allocations`: an allocation storm: `--count` allocations from
//!   `--concurrency` threads, each on its own 5-tuple; it reports allocations/s, and
//!   with `--hold` keeps them all open that long (to measure the server's memory).
//! - `--mode bind`: `--clients` allocations each with a channel bound to
//!   `--peer`, made one after another and held for `--hold` seconds (the state
//!   of a meeting's participants; run several for several sources of load);
//!   with `--refresh-every SECS` each client meanwhile refreshes its
//!   allocation, its permission and its channel once every SECS, the clients
//!   spread evenly over them (what a relay's held allocations ask of it).
//! - `--mode from-peer`: the echo's reverse direction alone: this process's
//!   peers send to the clients' relayed addresses, the clients count what
//!   the server relays to them; `--mode to-peer`: the clients' ChannelData
//!   alone, to this process's peers or to a sink that counts elsewhere (see
//!   `one_way`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant as StdInstant};

use clap::{Args, ValueEnum};
use turn_core::adapters::std::client::{TlsTarget, TurnClient};
use turn_core::client::ClientConfig;

use super::{ServerArgs, connect, echo_peer, echo_peers, one_way};

/// What to load the server with.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum Mode {
    /// ChannelData echo through a peer.
    Echo,
    /// Allocation storm.
    Allocations,
    /// `--clients` allocations, each with a channel bound to `--peer` (so a
    /// permission too), held for `--hold` seconds: the state a meeting's
    /// participants keep on a relay. Prints how long it took, then holds.
    Bind,
    /// Datagrams from peers to the clients (`--rate` each), relayed to them
    /// as ChannelData: the reverse direction alone, read by `--threads`
    /// event loops (1 without it).
    FromPeer,
    /// ChannelData from the clients (`--rate` each) to peers, nothing back:
    /// the echo's first half alone. To `--peer`, a sink elsewhere that
    /// counts what arrives (this process only counts what it sent), or to
    /// `--peers` sockets of this process, read by `--threads` event loops.
    ToPeer,
}

/// Flags of `causeway load`.
#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    /// Load kind.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub(crate) mode: Mode,
    /// UDP echo peer (default: one run by this process on the server's side of loopback).
    #[arg(long, value_name = "ADDR")]
    pub(crate) peer: Option<SocketAddr>,
    /// Echo peers run by this process (without --peer): client i binds its
    /// channel to peer i mod N. Each a port of its own, for a server that
    /// tells sessions apart by their peer (coturn's --multiplex-peer). With
    /// `--mode to-peer --peer ADDR`: N ports of that sink from ADDR's on.
    #[arg(long, default_value_t = 1)]
    pub(crate) peers: usize,
    /// Echo clients.
    #[arg(long, default_value_t = 8)]
    pub(crate) clients: usize,
    /// Packets per second per client.
    #[arg(long, default_value_t = 1000)]
    pub(crate) rate: u64,
    /// Payload bytes.
    #[arg(long, default_value_t = 160)]
    pub(crate) size: usize,
    /// Seconds of echo traffic.
    #[arg(long, default_value_t = 10)]
    pub(crate) duration: u64,
    /// Allocations in the storm.
    #[arg(long, default_value_t = 1000)]
    pub(crate) count: usize,
    /// Threads making allocations.
    #[arg(long, default_value_t = 16)]
    pub(crate) concurrency: usize,
    /// Seconds to keep the storm's allocations before deleting them.
    #[arg(long, default_value_t = 0)]
    pub(crate) hold: u64,
    /// `--mode bind`: while holding, refresh each client's allocation,
    /// permission and channel (three requests) once every SECS, the clients
    /// spread evenly; prints the requests made so far each second. Browsers
    /// refresh about every 5 minutes: a short period stands for many clients.
    #[arg(long, value_name = "SECS")]
    pub(crate) refresh_every: Option<u64>,
    /// Event loops driving the echo clients (UDP only), for many clients at
    /// a modest rate; without it, a thread per client.
    #[arg(long, value_name = "N")]
    pub(crate) threads: Option<usize>,
    /// `--mode from-peer` and `to-peer`: datagrams sent to (or by) a client
    /// at once, in one send (UDP GSO), as a video frame's packets come;
    /// `--rate` stays the datagrams a second.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) burst: u16,
}

/// Runs `load`.
pub(crate) fn run(args: &LoadArgs) -> Result<(), String> {
    match args.mode {
        Mode::Echo => echo(args),
        Mode::Allocations => storm(args),
        Mode::Bind => bind(args),
        Mode::FromPeer => one_way::from_peer(args),
        Mode::ToPeer => one_way::to_peer(args),
    }
}

/// Allocates on a fresh socket.
pub(super) fn allocated(cfg: &ClientConfig, tls: Option<&TlsTarget>) -> Result<TurnClient, String> {
    let mut turn = connect(cfg.clone(), tls)?;
    turn.allocate(Duration::from_secs(45))
        .map_err(|e| e.to_string())?;
    Ok(turn)
}

pub(super) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn echo(args: &LoadArgs) -> Result<(), String> {
    let peers = match args.peer {
        Some(p) => vec![p],
        None if args.peers > 1 => {
            let server = args.server.addr()?;
            echo_peers(server.ip(), server, args.peers).map_err(|e| e.to_string())?
        }
        None => {
            let server = args.server.addr()?;
            vec![echo_peer(server.ip(), server).map_err(|e| e.to_string())?]
        }
    };
    let peer = peers.first().copied().ok_or("no echo peer")?;
    let size = args.size.max(16);
    let interval = Duration::from_nanos(1_000_000_000 / args.rate.max(1));
    let duration = Duration::from_secs(args.duration);
    if let Some(threads) = args.threads {
        return echo_in_loops(args, &peers, size, duration, threads);
    }
    let mut handles = Vec::new();
    let start_gate = Arc::new(std::sync::Barrier::new(args.clients));
    let (cfg, tls) = (args.server.client_config()?, args.server.tls()?);
    for i in 0..args.clients {
        let mut turn = allocated(&cfg, tls.as_ref())?;
        let peer = peers.get(i % peers.len()).copied().unwrap_or(peer);
        turn.bind_channel(peer, Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        let gate = start_gate.clone();
        handles.push(thread::spawn(move || -> (u64, u64, u64, Vec<u64>, u64) {
            gate.wait();
            let mut payload = vec![0u8; size];
            let mut buf = [0u8; 2048];
            let mut rtts = Vec::with_capacity((duration.as_millis() as usize) * 2);
            let (mut sent, mut received, mut corrupt) = (0u64, 0u64, 0u64);
            // The longest time between two echoes while sending (what a
            // listener hears as a drop-out), in microseconds.
            let (mut last_echo, mut gap) = (None::<StdInstant>, 0u64);
            let origin = StdInstant::now();
            let mut next = origin;
            let end = origin + duration;
            // Echoes still on their way when sending ends get up to 5 s (a busy
            // machine delays them); the wait ends once all came back.
            let drain_end = end + Duration::from_secs(5);
            while StdInstant::now() < drain_end && (StdInstant::now() < end || received < sent) {
                let t = StdInstant::now();
                while t >= next && t < end {
                    payload[..8].copy_from_slice(&sent.to_be_bytes());
                    fill(&mut payload[16..], sent);
                    let ns = origin.elapsed().as_nanos() as u64;
                    payload[8..16].copy_from_slice(&ns.to_be_bytes());
                    if turn.send_to(peer, &payload).is_ok() {
                        sent += 1;
                    }
                    next += interval;
                }
                let wait = if t < end {
                    next.saturating_duration_since(t)
                } else {
                    Duration::from_millis(5)
                };
                if let Ok(Some((n, _))) =
                    turn.recv_from(&mut buf, wait.min(Duration::from_millis(5)))
                    && let Some(d) = buf.get(..n)
                    && d.len() >= 16
                {
                    let seq = u64::from_be_bytes(d[..8].try_into().unwrap_or_default());
                    let ns = u64::from_be_bytes(d[8..16].try_into().unwrap_or_default());
                    rtts.push((origin.elapsed().as_nanos() as u64).saturating_sub(ns) / 1000);
                    received += 1;
                    let now = StdInstant::now();
                    if now < end
                        && let Some(last) = last_echo.replace(now)
                    {
                        gap = gap.max((now - last).as_micros() as u64);
                    }
                    // Every byte must come back as sent.
                    if d.len() != size || !filled(&d[16..], seq) {
                        corrupt += 1;
                    }
                }
            }
            let _ = turn.deallocate(Duration::ZERO);
            (sent, received, corrupt, rtts, gap)
        }));
    }
    let (mut sent, mut received, mut corrupt, mut rtts, mut gap) = (0, 0, 0, Vec::new(), 0);
    for h in handles {
        let (s, r, c, t, g) = h.join().map_err(|_| "a load thread panicked".to_string())?;
        sent += s;
        received += r;
        corrupt += c;
        rtts.extend(t);
        gap = gap.max(g);
    }
    report(args, size, duration, (sent, received, corrupt), rtts, gap);
    Ok(())
}

/// The echo load's result line.
fn report(
    args: &LoadArgs,
    size: usize,
    duration: Duration,
    (sent, received, corrupt): (u64, u64, u64),
    mut rtts: Vec<u64>,
    gap: u64,
) {
    rtts.sort_unstable();
    let secs = duration.as_secs_f64().max(0.001);
    println!(
        "echo: clients={} size={} sent={sent} received={received} corrupt={corrupt} loss={:.3}% \
         rate={:.0} pkt/s each way rtt_p50_us={} rtt_p99_us={} rtt_max_us={} gap_max_us={gap}",
        args.clients,
        size,
        if sent > 0 {
            100.0 * (sent - received.min(sent)) as f64 / sent as f64
        } else {
            0.0
        },
        received as f64 / secs,
        percentile(&rtts, 0.5),
        percentile(&rtts, 0.99),
        rtts.last().copied().unwrap_or(0),
    );
}

/// The echo load with `threads` event loops sharing the clients.
fn echo_in_loops(
    args: &LoadArgs,
    peers: &[SocketAddr],
    size: usize,
    duration: Duration,
    threads: usize,
) -> Result<(), String> {
    let (cfg, tls) = (args.server.client_config()?, args.server.tls()?);
    let mut clients = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let mut turn = allocated(&cfg, tls.as_ref())?;
        let peer = peers
            .get(i % peers.len().max(1))
            .copied()
            .ok_or("no echo peer")?;
        let channel = turn
            .bind_channel(peer, Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        clients.push((turn, channel));
    }
    let rate = args.rate;
    let handles: Vec<_> = super::echo_loop::deal(clients, threads)
        .into_iter()
        .map(|share| thread::spawn(move || super::echo_loop::drive(share, rate, size, duration)))
        .collect();
    let (mut sent, mut received, mut corrupt, mut rtts, mut gap) = (0, 0, 0, Vec::new(), 0);
    let mut turns = Vec::new();
    for h in handles {
        let (seen, t) = h
            .join()
            .map_err(|_| "a load thread panicked".to_string())?
            .map_err(|e| format!("an echo loop failed: {e}"))?;
        sent += seen.sent;
        received += seen.received;
        corrupt += seen.corrupt;
        rtts.extend(seen.rtts);
        gap = gap.max(seen.gap);
        turns.extend(t);
    }
    report(args, size, duration, (sent, received, corrupt), rtts, gap);
    for mut turn in turns {
        let _ = turn.deallocate(Duration::ZERO);
    }
    Ok(())
}

/// The payload after the sequence number and timestamp: bytes that depend on
/// the sequence number, so a corrupted or mixed-up echo shows.
pub(super) fn fill(buf: &mut [u8], seq: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (seq as u8).wrapping_mul(31).wrapping_add(i as u8);
    }
}

pub(super) fn filled(buf: &[u8], seq: u64) -> bool {
    buf.iter()
        .enumerate()
        .all(|(i, b)| *b == (seq as u8).wrapping_mul(31).wrapping_add(i as u8))
}

fn bind(args: &LoadArgs) -> Result<(), String> {
    let peer = args
        .peer
        .ok_or("--mode bind needs --peer (where the channels are bound to)")?;
    let (cfg, tls) = (args.server.client_config()?, args.server.tls()?);
    let start = StdInstant::now();
    let mut held = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let mut turn = allocated(&cfg, tls.as_ref())?;
        turn.bind_channel(peer, Duration::from_secs(45))
            .map_err(|e| e.to_string())?;
        held.push(turn);
    }
    let elapsed = start.elapsed().as_secs_f64().max(0.001);
    println!(
        "bound: clients={} elapsed_s={elapsed:.3} rate={:.0} per s; holding {} s",
        held.len(),
        held.len() as f64 / elapsed,
        args.hold
    );
    let until = StdInstant::now() + Duration::from_secs(args.hold);
    match args.refresh_every {
        // Nothing to answer meanwhile: the state is what is measured.
        None | Some(0) => thread::sleep(until.saturating_duration_since(StdInstant::now())),
        Some(every) => refresh_until(&mut held, peer, Duration::from_secs(every), until),
    }
    for mut turn in held {
        let _ = turn.deallocate(Duration::ZERO);
    }
    Ok(())
}

/// Refreshes each of `held`'s allocation, permission (to `peer`'s address) and
/// channel (to `peer`) once every `every`, the clients spread evenly over it,
/// until `until`; each second prints the requests made and failed so far and
/// the seconds since the first.
fn refresh_until(held: &mut [TurnClient], peer: SocketAddr, every: Duration, until: StdInstant) {
    let t = Duration::from_secs(5);
    let gap = every / u32::try_from(held.len().max(1)).unwrap_or(u32::MAX);
    let start = StdInstant::now();
    let mut next = start;
    let (mut made, mut failed) = (0u64, 0u64);
    let mut printed = start;
    for pass in 1.. {
        for turn in held.iter_mut() {
            let now = StdInstant::now();
            if now >= until {
                return;
            }
            if now.duration_since(printed) >= Duration::from_secs(1) {
                printed = now;
                println!(
                    "refreshed: pass={pass} requests={made} failed={failed} elapsed_s={:.3}",
                    start.elapsed().as_secs_f64()
                );
            }
            if next > now {
                thread::sleep(next - now);
            }
            next += gap;
            let done = [
                turn.refresh(Duration::from_secs(600), t).map(|_| ()),
                turn.create_permission(peer.ip(), t),
                turn.bind_channel(peer, t).map(|_| ()),
            ];
            made += done.len() as u64;
            failed += done.iter().filter(|r| r.is_err()).count() as u64;
        }
    }
}

fn storm(args: &LoadArgs) -> Result<(), String> {
    // Made once: the TLS configuration reads the CA file.
    let (cfg, tls) = (args.server.client_config()?, args.server.tls()?);
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let first_error = std::sync::Mutex::new(None::<String>);
    let start = StdInstant::now();
    let held: Vec<Vec<TurnClient>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..args.concurrency.clamp(1, 1024))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < args.count {
                        match allocated(&cfg, tls.as_ref()) {
                            Ok(turn) => mine.push(turn),
                            Err(e) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                first_error
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .get_or_insert(e);
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        workers.into_iter().filter_map(|w| w.join().ok()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64().max(0.001);
    let ok: usize = held.iter().map(Vec::len).sum();
    let failed = failed.load(Ordering::Relaxed);
    println!(
        "allocations: count={} ok={ok} failed={failed} elapsed_s={elapsed:.3} rate={:.0} alloc/s",
        args.count,
        ok as f64 / elapsed
    );
    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        println!("first failure: {e}");
    }
    if args.hold > 0 {
        println!("holding {ok} allocations for {} s", args.hold);
        thread::sleep(Duration::from_secs(args.hold));
    }
    for mut turn in held.into_iter().flatten() {
        let _ = turn.deallocate(Duration::ZERO);
    }
    if ok == 0 {
        Err("no allocation succeeded".into())
    } else {
        Ok(())
    }
}
