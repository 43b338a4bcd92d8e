//! Time as values the caller passes in: two clocks, for two jobs.
//!
//! - [`Instant`] is **monotonic**: milliseconds since an origin the caller picks
//!   (its process start, its board's boot). Every timer runs on it: allocation,
//!   permission, channel and reservation lifetimes, retransmissions, rate budgets.
//!   It must never go backwards.
//! - [`UnixTime`] is the **wall clock**, in seconds since the UNIX epoch. It is
//!   used where other machines' clocks matter: the expiry a time-limited
//!   credential's username carries (set by the issuer), and the issue time in a
//!   stateless nonce (checked by any node of a cluster). It may jump.
//!
//! So a wall-clock step (NTP, an operator) can neither expire nor revive an
//! allocation, permission or channel; it only moves which credentials and nonces
//! are current, as it does for every other node.

use core::fmt;

/// A point on the caller's monotonic clock, in milliseconds since its origin.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant(u64);

/// Wall-clock time: seconds since the UNIX epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UnixTime(pub u64);

impl UnixTime {
    /// Seconds since the UNIX epoch.
    pub const fn as_secs(self) -> u64 {
        self.0
    }
}

impl Instant {
    /// From milliseconds since the clock's origin.
    pub const fn from_millis(ms: u64) -> Instant {
        Instant(ms)
    }

    /// From seconds since the clock's origin.
    pub const fn from_secs(s: u64) -> Instant {
        Instant(s.saturating_mul(1000))
    }

    /// Milliseconds since the clock's origin.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the clock's origin.
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// This instant plus `secs` seconds (saturating).
    pub const fn plus_secs(self, secs: u64) -> Instant {
        Instant(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    /// This instant plus `ms` milliseconds (saturating).
    pub const fn plus_millis(self, ms: u64) -> Instant {
        Instant(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, or 0 if `earlier` is later.
    pub const fn millis_since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0 / 1000, self.0 % 1000)
    }
}
