//! What the workers share: the configuration, the credential database, quotas, the
//! clock, and the status each worker publishes for the admin interface.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use stun_core::credentials::{Algorithm, Key, long_term_key, long_term_key_sha256, userhash};
use turn_core::Instant;
use turn_core::server::QuotaError;

use super::sources::Sources;
use super::status::WorkerStatus;
use crate::config::Config;

/// A local user's long-term keys, for the configured realm.
#[derive(Clone, Copy)]
struct UserKeys {
    md5: [u8; 16],
    sha256: [u8; 32],
}

/// Read-mostly state shared by all workers.
pub(crate) struct Shared {
    pub(crate) cfg: Config,
    /// Long-term keys by username, for the configured realm.
    keys: HashMap<String, UserKeys>,
    /// Usernames by USERHASH.
    by_hash: HashMap<[u8; 32], String>,
    /// Relay sockets bound right now, on any worker.
    pub(crate) live: LiveRelays,
    /// Stream connections per source address.
    pub(crate) sources: Arc<Sources>,
    pub(crate) quota: Quota,
    pub(crate) reservations: Reservations,
    pub(crate) clock: Clock,
    /// The latest status of each worker.
    pub(crate) status: Mutex<Vec<WorkerStatus>>,
}

impl Shared {
    pub(crate) fn new(
        cfg: Config,
        users: &[(String, String)],
        threads: usize,
        quota_total: usize,
    ) -> Shared {
        let keys = users
            .iter()
            .map(|(u, p)| {
                let k = UserKeys {
                    md5: long_term_key(u, &cfg.realm, p),
                    sha256: long_term_key_sha256(u, &cfg.realm, p),
                };
                (u.clone(), k)
            })
            .collect();
        let by_hash = users
            .iter()
            .map(|(u, _)| (userhash(u, &cfg.realm), u.clone()))
            .collect();
        let quota = Quota::new(cfg.quota.per_user, quota_total);
        let sources = Sources::new(cfg.tcp.max_per_source);
        Shared {
            cfg,
            keys,
            by_hash,
            live: LiveRelays::default(),
            sources,
            quota,
            reservations: Reservations::default(),
            clock: Clock::new(),
            status: Mutex::new((0..threads).map(WorkerStatus::empty).collect()),
        }
    }

    /// The long-term key of a local user for `algorithm`.
    pub(crate) fn key(&self, username: &str, algorithm: Algorithm) -> Option<Key> {
        self.keys.get(username).map(|k| match algorithm {
            Algorithm::Md5 => Key::Md5(k.md5),
            Algorithm::Sha256 => Key::Sha256(k.sha256),
        })
    }

    /// The local user whose USERHASH is `hash`.
    pub(crate) fn user_by_hash(&self, hash: &[u8; 32]) -> Option<&str> {
        self.by_hash.get(hash).map(String::as_str)
    }
}

/// Which relay ports are bound right now, per family, as bits: one atomic load
/// answers the core's relay-to-relay check on the packet path, whichever worker
/// owns the relay. Relay sockets bind to one address per family, so the family
/// and the port name them.
pub(crate) struct LiveRelays {
    bits: [Box<[AtomicU64]>; 2],
}

impl Default for LiveRelays {
    fn default() -> Self {
        let words = || (0..1024).map(|_| AtomicU64::new(0)).collect();
        LiveRelays {
            bits: [words(), words()],
        }
    }
}

impl LiveRelays {
    fn word(&self, a: SocketAddr) -> (&AtomicU64, u64) {
        let port = usize::from(a.port());
        let family = &self.bits[usize::from(a.is_ipv6())];
        (&family[port / 64], 1u64 << (port % 64))
    }

    /// Marks `a` bound or not.
    pub(crate) fn set(&self, a: SocketAddr, live: bool) {
        let (w, bit) = self.word(a);
        if live {
            w.fetch_or(bit, Ordering::Release);
        } else {
            w.fetch_and(!bit, Ordering::Release);
        }
    }

    /// Whether `a` is bound.
    pub(crate) fn contains(&self, a: SocketAddr) -> bool {
        let (w, bit) = self.word(a);
        w.load(Ordering::Acquire) & bit != 0
    }
}

/// Allocations counted per user and in total, across workers. Touched only when
/// allocations are created or end, never per packet. With no per-user limit (the
/// default: a meeting's browsers share one TURN user), users are not counted.
pub(crate) struct Quota {
    per_user: Option<usize>,
    total: usize,
    counts: Mutex<(usize, HashMap<String, usize>)>,
}

impl Quota {
    /// The total allocations allowed.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    pub(crate) fn new(per_user: Option<usize>, total: usize) -> Quota {
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
        if let Some(limit) = self.per_user {
            let n = users.entry(user.to_string()).or_default();
            if *n >= limit {
                return Err(QuotaError::User);
            }
            *n += 1;
        }
        *total += 1;
        Ok(())
    }

    pub(crate) fn release(&self, user: &str) {
        let mut g = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (total, users) = &mut *g;
        if self.per_user.is_some() {
            match users.get_mut(user) {
                Some(n) => {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        users.remove(user);
                    }
                }
                None => return,
            }
        }
        *total = total.saturating_sub(1);
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
        let q = Quota::new(Some(2), 3);
        assert!(q.acquire("a").is_ok());
        assert!(q.acquire("a").is_ok());
        assert_eq!(q.acquire("a"), Err(QuotaError::User));
        assert!(q.acquire("b").is_ok());
        assert_eq!(q.acquire("c"), Err(QuotaError::Total));
        q.release("a");
        assert!(q.acquire("c").is_ok());
    }

    #[test]
    fn without_a_per_user_limit_one_user_takes_the_whole_total() {
        let q = Quota::new(None, 1000);
        for _ in 0..1000 {
            q.acquire("meeting").unwrap();
        }
        assert_eq!(q.acquire("meeting"), Err(QuotaError::Total));
        q.release("meeting");
        assert!(q.acquire("other").is_ok());
    }

    #[test]
    fn live_relays_by_family_and_port() {
        let l = LiveRelays::default();
        let v4: SocketAddr = "10.0.0.5:24001".parse().unwrap();
        let v6: SocketAddr = "[fd00::5]:24001".parse().unwrap();
        l.set(v4, true);
        assert!(l.contains(v4));
        assert!(!l.contains(v6));
        assert!(!l.contains("10.0.0.5:24002".parse().unwrap()));
        l.set("10.0.0.5:65535".parse().unwrap(), true);
        l.set(v4, false);
        assert!(!l.contains(v4));
        assert!(l.contains("10.0.0.5:65535".parse().unwrap()));
    }
}
