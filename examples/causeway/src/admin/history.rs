//! The last minutes of the relay, for the usage page's plot: one sample a
//! second (allocations in use, bytes relayed so far), kept in a fixed ring, and
//! served as rates.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use turn_core::adapters::std::StatsHandle;

/// Samples kept: ten minutes at one a second.
pub(crate) const SAMPLES: usize = 600;
/// Samples each rate spans.
pub(crate) const WINDOW: usize = 3;

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// UNIX milliseconds.
    at_ms: u64,
    allocations: usize,
    /// Payload bytes relayed both ways since start.
    bytes: u64,
}

/// The ring of samples, shared by the sampler and the admin thread.
#[derive(Default, Clone)]
pub(crate) struct History(Arc<Mutex<VecDeque<Sample>>>);

/// One point of the plot.
#[derive(Serialize, Debug, PartialEq)]
pub(crate) struct Point {
    /// UNIX milliseconds.
    pub(crate) t: u64,
    /// Allocations in use.
    pub(crate) allocations: usize,
    /// Relayed payload bits per second since the previous sample.
    pub(crate) bits_per_sec: u64,
}

impl History {
    fn push(&self, s: Sample) {
        let mut ring = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == SAMPLES {
            ring.pop_front();
        }
        ring.push_back(s);
    }

    /// Takes a sample of `stats` now.
    pub(crate) fn sample(&self, stats: &StatsHandle) {
        let s = stats.summary();
        let t = s.totals();
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.push(Sample {
            at_ms,
            allocations: s.in_use(),
            bytes: t.to_peer_bytes.saturating_add(t.from_peer_bytes),
        });
    }

    /// Samples every second, for as long as the process runs.
    pub(crate) fn spawn_sampler(&self, stats: StatsHandle) {
        let history = self.clone();
        let _ = std::thread::Builder::new()
            .name("admin-history".into())
            .spawn(move || {
                loop {
                    history.sample(&stats);
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
    }

    /// The plot's points, oldest first. Each rate is over the last
    /// [`WINDOW`] samples: the workers publish their counters once a second,
    /// so two samples a second apart may see one publication or two.
    pub(crate) fn points(&self) -> Vec<Point> {
        let ring = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let all: Vec<Sample> = ring.iter().copied().collect();
        (1..all.len())
            .filter_map(|i| {
                let (a, b) = (all.get(i.saturating_sub(WINDOW))?, all.get(i)?);
                let ms = b.at_ms.saturating_sub(a.at_ms).max(1);
                Some(Point {
                    t: b.at_ms,
                    allocations: b.allocations,
                    bits_per_sec: b.bytes.saturating_sub(a.bytes).saturating_mul(8000) / ms,
                })
            })
            .collect()
    }

    /// `GET /history`: the points as JSON.
    pub(crate) fn json(&self) -> String {
        serde_json::to_string(&self.points()).unwrap_or_else(|_| "[]".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_over_a_window_and_a_bounded_ring() {
        let h = History::default();
        let bytes = [0, 125_000, 125_000, 375_000, 500_000];
        for (i, b) in bytes.into_iter().enumerate() {
            let at_ms = 1000 * (i as u64 + 1);
            h.push(Sample {
                at_ms,
                allocations: i,
                bytes: b,
            });
        }
        let rates: Vec<u64> = h.points().iter().map(|p| p.bits_per_sec).collect();
        // Over up to three samples: an interval that saw no publication is
        // evened out by its neighbours.
        assert_eq!(rates, vec![1_000_000, 500_000, 1_000_000, 1_000_000]);
        assert_eq!(h.points()[3].t, 5000);
        assert_eq!(h.points()[3].allocations, 4);
        for i in 0..2 * SAMPLES as u64 {
            h.push(Sample {
                at_ms: 6000 + i,
                allocations: 0,
                bytes: 0,
            });
        }
        assert_eq!(h.points().len(), SAMPLES - 1);
    }
}
