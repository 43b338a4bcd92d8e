//! Status for operators, on the admin port (never 443): `GET /status` answers JSON
//! relay usage (allocations per user, 5-tuples, lifetimes left, bytes and packets
//! relayed each way) and `GET /metrics` answers Prometheus text.
//!
//! Both are formatted here, on the admin thread, from the relay's plain-data
//! [`Stats`] (which the workers publish once a second).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use serde::Serialize;
use turn_core::adapters::std::{AllocationStats, Stats, StatsHandle};
use turn_core::server::Counters;

/// One allocation as the status page shows it.
#[derive(Debug, Serialize)]
struct AllocationStatus<'a> {
    worker: usize,
    username: &'a str,
    transport: &'static str,
    client: String,
    server: String,
    relayed: Vec<String>,
    lifetime_left_secs: u64,
    permissions: usize,
    channels: usize,
    to_peer_packets: u64,
    to_peer_bytes: u64,
    from_peer_packets: u64,
    from_peer_bytes: u64,
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
            lifetime_left_secs: a.expires_in.as_secs(),
            permissions: a.permissions,
            channels: a.channels,
            to_peer_packets: a.traffic.to_peer_packets,
            to_peer_bytes: a.traffic.to_peer_bytes,
            from_peer_packets: a.traffic.from_peer_packets,
            from_peer_bytes: a.traffic.from_peer_bytes,
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
    connections: usize,
    relay_to_relay_handed_off: u64,
    client_datagrams: u64,
    client_sends: u64,
}

#[derive(Serialize)]
struct StatusDoc<'a> {
    realm: &'a str,
    allocations_in_use: usize,
    quota_total: usize,
    events_dropped: u64,
    workers: Vec<WorkerSummary>,
    users: BTreeMap<&'a str, UserUsage>,
    totals: Totals,
    allocations: Vec<AllocationStatus<'a>>,
    /// The kernel fast path, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel: Option<Kernel>,
}

/// What the kernel fast path relayed (its packets are in `totals` too).
#[derive(Serialize)]
struct Kernel {
    error: Option<String>,
    attached: Vec<(String, &'static str)>,
    routes: usize,
    to_peer_packets: u64,
    to_peer_bytes: u64,
    from_peer_packets: u64,
    from_peer_bytes: u64,
    left_to_userspace: BTreeMap<&'static str, u64>,
}

#[cfg(feature = "xdp")]
fn kernel(stats: &Stats) -> Option<Kernel> {
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
        ]),
    })
}

#[cfg(not(feature = "xdp"))]
fn kernel(_: &Stats) -> Option<Kernel> {
    None
}

#[derive(Serialize, Default)]
struct Totals {
    allocations_created: u64,
    allocations_ended: u64,
    refused: u64,
    to_peer_packets: u64,
    to_peer_bytes: u64,
    from_peer_packets: u64,
    from_peer_bytes: u64,
    peer_dropped: u64,
}

impl From<Counters> for Totals {
    fn from(c: Counters) -> Totals {
        Totals {
            allocations_created: c.allocations_created,
            allocations_ended: c.allocations_ended,
            refused: c.refused,
            to_peer_packets: c.to_peer_packets,
            to_peer_bytes: c.to_peer_bytes,
            from_peer_packets: c.from_peer_packets,
            from_peer_bytes: c.from_peer_bytes,
            peer_dropped: c.peer_dropped,
        }
    }
}

/// The `/status` JSON document.
pub(crate) fn status_json(stats: &Stats, realm: &str) -> String {
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
                connections: w.connections,
                relay_to_relay_handed_off: w.handed_off,
                client_datagrams: w.client_datagrams,
                client_sends: w.client_sends,
            })
            .collect(),
        users: stats
            .users()
            .into_iter()
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
        allocations: stats.allocations.iter().map(AllocationStatus::of).collect(),
        kernel: kernel(stats),
    };
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// The `/metrics` Prometheus text.
pub(crate) fn metrics_text(stats: &Stats) -> String {
    let t = stats.totals();
    let in_use = stats.in_use();
    let mut s = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, u64)]| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in lines {
            let _ = writeln!(s, "{name}{labels} {v}");
        }
    };
    metric(
        "causeway_allocations",
        "gauge",
        "Allocations in use.",
        &[(String::new(), in_use as u64)],
    );
    metric(
        "causeway_allocations_capacity",
        "gauge",
        "Allocation quota in total.",
        &[(String::new(), stats.quota_total as u64)],
    );
    metric(
        "causeway_allocations_created_total",
        "counter",
        "Allocations created.",
        &[(String::new(), t.allocations_created)],
    );
    metric(
        "causeway_allocations_ended_total",
        "counter",
        "Allocations ended.",
        &[(String::new(), t.allocations_ended)],
    );
    metric(
        "causeway_refused_total",
        "counter",
        "Requests refused or packets dropped for a reason.",
        &[(String::new(), t.refused)],
    );
    metric(
        "causeway_relayed_packets_total",
        "counter",
        "Packets relayed.",
        &[
            ("{direction=\"to_peer\"}".into(), t.to_peer_packets),
            ("{direction=\"from_peer\"}".into(), t.from_peer_packets),
        ],
    );
    metric(
        "causeway_relayed_bytes_total",
        "counter",
        "Payload bytes relayed.",
        &[
            ("{direction=\"to_peer\"}".into(), t.to_peer_bytes),
            ("{direction=\"from_peer\"}".into(), t.from_peer_bytes),
        ],
    );
    metric(
        "causeway_peer_dropped_total",
        "counter",
        "Peer datagrams dropped (no permission).",
        &[(String::new(), t.peer_dropped)],
    );
    if let Some(k) = kernel(stats) {
        metric(
            "causeway_kernel_relayed_packets_total",
            "counter",
            "Packets relayed by the kernel fast path (also in causeway_relayed_packets_total).",
            &[
                ("{direction=\"to_peer\"}".into(), k.to_peer_packets),
                ("{direction=\"from_peer\"}".into(), k.from_peer_packets),
            ],
        );
        metric(
            "causeway_kernel_relayed_bytes_total",
            "counter",
            "Payload bytes relayed by the kernel fast path.",
            &[
                ("{direction=\"to_peer\"}".into(), k.to_peer_bytes),
                ("{direction=\"from_peer\"}".into(), k.from_peer_bytes),
            ],
        );
        metric(
            "causeway_kernel_passed_total",
            "counter",
            "Routed packets the kernel fast path left to userspace, by reason.",
            &k.left_to_userspace
                .iter()
                .map(|(why, n)| (format!("{{reason=\"{why}\"}}"), *n))
                .collect::<Vec<_>>(),
        );
        metric(
            "causeway_kernel_routes",
            "gauge",
            "Channel routes installed in the kernel fast path.",
            &[(String::new(), k.routes as u64)],
        );
    }
    let per_user: Vec<(String, u64)> = stats
        .users()
        .iter()
        .map(|(u, usage)| {
            (
                format!("{{user=\"{}\"}}", u.replace(['"', '\\', '\n'], "_")),
                usage.allocations as u64,
            )
        })
        .collect();
    metric(
        "causeway_user_allocations",
        "gauge",
        "Allocations in use per user.",
        &per_user,
    );
    s
}

/// Serves the admin interface until the process ends.
pub(crate) fn serve_admin(listener: TcpListener, stats: StatsHandle, realm: String) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        answer(&mut stream, &stats, &realm);
    }
}

fn answer(stream: &mut TcpStream, stats: &StatsHandle, realm: &str) {
    let mut buf = [0u8; 4096];
    let mut len = 0;
    let path = loop {
        match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                if req.method != Some("GET") {
                    let _ = respond(stream, "405 Method Not Allowed", "text/plain", "GET only\n");
                    return;
                }
                break req.path.unwrap_or("/").to_string();
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => {
                let _ = respond(stream, "400 Bad Request", "text/plain", "bad request\n");
                return;
            }
        }
    };
    let _ = match path.as_str() {
        "/status" | "/status.json" => respond(
            stream,
            "200 OK",
            "application/json",
            &status_json(&stats.stats(), realm),
        ),
        "/metrics" => respond(
            stream,
            "200 OK",
            "text/plain; version=0.0.4",
            &metrics_text(&stats.stats()),
        ),
        _ => respond(
            stream,
            "404 Not Found",
            "text/plain",
            "try /status or /metrics\n",
        ),
    };
}

fn respond(stream: &mut TcpStream, status: &str, ctype: &str, body: &str) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
