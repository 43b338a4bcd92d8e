//! Choosing a TURN server over std sockets, as a call bridge does with its
//! `turnServers` list: the core's [`Selector`] decides (probes, RTTs, the best,
//! failures); [`probe`] carries its STUN Binding probes: over one UDP socket per
//! address family for UDP entries, and over a TCP connection per entry for TCP
//! ones (whose RTT then includes the connection's setup). TLS entries are not
//! probed here and stay unknown, so they are never the best.
//!
//! ```no_run
//! use std::time::Duration;
//! use turn_core::adapters::std::client::probe;
//! use turn_core::client::{Candidate, Selector};
//! use turn_core::Transport;
//!
//! let mut servers = Selector::<4>::new([7; 32]); // seed from a secure source
//! for addr in ["192.0.2.10:3478", "192.0.2.11:3478"] {
//!     servers.add(Candidate::new(addr.parse()?, Transport::Udp, "cmsturn", "pw").unwrap());
//! }
//! probe(&mut servers, Duration::from_secs(3))?;
//! let best = servers.best().and_then(|i| servers.get(i));
//! println!("{:?}", best.map(|c| (c.server, c.rtt_ms())));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::adapters::std::prelude::*;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use stun_core::demux::{Frame, stream_frame};

use crate::adapters::std::clock::Clock;
use crate::client::{CandidateState, Failure, Selector};
use crate::{Instant, Transport};

use super::{Allocated, ClientIoError, TurnClient};

/// What [`allocate_best`] got: the client holding the allocation (refreshed
/// while driven), the allocation, and the candidate it is on.
#[derive(Debug)]
pub struct Chosen {
    /// The client.
    pub turn: TurnClient,
    /// Its allocation.
    pub allocated: Allocated,
    /// The index of the candidate in the selector.
    pub candidate: usize,
}

/// What a failure to use a candidate counts as for the selector.
pub(crate) fn failure_of(e: &ClientIoError) -> Failure {
    match e {
        ClientIoError::Failed { failure, .. } => *failure,
        _ => Failure::Timeout,
    }
}

/// Allocates on the best candidate of a probed `selector`, and when that
/// fails on the next best, until one allocates or none is left: each failure
/// is marked in the selector (so [`Selector::best`] moves on) and handed to
/// `failed`. Time-limited credentials are dated `expiry` (UNIX seconds); each
/// try waits `timeout` at most.
pub fn allocate_best<const N: usize>(
    selector: &mut Selector<N>,
    expiry: u64,
    timeout: Duration,
    mut failed: impl FnMut(usize, &ClientIoError),
) -> Option<Chosen> {
    while let Some(i) = selector.best() {
        let result = selector
            .get(i)
            .ok_or(ClientIoError::TimedOut("candidate"))
            .and_then(|c| Ok(c.client_config(expiry)?))
            .and_then(TurnClient::connect)
            .and_then(|mut turn| {
                let allocated = turn.allocate(timeout)?;
                Ok((turn, allocated))
            });
        match result {
            Ok((turn, allocated)) => {
                return Some(Chosen {
                    turn,
                    allocated,
                    candidate: i,
                });
            }
            Err(e) => {
                failed(i, &e);
                selector.mark_failed(i, failure_of(&e));
            }
        }
    }
    None
}

/// A probe's answer: the entry, the bytes, when they arrived.
type Answer = (usize, Vec<u8>, Instant);

/// Probes every entry of `selector` and waits for the answers, at most
/// `within`; entries silent by then are marked failed (timeout). Errors only
/// when no UDP socket can be opened at all.
pub fn probe<const N: usize>(selector: &mut Selector<N>, within: Duration) -> io::Result<()> {
    let clock = Clock::new();
    let v4 = UdpSocket::bind("0.0.0.0:0");
    let v6 = UdpSocket::bind("[::]:0");
    if let (Err(e), Err(_)) = (&v4, &v6) {
        return Err(io::Error::new(e.kind(), e.to_string()));
    }
    let sockets: Vec<UdpSocket> = [v4, v6].into_iter().filter_map(Result::ok).collect();
    for s in &sockets {
        s.set_read_timeout(Some(Duration::from_millis(1)))?;
    }
    let (tx, rx) = mpsc::channel::<Answer>();
    let end = clock
        .now()
        .plus_millis(u64::try_from(within.as_millis()).unwrap_or(u64::MAX));
    selector.probe_all(clock.now());
    let mut out = [0u8; 64];
    let mut buf = [0u8; 1500];
    loop {
        let now = clock.now();
        selector.handle_timeout(now);
        while let Some(probe) = selector.poll_transmit(now, &mut out) {
            let (i, t) = (probe.entry, probe.transmit);
            let (target, transport) = (t.destination, t.transport);
            let request = out.get(..t.len).unwrap_or_default();
            match transport {
                Transport::Udp => {
                    let sock = sockets.iter().find(|s| {
                        s.local_addr()
                            .is_ok_and(|a| a.is_ipv4() == target.is_ipv4())
                    });
                    if sock.is_none_or(|s| s.send_to(request, target).is_err()) {
                        selector.mark_failed(i, Failure::Timeout);
                    }
                }
                Transport::Tcp => {
                    stream_probe(i, target, request.to_vec(), end, &clock, tx.clone());
                }
                Transport::Tls => {}
            }
        }
        for s in &sockets {
            while let Ok((n, _)) = s.recv_from(&mut buf) {
                selector.handle_input(clock.now(), buf.get(..n).unwrap_or_default());
            }
        }
        while let Ok((_, bytes, at)) = rx.try_recv() {
            selector.handle_input(at, &bytes);
        }
        let probing: Vec<usize> = selector
            .candidates()
            .enumerate()
            .filter(|(_, c)| c.state == CandidateState::Probing && c.transport != Transport::Tls)
            .map(|(i, _)| i)
            .collect();
        if probing.is_empty() {
            return Ok(());
        }
        if clock.now() >= end {
            for i in probing {
                selector.mark_failed(i, Failure::Timeout);
            }
            return Ok(());
        }
    }
}

/// Connects to `target`, sends `request` and reads one STUN message back, on a
/// thread of its own, so a slow connection does not delay the other probes.
fn stream_probe(
    i: usize,
    target: SocketAddr,
    request: Vec<u8>,
    end: Instant,
    clock: &Clock,
    tx: mpsc::Sender<Answer>,
) {
    let clock = *clock;
    let left = Duration::from_millis(end.millis_since(clock.now()).max(1));
    std::thread::spawn(move || {
        let answer = (|| -> io::Result<Vec<u8>> {
            let mut s = TcpStream::connect_timeout(&target, left)?;
            s.set_read_timeout(Some(left))?;
            s.write_all(&request)?;
            let mut got = Vec::new();
            let mut buf = [0u8; 1500];
            loop {
                if let Frame::Stun(n) = stream_frame(&got)
                    && got.len() >= n
                {
                    got.truncate(n);
                    return Ok(got);
                }
                match s.read(&mut buf)? {
                    0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                    n => got.extend_from_slice(buf.get(..n).unwrap_or_default()),
                }
                if got.len() > 65_555 {
                    return Err(io::ErrorKind::InvalidData.into());
                }
            }
        })();
        if let Ok(bytes) = answer {
            let _ = tx.send((i, bytes, clock.now()));
        }
    });
}
