//! Datagrams to peers, gathered while they come as a run: one client's
//! ChannelData of one size to one peer, back to back in a receive batch (a
//! video frame's packets, or a GRO train), leaves its relay socket as one
//! UDP GSO send (the kernel cuts it) instead of a `sendto` each. Anything
//! else, or a relay socket without GSO, goes out as before, one at a time.
//!
//! Only consecutive datagrams join a run, so the order of what one relay
//! socket sends is kept. A run is sent when the next datagram does not join
//! it, when it is full, and at the end of each receive batch and of each
//! pass of the event loop. The bytes are copied into a buffer made at start;
//! nothing is allocated per datagram.

use crate::adapters::std::prelude::*;

use std::io;
use std::net::SocketAddr;

use quinn_udp::Transmit;

use crate::server::RelayHandle;

use super::super::relays::Relays;

/// Bytes a run holds: within one UDP datagram's payload over IPv4, which is
/// what a GSO send is before the kernel cuts it.
const ARENA: usize = 65_000;
/// Most segments in one GSO send (the kernel's UDP_MAX_SEGMENTS).
const GSO_MAX: usize = 64;
/// The largest datagram that joins a run: one that fits a 1500-byte MTU
/// over IPv6. Larger ones go one at a time, as before: a GSO segment past
/// the path's MTU makes the kernel refuse the whole send, and the socket
/// would stop using GSO. Media packets are made smaller than this.
const SEGMENT_MAX: usize = 1500 - 40 - 8;

/// The run being gathered, and what was sent to peers.
pub(crate) struct PeerRun {
    arena: Vec<u8>,
    /// Datagrams in the arena, each `seg` bytes.
    count: usize,
    seg: usize,
    /// Whose relay socket sends it, to whom; the run's most datagrams.
    relay: Option<RelayHandle>,
    peer: SocketAddr,
    max: usize,
    /// Datagrams sent to peers by this worker's UDP relay sockets, and the
    /// system calls that took, since start (for the stats).
    pub(crate) datagrams: u64,
    pub(crate) sends: u64,
}

impl PeerRun {
    pub(crate) fn new() -> PeerRun {
        PeerRun {
            arena: vec![0; ARENA],
            count: 0,
            seg: 0,
            relay: None,
            peer: SocketAddr::from(([0, 0, 0, 0], 0)),
            max: 1,
            datagrams: 0,
            sends: 0,
        }
    }

    /// Sends `bytes` from `relay`'s socket to `peer`: joined to the run if it
    /// continues it, else after what waits.
    pub(crate) fn push(
        &mut self,
        relays: &Relays,
        relay: RelayHandle,
        peer: SocketAddr,
        bytes: &[u8],
    ) {
        let joins = self.relay == Some(relay)
            && self.peer == peer
            && bytes.len() == self.seg
            && self.count < self.max
            && (self.count + 1) * self.seg <= self.arena.len();
        if !joins {
            self.flush(relays);
            let Some(r) = relays.get(relay) else { return };
            let max = r.state.max_gso_segments().min(GSO_MAX);
            if max < 2 || bytes.is_empty() || bytes.len() > SEGMENT_MAX {
                // No run to gather: as it is.
                let _ = r.sock.send_to(bytes, peer);
                self.sends += 1;
                self.datagrams += 1;
                return;
            }
            (self.relay, self.peer, self.seg, self.max) = (Some(relay), peer, bytes.len(), max);
        }
        let at = self.count * self.seg;
        if let Some(dst) = self.arena.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.count += 1;
        }
    }

    /// Sends the run: one datagram as it is, more as one GSO send (each
    /// alone if the kernel refuses GSO there). A datagram the socket cannot
    /// take is dropped, as the network would; so is a run whose relay
    /// socket closed meanwhile.
    pub(crate) fn flush(&mut self, relays: &Relays) {
        let (count, relay) = (core::mem::take(&mut self.count), self.relay.take());
        let Some(r) = relay.and_then(|h| relays.get(h)) else {
            return;
        };
        let Some(run) = self.arena.get(..count * self.seg) else {
            return;
        };
        if count == 1 {
            let _ = r.sock.send_to(run, self.peer);
            self.sends += 1;
        } else if count > 1 {
            let t = Transmit {
                destination: self.peer,
                ecn: None,
                contents: run,
                segment_size: Some(self.seg),
                src_ip: None,
            };
            self.sends += 1;
            match r.state.try_send((&r.sock).into(), &t) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => {
                    // GSO refused on this path (the socket's state now says
                    // so): each on its own.
                    for d in run.chunks_exact(self.seg) {
                        let _ = r.sock.send_to(d, self.peer);
                        self.sends += 1;
                    }
                }
                _ => {}
            }
        }
        self.datagrams += count as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::RelayFamily;
    use std::time::Duration;

    fn handle(slot: u32) -> RelayHandle {
        RelayHandle {
            slot,
            generation: 1,
            family: RelayFamily::Ipv4,
        }
    }

    /// `n` relay sockets on loopback, handles 0 to n - 1, and their poll.
    fn relays(n: u32) -> (mio::Poll, Relays) {
        let poll = mio::Poll::new().unwrap();
        let mut relays = Relays::default();
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        for h in 0..n {
            relays.bind(poll.registry(), handle(h), local).unwrap();
        }
        (poll, relays)
    }

    fn peer() -> std::net::UdpSocket {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    /// What `at` got next, and from where.
    fn next(at: &std::net::UdpSocket) -> (Vec<u8>, SocketAddr) {
        let mut buf = [0u8; 2048];
        let (n, from) = at.recv_from(&mut buf).unwrap();
        (buf[..n].to_vec(), from)
    }

    #[test]
    fn a_run_to_one_peer_goes_as_one_send_and_each_relay_socket_keeps_its_order() {
        let (_poll, relays) = relays(2);
        let from = |h| relays.get(handle(h)).unwrap().sock.local_addr().unwrap();
        let (a, b) = (from(0), from(1));
        let gso = relays.get(handle(0)).unwrap().state.max_gso_segments() > 1;
        let (p, q) = (peer(), peer());
        let (pa, qa) = (p.local_addr().unwrap(), q.local_addr().unwrap());
        let mut run = PeerRun::new();
        // Ten of one size from relay 0 to p: one run.
        for i in 0..10u8 {
            run.push(&relays, handle(0), pa, &[i; 100]);
        }
        // A shorter one ends it; then q; then relay 1 to p; then relay 0 to p.
        run.push(&relays, handle(0), pa, &[10; 50]);
        run.push(&relays, handle(0), qa, &[11; 100]);
        run.push(&relays, handle(1), pa, &[12; 100]);
        run.push(&relays, handle(0), pa, &[13; 100]);
        run.flush(&relays);
        assert_eq!(run.datagrams, 14);
        // The run of ten, then one send each for the four that followed.
        assert_eq!(run.sends, if gso { 5 } else { 14 }, "gso: {gso}");
        for i in 0..10u8 {
            assert_eq!(next(&p), (vec![i; 100], a), "datagram {i}");
        }
        assert_eq!(next(&p), (vec![10; 50], a));
        // Relay 1's and relay 0's last may come in either order; each from its own.
        let mut rest = vec![next(&p), next(&p)];
        rest.sort();
        let mut want = vec![(vec![12; 100], b), (vec![13; 100], a)];
        want.sort();
        assert_eq!(rest, want);
        assert_eq!(next(&q), (vec![11; 100], a));
    }

    #[test]
    fn datagrams_larger_than_a_segment_go_one_at_a_time() {
        let (_poll, relays) = relays(1);
        let gso = relays.get(handle(0)).unwrap().state.max_gso_segments();
        let p = peer();
        let pa = p.local_addr().unwrap();
        let mut run = PeerRun::new();
        for i in 0..3u8 {
            run.push(&relays, handle(0), pa, &[i; SEGMENT_MAX + 1]);
        }
        run.flush(&relays);
        assert_eq!((run.sends, run.datagrams), (3, 3));
        for i in 0..3u8 {
            assert_eq!(next(&p).0, vec![i; SEGMENT_MAX + 1]);
        }
        // The socket still sends runs with GSO where it did.
        assert_eq!(relays.get(handle(0)).unwrap().state.max_gso_segments(), gso);
        for i in 0..4u8 {
            run.push(&relays, handle(0), pa, &[i; SEGMENT_MAX]);
        }
        run.flush(&relays);
        assert_eq!(run.sends, if gso > 1 { 4 } else { 7 });
        for i in 0..4u8 {
            assert_eq!(next(&p).0, vec![i; SEGMENT_MAX]);
        }
    }

    #[test]
    fn a_run_whose_relay_socket_closed_is_dropped() {
        let (poll, mut relays) = relays(1);
        let p = peer();
        p.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut run = PeerRun::new();
        run.push(&relays, handle(0), p.local_addr().unwrap(), &[1; 100]);
        run.push(&relays, handle(0), p.local_addr().unwrap(), &[2; 100]);
        assert!(relays.close(poll.registry(), handle(0)));
        run.flush(&relays);
        assert_eq!((run.sends, run.datagrams), (0, 0));
        assert!(p.recv(&mut [0u8; 256]).is_err(), "nothing was sent");
        // Nothing waits any more: a new run starts clean.
        run.flush(&relays);
        assert_eq!(run.sends, 0);
    }
}
