//! How many allocations this machine can hold (the default of [`Settings::total`],
//! and the bound a total set by hand is checked against):
//! the smallest of the relay ports (per relay address family), the file
//! descriptors (one relay socket per allocation, after those kept for listeners
//! and TCP clients; the soft limit is raised to the hard one first), and half the
//! available memory at the state and socket cost of one allocation.

use crate::adapters::std::prelude::*;

use std::fmt;

use crate::server::Slot;

use super::builder::Settings;
use super::worker::{CHANNELS, PERMISSIONS};

/// File descriptors kept for listeners, the event loops, logs and the admin port.
const FD_RESERVE: u64 = 64;
/// Bytes a relay socket costs the kernel when idle (its struct and queue heads),
/// counted with the allocation's state.
const SOCKET_BYTES: u64 = 2048;

/// The default total of allocations and what bounded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    /// Allocations in all.
    pub total: usize,
    /// Relay ports over the relay families.
    pub ports: u64,
    /// File descriptors left for relay sockets.
    pub fds: u64,
    /// Allocations half the available memory holds.
    pub memory: u64,
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

impl Capacity {
    /// The capacity of this machine for `settings` (whose relay addresses are
    /// resolved), with `threads` workers. Raises the soft limit of open files to
    /// the hard limit on the way.
    pub fn measure(settings: &Settings, threads: usize) -> Capacity {
        let t = &settings.turn;
        let families = u64::from(t.relay_v4.is_some()) + u64::from(t.relay_v6.is_some());
        let ports = (u64::from(t.port_max) - u64::from(t.port_min) + 1) * families.max(1);
        Capacity::compute(
            ports,
            raise_nofile(),
            available_memory(),
            settings.tcp.max_connections,
            threads,
        )
    }

    fn compute(
        ports: u64,
        nofile: u64,
        memory: Option<u64>,
        max_connections: usize,
        threads: usize,
    ) -> Capacity {
        let tcp = (max_connections as u64 * threads as u64).min(nofile / 4);
        let fds = nofile.saturating_sub(FD_RESERVE + tcp);
        let per_allocation =
            core::mem::size_of::<Slot<PERMISSIONS, CHANNELS>>() as u64 * 5 / 4 + SOCKET_BYTES;
        let memory = memory.map_or(u64::MAX, |m| m / 2 / per_allocation);
        let total = ports.min(fds).min(memory).clamp(1, 1_000_000);
        Capacity {
            total: usize::try_from(total).unwrap_or(1_000_000),
            ports,
            fds,
            memory,
        }
    }
}

impl Capacity {
    /// What to tell the operator when a total set by hand is more than this
    /// machine holds: allocations past it would be refused (508) with a relay
    /// socket's error, so the start says it once, naming the bound.
    pub fn short_of(&self, total: usize) -> Option<String> {
        let bound = if self.fds <= self.ports.min(self.memory) {
            "file descriptors: raise the open-file limit (LimitNOFILE=)"
        } else if self.ports <= self.memory {
            "relay ports: widen relay_range or add a relay address of the other family"
        } else {
            "memory"
        };
        (total > self.total).then(|| {
            format!(
                "the allocation total {total} is more than this machine holds, {self}; past \
                 {} allocations are refused with 508. Bound: {bound}",
                self.total
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_limit_wins() {
        // Plenty of everything but ports: the reference range 24000-29999.
        let c = Capacity::compute(6000, 1 << 20, Some(64 << 30), 4096, 2);
        assert_eq!(c.total, 6000);
        // A container's 1024 open files.
        let c = Capacity::compute(16384, 1024, Some(64 << 30), 4096, 2);
        assert_eq!(c.total, 1024 - 64 - 256);
        // A small board of 64 MiB.
        let c = Capacity::compute(16384, 1 << 20, Some(64 << 20), 4096, 2);
        assert!(c.total < 16384 && c.total > 1000, "{c}");
        assert!(
            c.to_string()
                .starts_with(&format!("{} allocations", c.total))
        );
    }

    #[test]
    fn a_total_set_beyond_the_machine_is_named_with_its_bound() {
        let c = Capacity::compute(16384, 1024, Some(64 << 30), 4096, 2);
        assert_eq!(c.short_of(c.total), None);
        let why = c.short_of(10_000).unwrap();
        assert!(
            why.contains("10000") && why.contains("LimitNOFILE"),
            "{why}"
        );
        let c = Capacity::compute(6000, 1 << 20, Some(64 << 30), 4096, 2);
        assert!(c.short_of(8000).unwrap().contains("relay_range"));
    }
}
