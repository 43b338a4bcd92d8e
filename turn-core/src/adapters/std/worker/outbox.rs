//! Datagrams to UDP clients, gathered per listener over one pass of the event
//! loop and sent together: a run of datagrams of one size to one client goes out
//! as one GSO message (the kernel cuts it), and the runs to many clients and the
//! datagrams between them in one sendmmsg across destinations, each client's
//! datagrams in the order they were queued. Relayed media is
//! what fills it: many relay sockets' peers answering many clients through the
//! same listener.
//!
//! The bytes are copied into a buffer made at start; nothing is allocated per
//! datagram. A full outbox is flushed at once.

use crate::adapters::std::prelude::*;

use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
use quinn_udp::Transmit;

use super::udp::UdpListener;

/// Datagrams an outbox holds.
const ENTRIES: usize = 64;
/// Bytes an outbox holds.
const ARENA: usize = 64 * 1024;
/// Most segments in one GSO send (the kernel's UDP_MAX_SEGMENTS).
const GSO_MAX: usize = 64;

std::thread_local! {
    /// sendmmsg's headers, made once per worker thread (they hold raw pointers,
    /// so they stay on the thread that made them): without control messages,
    /// and with room for a GSO segment size in each.
    static HEADERS: core::cell::RefCell<Option<MultiHeaders<SockaddrStorage>>> =
        const { core::cell::RefCell::new(None) };
    static GSO_HEADERS: core::cell::RefCell<Option<MultiHeaders<SockaddrStorage>>> =
        const { core::cell::RefCell::new(None) };
}

/// One queued datagram: `len` bytes at `start` of the arena, for `to`.
#[derive(Clone, Copy)]
struct Entry {
    start: usize,
    len: usize,
    to: SocketAddr,
}

/// A listener's datagrams waiting to go.
pub(crate) struct Outbox {
    arena: Vec<u8>,
    used: usize,
    entries: Vec<Entry>,
    /// Sends and datagrams since start, for the stats.
    pub(crate) syscalls: u64,
    pub(crate) datagrams: u64,
}

impl Outbox {
    pub(crate) fn new() -> Outbox {
        Outbox {
            arena: vec![0; ARENA],
            used: 0,
            entries: Vec::with_capacity(ENTRIES),
            syscalls: 0,
            datagrams: 0,
        }
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Queues `bytes` for `to`, sending what waits first if it does not fit.
    pub(crate) fn push(&mut self, l: &UdpListener, to: SocketAddr, bytes: &[u8]) {
        if self.entries.len() == ENTRIES || self.used + bytes.len() > self.arena.len() {
            self.flush(l);
        }
        let Some(dst) = self.arena.get_mut(self.used..self.used + bytes.len()) else {
            // Larger than the whole arena: on its own.
            let _ = l.sock.send_to(bytes, to);
            self.syscalls += 1;
            self.datagrams += 1;
            return;
        };
        dst.copy_from_slice(bytes);
        self.entries.push(Entry {
            start: self.used,
            len: bytes.len(),
            to,
        });
        self.used += bytes.len();
    }

    /// Sends everything waiting on `l`, in as few calls as it can and in order
    /// for each destination: the runs of one segment size (the first run's)
    /// and every datagram no longer than that go in one sendmmsg with that
    /// segment size (the kernel cuts each run; a datagram no longer than a
    /// segment goes as it is), except those queued behind a datagram of their
    /// destination that cannot; those go in the next sendmmsg, made the same
    /// way, and datagrams with no run among them in one without segmentation.
    /// A datagram the socket cannot take is dropped, as the network would.
    pub(crate) fn flush(&mut self, l: &UdpListener) {
        let gso = l.state.max_gso_segments().min(GSO_MAX);
        let mut msgs: heapless::Vec<Msg, ENTRIES> = heapless::Vec::new();
        let mut i = 0;
        while let Some(first) = self.entries.get(i).copied() {
            // The run of datagrams after it of its size and destination (the last
            // of a GSO send may be shorter).
            let mut n = 1;
            while n < gso
                && let Some(e) = self.entries.get(i + n)
                && e.to == first.to
                && e.len <= first.len
            {
                n += 1;
                if e.len < first.len {
                    break;
                }
            }
            let end = self
                .entries
                .get(i + n - 1)
                .map_or(first.start + first.len, |e| e.start + e.len);
            let _ = msgs.push(Msg {
                start: first.start,
                end,
                to: first.to,
                segment: first.len,
                count: n,
            });
            i += n;
        }
        // Rounds, each one sendmmsg: the messages that can share the first
        // run's segment size, except behind one of their own destination's that
        // cannot (a client's datagrams keep their order); the rest wait for the
        // next round.
        let mut pending = msgs;
        while !pending.is_empty() {
            let Some(segment) = pending.iter().find(|m| m.count > 1).map(|m| m.segment) else {
                self.send_many(l, &pending);
                break;
            };
            let mut together: heapless::Vec<Msg, ENTRIES> = heapless::Vec::new();
            let mut later: heapless::Vec<Msg, ENTRIES> = heapless::Vec::new();
            let mut held: heapless::Vec<SocketAddr, ENTRIES> = heapless::Vec::new();
            for m in pending {
                let fits = if m.count > 1 {
                    m.segment == segment
                } else {
                    m.segment <= segment
                };
                if fits && !held.contains(&m.to) {
                    let _ = together.push(m);
                } else {
                    if !held.contains(&m.to) {
                        let _ = held.push(m.to);
                    }
                    let _ = later.push(m);
                }
            }
            if together.is_empty() {
                // The first message is a datagram longer than the segment (a
                // run's destination held behind it): the datagrams that lead
                // go first, as they are.
                let lead = later.iter().take_while(|m| m.count == 1).count().max(1);
                let (first, rest) = later.split_at(lead.min(later.len()));
                match first {
                    [m] if m.count > 1 => self.send_one(l, m),
                    _ => self.send_many(l, first),
                }
                later = rest.iter().copied().collect();
            } else {
                self.send_segmented(l, &together, segment);
            }
            pending = later;
        }
        self.entries.clear();
        self.used = 0;
    }

    /// One message on its own: a run as one GSO send, a datagram as itself
    /// (through quinn-udp, which stops using GSO where the kernel refuses it).
    fn send_one(&mut self, l: &UdpListener, m: &Msg) {
        let Some(contents) = self.arena.get(m.start..m.end) else {
            return;
        };
        let t = Transmit {
            destination: m.to,
            ecn: None,
            contents,
            segment_size: (m.count > 1).then_some(m.segment),
            src_ip: None,
        };
        let _ = l.state.try_send((&l.sock).into(), &t);
        self.syscalls += 1;
        self.datagrams += m.count as u64;
    }

    /// `msgs` in one sendmmsg with `segment` as their GSO segment size. A
    /// message the kernel refuses (where it cannot segment, say) goes on its
    /// own and the rest follow; when the socket is full the rest are dropped.
    fn send_segmented(&mut self, l: &UdpListener, msgs: &[Msg], segment: usize) {
        let Ok(size) = u16::try_from(segment) else {
            for m in msgs {
                self.send_one(l, m);
            }
            return;
        };
        let mut at = 0;
        while let Some(rest) = msgs.get(at..).filter(|r| !r.is_empty()) {
            let sent = self.sendmmsg(l, rest, Some(size));
            self.syscalls += 1;
            match sent {
                Ok(k) if k > 0 => {
                    self.datagrams += rest.iter().take(k).map(|m| m.count as u64).sum::<u64>();
                    at += k;
                }
                Err(nix::errno::Errno::EAGAIN) => return,
                _ => {
                    if let Some(m) = rest.first() {
                        self.send_one(l, m);
                    }
                    at += 1;
                }
            }
        }
    }

    /// One sendmmsg for `msgs` without segmentation (or one send_to for a
    /// single one).
    fn send_many(&mut self, l: &UdpListener, msgs: &[Msg]) {
        match msgs {
            [] => return,
            [m] => {
                if let Some(b) = self.arena.get(m.start..m.end) {
                    let _ = l.sock.send_to(b, m.to);
                }
            }
            _ => {
                // Datagrams the socket did not take are dropped, as the network would.
                let _ = self.sendmmsg(l, msgs, None);
            }
        }
        self.syscalls += 1;
        self.datagrams += msgs.len() as u64;
    }

    /// sendmmsg of `msgs` on `l`, each with `segment` as its GSO segment size
    /// when given: how many the kernel took.
    fn sendmmsg(&self, l: &UdpListener, msgs: &[Msg], segment: Option<u16>) -> nix::Result<usize> {
        let slices: heapless::Vec<[IoSlice<'_>; 1], ENTRIES> = msgs
            .iter()
            .map(|m| {
                [IoSlice::new(
                    self.arena.get(m.start..m.end).unwrap_or_default(),
                )]
            })
            .collect();
        let addrs: heapless::Vec<Option<SockaddrStorage>, ENTRIES> = msgs
            .iter()
            .map(|m| Some(SockaddrStorage::from(m.to)))
            .collect();
        let headers = if segment.is_some() {
            &GSO_HEADERS
        } else {
            &HEADERS
        };
        headers.with(|h| {
            let mut h = h.borrow_mut();
            let headers = h.get_or_insert_with(|| {
                // Room for one UDP_SEGMENT control message a message, when used.
                let room = segment.map(|_| nix::cmsg_space!(u16));
                MultiHeaders::preallocate(ENTRIES, room)
            });
            let size = segment.unwrap_or(0);
            let gso = [ControlMessage::UdpGsoSegments(&size)];
            let cmsgs: &[ControlMessage<'_>] = if segment.is_some() { &gso } else { &[] };
            sendmmsg(
                l.sock.as_raw_fd(),
                headers,
                slices.iter(),
                &addrs,
                cmsgs,
                MsgFlags::empty(),
            )
            .map(|r| r.count())
        })
    }
}

/// What one message of a flush carries: `count` datagrams for `to` at
/// `arena[start..end]`, each `segment` bytes (the last maybe shorter).
#[derive(Clone, Copy)]
struct Msg {
    start: usize,
    end: usize,
    to: SocketAddr,
    segment: usize,
    count: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn listener() -> UdpListener {
        let std = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = std.local_addr().unwrap();
        let state = quinn_udp::UdpSocketState::new((&std).into()).unwrap();
        UdpListener {
            sock: mio::net::UdpSocket::from_std(std),
            state,
            local,
        }
    }

    /// A client's socket, waiting long for what it is sent.
    fn client() -> std::net::UdpSocket {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    #[test]
    fn runs_and_the_datagrams_between_them_go_in_one_sendmmsg() {
        let l = listener();
        let (a, b) = (client(), client());
        let mut o = Outbox::new();
        // Ten of one size to `a` (the last shorter), then five alternating.
        for i in 0..10u8 {
            let len = if i == 9 { 50 } else { 100 };
            o.push(&l, a.local_addr().unwrap(), &vec![i; len]);
        }
        for i in 10..15u8 {
            let to = if i % 2 == 0 { &b } else { &a };
            o.push(&l, to.local_addr().unwrap(), &[i; 30]);
        }
        o.flush(&l);
        assert!(o.is_empty());
        // The run with its segment size and the shorter datagrams with it (or,
        // without GSO, all fifteen as they are): one call.
        assert_eq!(o.datagrams, 15);
        assert_eq!(o.syscalls, 1);
        let mut buf = [0u8; 2048];
        let mut at_a = Vec::new();
        for i in 0..12 {
            let n = a
                .recv(&mut buf)
                .unwrap_or_else(|e| std::panic!("datagram {i} at a: {e}"));
            at_a.push(buf[..n].to_vec());
        }
        for i in 0..9u8 {
            assert_eq!(at_a[i as usize], vec![i; 100], "datagram {i}");
        }
        assert_eq!(at_a[9], vec![9; 50]);
        assert_eq!(at_a[10], vec![11; 30]);
        assert_eq!(at_a[11], vec![13; 30]);
        for i in [10u8, 12, 14] {
            let n = b
                .recv(&mut buf)
                .unwrap_or_else(|e| std::panic!("datagram {i} at b: {e}"));
            assert_eq!(&buf[..n], &[i; 30]);
        }
    }

    /// What `s` receives: `n` datagrams.
    fn received(s: &std::net::UdpSocket, n: usize) -> Vec<Vec<u8>> {
        let mut buf = [0u8; 2048];
        (0..n)
            .map(|i| {
                let k = s
                    .recv(&mut buf)
                    .unwrap_or_else(|e| std::panic!("datagram {i}: {e}"));
                buf[..k].to_vec()
            })
            .collect()
    }

    #[test]
    fn runs_of_another_size_and_longer_datagrams_go_apart() {
        let l = listener();
        if l.state.max_gso_segments() < 2 {
            // Without GSO every datagram is a single: the test above covers it.
            return;
        }
        let (a, b) = (client(), client());
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut o = Outbox::new();
        // A run of 100 B to a (the first run: its size is the segment), a run
        // of 200 B to b, one of 150 B to a (longer than the segment) and one of
        // 20 B to b (shorter: it goes with the first run).
        for i in 0..3u8 {
            o.push(&l, to_a, &[i; 100]);
        }
        for i in 3..6u8 {
            o.push(&l, to_b, &[i; 200]);
        }
        o.push(&l, to_a, &[6; 150]);
        o.push(&l, to_b, &[7; 20]);
        o.flush(&l);
        assert_eq!(o.datagrams, 8);
        // The 100 B run; then the 200 B run with the datagrams queued behind
        // it and after the first (the 20 B one to b waits for b's run).
        assert_eq!(o.syscalls, 2);
        let want_a: Vec<Vec<u8>> = vec![vec![0; 100], vec![1; 100], vec![2; 100], vec![6; 150]];
        assert_eq!(received(&a, 4), want_a);
        let want_b: Vec<Vec<u8>> = vec![vec![3; 200], vec![4; 200], vec![5; 200], vec![7; 20]];
        assert_eq!(received(&b, 4), want_b);
    }

    #[test]
    fn a_clients_frames_of_two_sizes_arrive_in_order() {
        let l = listener();
        let (a, b) = (client(), client());
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut o = Outbox::new();
        // Video frames as an encoder cuts them, each into datagrams of its own
        // size and a shorter last: to a, 100 B ones, then a datagram longer
        // than them, then 120 B ones; to b, a run of 120 B between.
        let mut sent_a = Vec::new();
        let mut sent_b = Vec::new();
        let mut push = |o: &mut Outbox, to, len, i: u8| {
            o.push(&l, to, &vec![i; len]);
            if to == to_a { &mut sent_a } else { &mut sent_b }.push(vec![i; len]);
        };
        let mut i = 0u8;
        for len in [100, 100, 100, 70] {
            push(&mut o, to_a, len, i);
            i += 1;
        }
        for len in [120, 120, 10] {
            push(&mut o, to_b, len, i);
            i += 1;
        }
        push(&mut o, to_a, 300, i);
        i += 1;
        for len in [120, 120, 120, 40, 20] {
            push(&mut o, to_a, len, i);
            i += 1;
        }
        o.flush(&l);
        assert_eq!(o.datagrams, 13);
        // Each datagram as (its fill, its length).
        let ids = |v: &[Vec<u8>]| v.iter().map(|d| (d[0], d.len())).collect::<Vec<_>>();
        assert_eq!(ids(&received(&a, sent_a.len())), ids(&sent_a));
        assert_eq!(ids(&received(&b, sent_b.len())), ids(&sent_b));
    }
}
