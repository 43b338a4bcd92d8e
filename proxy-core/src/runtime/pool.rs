//! Idle web bridge connections of one event loop, per web bridge, so a page load
//! does not pay a TCP and TLS handshake to the bridge for each request. A
//! connection comes back only after a response that leaves it clean; it is
//! checked again when taken (the bridge may have closed it meanwhile) and
//! dropped after the configured idle time.

use crate::runtime::prelude::*;
use std::time::Instant;

use mio::{Interest, Registry, Token};

use super::conn::clean;
use super::side::Side;

/// A web bridge of one configuration: a reload's new configuration never
/// gets connections made (and verified) under the old one.
pub(crate) type Bridge = (u64, usize);

/// Idle connections of one loop.
#[derive(Default)]
pub(crate) struct Pool {
    /// Per web bridge, the most recently used last, each with the time it
    /// is dropped.
    idle: Vec<(Bridge, Vec<(Side, Instant)>)>,
}

impl Pool {
    /// An idle connection to `bridge`, registered under `token`.
    pub(crate) fn take(
        &mut self,
        bridge: Bridge,
        registry: &Registry,
        token: Token,
        now: Instant,
    ) -> Option<Side> {
        let (_, idle) = self.idle.iter_mut().find(|(b, _)| *b == bridge)?;
        while let Some((mut side, until)) = idle.pop() {
            if now >= until || !clean(&mut side.link) {
                continue;
            }
            let interest = Interest::READABLE | Interest::WRITABLE;
            if registry
                .register(&mut side.link.sock, token, interest)
                .is_ok()
            {
                side.wrote_at = now;
                return Some(side);
            }
        }
        None
    }

    /// Keeps `side`, a clean connection to `bridge`, until `until` (the oldest
    /// idle one goes when `most` are kept).
    pub(crate) fn put(
        &mut self,
        bridge: Bridge,
        mut side: Side,
        registry: &Registry,
        most: usize,
        until: Instant,
    ) {
        if most == 0 || registry.deregister(&mut side.link.sock).is_err() {
            return;
        }
        let idle = match self.idle.iter().position(|(b, _)| *b == bridge) {
            Some(i) => self.idle.get_mut(i),
            None => {
                self.idle.push((bridge, Vec::new()));
                self.idle.last_mut()
            }
        };
        let Some((_, idle)) = idle else { return };
        if idle.len() >= most {
            idle.remove(0);
        }
        idle.push((side, until));
    }

    /// Drops the connections idle too long.
    pub(crate) fn sweep(&mut self, now: Instant) {
        for (_, idle) in &mut self.idle {
            idle.retain(|(_, until)| now < *until);
        }
        self.idle.retain(|(_, idle)| !idle.is_empty());
    }
}
