//! Who may open a proxied connection: at most so many at once in total and from
//! one source address, with every refusal counted and the refusals logged once
//! per interval: the first at once, then the count since with the next refusal
//! ten seconds or more later (a flood is one line every ten seconds, not one per
//! connection; the exact counts are in [`super::ProxyStats`]).

use crate::runtime::prelude::*;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::warn;

/// How often refusals are summed up in the log.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `max_connections` are open.
    Total,
    /// `max_per_source` are open from its address.
    Source,
}

/// The limits and who holds a place.
#[derive(Debug)]
pub(crate) struct Admission {
    max: AtomicUsize,
    per_source: AtomicUsize,
    /// The prefix an IPv6 source is counted by.
    v6_prefix: AtomicU8,
    open: AtomicUsize,
    sources: Mutex<HashMap<IpAddr, usize>>,
    refused_total: AtomicU64,
    refused_source: AtomicU64,
    window: Mutex<Window>,
}

/// Refusals since the last log line.
#[derive(Debug)]
struct Window {
    since: Instant,
    /// When the last line was written.
    logged: Option<Instant>,
    total: u64,
    source: u64,
    last_source: Option<IpAddr>,
}

/// A connection's place; given back when dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
    /// Whether it holds a place in its source's count.
    counted: bool,
}

impl Admission {
    /// At most `max` connections at once, `per_source` from one address (0: no
    /// per-source limit).
    pub(crate) fn new(max: usize, per_source: usize) -> Arc<Admission> {
        Arc::new(Admission {
            max: AtomicUsize::new(max),
            per_source: AtomicUsize::new(per_source),
            v6_prefix: AtomicU8::new(crate::source::DEFAULT_V6_PREFIX),
            open: AtomicUsize::new(0),
            sources: Mutex::new(HashMap::new()),
            refused_total: AtomicU64::new(0),
            refused_source: AtomicU64::new(0),
            window: Mutex::new(Window {
                since: Instant::now(),
                logged: None,
                total: 0,
                source: 0,
                last_source: None,
            }),
        })
    }

    /// A place for a connection from `ip` at `now`, or why not (counted, and
    /// logged with the others of its interval).
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<Ticket, Refused> {
        let (max, per_source) = self.limits();
        let ip = crate::source::source_key(ip, self.v6_prefix.load(Ordering::Relaxed));
        if self.open.fetch_add(1, Ordering::SeqCst) >= max {
            self.open.fetch_sub(1, Ordering::SeqCst);
            self.refused(Refused::Total, ip, now);
            return Err(Refused::Total);
        }
        if per_source > 0 {
            let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            let n = sources.entry(ip).or_default();
            if *n >= per_source {
                drop(sources);
                self.open.fetch_sub(1, Ordering::SeqCst);
                self.refused(Refused::Source, ip, now);
                return Err(Refused::Source);
            }
            *n += 1;
        }
        Ok(Ticket {
            admission: self.clone(),
            ip,
            counted: per_source > 0,
        })
    }

    /// The limits: in total, and per source (0: none).
    pub(crate) fn limits(&self) -> (usize, usize) {
        (
            self.max.load(Ordering::Relaxed),
            self.per_source.load(Ordering::Relaxed),
        )
    }

    /// New limits (a reload); connections open over them stay. An IPv6
    /// source is its network of `v6_prefix` bits.
    pub(crate) fn set_limits(&self, max: usize, per_source: usize, v6_prefix: u8) {
        self.max.store(max, Ordering::Relaxed);
        self.per_source.store(per_source, Ordering::Relaxed);
        self.v6_prefix.store(v6_prefix, Ordering::Relaxed);
    }

    fn refused(&self, why: Refused, ip: IpAddr, now: Instant) {
        let counter = match why {
            Refused::Total => &self.refused_total,
            Refused::Source => &self.refused_source,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        match why {
            Refused::Total => w.total += 1,
            Refused::Source => {
                w.source += 1;
                w.last_source = Some(ip);
            }
        }
        let (max, per_source) = self.limits();
        // The first refusal at once, then at most one line per interval.
        let first = w.logged.is_none();
        if first || now.saturating_duration_since(w.since) >= LOG_EVERY {
            let secs = now.saturating_duration_since(w.since).as_secs().max(1);
            let n = w.total + w.source;
            let s = if n == 1 { "" } else { "s" };
            let mut line = format!("web proxy: refused {n} connection{s}");
            if !first {
                line.push_str(&format!(" in the last {secs} s"));
            }
            if w.total > 0 {
                line.push_str(&format!(
                    "; {} with {} open (web proxy `max_connections`)",
                    w.total, max
                ));
            }
            if w.source > 0 {
                line.push_str(&format!(
                    "; {} over {} from one address (web proxy `max_per_source`)",
                    w.source, per_source
                ));
                if let Some(ip) = w.last_source {
                    line.push_str(&format!(", the last from {ip}"));
                }
            }
            warn!("{line}");
            *w = Window {
                since: now,
                logged: Some(now),
                total: 0,
                source: 0,
                last_source: None,
            };
        }
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Refusals so far: at the total limit, and at the per-source limit.
    pub(crate) fn refusals(&self) -> (u64, u64) {
        (
            self.refused_total.load(Ordering::Relaxed),
            self.refused_source.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let a = &self.admission;
        if self.counted {
            let mut sources = a.sources.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = sources.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    sources.remove(&self.ip);
                }
            }
        }
        a.open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_refuse_and_places_come_back() {
        let a = Admission::new(3, 2);
        let now = Instant::now();
        let x: IpAddr = "192.0.2.1".parse().unwrap();
        let y: IpAddr = "192.0.2.2".parse().unwrap();
        let t1 = a.admit(x, now).unwrap();
        let _t2 = a.admit(x, now).unwrap();
        assert_eq!(a.admit(x, now).unwrap_err(), Refused::Source);
        let _t3 = a.admit(y, now).unwrap();
        assert_eq!(a.admit(y, now).unwrap_err(), Refused::Total);
        assert_eq!(a.open(), 3);
        assert_eq!(a.refusals(), (1, 1));
        drop(t1);
        assert_eq!(a.open(), 2);
        assert!(a.admit(x, now).is_ok());
    }

    #[test]
    fn no_per_source_limit_when_zero() {
        let a = Admission::new(100, 0);
        let x: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..100)
            .map(|_| a.admit(x, Instant::now()).unwrap())
            .collect();
        assert_eq!(a.open(), 100);
        drop(held);
        assert_eq!(a.open(), 0);
    }
}
