//! Usage accounting: the relay's usage records (one per allocation when it
//! ends) appended as JSON lines to `usage_log`, a file logrotate can rotate
//! (it is reopened on SIGHUP, as after `postrotate`), and the heaviest accounts
//! by traffic for `/metrics`, in bounded memory.
//!
//! A thread of its own takes the relay's events, so a slow disk never holds a
//! worker: the relay drops events when its queue is full and counts them
//! (`causeway_events_dropped_total`).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use log::warn;
use turn_core::adapters::std::{RelayEvent, UsageRecord, reason_name};

/// Accounts the heaviest-traffic table keeps (the top ones are exact unless
/// more accounts than this were seen; then each count is at most the smallest
/// one evicted over).
pub(crate) const ACCOUNTS_KEPT: usize = 1024;

/// The heaviest accounts by bytes relayed, both ways, over ended allocations
/// since the start ("space-saving": a full table replaces its lightest entry,
/// which the newcomer inherits the count of, so no heavy account is missed).
#[derive(Debug, Default)]
pub(crate) struct TopAccounts {
    bytes: HashMap<String, u64>,
}

impl TopAccounts {
    /// Counts `bytes` for `account`.
    pub(crate) fn add(&mut self, account: &str, bytes: u64) {
        if let Some(n) = self.bytes.get_mut(account) {
            *n = n.saturating_add(bytes);
            return;
        }
        let mut start = 0;
        if self.bytes.len() >= ACCOUNTS_KEPT
            && let Some((lightest, n)) = self
                .bytes
                .iter()
                .min_by_key(|(_, n)| **n)
                .map(|(a, n)| (a.clone(), *n))
        {
            self.bytes.remove(&lightest);
            start = n;
        }
        self.bytes
            .insert(account.to_string(), start.saturating_add(bytes));
    }

    /// The `n` heaviest, heaviest first (ties by name).
    pub(crate) fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self.bytes.iter().map(|(a, b)| (a.clone(), *b)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

/// One record as a JSON line.
pub(crate) fn json_line(r: &UsageRecord) -> String {
    let ms = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    let t = &r.traffic;
    let line = serde_json::json!({
        "user": r.username.as_str(),
        "account": r.account.as_str(),
        "realm": r.realm,
        "transport": r.tuple.transport.name(),
        "client": r.tuple.client.to_string(),
        "listener": r.tuple.server.to_string(),
        "relayed": r.relayed.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "start_ms": ms(r.started),
        "end_ms": ms(r.ended),
        "to_peer_packets": t.to_peer_packets,
        "to_peer_bytes": t.to_peer_bytes,
        "from_peer_packets": t.from_peer_packets,
        "from_peer_bytes": t.from_peer_bytes,
        "to_peer_over_limit": t.to_peer_dropped,
        "from_peer_over_limit": t.from_peer_dropped,
        "refused": t.refused,
        "peer_refused": t.peer_refused,
        "reason": reason_name(r.reason),
    });
    line.to_string()
}

/// The file records go to, reopened on demand.
#[derive(Debug, Default)]
struct UsageLog {
    path: Option<PathBuf>,
    file: Option<File>,
    reopen: bool,
}

impl UsageLog {
    fn write(&mut self, line: &str) {
        let Some(path) = &self.path else {
            return;
        };
        if self.reopen || self.file.is_none() {
            self.reopen = false;
            self.file = match OpenOptions::new().create(true).append(true).open(path) {
                Ok(f) => Some(f),
                Err(e) => {
                    warn!("usage_log: cannot open {}: {e}", path.display());
                    None
                }
            };
        }
        if let Some(f) = &mut self.file
            && let Err(e) = writeln!(f, "{line}")
        {
            warn!("usage_log: cannot write {}: {e}", path.display());
            self.file = None;
        }
    }
}

/// What the accounting thread shares with the server.
#[derive(Debug, Default)]
pub(crate) struct Accounting {
    top: Mutex<TopAccounts>,
    log: Mutex<UsageLog>,
    stop: AtomicBool,
}

impl Accounting {
    /// Records go to `path` (none: no file) from the next one on.
    pub(crate) fn set_path(&self, path: Option<PathBuf>) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.path != path {
            log.path = path;
            log.file = None;
        }
    }

    /// Reopens the file before the next record (SIGHUP, after a rotation).
    pub(crate) fn reopen(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).reopen = true;
    }

    /// The `n` heaviest accounts.
    pub(crate) fn top(&self, n: usize) -> Vec<(String, u64)> {
        self.top.lock().unwrap_or_else(|e| e.into_inner()).top(n)
    }

    fn record(&self, r: &UsageRecord) {
        let t = &r.traffic;
        self.top.lock().unwrap_or_else(|e| e.into_inner()).add(
            &r.account,
            t.to_peer_bytes.saturating_add(t.from_peer_bytes),
        );
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.path.is_some() {
            log.write(&json_line(r));
        }
    }

    /// Takes the relay's events on a thread of its own until [`Accounting::finish`].
    pub(crate) fn spawn(
        self: &Arc<Self>,
        events: Receiver<RelayEvent>,
    ) -> std::io::Result<JoinHandle<()>> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("causeway-usage".into())
            .spawn(move || {
                loop {
                    match events.recv_timeout(Duration::from_millis(200)) {
                        Ok(RelayEvent::Usage { record, .. }) => me.record(&record),
                        Ok(_) => {}
                        Err(RecvTimeoutError::Timeout) if !me.stop.load(Ordering::Acquire) => {}
                        Err(_) => break,
                    }
                }
                // The relay has stopped: what is queued is all there will be.
                while let Ok(e) = events.try_recv() {
                    if let RelayEvent::Usage { record, .. } = e {
                        me.record(&record);
                    }
                }
                let mut log = me.log.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(f) = &mut log.file {
                    let _ = f.sync_data();
                }
            })
    }

    /// Once the relay has stopped: writes what is left and ends the thread.
    pub(crate) fn finish(&self, thread: JoinHandle<()>) {
        self.stop.store(true, Ordering::Release);
        let _ = thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heaviest_accounts_survive_a_crowd_of_light_ones() {
        let mut t = TopAccounts::default();
        t.add("meeting-a", 5_000_000);
        t.add("meeting-b", 3_000_000);
        for i in 0..10 * ACCOUNTS_KEPT {
            t.add(&format!("one-off-{i}"), 1000);
        }
        t.add("meeting-a", 1_000_000);
        let top = t.top(2);
        assert_eq!(top[0].0, "meeting-a");
        assert!(top[0].1 >= 6_000_000);
        assert_eq!(top[1].0, "meeting-b");
        assert!(t.bytes.len() <= ACCOUNTS_KEPT, "bounded");
    }
}
