//! What the workers share: the configuration, the credential database, quotas, the
//! clock, and the status each worker publishes for the admin interface.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use stun_core::credentials::{LongTermKey, long_term_key};
use turn_core::Instant;
use turn_core::server::QuotaError;

use super::status::WorkerStatus;
use crate::config::Config;

/// Read-mostly state shared by all workers.
pub(crate) struct Shared {
    pub(crate) cfg: Config,
    /// Long-term keys by username, for the configured realm.
    keys: HashMap<String, LongTermKey>,
    pub(crate) quota: Quota,
    pub(crate) reservations: Reservations,
    pub(crate) clock: Clock,
    /// The latest status of each worker.
    pub(crate) status: Mutex<Vec<WorkerStatus>>,
}

impl Shared {
    pub(crate) fn new(cfg: Config, users: &[(String, String)], threads: usize) -> Shared {
        let keys = users
            .iter()
            .map(|(u, p)| (u.clone(), long_term_key(u, &cfg.realm, p)))
            .collect();
        let quota = Quota::new(cfg.quota.per_user, cfg.quota.total);
        Shared {
            cfg,
            keys,
            quota,
            reservations: Reservations::default(),
            clock: Clock::new(),
            status: Mutex::new((0..threads).map(WorkerStatus::empty).collect()),
        }
    }

    /// The long-term key of a local user.
    pub(crate) fn key(&self, username: &str) -> Option<LongTermKey> {
        self.keys.get(username).copied()
    }
}

/// Allocations counted per user and in total, across workers. Touched only when
/// allocations are created or end, never per packet.
pub(crate) struct Quota {
    per_user: usize,
    total: usize,
    counts: Mutex<(usize, HashMap<String, usize>)>,
}

impl Quota {
    pub(crate) fn new(per_user: usize, total: usize) -> Quota {
        Quota {
            per_user,
            total,
            counts: Mutex::new((0, HashMap::new())),
        }
    }

    pub(crate) fn acquire(&self, user: &str) -> Result<(), QuotaError> {
        let mut g = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (total, users) = &mut *g;
        if *total >= self.total {
            return Err(QuotaError::Total);
        }
        let n = users.entry(user.to_string()).or_default();
        if *n >= self.per_user {
            return Err(QuotaError::User);
        }
        *n += 1;
        *total += 1;
        Ok(())
    }

    pub(crate) fn release(&self, user: &str) {
        let mut g = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (total, users) = &mut *g;
        if let Some(n) = users.get_mut(user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                users.remove(user);
            }
            *total = total.saturating_sub(1);
        }
    }
}

/// Most ports held for EVEN-PORT reservations at once, server-wide: EVEN-PORT
/// cannot drain the relay port pool. Past it, the reservation closest to expiry
/// makes room.
const MAX_RESERVATIONS: usize = 256;

/// Ports held for EVEN-PORT reservations, claimable from any worker (the RTCP
/// allocation that claims one may arrive on another core than the RTP one).
#[derive(Default)]
pub(crate) struct Reservations {
    held: Mutex<HashMap<[u8; 8], (std::net::UdpSocket, std::net::SocketAddr, Instant)>>,
}

impl Reservations {
    pub(crate) fn hold(
        &self,
        token: [u8; 8],
        sock: std::net::UdpSocket,
        local: std::net::SocketAddr,
        expires: Instant,
    ) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() >= MAX_RESERVATIONS
            && let Some(oldest) = held.iter().min_by_key(|(_, (_, _, e))| *e).map(|(t, _)| *t)
        {
            held.remove(&oldest);
        }
        held.insert(token, (sock, local, expires));
    }

    pub(crate) fn take(
        &self,
        token: &[u8; 8],
        now: Instant,
    ) -> Option<(std::net::UdpSocket, std::net::SocketAddr)> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let (sock, local, expires) = held.remove(token)?;
        (now < expires).then_some((sock, local))
    }

    pub(crate) fn expire(&self, now: Instant) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|_, (_, _, e)| now < *e);
    }
}

/// The server's clock: UNIX time at start plus a monotonic clock's elapsed time,
/// so it never goes backwards and still compares with credential expiries.
pub(crate) struct Clock {
    start_unix_ms: u64,
    start: std::time::Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        let start_unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Clock {
            start_unix_ms,
            start: std::time::Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> Instant {
        Instant::from_millis(self.start_unix_ms + self.start.elapsed().as_millis() as u64)
    }

    /// The std instant matching a server instant, for poll timeouts.
    pub(crate) fn to_std(&self, t: Instant) -> std::time::Instant {
        let ms = t.as_millis().saturating_sub(self.start_unix_ms);
        self.start + std::time::Duration::from_millis(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_per_user_and_total() {
        let q = Quota::new(2, 3);
        assert!(q.acquire("a").is_ok());
        assert!(q.acquire("a").is_ok());
        assert_eq!(q.acquire("a"), Err(QuotaError::User));
        assert!(q.acquire("b").is_ok());
        assert_eq!(q.acquire("c"), Err(QuotaError::Total));
        q.release("a");
        assert!(q.acquire("c").is_ok());
    }
}
