//! One of the connector's event loops: its share of each join URL's pool,
//! kept ready at the edge and grown with demand, and every tunnel in use that
//! came from it, all on one thread (mio, edge-triggered).
//!
//! The pool it keeps per join URL is its share of `pool` plus, while browsers
//! arrive, as many as were used in the last second (at most [`SURGE`] times
//! its share more): a burst of browsers is met by connections opened in
//! parallel, not one after another. A surplus (demand over) says `BYE` a
//! second later. Deadlines, the stop and the demand window are checked every
//! [`TICK`].

use crate::runtime::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::{Events, Poll, Token, Waker};

use super::tunnel::{Cx, Kind, Outcome, Stage, Tunnel};
use super::{Failed, Shared, Site};
use crate::runtime::traversal::pipe::SCRATCH;
use crate::runtime::traversal::{BYE_GRACE, HANDSHAKE_TIMEOUT, backoff};

/// How often deadlines are checked.
const TICK: Duration = Duration::from_millis(250);
/// How much a loop's pool may grow with demand, in multiples of its share.
const SURGE: usize = 3;
/// Connections a loop opens at once, at most (the edge handles a bounded
/// number of registrations at a time).
const OPENING_MAX: usize = 64;
/// The longest quiet spell of a tunnel in use (the edge's own timers end idle
/// browsers sooner; this only frees a tunnel both ends forgot).
const IDLE: Duration = Duration::from_secs(3600);
/// The loop's waker.
const WAKE: Token = Token(usize::MAX);

/// One join URL's pool in this loop.
struct Quota {
    /// Connections kept ready however quiet (this loop's share of `pool`).
    share: usize,
    opening: usize,
    ready: usize,
    /// Connections used in this second and in the one before.
    used_now: usize,
    used_before: usize,
    /// Failed attempts in a row, and when the next may start.
    attempt: u32,
    retry_at: Instant,
    /// The edge address to try next (an index, wrapping).
    edge: usize,
}

impl Quota {
    /// `share` connections kept, nothing open yet.
    fn new(share: usize, now: Instant) -> Quota {
        Quota {
            share,
            opening: 0,
            ready: 0,
            used_now: 0,
            used_before: 0,
            attempt: 0,
            retry_at: now,
            edge: 0,
        }
    }

    /// Connections to keep ready or opening now.
    fn want(&self) -> usize {
        let demand = self.used_now.max(self.used_before);
        self.share + demand.min(SURGE * self.share)
    }
}

/// The loop.
pub(super) struct Worker {
    poll: Poll,
    shared: Arc<Shared>,
    sites: Vec<Arc<Site>>,
    quotas: Vec<Quota>,
    tunnels: Vec<Option<Box<Tunnel>>>,
    free: Vec<usize>,
    /// The resolver answered (its waker rang).
    answered: Arc<AtomicBool>,
    scratch: Box<[u8]>,
    stopping: bool,
}

impl Worker {
    /// A loop keeping `shares[i]` connections of `sites[i]` ready.
    pub(super) fn new(
        shared: Arc<Shared>,
        sites: Vec<Arc<Site>>,
        shares: &[usize],
    ) -> std::io::Result<Worker> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let answered = Arc::new(AtomicBool::new(false));
        shared
            .resolver
            .wake_on_answer(waker.clone(), answered.clone());
        shared
            .wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(waker);
        let now = Instant::now();
        let quotas = shares.iter().map(|&share| Quota::new(share, now)).collect();
        Ok(Worker {
            poll,
            shared,
            sites,
            quotas,
            tunnels: Vec::new(),
            free: Vec::new(),
            answered,
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            stopping: false,
        })
    }

    /// Runs until the connector stops and its last connection has closed.
    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now();
        let mut next_second = Instant::now() + Duration::from_secs(1);
        loop {
            let now = Instant::now();
            if !self.stopping && self.shared.stop.load(Ordering::SeqCst) {
                self.stop(now, true);
            } else if !self.stopping && self.shared.retiring.load(Ordering::SeqCst) {
                self.stop(now, false);
            }
            if now >= next_tick {
                next_tick = now + TICK;
                self.deadlines(now);
                if now >= next_second {
                    next_second = now + Duration::from_secs(1);
                    self.second(now);
                }
            }
            if self.stopping && self.tunnels.iter().all(Option::is_none) {
                return;
            }
            if !self.stopping {
                self.refill(now);
            }
            if let Err(e) = self.poll.poll(&mut events, Some(TICK))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                warn!("connector: event loop failed: {e}");
                return;
            }
            for ev in events.iter() {
                let token = ev.token();
                if token == WAKE {
                    continue;
                }
                let index = token.0 / 2;
                if let Some(Some(t)) = self.tunnels.get_mut(index) {
                    t.readable(token.0 % 2 == 1);
                }
                self.step(index, Instant::now());
            }
            if self.answered.swap(false, Ordering::SeqCst) {
                let now = Instant::now();
                for index in 0..self.tunnels.len() {
                    let waiting = self
                        .tunnels
                        .get(index)
                        .and_then(Option::as_ref)
                        .is_some_and(|t| {
                            matches!(
                                t.stage,
                                Stage::Resolving { .. } | Stage::Bridging { dial: None, .. }
                            )
                        });
                    if waiting {
                        self.step(index, now);
                    }
                }
            }
        }
    }

    /// Opens connections until each join URL has what it wants.
    fn refill(&mut self, now: Instant) {
        for site in 0..self.quotas.len() {
            while let Some(q) = self.quotas.get_mut(site) {
                let short = q.opening + q.ready < q.want();
                if !short || q.opening >= OPENING_MAX || now < q.retry_at {
                    break;
                }
                q.opening += 1;
                let edge = q.edge;
                let t = Box::new(Tunnel::new(site, edge, now));
                let index = match self.free.pop() {
                    Some(i) => {
                        if let Some(slot) = self.tunnels.get_mut(i) {
                            *slot = Some(t);
                        }
                        i
                    }
                    None => {
                        self.tunnels.push(Some(t));
                        self.tunnels.len() - 1
                    }
                };
                self.step(index, now);
            }
        }
    }

    /// Steps connection `index` and keeps the books.
    fn step(&mut self, index: usize, now: Instant) {
        let Some(mut t) = self.tunnels.get_mut(index).and_then(Option::take) else {
            return;
        };
        let Some(site) = self.sites.get(t.site).cloned() else {
            self.free.push(index);
            return;
        };
        let before = t.stage.kind();
        let outcome = {
            let mut cx = Cx {
                registry: self.poll.registry(),
                shared: &self.shared,
                resolver: &self.shared.resolver,
                scratch: &mut self.scratch,
                now,
            };
            t.step(&mut cx, index, &site)
        };
        self.settle(t, index, before, outcome, now);
    }

    /// Books the move of connection `t` (`index`) from a stage of kind
    /// `before`, reports `outcome`, and keeps it unless it is gone.
    fn settle(
        &mut self,
        t: Box<Tunnel>,
        index: usize,
        before: Kind,
        outcome: Outcome,
        now: Instant,
    ) {
        let after = t.stage.kind();
        let (Some(q), Some(site)) = (self.quotas.get_mut(t.site), self.sites.get(t.site)) else {
            return;
        };
        if before != after {
            match before {
                Kind::Opening => q.opening = q.opening.saturating_sub(1),
                Kind::Ready => {
                    q.ready = q.ready.saturating_sub(1);
                    site.ready.fetch_sub(1, Ordering::Relaxed);
                }
                Kind::Active => {
                    site.active.fetch_sub(1, Ordering::Relaxed);
                }
                Kind::Leaving | Kind::Gone => {}
            }
            match after {
                Kind::Opening => q.opening += 1,
                Kind::Ready => {
                    q.ready += 1;
                    site.ready.fetch_add(1, Ordering::Relaxed);
                }
                Kind::Active => {
                    site.active.fetch_add(1, Ordering::Relaxed);
                    q.used_now += 1;
                    site.used.fetch_add(1, Ordering::Relaxed);
                }
                Kind::Leaving | Kind::Gone => {}
            }
            if before == Kind::Opening && after != Kind::Gone {
                q.attempt = 0;
            }
        }
        match outcome {
            Outcome::Quiet => {}
            Outcome::OpenFailed(f, edge) => {
                q.retry_at = now + backoff(q.attempt);
                q.attempt = q.attempt.saturating_add(1);
                q.edge = edge.wrapping_add(1);
                self.open_failed(t.site, edge, &f);
            }
            Outcome::Ended(Ok((up, down))) => info!(
                "connector: join URL `{}`: tunnel ended ({up} bytes to the web bridge, {down} back)",
                site.host
            ),
            Outcome::Ended(Err(e)) => warn!("connector: join URL `{}`: {e}", site.host),
        }
        if after == Kind::Gone {
            self.free.push(index);
        } else if let Some(slot) = self.tunnels.get_mut(index) {
            *slot = Some(t);
        }
    }

    /// Logs a failure to open (once while it repeats) and keeps it for status.
    fn open_failed(&self, site: usize, edge: usize, f: &Failed) {
        let Some(site) = self.sites.get(site) else {
            return;
        };
        let why = format!("the edge {}: {f}", self.shared.edge(edge));
        let mut last = site.last_error.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref().is_none_or(|(w, _)| *w != why) {
            warn!("connector: join URL `{}`: {why}", site.host);
        }
        *last = Some((why, std::time::SystemTime::now()));
    }

    /// Applies `f` to each connection, booking what it changed.
    fn each(&mut self, mut f: impl FnMut(&mut Tunnel, &Quota) -> Option<Outcome>, now: Instant) {
        for index in 0..self.tunnels.len() {
            let Some(mut t) = self.tunnels.get_mut(index).and_then(Option::take) else {
                continue;
            };
            let before = t.stage.kind();
            let Some(q) = self.quotas.get(t.site) else {
                continue;
            };
            match f(&mut t, q) {
                Some(outcome) => self.settle(t, index, before, outcome, now),
                None => {
                    if let Some(slot) = self.tunnels.get_mut(index) {
                        *slot = Some(t);
                    }
                }
            }
        }
    }

    /// Closes what ran out of time.
    fn deadlines(&mut self, now: Instant) {
        self.each(
            |t, _| {
                let age = now.saturating_duration_since(t.since);
                let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
                match &t.stage {
                    Stage::Resolving { edge }
                    | Stage::Opening { edge, .. }
                    | Stage::Registering { edge, .. }
                        if age >= HANDSHAKE_TIMEOUT =>
                    {
                        let edge = *edge;
                        let f = match t.stage {
                            Stage::Registering { .. } => Failed::Tls(timed_out()),
                            _ => Failed::Unreachable(timed_out()),
                        };
                        t.close();
                        Some(Outcome::OpenFailed(f, edge))
                    }
                    Stage::Bridging { .. } if age >= HANDSHAKE_TIMEOUT => {
                        t.close();
                        Some(Outcome::Ended(Err("web bridge: timed out".to_string())))
                    }
                    Stage::Leaving { .. } if age >= BYE_GRACE => {
                        t.close();
                        Some(Outcome::Quiet)
                    }
                    Stage::Splicing { .. } if age >= IDLE => {
                        t.close();
                        Some(Outcome::Ended(Err("idle for an hour".to_string())))
                    }
                    _ => None,
                }
            },
            now,
        );
    }

    /// Each second: the demand window moves on, and a surplus leaves.
    fn second(&mut self, now: Instant) {
        let mut surplus: Vec<usize> = Vec::with_capacity(self.quotas.len());
        for q in &mut self.quotas {
            q.used_before = q.used_now;
            q.used_now = 0;
            surplus.push(q.ready.saturating_sub(q.want()));
        }
        self.each(
            |t, _| {
                let left = surplus.get_mut(t.site)?;
                if *left == 0 || !matches!(t.stage, Stage::Ready { .. }) {
                    return None;
                }
                *left -= 1;
                t.leave(now);
                Some(Outcome::Quiet)
            },
            now,
        );
    }

    /// The connector stops (`hard`: tunnels in use too) or retires: ready
    /// connections say `BYE`, those opening close.
    fn stop(&mut self, now: Instant, hard: bool) {
        self.stopping = true;
        self.each(
            |t, _| {
                match t.stage.kind() {
                    Kind::Ready => t.leave(now),
                    Kind::Leaving => return None,
                    Kind::Active if !hard => return None,
                    _ => t.close(),
                }
                Some(Outcome::Quiet)
            },
            now,
        );
    }
}

/// Each loop's share of `pool` connections: as even as can be.
pub(super) fn shares(pool: usize, loops: usize) -> Vec<usize> {
    let loops = loops.max(1);
    (0..loops)
        .map(|i| pool / loops + usize::from(i < pool % loops))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_is_shared_evenly_and_grows_with_demand_up_to_the_surge() {
        assert_eq!(shares(32, 2), [16, 16]);
        assert_eq!(shares(5, 2), [3, 2]);
        assert_eq!(shares(1, 3), [1, 0, 0]);
        let now = Instant::now();
        let mut q = Quota::new(8, now);
        assert_eq!(q.want(), 8);
        q.used_before = 5;
        assert_eq!(q.want(), 13);
        q.used_now = 1000;
        assert_eq!(q.want(), 8 + SURGE * 8);
    }
}
