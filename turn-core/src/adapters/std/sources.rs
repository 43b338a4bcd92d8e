//! Stream connections counted per source address, over every worker and the TLS
//! thread: a place is taken when a connection is accepted and given back when it
//! closes (or leaves TURN for the HTTP hook), by dropping its [`SourceSlot`]. An
//! IPv6 source is its network of a prefix (/64 by default: proxy-core's
//! [`source_key`](proxy_core::source::source_key)).

use crate::adapters::std::prelude::*;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use proxy_core::source::source_key;

/// Open stream connections by source address.
#[derive(Debug)]
pub(crate) struct Sources {
    per_source: AtomicUsize,
    v6_prefix: AtomicU8,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its source's count; released when dropped.
#[derive(Debug)]
pub(crate) struct SourceSlot {
    sources: Arc<Sources>,
    ip: IpAddr,
}

impl Sources {
    /// At most `per_source` connections from one source at once; an IPv6
    /// source is its network of `v6_prefix` bits.
    pub(crate) fn new(per_source: usize, v6_prefix: u8) -> Arc<Sources> {
        Arc::new(Sources {
            per_source: AtomicUsize::new(per_source),
            v6_prefix: AtomicU8::new(v6_prefix),
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// New limits (a reload): places taken over them stay.
    pub(crate) fn set_limits(&self, per_source: usize, v6_prefix: u8) {
        self.per_source.store(per_source, Ordering::Relaxed);
        self.v6_prefix.store(v6_prefix, Ordering::Relaxed);
    }

    /// The prefix an IPv6 source is counted by.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn v6_prefix(&self) -> u8 {
        self.v6_prefix.load(Ordering::Relaxed)
    }

    /// A place for a connection from `ip`, or `None` when its source has
    /// `per_source` already.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let ip = source_key(ip, self.v6_prefix.load(Ordering::Relaxed));
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_default();
        if *n >= self.per_source.load(Ordering::Relaxed) {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            sources: self.clone(),
            ip,
        })
    }

    /// Connections open from `ip`'s source.
    #[cfg(test)]
    pub(crate) fn count(&self, ip: IpAddr) -> usize {
        let ip = source_key(ip, self.v6_prefix.load(Ordering::Relaxed));
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut counts = self
            .sources
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_per_source_come_back_when_dropped() {
        let s = Sources::new(2, 64);
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let b: IpAddr = "198.51.100.2".parse().unwrap();
        let one = s.acquire(a).unwrap();
        let two = s.acquire(a).unwrap();
        assert!(s.acquire(a).is_none());
        let other = s.acquire(b).unwrap();
        drop(one);
        assert_eq!(s.count(a), 1);
        let three = s.acquire(a).unwrap();
        drop((two, three, other));
        assert_eq!(s.count(a), 0);
        assert_eq!(s.count(b), 0);
    }

    #[test]
    fn an_ipv6_network_is_one_source_and_a_reload_moves_the_limit() {
        let s = Sources::new(2, 64);
        let one: IpAddr = "2001:db8:7:7::1".parse().unwrap();
        let other_in_it: IpAddr = "2001:db8:7:7:ffff::9".parse().unwrap();
        let a = s.acquire(one).unwrap();
        let b = s.acquire(other_in_it).unwrap();
        assert!(
            s.acquire("2001:db8:7:7::77".parse().unwrap()).is_none(),
            "the /64 is full"
        );
        assert!(
            s.acquire("2001:db8:7:8::1".parse().unwrap()).is_some(),
            "the next /64"
        );
        s.set_limits(3, 64);
        let c = s.acquire(one).unwrap();
        assert_eq!(s.count(other_in_it), 3);
        drop((a, b, c));
        assert_eq!(s.count(one), 0);
    }
}
