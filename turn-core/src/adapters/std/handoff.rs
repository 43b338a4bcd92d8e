//! Relay-to-relay without the kernel: a datagram from one relay socket of this
//! server to another is handed to the worker that owns the destination, through
//! a bounded queue of buffers made at start.

use crate::adapters::std::prelude::*;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Relay-to-relay datagrams handed to the worker that owns their destination
/// relay socket, without the kernel: a bounded ring of buffers made at start.
/// A full ring (or a datagram larger than a slot) sends through the kernel
/// instead.
pub(crate) struct Mailbox {
    ring: Mutex<Ring>,
    waker: std::sync::OnceLock<Arc<mio::Waker>>,
}

/// Datagrams a handoff holds at once.
const HANDOFF_SLOTS: usize = 256;
/// Largest datagram a handoff slot holds.
pub(crate) const HANDOFF_MAX: usize = 1500;

struct Ring {
    items: Vec<Handed>,
    head: usize,
    len: usize,
}

/// One datagram handed over: for relay socket `to`, from relay socket `from`.
#[derive(Clone)]
pub(crate) struct Handed {
    pub(crate) to: SocketAddr,
    pub(crate) from: SocketAddr,
    pub(crate) len: usize,
    pub(crate) data: [u8; HANDOFF_MAX],
}

impl Mailbox {
    pub(crate) fn new() -> Mailbox {
        let empty = Handed {
            to: SocketAddr::from(([0, 0, 0, 0], 0)),
            from: SocketAddr::from(([0, 0, 0, 0], 0)),
            len: 0,
            data: [0; HANDOFF_MAX],
        };
        Mailbox {
            ring: Mutex::new(Ring {
                items: vec![empty; HANDOFF_SLOTS],
                head: 0,
                len: 0,
            }),
            waker: std::sync::OnceLock::new(),
        }
    }

    /// Where the owning worker is woken.
    pub(crate) fn set_waker(&self, waker: Arc<mio::Waker>) {
        let _ = self.waker.set(waker);
    }

    /// Wakes the owning worker (to publish its allocations now).
    pub(crate) fn wake(&self) {
        if let Some(w) = self.waker.get() {
            let _ = w.wake();
        }
    }

    /// Queues `data` for relay socket `to`, waking the owner (unless `wake` is
    /// false: a worker's own queue, drained after each batch); false when it does
    /// not fit (full, or too large), and the caller sends it through the kernel.
    pub(crate) fn push(&self, to: SocketAddr, from: SocketAddr, data: &[u8], wake: bool) -> bool {
        if data.len() > HANDOFF_MAX {
            return false;
        }
        let was_empty = {
            let mut r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            if r.len == r.items.len() {
                return false;
            }
            let at = (r.head + r.len) % r.items.len();
            let was_empty = r.len == 0;
            let Some(item) = r.items.get_mut(at) else {
                return false;
            };
            item.to = to;
            item.from = from;
            item.len = data.len();
            if let Some(dst) = item.data.get_mut(..data.len()) {
                dst.copy_from_slice(data);
            }
            r.len += 1;
            was_empty
        };
        // One wake per burst: the owner drains everything queued.
        if wake
            && was_empty
            && let Some(w) = self.waker.get()
        {
            let _ = w.wake();
        }
        true
    }

    /// Takes the oldest datagram, copied into `out`.
    pub(crate) fn pop(&self, out: &mut Handed) -> bool {
        let mut r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if r.len == 0 {
            return false;
        }
        let head = r.head;
        let Some(item) = r.items.get(head) else {
            return false;
        };
        out.to = item.to;
        out.from = item.from;
        out.len = item.len;
        let len = item.len;
        if let (Some(dst), Some(src)) = (out.data.get_mut(..len), item.data.get(..len)) {
            dst.copy_from_slice(src);
        }
        r.head = (head + 1) % r.items.len();
        r.len -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handoff_holds_what_fits_in_order() {
        let h = Mailbox::new();
        let to: SocketAddr = "10.0.0.5:24001".parse().unwrap();
        let from: SocketAddr = "10.0.0.5:24002".parse().unwrap();
        for i in 0..HANDOFF_SLOTS {
            assert!(h.push(to, from, &[i as u8; 10], true));
        }
        assert!(!h.push(to, from, b"full", true), "a full ring refuses");
        assert!(
            !Mailbox::new().push(to, from, &[0; HANDOFF_MAX + 1], true),
            "too large"
        );
        let mut out = Handed {
            to: from,
            from: to,
            len: 0,
            data: [0; HANDOFF_MAX],
        };
        for i in 0..HANDOFF_SLOTS {
            assert!(h.pop(&mut out));
            assert_eq!(
                (out.to, out.from, out.len, out.data[0]),
                (to, from, 10, i as u8)
            );
        }
        assert!(!h.pop(&mut out));
        assert!(h.push(to, from, b"again", true), "room again");
    }
}
