//! Usage records: one per allocation when it ends, for accounting (who used
//! how much, for billing and capacity): the user and realm, the client's
//! 5-tuple, the relayed addresses, when it started and ended, what it relayed
//! each way (what the kernel fast path relayed for it included), what was
//! refused, and why it ended. Logged as one line, and sent as
//! [`RelayEvent::Usage`](super::RelayEvent::Usage).

use crate::adapters::std::prelude::*;

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use stun_core::escape::Escaped;

use crate::FiveTuple;
use crate::server::quota_user;
use crate::server::{Config, EndReason, Event, Traffic};

use super::clock::Clock;
use super::stats::Username;

/// One ended allocation's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsageRecord {
    /// The user (as the client sent it; a time-limited credential's name
    /// includes its expiry).
    pub username: Username,
    /// Who the usage counts for: the username, or for a time-limited credential
    /// (`expiry:user`) its user part, as quotas count it (one meeting's
    /// credential is a new username every hour, the same account).
    pub account: Username,
    /// The realm.
    pub realm: String,
    /// The client's 5-tuple: its address, the listener it reached, the
    /// transport.
    pub tuple: FiveTuple,
    /// The relayed addresses advertised to it (IPv4 first).
    pub relayed: Vec<SocketAddr>,
    /// When it was created (wall clock).
    pub started: SystemTime,
    /// When it ended (wall clock).
    pub ended: SystemTime,
    /// What it relayed each way, kernel included, and what was refused.
    pub traffic: Traffic,
    /// Why it ended.
    pub reason: EndReason,
}

impl UsageRecord {
    /// The record of an allocation that ended now, from the core's
    /// [`Event::Ended`] (`None` for any other event).
    pub(crate) fn of(clock: &Clock, cfg: &Config, event: &Event) -> Option<UsageRecord> {
        let Event::Ended {
            tuple,
            username,
            reason,
            traffic,
            started,
            relayed,
        } = event
        else {
            return None;
        };
        let ended = SystemTime::now();
        let lived = clock.now().as_millis().saturating_sub(started.as_millis());
        Some(UsageRecord {
            username: username.clone(),
            account: Username::try_from(quota_user(cfg, username)).unwrap_or_default(),
            realm: cfg.realm.to_string(),
            tuple: *tuple,
            relayed: relayed.iter().flatten().copied().collect(),
            started: ended
                .checked_sub(Duration::from_millis(lived))
                .unwrap_or(ended),
            ended,
            traffic: *traffic,
            reason: *reason,
        })
    }

    /// How long the allocation lived.
    pub fn duration(&self) -> Duration {
        self.ended
            .duration_since(self.started)
            .unwrap_or(Duration::ZERO)
    }
}

/// Why it ended, as a log line and a record name it: `expired`, `released`,
/// `connection_closed`, `stopped`.
pub fn reason_name(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Expired => "expired",
        EndReason::Released => "released",
        EndReason::ConnectionClosed => "connection_closed",
        EndReason::Stopped => "stopped",
    }
}

fn reason_text(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Expired => "expired",
        EndReason::Released => "released by the client",
        EndReason::ConnectionClosed => "connection closed",
        EndReason::Stopped => "cut: the server stopped",
    }
}

/// The log line: `udp 198.51.100.7:4000: allocation of `alice` ended
/// (expired) after 600 s: relayed 10 packets / 1600 bytes to peers, 10 / 1600
/// from peers; 0 refused, 0 peer datagrams refused; relayed at
/// 203.0.113.5:24001`.
impl fmt::Display for UsageRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.traffic;
        write!(
            f,
            "{} {}: allocation of `{}` ended ({}) after {} s: relayed {} packets / {} bytes to \
             peers, {} / {} from peers; {} refused, {} peer datagrams refused",
            self.tuple.transport.name(),
            self.tuple.client,
            Escaped::new(&self.username),
            reason_text(self.reason),
            self.duration().as_secs(),
            t.to_peer_packets,
            t.to_peer_bytes,
            t.from_peer_packets,
            t.from_peer_bytes,
            t.refused,
            t.peer_refused,
        )?;
        if t.to_peer_dropped + t.from_peer_dropped > 0 {
            write!(
                f,
                ", {} / {} over the bandwidth limit",
                t.to_peer_dropped, t.from_peer_dropped
            )?;
        }
        for (i, r) in self.relayed.iter().enumerate() {
            let sep = if i == 0 { "; relayed at " } else { " and " };
            write!(f, "{sep}{r}")?;
        }
        Ok(())
    }
}
