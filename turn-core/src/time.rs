//! Time as a value the caller passes in.

use core::fmt;

/// A point in time, in milliseconds since the UNIX epoch.
///
/// The caller supplies it and must never let it go backwards: the std adapter
/// adds a monotonic clock's elapsed time to the wall-clock time at start. Being
/// anchored to the UNIX epoch lets time-limited credentials, whose usernames carry
/// a UNIX expiry, be checked against the same value.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant(u64);

impl Instant {
    /// From milliseconds since the UNIX epoch.
    pub const fn from_millis(ms: u64) -> Instant {
        Instant(ms)
    }

    /// From seconds since the UNIX epoch.
    pub const fn from_secs(s: u64) -> Instant {
        Instant(s.saturating_mul(1000))
    }

    /// Milliseconds since the UNIX epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the UNIX epoch.
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
