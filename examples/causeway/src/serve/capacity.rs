//! How many allocations this machine can hold, when `quota.total` is not set:
//! the smallest of the relay ports (per relay address family), the file
//! descriptors (one relay socket per allocation, after those kept for listeners
//! and TCP clients; the soft limit is raised to the hard one first), and half the
//! available memory at the state and socket cost of one allocation.

use std::fmt;

use crate::config::{Config, Resolved};
use turn_core::server::Slot;

use super::worker::{CHANNELS, PERMISSIONS};

/// File descriptors kept for listeners, the event loops, logs and the admin port.
const FD_RESERVE: u64 = 64;
/// Bytes a relay socket costs the kernel when idle (its struct and queue heads),
/// counted with the allocation's state.
const SOCKET_BYTES: u64 = 2048;

/// The default total and what bounded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Capacity {
    /// Allocations in all.
    pub(crate) total: usize,
    /// Relay ports over the relay families.
    pub(crate) ports: u64,
    /// File descriptors left for relay sockets.
    pub(crate) fds: u64,
    /// Allocations half the available memory holds.
    pub(crate) memory: u64,
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} allocations (the least of: relay ports {}, file descriptors {}, memory {})",
            self.total, self.ports, self.fds, self.memory
        )
    }
}

/// Raises the soft limit of open files to the hard limit; returns the limit now.
fn raise_nofile() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft),
    }
}

/// `MemAvailable` of /proc/meminfo, in bytes.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The capacity from the machine's limits, for `threads` workers.
pub(crate) fn measure(cfg: &Config, r: &Resolved, threads: usize) -> Capacity {
    let (v4, v6) = cfg.relay_ips();
    let families = u64::from(v4.is_some()) + u64::from(v6.is_some());
    let ports = (u64::from(r.port_max) - u64::from(r.port_min) + 1) * families.max(1);
    compute(ports, raise_nofile(), available_memory(), cfg, threads)
}

fn compute(ports: u64, nofile: u64, memory: Option<u64>, cfg: &Config, threads: usize) -> Capacity {
    let tcp = (cfg.tcp.max_connections as u64 * threads as u64).min(nofile / 4);
    let fds = nofile.saturating_sub(FD_RESERVE + tcp);
    let per_allocation =
        std::mem::size_of::<Slot<PERMISSIONS, CHANNELS>>() as u64 * 5 / 4 + SOCKET_BYTES;
    let memory = memory.map_or(u64::MAX, |m| m / 2 / per_allocation);
    let total = ports.min(fds).min(memory).clamp(1, 1_000_000);
    Capacity {
        total: total as usize,
        ports,
        fds,
        memory,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_limit_wins() {
        let cfg = Config::default();
        // Plenty of everything but ports: the reference range 24000-29999.
        let c = compute(6000, 1 << 20, Some(64 << 30), &cfg, 2);
        assert_eq!(c.total, 6000);
        // A container's 1024 open files.
        let c = compute(16384, 1024, Some(64 << 30), &cfg, 2);
        assert_eq!(c.total, 1024 - 64 - 256);
        // A small board of 64 MiB.
        let c = compute(16384, 1 << 20, Some(64 << 20), &cfg, 2);
        assert!(c.total < 16384 && c.total > 1000, "{c}");
        assert!(
            c.to_string()
                .starts_with(&format!("{} allocations", c.total))
        );
    }
}
