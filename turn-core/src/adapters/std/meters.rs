//! Per-user bandwidth buckets shared by every worker, charged with the core's
//! [`TokenBucket`] when the core asks (only while a per-user limit is set), and
//! the shard's share of a node-wide capacity.

use crate::adapters::std::prelude::*;

use std::collections::HashMap;
use std::sync::Mutex;

use crate::Instant;
use crate::server::{Bandwidth, Config, TokenBucket};

/// Users' buckets beyond this many trigger a sweep of the idle ones (then
/// twice as many as were left, so active users never make each new one sweep).
const SWEEP_AT: usize = 4096;

/// Each user's two buckets (to peers, from peers), by the user part of its name.
#[derive(Default)]
pub(crate) struct UserMeters {
    buckets: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    by_user: HashMap<String, [TokenBucket; 2]>,
    sweep_at: usize,
}

impl UserMeters {
    /// Charges `bytes` to `user`'s bucket for one direction.
    pub(crate) fn take(
        &self,
        user: &str,
        to_peer: bool,
        rate: Bandwidth,
        now: Instant,
        bytes: usize,
    ) -> bool {
        let mut g = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Buckets {
            by_user: map,
            sweep_at,
        } = &mut *g;
        if let Some(b) = map.get_mut(user) {
            return charge(b, to_peer, rate, now, bytes);
        }
        if map.len() >= (*sweep_at).max(SWEEP_AT) {
            // A bucket idle for as long as its burst takes to refill is full: as
            // good as a new one, so forgetting it changes nothing.
            let idle_ms = u64::from(rate.burst_bytes) * 1000 / u64::from(rate.bytes_per_sec.max(1));
            map.retain(|_, b| b.iter().any(|b| now.millis_since(b.last_used()) <= idle_ms));
            *sweep_at = map.len() * 2;
        }
        let mut b = [TokenBucket::new(); 2];
        let ok = charge(&mut b, to_peer, rate, now, bytes);
        map.insert(user.to_string(), b);
        ok
    }

    /// Users with buckets now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_user
            .len()
    }
}

fn charge(
    b: &mut [TokenBucket; 2],
    to_peer: bool,
    rate: Bandwidth,
    now: Instant,
    bytes: usize,
) -> bool {
    let [up, down] = b;
    if to_peer { up } else { down }.take(now, rate, bytes)
}

/// The TURN configuration of one of `shards` workers: the node's capacity
/// divided between them (each measures only what it relays itself).
pub(crate) fn for_shard(cfg: &Config, shards: usize) -> Config {
    let mut c = cfg.clone();
    c.capacity_bytes_per_sec = cfg
        .capacity_bytes_per_sec
        .map(|b| (b / shards.max(1) as u64).max(1));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_share_a_bucket_each_way_and_idle_ones_are_swept() {
        let m = UserMeters::default();
        let rate = Bandwidth::new(10_000, 1500);
        let t = Instant::from_secs(10);
        assert!(m.take("alice", true, rate, t, 1500));
        assert!(!m.take("alice", true, rate, t, 1500), "her bucket is empty");
        assert!(
            m.take("alice", false, rate, t, 1500),
            "the other way is not"
        );
        assert!(m.take("bob", true, rate, t, 1500));
        for i in 0..SWEEP_AT - 2 {
            m.take(&format!("u{i}"), true, rate, t, 1);
        }
        assert_eq!(m.len(), SWEEP_AT, "no sweep yet");
        m.take("late", true, rate, Instant::from_secs(20), 1);
        assert_eq!(m.len(), 1, "idle buckets forgotten");
    }

    #[test]
    fn capacity_is_split_between_shards() {
        let mut cfg = Config::new("r");
        cfg.capacity_bytes_per_sec = Some(1_000_000);
        assert_eq!(for_shard(&cfg, 4).capacity_bytes_per_sec, Some(250_000));
        cfg.capacity_bytes_per_sec = None;
        assert_eq!(for_shard(&cfg, 4).capacity_bytes_per_sec, None);
    }
}
