//! Status for operators, on the admin port (never 443): `GET /status` answers JSON
//! relay usage (allocations per user, 5-tuples, lifetimes left, bytes and packets
//! relayed each way) and `GET /metrics` answers Prometheus text.
//!
//! Workers publish a snapshot once a second; the admin thread only reads them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use turn_core::Instant;
use turn_core::server::{Allocation, Counters};

use super::shared::Shared;

/// One allocation as the status page shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AllocationStatus {
    pub(crate) username: String,
    pub(crate) transport: &'static str,
    pub(crate) client: String,
    pub(crate) server: String,
    pub(crate) relayed: Vec<String>,
    pub(crate) lifetime_left_secs: u64,
    pub(crate) permissions: usize,
    pub(crate) channels: usize,
    pub(crate) to_peer_packets: u64,
    pub(crate) to_peer_bytes: u64,
    pub(crate) from_peer_packets: u64,
    pub(crate) from_peer_bytes: u64,
}

impl AllocationStatus {
    pub(crate) fn of<const P: usize, const C: usize>(a: &Allocation<P, C>, now: Instant) -> Self {
        let t = a.five_tuple();
        let tr = a.traffic();
        AllocationStatus {
            username: a.username().to_string(),
            transport: t.transport.name(),
            client: t.client.to_string(),
            server: t.server.to_string(),
            relayed: a.relays().map(|r| r.advertised.to_string()).collect(),
            lifetime_left_secs: a.expires().millis_since(now) / 1000,
            permissions: a.permission_count(),
            channels: a.channel_count(),
            to_peer_packets: tr.to_peer_packets,
            to_peer_bytes: tr.to_peer_bytes,
            from_peer_packets: tr.from_peer_packets,
            from_peer_bytes: tr.from_peer_bytes,
        }
    }
}

/// What one worker last published.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkerStatus {
    pub(crate) worker: usize,
    pub(crate) counters: Counters,
    pub(crate) capacity: usize,
    pub(crate) allocations: Vec<AllocationStatus>,
}

impl WorkerStatus {
    pub(crate) fn empty(worker: usize) -> Self {
        WorkerStatus {
            worker,
            ..Default::default()
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
}

#[derive(Serialize)]
struct StatusDoc<'a> {
    realm: &'a str,
    allocations_in_use: usize,
    quota_total: usize,
    workers: Vec<WorkerSummary>,
    users: BTreeMap<&'a str, UserUsage>,
    totals: Totals,
    allocations: Vec<&'a AllocationStatus>,
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

fn totals(ws: &[WorkerStatus]) -> Totals {
    let mut t = Totals::default();
    for w in ws {
        let c = &w.counters;
        t.allocations_created += c.allocations_created;
        t.allocations_ended += c.allocations_ended;
        t.refused += c.refused;
        t.to_peer_packets += c.to_peer_packets;
        t.to_peer_bytes += c.to_peer_bytes;
        t.from_peer_packets += c.from_peer_packets;
        t.from_peer_bytes += c.from_peer_bytes;
        t.peer_dropped += c.peer_dropped;
    }
    t
}

fn users(ws: &[WorkerStatus]) -> BTreeMap<&str, UserUsage> {
    let mut users: BTreeMap<&str, UserUsage> = BTreeMap::new();
    for a in ws.iter().flat_map(|w| &w.allocations) {
        let u = users.entry(a.username.as_str()).or_insert(UserUsage {
            allocations: 0,
            to_peer_bytes: 0,
            from_peer_bytes: 0,
        });
        u.allocations += 1;
        u.to_peer_bytes += a.to_peer_bytes;
        u.from_peer_bytes += a.from_peer_bytes;
    }
    users
}

/// The `/status` JSON document.
pub(crate) fn status_json(shared: &Shared) -> String {
    let ws = shared.status.lock().unwrap_or_else(|e| e.into_inner());
    let doc = StatusDoc {
        realm: &shared.cfg.realm,
        allocations_in_use: ws.iter().map(|w| w.allocations.len()).sum(),
        quota_total: shared.quota.total(),
        workers: ws
            .iter()
            .map(|w| WorkerSummary {
                worker: w.worker,
                allocations: w.allocations.len(),
                capacity: w.capacity,
            })
            .collect(),
        users: users(&ws),
        totals: totals(&ws),
        allocations: ws.iter().flat_map(|w| &w.allocations).collect(),
    };
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// The `/metrics` Prometheus text.
pub(crate) fn metrics_text(shared: &Shared) -> String {
    let ws = shared.status.lock().unwrap_or_else(|e| e.into_inner());
    let t = totals(&ws);
    let in_use: usize = ws.iter().map(|w| w.allocations.len()).sum();
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
        &[(String::new(), shared.quota.total() as u64)],
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
    let per_user: Vec<(String, u64)> = users(&ws)
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
pub(crate) fn serve_admin(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        answer(&mut stream, &shared);
    }
}

fn answer(stream: &mut TcpStream, shared: &Shared) {
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
        "/status" | "/status.json" => {
            respond(stream, "200 OK", "application/json", &status_json(shared))
        }
        "/metrics" => respond(
            stream,
            "200 OK",
            "text/plain; version=0.0.4",
            &metrics_text(shared),
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
