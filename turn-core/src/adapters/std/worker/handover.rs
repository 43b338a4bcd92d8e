//! A worker's part in handing the relay to another process (see
//! [`upgrade`](super::super::upgrade)): pausing (its UDP listeners, the relay
//! sockets of its UDP allocations and its TCP listeners out of its event loop,
//! its shard's image and duplicates of those sockets left as its parcel),
//! letting go once the new process runs, or taking its sockets back; and, in
//! the new process, reading the image it was handed.

use crate::adapters::std::prelude::*;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use log::{debug, warn};
use mio::{Interest, Token};

use crate::Transport;
use crate::server::ImageError;

use super::super::upgrade::control::{Parcel, Step};
use super::{FIRST_LISTENER, Worker};

fn dup(fd: BorrowedFd<'_>) -> Result<OwnedFd, String> {
    fd.try_clone_to_owned()
        .map_err(|e| format!("cannot duplicate a socket: {e}"))
}

impl Worker {
    /// Carries out a hand-over step ordered since the last pass, if any.
    pub(super) fn hand_over_step(&mut self) {
        let shared = self.shared.clone();
        let Some(seq) = shared.handover.pending(self.handover_seen) else {
            return;
        };
        self.handover_seen = seq;
        shared.handover.act(self.id, |step| match step {
            Step::Pause => Some(self.pause()),
            Step::Commit => {
                self.let_go();
                None
            }
            Step::Run => {
                self.unpause();
                None
            }
        });
    }

    /// The relayed addresses of the allocations an image holds (over UDP).
    fn moving_relays(&self) -> Vec<SocketAddr> {
        self.turn
            .allocations()
            .filter(|a| a.tuple.transport == Transport::Udp)
            .flat_map(|a| a.relays.iter().flatten().map(|r| r.local))
            .collect()
    }

    /// Stops reading what moves and writes the parcel.
    fn pause(&mut self) -> Result<Parcel, String> {
        if self.moved {
            return Err("this relay has handed over already".into());
        }
        if self.paused.is_none() {
            let registry = self.poll.registry();
            for l in &mut self.udp {
                let _ = registry.deregister(&mut l.sock);
            }
            for t in &mut self.tcp {
                let _ = registry.deregister(&mut t.listener);
            }
            let moving = self.moving_relays();
            for &local in &moving {
                self.relays.set_paused(registry, local, true);
            }
            self.paused = Some(moving);
        }
        let now = self.shared.clock.now();
        let mut image = vec![0; self.turn.image_len()];
        let n = self
            .turn
            .write_image(now, &mut image)
            .map_err(|e| e.to_string())?;
        image.truncate(n);
        let mut parcel = Parcel {
            image,
            allocations: self
                .turn
                .allocations()
                .filter(|a| a.tuple.transport == Transport::Udp)
                .count(),
            ..Parcel::default()
        };
        for l in &self.udp {
            parcel.udp.push((l.local, dup(l.sock.as_fd())?));
        }
        for t in &self.tcp {
            let fd = dup(t.listener.as_fd())?;
            if t.tls {
                parcel.tls.push((t.local, fd));
            } else {
                parcel.tcp.push((t.local, fd));
            }
        }
        for local in self.moving_relays() {
            if let Some(r) = self.relays.by_local(local) {
                parcel.relays.push((local, dup(r.sock.as_fd())?));
            }
        }
        Ok(parcel)
    }

    /// The new process runs: the UDP allocations and the listeners are its
    /// own now (this process's descriptors of them close); stream clients
    /// stay until they end.
    fn let_go(&mut self) {
        if self.paused.take().is_none() {
            return;
        }
        let mut host = host_of!(self);
        let n = self.turn.let_go_of_image(&mut host);
        self.udp.clear();
        self.outboxes.clear();
        self.tcp.clear();
        self.moved = true;
        debug!(
            "worker {}: {n} UDP allocation(s) and the listeners handed over",
            self.id
        );
    }

    /// The hand-over failed: read and accept again (what arrived meanwhile
    /// waits in the sockets).
    fn unpause(&mut self) {
        let Some(moving) = self.paused.take() else {
            return;
        };
        let registry = self.poll.registry();
        let udp = self.udp.len();
        let mut failed = 0;
        for (i, l) in self.udp.iter_mut().enumerate() {
            failed += usize::from(
                registry
                    .register(&mut l.sock, Token(FIRST_LISTENER + i), Interest::READABLE)
                    .is_err(),
            );
        }
        for (i, t) in self.tcp.iter_mut().enumerate() {
            failed += usize::from(
                registry
                    .register(
                        &mut t.listener,
                        Token(FIRST_LISTENER + udp + i),
                        Interest::READABLE,
                    )
                    .is_err(),
            );
        }
        for local in moving {
            self.relays.set_paused(registry, local, false);
        }
        if failed > 0 {
            warn!(
                "worker {}: {failed} listener(s) could not rejoin the event loop after a \
                 hand-over failed",
                self.id
            );
        }
    }

    /// In the new process: takes over the allocations of `image`, with the
    /// relay sockets inherited for them (those left over stay in `relays`).
    pub(crate) fn take_image(
        &mut self,
        image: &[u8],
        relays: &mut HashMap<SocketAddr, std::net::UdpSocket>,
    ) -> Result<usize, ImageError> {
        let now = self.shared.clock.now();
        let count = crate::server::image::allocations_in(image)?;
        if count > self.turn.capacity() {
            self.turn.reserve_slots(count.min(self.max_slots));
        }
        let mut host = host_of!(self);
        host.inherited = Some(relays);
        self.turn.read_image(&mut host, image, now)
    }
}
