//! The kernel fast path as the stats read it: handles of its own on the
//! program's maps (opened by id), so reading counters and walking the route
//! maps for the status page never takes the lock the workers take to install
//! routes. What only the writer knows (the interfaces attached, how many routes
//! it holds) it keeps here as it changes.

use crate::adapters::std::prelude::*;

use std::collections::HashMap as StdHashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use aya::maps::{HashMap, IterableMap, Map, MapData, PerCpuArray};

use super::maps::{Key, Route, counters, socket_addr};
use super::{KernelStats, XdpError, err};

/// Read handles on the maps, and what the writer reports.
pub(crate) struct KernelView {
    to_peer: HashMap<MapData, Key, Route>,
    from_peer: HashMap<MapData, Key, Route>,
    stats: PerCpuArray<MapData, u64>,
    /// The interfaces attached, and how.
    pub(crate) attached: Mutex<Vec<(String, &'static str)>>,
    /// Routes installed.
    pub(crate) routes: AtomicUsize,
}

/// A second handle on `map` (the same kernel map, a file descriptor of its own).
fn reopen(map: &MapData, name: &str) -> Result<MapData, XdpError> {
    let id = map
        .info()
        .map_err(|e| err(&format!("the {name} map's id"), e))?
        .id();
    MapData::from_id(id).map_err(|e| err(&format!("open the {name} map again"), e))
}

impl KernelView {
    /// Read handles on the writer's maps.
    pub(crate) fn open(
        to_peer: &HashMap<MapData, Key, Route>,
        from_peer: &HashMap<MapData, Key, Route>,
        stats: &PerCpuArray<MapData, u64>,
        attached: Vec<(String, &'static str)>,
    ) -> Result<KernelView, XdpError> {
        let to_peer = HashMap::try_from(Map::HashMap(reopen(to_peer.map(), "to_peer")?))
            .map_err(|e| err("the to_peer map", e))?;
        let from_peer = HashMap::try_from(Map::HashMap(reopen(from_peer.map(), "from_peer")?))
            .map_err(|e| err("the from_peer map", e))?;
        let stats = PerCpuArray::try_from(Map::PerCpuArray(reopen(stats.map(), "stats")?))
            .map_err(|e| err("the stats map", e))?;
        Ok(KernelView {
            to_peer,
            from_peer,
            stats,
            attached: Mutex::new(attached),
            routes: AtomicUsize::new(0),
        })
    }

    /// The counters, summed over CPUs.
    pub(crate) fn stats(&self) -> KernelStats {
        let total = |i: u32| {
            self.stats
                .get(&i, 0)
                .map_or(0, |v| v.iter().copied().fold(0u64, u64::wrapping_add))
        };
        KernelStats {
            error: None,
            attached: self
                .attached
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            routes: self.routes.load(Ordering::Relaxed),
            to_peer_packets: total(0),
            to_peer_bytes: total(1),
            from_peer_packets: total(2),
            from_peer_bytes: total(3),
            expired: total(4),
            bad_length: total(5),
            no_fib: total(6),
            no_checksum: total(7),
            not_learned: total(8),
        }
    }

    /// What each client relayed in the kernel: (client, listener) and its
    /// packets and bytes to peers and from peers.
    pub(crate) fn per_client(&self) -> StdHashMap<(SocketAddr, SocketAddr), [u64; 4]> {
        let mut out: StdHashMap<(SocketAddr, SocketAddr), [u64; 4]> = StdHashMap::new();
        for (k, v) in self.to_peer.iter().flatten() {
            let family = k[38];
            let client = socket_addr(&k, 0, 32, family);
            let server = socket_addr(&k, 16, 34, family);
            let (p, b) = counters(&v);
            let e = out.entry((client, server)).or_default();
            e[0] += p;
            e[1] += b;
        }
        for (_, v) in self.from_peer.iter().flatten() {
            let family = v[38];
            let server = socket_addr(&v, 0, 32, family);
            let client = socket_addr(&v, 16, 34, family);
            let (p, b) = counters(&v);
            let e = out.entry((client, server)).or_default();
            e[2] += p;
            e[3] += b;
        }
        out
    }
}
