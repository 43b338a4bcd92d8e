//! Datagrams to UDP clients, gathered per listener over one pass of the event
//! loop and sent together: a run of datagrams of one size to one client goes out
//! as one UDP GSO send (the kernel cuts it), and the rest in one sendmmsg across
//! destinations. Relayed media is what fills it: many relay sockets' peers
//! answering many clients through the same listener.
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
    /// so they stay on the thread that made them).
    static HEADERS: core::cell::RefCell<Option<MultiHeaders<SockaddrStorage>>> =
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

    /// Sends everything waiting on `l`: GSO for runs, one sendmmsg for the rest.
    /// A datagram the socket cannot take is dropped, as the network would.
    pub(crate) fn flush(&mut self, l: &UdpListener) {
        let gso = l.state.max_gso_segments().min(GSO_MAX);
        let mut singles: heapless::Vec<Entry, ENTRIES> = heapless::Vec::new();
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
            if n > 1 {
                let end = self
                    .entries
                    .get(i + n - 1)
                    .map_or(first.start, |e| e.start + e.len);
                if let Some(contents) = self.arena.get(first.start..end) {
                    let t = Transmit {
                        destination: first.to,
                        ecn: None,
                        contents,
                        segment_size: Some(first.len),
                        src_ip: None,
                    };
                    let _ = l.state.try_send((&l.sock).into(), &t);
                    self.syscalls += 1;
                    self.datagrams += n as u64;
                }
            } else {
                let _ = singles.push(first);
            }
            i += n;
        }
        self.send_many(l, &singles);
        self.entries.clear();
        self.used = 0;
    }

    /// One sendmmsg for `entries` (or one send_to for a single one).
    fn send_many(&mut self, l: &UdpListener, entries: &[Entry]) {
        match entries {
            [] => return,
            [e] => {
                if let Some(b) = self.arena.get(e.start..e.start + e.len) {
                    let _ = l.sock.send_to(b, e.to);
                }
            }
            _ => {
                let slices: heapless::Vec<[IoSlice<'_>; 1], ENTRIES> = entries
                    .iter()
                    .map(|e| {
                        [IoSlice::new(
                            self.arena.get(e.start..e.start + e.len).unwrap_or_default(),
                        )]
                    })
                    .collect();
                let addrs: heapless::Vec<Option<SockaddrStorage>, ENTRIES> = entries
                    .iter()
                    .map(|e| Some(SockaddrStorage::from(e.to)))
                    .collect();
                // Datagrams the socket did not take are dropped, as the network would.
                HEADERS.with(|h| {
                    let mut h = h.borrow_mut();
                    let headers = h.get_or_insert_with(|| MultiHeaders::preallocate(ENTRIES, None));
                    let _ = sendmmsg(
                        l.sock.as_raw_fd(),
                        headers,
                        slices.iter(),
                        &addrs,
                        [] as [ControlMessage<'_>; 0],
                        MsgFlags::empty(),
                    );
                });
            }
        }
        self.syscalls += 1;
        self.datagrams += entries.len() as u64;
    }
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

    #[test]
    fn runs_go_as_one_gso_send_and_the_rest_in_one_sendmmsg() {
        let l = listener();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&a, &b] {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        }
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
        let gso = l.state.max_gso_segments() > 1;
        assert_eq!(o.datagrams, 15);
        assert_eq!(o.syscalls, if gso { 2 } else { 11 }, "gso: {gso}");
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
}
