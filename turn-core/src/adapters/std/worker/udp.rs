//! Datagrams: client packets on the UDP listeners and peer datagrams on the relay
//! sockets, received in batches (recvmmsg, with GRO trains split in place).

use crate::adapters::std::prelude::*;

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use mio::net::UdpSocket;
use quinn_udp::{RecvMeta, UdpSocketState};

use crate::server::{Outgoing, PEER_HEADROOM, PEER_TAILROOM, PeerBuffer, RelayHandle};
use crate::{FiveTuple, Instant, Transport};

use super::super::clock::unix_now;
use super::{Worker, is_stream};

/// Datagrams per receive call.
pub(super) const BATCH: usize = if quinn_udp::BATCH_SIZE < 32 {
    quinn_udp::BATCH_SIZE
} else {
    32
};
/// Room per received datagram: a whole GRO train of up to 64 KiB.
pub(super) const SLOT: usize = 1 << 16;
/// A peer receive slot: headroom for the TURN header, a GRO train, and the
/// tailroom for padding.
pub(super) const PSLOT: usize = PEER_HEADROOM + SLOT + 8;

/// A UDP listener and its batch-receive state.
pub(crate) struct UdpListener {
    pub(crate) sock: UdpSocket,
    pub(crate) state: UdpSocketState,
    pub(crate) local: SocketAddr,
}

/// The listener a UDP client's 5-tuple names by its socket tag (its index), and
/// its outbox.
pub(super) fn listener_at<'l, 'o>(
    listeners: &'l [UdpListener],
    outboxes: &'o mut [super::outbox::Outbox],
    tuple: &FiveTuple,
) -> Option<(&'l UdpListener, &'o mut super::outbox::Outbox)> {
    let i = usize::try_from(tuple.socket).ok()?;
    let l = listeners.get(i).filter(|l| serves(l.local, tuple.server))?;
    Some((l, outboxes.get_mut(i)?))
}

/// Whether a listener bound to `local` is the one a client reached at
/// `server` (on a wildcard listener, any address of its port).
fn serves(local: SocketAddr, server: SocketAddr) -> bool {
    local == server || (local.ip().is_unspecified() && local.port() == server.port())
}

/// The address a datagram reached: the listener's, or on a wildcard listener
/// the destination the kernel reports (IP_PKTINFO).
fn reached(local: SocketAddr, dst: Option<std::net::IpAddr>) -> SocketAddr {
    match dst {
        Some(ip) if local.ip().is_unspecified() => SocketAddr::new(ip.to_canonical(), local.port()),
        _ => local,
    }
}

impl Worker {
    /// Datagrams on UDP listener `i`: STUN requests, indications and ChannelData.
    pub(super) fn on_udp(&mut self, i: usize) {
        let Ok(socket) = u32::try_from(i) else { return };
        loop {
            let Some(l) = self.udp.get(i) else { return };
            let mut meta = [RecvMeta::default(); BATCH];
            let n = {
                let mut slots = self.rx.chunks_mut(SLOT);
                let mut iov: [IoSliceMut<'_>; BATCH] =
                    core::array::from_fn(|_| IoSliceMut::new(slots.next().unwrap_or_default()));
                match l.state.recv((&l.sock).into(), &mut iov, &mut meta) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    // Interrupted, or an ICMP error from an earlier send: read on.
                    Err(_) => continue,
                }
            };
            let local = l.local;
            let now = self.shared.clock.now();
            let unix = unix_now();
            // Handled where they landed: the buffer is lent to the packets'
            // handling for the batch and given back after it.
            let rx = core::mem::take(&mut self.rx);
            for (k, m) in meta.iter().take(n).enumerate() {
                let tuple = FiveTuple {
                    client: m.addr,
                    server: reached(local, m.dst_ip),
                    transport: Transport::Udp,
                    socket,
                };
                let stride = m.stride.max(1);
                let mut off = 0;
                while off < m.len {
                    let end = (off + stride).min(m.len);
                    let start = k * SLOT;
                    if let Some(packet) = rx.get(start + off..start + end) {
                        self.client_packet(now, unix, tuple, packet, None);
                    }
                    off = end;
                }
            }
            self.rx = rx;
            // A run of the batch's last client goes now, not after the pass.
            self.peer_run.flush(&self.relays);
            if n < BATCH {
                // Fewer than asked: the queue was empty; edge-triggered readiness
                // will report the next datagram.
                return;
            }
        }
    }

    /// Datagrams from peers on relay socket `i`: wrapped in place and sent to the
    /// allocation's client.
    pub(super) fn on_relay(&mut self, i: usize) {
        loop {
            let Some(r) = self.relays.by_index(i) else {
                return;
            };
            let handle = r.handle;
            let mut meta = [RecvMeta::default(); BATCH];
            let n = {
                let mut slots = self.peer_rx.chunks_mut(PSLOT);
                let mut iov: [IoSliceMut<'_>; BATCH] = core::array::from_fn(|_| {
                    let slot = slots.next().unwrap_or_default();
                    // Leave the tailroom of the last datagram of a train too.
                    let end = slot.len().saturating_sub(8 - PEER_TAILROOM);
                    IoSliceMut::new(PeerBuffer::receive_area(
                        slot.get_mut(..end).unwrap_or_default(),
                    ))
                });
                match r.state.recv((&r.sock).into(), &mut iov, &mut meta) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    // Interrupted, or an ICMP error from an earlier send (they
                    // surface here): read on.
                    Err(_) => continue,
                }
            };
            let now = self.shared.clock.now();
            // Taken out for the loop so the slots and the server can both be
            // borrowed; a Vec moves without copying or allocating.
            let mut rx = core::mem::take(&mut self.peer_rx);
            for (m, slot) in meta.iter().take(n).zip(rx.chunks_mut(PSLOT)) {
                for_each_datagram(slot, m.len, m.stride, |slot, len| {
                    self.peer_datagram(now, handle, m.addr, slot, len);
                });
            }
            self.peer_rx = rx;
            if n < BATCH {
                return;
            }
        }
    }

    /// One peer datagram of `len` bytes at `buf[PEER_HEADROOM..]`.
    pub(super) fn peer_datagram(
        &mut self,
        now: Instant,
        handle: RelayHandle,
        peer: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) {
        let Ok(mut datagram) = PeerBuffer::new(buf, len) else {
            // The slots are sized for a maximal datagram: cannot happen.
            return;
        };
        let mut host = host_of!(self);
        let out = self
            .turn
            .handle_peer(now, &mut host, handle, peer, &mut datagram);
        if let Outgoing::Client { tuple, bytes, .. } = out {
            if is_stream(&tuple) {
                self.queue_tcp(&tuple, bytes);
            } else if let Some((l, o)) = listener_at(&self.udp, &mut self.outboxes, &tuple) {
                o.push(l, tuple.client, bytes);
            }
        }
    }
}

/// Hands each datagram of a GRO train received at `slot[PEER_HEADROOM..][..len]`
/// (`stride` bytes each, the last maybe shorter; one datagram when `stride` is 0)
/// to `f`, at `slot[PEER_HEADROOM..]`. `f` may write the headroom and the
/// tailroom after the datagram (TURN padding): the datagrams after it are kept.
fn for_each_datagram(
    slot: &mut [u8],
    len: usize,
    stride: usize,
    mut f: impl FnMut(&mut [u8], usize),
) {
    let stride = if stride == 0 { len } else { stride };
    let mut off = 0;
    while off < len {
        let seg = (off + stride).min(len) - off;
        if off > 0 {
            // Later datagrams have no headroom: move each to the front.
            let from = PEER_HEADROOM + off;
            if from + seg > slot.len() {
                return;
            }
            slot.copy_within(from..from + seg, PEER_HEADROOM);
        }
        // The bytes after it may hold the start of a datagram not seen yet.
        let after = PEER_HEADROOM + seg..PEER_HEADROOM + seg + PEER_TAILROOM;
        let kept: Option<[u8; PEER_TAILROOM]> = if off + seg < len {
            slot.get(after.clone()).and_then(|b| b.try_into().ok())
        } else {
            None
        };
        f(slot, seg);
        if let (Some(kept), Some(b)) = (kept, slot.get_mut(after)) {
            b.copy_from_slice(&kept);
        }
        off += seg;
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// A GRO train of datagrams of `stride` bytes (the last as `sizes` says),
    /// each filled with its index.
    fn train(stride: usize, sizes: &[usize]) -> (Vec<u8>, usize) {
        let mut slot = vec![0xee; PEER_HEADROOM + 64 + 8];
        let mut at = PEER_HEADROOM;
        for (i, &n) in sizes.iter().enumerate() {
            assert!(n <= stride);
            slot[at..at + n].fill(i as u8);
            at += n;
        }
        (slot, at - PEER_HEADROOM)
    }

    #[test]
    fn every_datagram_of_a_gro_train_survives_padding_writes() {
        for stride in 1..=9 {
            for last in 1..=stride {
                let sizes = [stride, stride, stride, last];
                let (mut slot, len) = train(stride, &sizes);
                let mut seen = Vec::new();
                for_each_datagram(&mut slot, len, stride, |s, n| {
                    seen.push(s[PEER_HEADROOM..PEER_HEADROOM + n].to_vec());
                    // What the TURN server may write: its header and padding.
                    s[..PEER_HEADROOM].fill(0xaa);
                    s[PEER_HEADROOM + n..PEER_HEADROOM + n + PEER_TAILROOM].fill(0xbb);
                });
                let want: Vec<Vec<u8>> = sizes
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| vec![i as u8; n])
                    .collect();
                assert_eq!(seen, want, "stride {stride}, last {last}");
            }
        }
    }

    #[test]
    fn no_stride_is_one_datagram() {
        let (mut slot, len) = train(5, &[5]);
        let mut seen = Vec::new();
        for_each_datagram(&mut slot, len, 0, |s, n| {
            seen.push(s[PEER_HEADROOM..PEER_HEADROOM + n].to_vec())
        });
        assert_eq!(seen, vec![vec![0u8; 5]]);
    }
}
