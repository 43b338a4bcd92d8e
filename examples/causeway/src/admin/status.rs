//! `GET /status`: the relay's usage as JSON (allocations per user, 5-tuples,
//! lifetimes left, bytes and packets relayed each way, the workers, the kernel
//! fast path, the web proxy's connections), formatted on the admin thread from the relay's plain-data
//! [`Stats`].

use std::collections::BTreeMap;

use serde::Serialize;
use turn_core::adapters::std::{AllocationStats, Stats};
use turn_core::server::Counters;

use super::listing::{Listing, Summaries};

/// One allocation as the status page shows it.
#[derive(Debug, Serialize)]
struct AllocationStatus<'a> {
    worker: usize,
    username: &'a str,
    transport: &'static str,
    client: String,
    /// The address the client reached (on a wildcard listener, the one of
    /// the interface it came in on).
    server: String,
    relayed: Vec<String>,
    /// Where its relay sockets are bound (the interface; `relayed` is what
    /// static NAT makes of it).
    relayed_local: Vec<String>,
    /// Its first peers: an address for a channel or a relayed address of this
    /// server, an IP alone for a permission of any port.
    peers: Vec<String>,
    peer_count: usize,
    lifetime_left_secs: u64,
    permissions: usize,
    channels: usize,
    to_peer_packets: u64,
    to_peer_bytes: u64,
    from_peer_packets: u64,
    from_peer_bytes: u64,
    to_peer_dropped: u64,
    from_peer_dropped: u64,
}

impl<'a> AllocationStatus<'a> {
    fn of(a: &'a AllocationStats) -> Self {
        AllocationStatus {
            worker: a.worker,
            username: &a.username,
            transport: a.tuple.transport.name(),
            client: a.tuple.client.to_string(),
            server: a.tuple.server.to_string(),
            relayed: a.relayed.iter().map(ToString::to_string).collect(),
            relayed_local: a.relayed_local.iter().map(ToString::to_string).collect(),
            peers: a
                .peers
                .iter()
                .map(|p| match p.port() {
                    0 => p.ip().to_string(),
                    _ => p.to_string(),
                })
                .collect(),
            peer_count: a.peer_count,
            lifetime_left_secs: a.expires_in.as_secs(),
            permissions: a.permissions,
            channels: a.channels,
            to_peer_packets: a.traffic.to_peer_packets,
            to_peer_bytes: a.traffic.to_peer_bytes,
            from_peer_packets: a.traffic.from_peer_packets,
            from_peer_bytes: a.traffic.from_peer_bytes,
            to_peer_dropped: a.traffic.to_peer_dropped,
            from_peer_dropped: a.traffic.from_peer_dropped,
        }
    }
}

#[derive(Serialize)]
struct UserUsage {
    allocations: usize,
    to_peer_bytes: u64,
    from_peer_bytes: u64,
}

#[derive(Serialize)]
struct WorkerSummary {
    worker: usize,
    allocations: usize,
    capacity: usize,
    /// Room its table holds now (it grows with the allocations, up to capacity).
    table_slots: usize,
    connections: usize,
    relay_to_relay_handed_off: u64,
    client_datagrams: u64,
    client_sends: u64,
    peer_datagrams: u64,
    peer_sends: u64,
}

#[derive(Serialize)]
struct StatusDoc<'a> {
    realm: &'a str,
    allocations_in_use: usize,
    quota_total: usize,
    events_dropped: u64,
    workers: Vec<WorkerSummary>,
    /// The [`GROUPS_MAX`](super::listing::GROUPS_MAX) users with the most
    /// allocations (`groups.user.count` says how many there are).
    users: BTreeMap<&'a str, UserUsage>,
    totals: Totals,
    /// Per user, client address and peer, over every allocation, bounded.
    groups: Summaries,
    /// How many allocations the query matched (all, or one user's).
    allocations_matching: usize,
    /// The page of them listed: `?limit=` (default 1000), `?offset=`, heaviest first.
    offset: usize,
    limit: usize,
    allocations: Vec<AllocationStatus<'a>>,
    /// The kernel fast path, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel: Option<Kernel>,
    /// The web proxy, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    web: Option<Web>,
    /// The traversal: each join URL and connector seen at this edge.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    traversal: Vec<Traversal>,
}

/// One join URL and connector at the edge, as the reference shows a tunnel.
#[derive(Serialize)]
struct Traversal {
    join: String,
    connector: String,
    /// `active` (connections ready), `refused` (its last attempt was), or
    /// `connecting` (none ready, none refused since the last registration).
    state: &'static str,
    ready: usize,
    used: u64,
    /// Bytes through its connections toward the web bridge, and back.
    bytes_to_bridge: u64,
    bytes_from_bridge: u64,
    registered_secs_ago: Option<u64>,
    last_refusal: Option<String>,
    refused_secs_ago: Option<u64>,
}

impl Traversal {
    fn of(t: proxy_core::runtime::traversal::TunnelStatus) -> Traversal {
        let ago = |at: std::time::SystemTime| at.elapsed().map_or(0, |d| d.as_secs());
        let refused_last = match (&t.last_refusal, t.last_registered) {
            (Some((_, r)), Some(g)) => *r > g,
            (Some(_), None) => true,
            _ => false,
        };
        Traversal {
            state: if t.idle > 0 {
                "active"
            } else if refused_last {
                "refused"
            } else {
                "connecting"
            },
            join: t.host,
            connector: t.connector,
            ready: t.idle,
            used: t.used,
            bytes_to_bridge: t.bytes_to_bridge,
            bytes_from_bridge: t.bytes_from_bridge,
            registered_secs_ago: t.last_registered.map(ago),
            refused_secs_ago: t.last_refusal.as_ref().map(|(_, at)| ago(*at)),
            last_refusal: t.last_refusal.map(|(why, _)| why),
        }
    }
}

/// The web proxy's connections and what it did.
#[derive(Serialize)]
struct Web {
    connections: usize,
    tunnels: usize,
    tunnels_opened: u64,
    refused_at_max_connections: u64,
    refused_at_max_per_source: u64,
    bridge_connections: u64,
    bridge_reuses: u64,
    bridge_retries: u64,
}

impl From<proxy_core::runtime::ProxyStats> for Web {
    fn from(w: proxy_core::runtime::ProxyStats) -> Web {
        Web {
            connections: w.connections,
            tunnels: w.tunnels,
            tunnels_opened: w.tunnels_opened,
            refused_at_max_connections: w.refused_at_limit,
            refused_at_max_per_source: w.refused_per_source,
            bridge_connections: w.bridge_connections,
            bridge_reuses: w.bridge_reuses,
            bridge_retries: w.bridge_retries,
        }
    }
}

/// What the kernel fast path relayed (its packets are in `totals` too).
#[derive(Serialize)]
pub(super) struct Kernel {
    pub(super) error: Option<String>,
    pub(super) attached: Vec<(String, &'static str)>,
    pub(super) routes: usize,
    pub(super) to_peer_packets: u64,
    pub(super) to_peer_bytes: u64,
    pub(super) from_peer_packets: u64,
    pub(super) from_peer_bytes: u64,
    pub(super) left_to_userspace: BTreeMap<&'static str, u64>,
}

#[cfg(feature = "xdp")]
pub(super) fn kernel(stats: &Stats) -> Option<Kernel> {
    stats.kernel.as_ref().map(|k| Kernel {
        error: k.error.clone(),
        attached: k.attached.clone(),
        routes: k.routes,
        to_peer_packets: k.to_peer_packets,
        to_peer_bytes: k.to_peer_bytes,
        from_peer_packets: k.from_peer_packets,
        from_peer_bytes: k.from_peer_bytes,
        left_to_userspace: BTreeMap::from([
            ("expired", k.expired),
            ("bad_length", k.bad_length),
            ("no_way_back", k.no_fib),
            ("no_checksum", k.no_checksum),
            ("not_learned", k.not_learned),
        ]),
    })
}

#[cfg(not(feature = "xdp"))]
pub(super) fn kernel(_: &Stats) -> Option<Kernel> {
    None
}

#[derive(Serialize, Default)]
struct Totals {
    allocations_created: u64,
    allocations_ended: u64,
    /// Refusals an operator acts on.
    refused: u64,
    /// Routine 401 challenges and 438 stale nonces.
    auth_challenges: u64,
    /// Client packets dropped in silence.
    client_dropped: u64,
    /// Every refusal and drop by reason (only the reasons seen).
    refusals_by_reason: BTreeMap<&'static str, u64>,
    to_peer_packets: u64,
    to_peer_bytes: u64,
    from_peer_packets: u64,
    from_peer_bytes: u64,
    peer_dropped: u64,
    bandwidth_dropped: u64,
}

impl From<Counters> for Totals {
    fn from(c: Counters) -> Totals {
        Totals {
            allocations_created: c.allocations_created,
            allocations_ended: c.allocations_ended,
            refused: c.refused,
            auth_challenges: c.challenges,
            client_dropped: c.dropped,
            refusals_by_reason: c
                .refusals
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(r, n)| (r.name(), n))
                .collect(),
            to_peer_packets: c.to_peer_packets,
            to_peer_bytes: c.to_peer_bytes,
            from_peer_packets: c.from_peer_packets,
            from_peer_bytes: c.from_peer_bytes,
            peer_dropped: c.peer_dropped,
            bandwidth_dropped: c.bandwidth_dropped,
        }
    }
}

/// The `/status` JSON document.
pub(crate) fn status_json(
    stats: &Stats,
    realm: &str,
    web: Option<proxy_core::runtime::ProxyStats>,
    listing: &Listing,
) -> String {
    let groups = Summaries::of(&stats.allocations);
    let (page, allocations_matching) = listing.select(&stats.allocations);
    let doc = StatusDoc {
        realm,
        allocations_in_use: stats.in_use(),
        quota_total: stats.quota_total,
        events_dropped: stats.events_dropped,
        workers: stats
            .workers
            .iter()
            .map(|w| WorkerSummary {
                worker: w.worker,
                allocations: w.allocations,
                capacity: w.capacity,
                table_slots: w.slots,
                connections: w.connections,
                relay_to_relay_handed_off: w.handed_off,
                client_datagrams: w.client_datagrams,
                client_sends: w.client_sends,
                peer_datagrams: w.peer_datagrams,
                peer_sends: w.peer_sends,
            })
            .collect(),
        users: stats
            .users()
            .into_iter()
            .filter(|(u, _)| groups.user.top.iter().any(|g| g.name == *u))
            .map(|(u, s)| {
                (
                    u,
                    UserUsage {
                        allocations: s.allocations,
                        to_peer_bytes: s.traffic.to_peer_bytes,
                        from_peer_bytes: s.traffic.from_peer_bytes,
                    },
                )
            })
            .collect(),
        totals: stats.totals().into(),
        groups,
        allocations_matching,
        offset: listing.offset,
        limit: listing.limit,
        allocations: page.into_iter().map(AllocationStatus::of).collect(),
        kernel: kernel(stats),
        web: web.map(Web::from),
        traversal: crate::traversal::pool()
            .status()
            .into_iter()
            .map(Traversal::of)
            .collect(),
    };
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
