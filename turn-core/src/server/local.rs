//! Ready-made pieces of a [`Host`](super::Host) for single-process hosts (boards,
//! single-shard servers): a fixed-capacity quota counter and a fixed table of
//! EVEN-PORT reservations.

use core::net::SocketAddr;

use super::QuotaError;
use super::config::USERNAME_MAX;
use crate::Instant;

/// Allocations counted per user (up to `U` users at once) and in total.
#[derive(Debug, Clone)]
pub struct LocalQuota<const U: usize> {
    per_user: u16,
    total: u16,
    used: u16,
    users: heapless::Vec<(heapless::String<USERNAME_MAX>, u16), U>,
}

impl<const U: usize> LocalQuota<U> {
    /// At most `per_user` allocations per user and `total` in all.
    pub const fn new(per_user: u16, total: u16) -> Self {
        LocalQuota {
            per_user,
            total,
            used: 0,
            users: heapless::Vec::new(),
        }
    }

    /// Counts an allocation of `user`.
    pub fn acquire(&mut self, user: &str) -> Result<(), QuotaError> {
        if self.used >= self.total {
            return Err(QuotaError::Total);
        }
        match self.users.iter_mut().find(|(u, _)| u == user) {
            Some((_, n)) if *n >= self.per_user => return Err(QuotaError::User),
            Some((_, n)) => *n += 1,
            None => {
                let mut name = heapless::String::new();
                name.push_str(user).map_err(|_| QuotaError::User)?;
                // More distinct users than the table holds: the server is full.
                self.users.push((name, 1)).map_err(|_| QuotaError::Total)?;
            }
        }
        self.used += 1;
        Ok(())
    }

    /// Releases an allocation of `user`.
    pub fn release(&mut self, user: &str) {
        if let Some(i) = self.users.iter().position(|(u, _)| u == user) {
            if let Some((_, n)) = self.users.get_mut(i) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.users.swap_remove(i);
                }
            }
            self.used = self.used.saturating_sub(1);
        }
    }

    /// Allocations counted.
    pub fn used(&self) -> u16 {
        self.used
    }
}

/// Up to `N` EVEN-PORT reservations: token, held address, expiry.
#[derive(Debug, Clone, Default)]
pub struct Reservations<const N: usize> {
    held: heapless::Vec<([u8; 8], SocketAddr, Instant), N>,
}

impl<const N: usize> Reservations<N> {
    /// An empty table.
    pub const fn new() -> Self {
        Reservations {
            held: heapless::Vec::new(),
        }
    }

    /// Holds `local` for `token`; when the table is full, the reservation closest to
    /// expiry makes room (and is returned, for its port to be released).
    pub fn hold(
        &mut self,
        token: [u8; 8],
        local: SocketAddr,
        expires: Instant,
    ) -> Option<SocketAddr> {
        let mut evicted = None;
        if self.held.is_full()
            && let Some(i) = (0..self.held.len()).min_by_key(|i| self.held.get(*i).map(|h| h.2))
        {
            evicted = Some(self.held.swap_remove(i).1);
        }
        let _ = self.held.push((token, local, expires));
        evicted
    }

    /// Takes the reservation of `token`, if it is still valid at `now`. An expired
    /// one stays for [`Reservations::expire`] to release.
    pub fn take(&mut self, token: &[u8; 8], now: Instant) -> Option<SocketAddr> {
        let i = self.held.iter().position(|h| h.0 == *token && now < h.2)?;
        Some(self.held.swap_remove(i).1)
    }

    /// Whether `local` is held.
    pub fn holds(&self, local: SocketAddr) -> bool {
        self.held.iter().any(|h| h.1 == local)
    }

    /// Drops expired reservations, calling `release` for each.
    pub fn expire(&mut self, now: Instant, mut release: impl FnMut(SocketAddr)) {
        let mut i = 0;
        while let Some(h) = self.held.get(i).copied() {
            if now >= h.2 {
                release(h.1);
                self.held.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn quota() {
        let mut q: LocalQuota<2> = LocalQuota::new(2, 3);
        assert!(q.acquire("a").is_ok());
        assert!(q.acquire("a").is_ok());
        assert_eq!(q.acquire("a"), Err(QuotaError::User));
        assert!(q.acquire("b").is_ok());
        assert_eq!(q.acquire("c"), Err(QuotaError::Total));
        q.release("a");
        q.release("b");
        assert!(q.acquire("c").is_ok());
        assert_eq!(q.used(), 2);
    }

    #[test]
    fn reservations() {
        let mut r: Reservations<1> = Reservations::new();
        let a: SocketAddr = "10.0.0.1:1001".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:1003".parse().unwrap();
        let t = Instant::from_secs(10);
        assert_eq!(r.hold([1; 8], a, t), None);
        assert_eq!(r.hold([2; 8], b, t), Some(a));
        assert!(r.holds(b));
        assert_eq!(r.take(&[1; 8], Instant::from_secs(1)), None);
        assert_eq!(r.take(&[2; 8], Instant::from_secs(11)), None, "expired");
        assert!(
            r.holds(b),
            "an expired reservation stays for expire to release"
        );
        let mut released = None;
        r.expire(Instant::from_secs(11), |x| released = Some(x));
        assert_eq!(released, Some(b));
        r.hold([3; 8], a, t);
        r.expire(t, |x| released = Some(x));
        assert_eq!(released, Some(a));
    }
}
