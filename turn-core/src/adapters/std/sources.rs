//! Stream connections counted per source address, over every worker and the TLS
//! thread: a place is taken when a connection is accepted and given back when it
//! closes (or leaves TURN for the web proxy), by dropping its [`SourceSlot`].

use crate::adapters::std::prelude::*;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Open stream connections by source address.
#[derive(Debug)]
pub(crate) struct Sources {
    per_source: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its source's count; released when dropped.
#[derive(Debug)]
pub(crate) struct SourceSlot {
    sources: Arc<Sources>,
    ip: IpAddr,
}

impl Sources {
    /// At most `per_source` connections from one address at once.
    pub(crate) fn new(per_source: usize) -> Arc<Sources> {
        Arc::new(Sources {
            per_source,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A place for a connection from `ip`, or `None` when its source has
    /// `per_source` already.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_default();
        if *n >= self.per_source {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            sources: self.clone(),
            ip,
        })
    }

    /// Connections open from `ip`.
    #[cfg(test)]
    pub(crate) fn count(&self, ip: IpAddr) -> usize {
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
        let s = Sources::new(2);
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
}
