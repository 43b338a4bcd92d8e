//! How the thread handing the relay over stops its workers at a consistent
//! point: it orders a step (pause, commit, run again), wakes every worker, and
//! waits until each has carried it out; a paused worker leaves its parcel
//! (its state image and its sockets) here.

use crate::adapters::std::prelude::*;

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mio::Waker;

/// What the workers are told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Serve (and, from a pause, take the sockets back).
    Run,
    /// Stop reading UDP and accepting connections, and leave a parcel.
    Pause,
    /// Let go of what was handed over; serve stream clients to their end.
    Commit,
}

/// What a paused worker hands over.
#[derive(Debug, Default)]
pub(crate) struct Parcel {
    /// Its shard's state image.
    pub(crate) image: Vec<u8>,
    /// Its listeners (UDP, TCP, TLS), in the order its clients' socket tags
    /// count them.
    pub(crate) udp: Vec<(SocketAddr, OwnedFd)>,
    pub(crate) tcp: Vec<(SocketAddr, OwnedFd)>,
    pub(crate) tls: Vec<(SocketAddr, OwnedFd)>,
    /// The relay sockets of the allocations in the image.
    pub(crate) relays: Vec<(SocketAddr, OwnedFd)>,
    /// The allocations in the image.
    pub(crate) allocations: usize,
}

const IDLE: u8 = 0;
const BUSY: u8 = 1;
const HANDED: u8 = 2;

struct Round {
    step: Step,
    seq: u64,
    done: Vec<u64>,
    parcels: Vec<Option<Result<Parcel, String>>>,
}

/// The steps ordered, and what the workers left.
pub(crate) struct Control {
    /// Idle, handing over, or handed over.
    state: AtomicU8,
    seq: AtomicU64,
    round: Mutex<Round>,
    changed: Condvar,
}

impl Control {
    pub(crate) fn new(workers: usize) -> Control {
        Control {
            state: AtomicU8::new(IDLE),
            seq: AtomicU64::new(0),
            round: Mutex::new(Round {
                step: Step::Run,
                seq: 0,
                done: vec![0; workers],
                parcels: (0..workers).map(|_| None).collect(),
            }),
            changed: Condvar::new(),
        }
    }

    /// Takes the relay for a hand-over: false if one runs or is done.
    pub(crate) fn claim(&self) -> bool {
        self.state
            .compare_exchange(IDLE, BUSY, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Ends a hand-over: done, or back to idle.
    pub(crate) fn release(&self, handed: bool) {
        self.state
            .store(if handed { HANDED } else { IDLE }, Ordering::Release);
    }

    /// Whether the relay has handed over.
    pub(crate) fn handed(&self) -> bool {
        self.state.load(Ordering::Acquire) == HANDED
    }

    /// A worker's look on each pass: the round to act on, if one is new to it.
    pub(crate) fn pending(&self, seen: u64) -> Option<u64> {
        let seq = self.seq.load(Ordering::Acquire);
        (seq != seen).then_some(seq)
    }

    /// A worker carries out the step ordered (`act` returns its parcel when
    /// it paused) and says it did.
    pub(crate) fn act(
        &self,
        worker: usize,
        act: impl FnOnce(Step) -> Option<Result<Parcel, String>>,
    ) {
        let mut round = self.round.lock().unwrap_or_else(|e| e.into_inner());
        let parcel = act(round.step);
        let seq = round.seq;
        if let Some(p) = parcel
            && let Some(slot) = round.parcels.get_mut(worker)
        {
            *slot = Some(p);
        }
        if let Some(d) = round.done.get_mut(worker) {
            *d = seq;
        }
        self.changed.notify_all();
    }

    /// Orders `step`, wakes the workers and waits (at most `within`) until
    /// each carried it out; returns the parcels they left, or false in place
    /// of them when a worker did not answer in time.
    pub(crate) fn order(
        &self,
        step: Step,
        wakers: &[Arc<Waker>],
        within: Duration,
    ) -> Result<Vec<Option<Result<Parcel, String>>>, ()> {
        let mut round = self.round.lock().unwrap_or_else(|e| e.into_inner());
        round.step = step;
        round.seq += 1;
        let seq = round.seq;
        for p in &mut round.parcels {
            *p = None;
        }
        self.seq.store(seq, Ordering::Release);
        for w in wakers {
            let _ = w.wake();
        }
        let deadline = Instant::now() + within;
        while round.done.iter().any(|&d| d != seq) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(());
            }
            round = self
                .changed
                .wait_timeout(round, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(round.parcels.iter_mut().map(Option::take).collect())
    }
}
