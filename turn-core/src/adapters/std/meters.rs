//! Per-user bandwidth buckets shared by every worker, charged with the core's
//! [`TokenBucket`] when the core asks (only while a per-user limit is set), and
//! the shard's share of a node-wide capacity.

use crate::adapters::std::prelude::*;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, RwLock};

use crate::Instant;
use crate::server::{Bandwidth, Config, TokenBucket};

/// Users' buckets beyond this many in a shard trigger a sweep of the idle ones
/// (then twice as many as were left, so active users never make each new one
/// sweep).
const SWEEP_AT: usize = 256;
/// Shards of the users' map: a packet locks its user's shard for reading and
/// its user's buckets, never a lock every packet of every user takes.
const SHARDS: usize = 64;

/// Each user's two buckets (to peers, from peers), by the user part of its
/// name: per credential, so with one TURN user for a whole meeting the limit
/// is the meeting's, and one participant may spend it for all.
pub(crate) struct UserMeters {
    shards: Vec<RwLock<Shard>>,
    hasher: RandomState,
}

impl Default for UserMeters {
    fn default() -> Self {
        UserMeters {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

#[derive(Default)]
struct Shard {
    by_user: HashMap<String, Mutex<[TokenBucket; 2]>>,
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
        let i = (self.hasher.hash_one(user) % SHARDS as u64) as usize;
        let Some(shard) = self.shards.get(i) else {
            return true;
        };
        {
            let read = shard.read().unwrap_or_else(|e| e.into_inner());
            if let Some(b) = read.by_user.get(user) {
                let mut b = b.lock().unwrap_or_else(|e| e.into_inner());
                return charge(&mut b, to_peer, rate, now, bytes);
            }
        }
        let mut write = shard.write().unwrap_or_else(|e| e.into_inner());
        let Shard { by_user, sweep_at } = &mut *write;
        if let Some(b) = by_user.get_mut(user) {
            let b = b.get_mut().unwrap_or_else(|e| e.into_inner());
            return charge(b, to_peer, rate, now, bytes);
        }
        if by_user.len() >= (*sweep_at).max(SWEEP_AT) {
            // A bucket idle for as long as its burst takes to refill is full: as
            // good as a new one, so forgetting it changes nothing.
            let idle_ms = u64::from(rate.burst_bytes) * 1000 / u64::from(rate.bytes_per_sec.max(1));
            by_user.retain(|_, b| {
                let b = b.get_mut().unwrap_or_else(|e| e.into_inner());
                b.iter().any(|b| now.millis_since(b.last_used()) <= idle_ms)
            });
            *sweep_at = by_user.len() * 2;
        }
        let mut b = [TokenBucket::new(); 2];
        let ok = charge(&mut b, to_peer, rate, now, bytes);
        by_user.insert(user.to_string(), Mutex::new(b));
        ok
    }

    /// Users with buckets now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).by_user.len())
            .sum()
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
        // Enough users that every shard fills up to its sweep.
        for i in 0..SWEEP_AT * SHARDS {
            m.take(&format!("u{i}"), true, rate, t, 1);
        }
        let before = m.len();
        assert!(before > SWEEP_AT * SHARDS / 2, "{before}");
        // Later, new users make the idle ones go as their shards fill.
        let later = Instant::from_secs(20);
        for i in 0..SWEEP_AT * SHARDS {
            m.take(&format!("v{i}"), true, rate, later, 1);
        }
        assert!(
            m.len() < before + SWEEP_AT * SHARDS,
            "idle buckets forgotten: {}",
            m.len()
        );
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
