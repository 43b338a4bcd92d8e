//! `[bandwidth]`: bytes per second each allocation and each user may relay each
//! way, with a burst, and the node's capacity that new allocations are refused
//! at (the token buckets and the admission rule are turn-core's).

use serde::Deserialize;
use turn_core::server::{Bandwidth, Config as TurnConfig, MIN_BURST};

use super::{ConfigError, field};

/// `[bandwidth]`; every key optional, none set by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct BandwidthConfig {
    /// Payload bytes per second each allocation may relay, each way.
    pub(crate) allocation_bytes_per_sec: Option<u32>,
    /// Its burst; default a quarter second of the rate, at least 15000 bytes.
    pub(crate) allocation_burst_bytes: Option<u32>,
    /// Payload bytes per second all allocations of one user (the user part of
    /// a time-limited credential) may relay together, each way.
    pub(crate) user_bytes_per_sec: Option<u32>,
    /// Its burst; default as for allocations.
    pub(crate) user_burst_bytes: Option<u32>,
    /// Bytes per second this node relays in all, both ways: new allocations are
    /// refused (508, or 300 to `alternate_server`) while the last second's
    /// traffic plus one allocation's limit would pass it.
    pub(crate) capacity_bytes_per_sec: Option<u64>,
}

/// The burst when none is given: a quarter second, and room for ten datagrams.
fn default_burst(rate: u32) -> u32 {
    (rate / 4).max(10 * MIN_BURST)
}

fn limit(
    rate: Option<u32>,
    burst: Option<u32>,
    names: (&'static str, &'static str),
) -> Result<Option<Bandwidth>, ConfigError> {
    let Some(rate) = rate else {
        return match burst {
            Some(_) => Err(field(names.1, format!("needs `{}` too", names.0))),
            None => Ok(None),
        };
    };
    if rate == 0 {
        return Err(field(
            names.0,
            "must be above 0 (leave it out for no limit)",
        ));
    }
    let b = Bandwidth::new(rate, burst.unwrap_or_else(|| default_burst(rate)));
    if !b.is_valid() {
        return Err(field(
            names.1,
            format!("must be at least {MIN_BURST} bytes (one full-size datagram)"),
        ));
    }
    Ok(Some(b))
}

impl BandwidthConfig {
    /// Sets the TURN server's limits from this section.
    pub(crate) fn apply(&self, t: &mut TurnConfig) -> Result<(), ConfigError> {
        t.allocation_bandwidth = limit(
            self.allocation_bytes_per_sec,
            self.allocation_burst_bytes,
            (
                "bandwidth.allocation_bytes_per_sec",
                "bandwidth.allocation_burst_bytes",
            ),
        )?;
        t.user_bandwidth = limit(
            self.user_bytes_per_sec,
            self.user_burst_bytes,
            ("bandwidth.user_bytes_per_sec", "bandwidth.user_burst_bytes"),
        )?;
        if self.capacity_bytes_per_sec == Some(0) {
            return Err(field("bandwidth.capacity_bytes_per_sec", "must be above 0"));
        }
        t.capacity_bytes_per_sec = self.capacity_bytes_per_sec;
        Ok(())
    }
}
