//! `GET /metrics`: Prometheus text, after its conventions: base units in the
//! names (`_bytes`), `_total` on counters, label sets bounded by the code (a
//! direction, a worker, a reason), and no username label unless asked for
//! (`metrics_per_user`: a time-limited credential is a new username every hour,
//! and each would be a series forever).

use std::fmt::Write as _;

use turn_core::adapters::std::Stats;

/// The exposition text, written one metric family at a time.
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(self.0, "{name}{labels} {v}");
        }
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, v: u64) {
        self.family(name, kind, help, &[(String::new(), v)]);
    }

    fn each_way(&mut self, name: &str, help: &str, to_peer: u64, from_peer: u64) {
        self.family(
            name,
            "counter",
            help,
            &[
                ("{direction=\"to_peer\"}".into(), to_peer),
                ("{direction=\"from_peer\"}".into(), from_peer),
            ],
        );
    }
}

/// A label value, escaped as the text format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The `/metrics` text; `per_user` adds the allocations per username.
pub(crate) fn metrics_text(stats: &Stats, ready: bool, per_user: bool) -> String {
    let t = stats.totals();
    let mut m = Text(String::new());
    m.one(
        "causeway_ready",
        "gauge",
        "1 while new allocations are taken, 0 while draining.",
        u64::from(ready),
    );
    m.one(
        "causeway_allocations",
        "gauge",
        "Allocations in use.",
        stats.in_use() as u64,
    );
    m.one(
        "causeway_allocations_limit",
        "gauge",
        "Allocations allowed in all.",
        stats.quota_total as u64,
    );
    m.one(
        "causeway_allocations_created_total",
        "counter",
        "Allocations created.",
        t.allocations_created,
    );
    m.one(
        "causeway_allocations_ended_total",
        "counter",
        "Allocations ended (expired, released, or their connection closed).",
        t.allocations_ended,
    );
    m.one(
        "causeway_refusals_total",
        "counter",
        "Requests refused with an error response worth acting on (credentials, policy, \
         quotas, capacity, malformed requests); not the routine 401 challenge.",
        t.refused,
    );
    m.one(
        "causeway_auth_challenges_total",
        "counter",
        "Routine rounds of authentication: first 401 challenges and 438 stale nonces.",
        t.challenges,
    );
    m.one(
        "causeway_client_dropped_packets_total",
        "counter",
        "Client packets dropped in silence (no allocation, permission or channel; \
         malformed; over a budget or limit).",
        t.dropped,
    );
    m.family(
        "causeway_refusals_by_reason_total",
        "counter",
        "Every refusal and silent drop of a client packet, by reason.",
        &t.refusals
            .iter()
            .map(|(r, n)| (format!("{{reason=\"{}\"}}", r.name()), n))
            .collect::<Vec<_>>(),
    );
    m.family(
        "causeway_tls_refused_total",
        "counter",
        "TLS openings closed without answering their ClientHello: every TLS thread's queue \
         full, the source over tcp.tls_handshakes_per_sec, or past tcp.handshake_timeout.",
        &[
            (
                "{reason=\"queue_full\"}".into(),
                stats.tls_refused.queue_full,
            ),
            ("{reason=\"over_rate\"}".into(), stats.tls_refused.over_rate),
            ("{reason=\"late\"}".into(), stats.tls_refused.late),
        ],
    );
    m.each_way(
        "causeway_relayed_packets_total",
        "Packets relayed (in userspace and in the kernel).",
        t.to_peer_packets,
        t.from_peer_packets,
    );
    m.each_way(
        "causeway_relayed_bytes_total",
        "Payload bytes relayed (in userspace and in the kernel).",
        t.to_peer_bytes,
        t.from_peer_bytes,
    );
    m.one(
        "causeway_peer_dropped_packets_total",
        "counter",
        "Peer datagrams dropped: no permission, or no allocation.",
        t.peer_dropped,
    );
    m.one(
        "causeway_bandwidth_dropped_packets_total",
        "counter",
        "Packets dropped over an allocation's or a user's bandwidth limit, both ways.",
        t.bandwidth_dropped,
    );
    let per_worker = |f: &dyn Fn(&turn_core::adapters::std::WorkerStats) -> u64| {
        stats
            .workers
            .iter()
            .map(|w| (format!("{{worker=\"{}\"}}", w.worker), f(w)))
            .collect::<Vec<_>>()
    };
    m.family(
        "causeway_worker_allocations",
        "gauge",
        "Allocations each worker's shard holds.",
        &per_worker(&|w| w.allocations as u64),
    );
    m.family(
        "causeway_stream_connections",
        "gauge",
        "TCP and TLS clients each worker serves.",
        &per_worker(&|w| w.connections as u64),
    );
    m.family(
        "causeway_relay_to_relay_handed_off_packets_total",
        "counter",
        "Relay-to-relay datagrams handed between relay sockets without the kernel.",
        &per_worker(&|w| w.handed_off),
    );
    m.family(
        "causeway_client_send_calls_total",
        "counter",
        "System calls that sent datagrams to UDP clients (sendmmsg, GSO).",
        &per_worker(&|w| w.client_sends),
    );
    m.family(
        "causeway_peer_send_calls_total",
        "counter",
        "System calls that sent datagrams to peers from UDP relay sockets (GSO for a client's run).",
        &per_worker(&|w| w.peer_sends),
    );
    m.family(
        "causeway_peer_datagrams_sent_total",
        "counter",
        "Datagrams UDP relay sockets sent to peers.",
        &per_worker(&|w| w.peer_datagrams),
    );
    m.one(
        "causeway_events_dropped_total",
        "counter",
        "Relay events dropped because nobody read them in time.",
        stats.events_dropped,
    );
    if let Some(k) = super::status::kernel(stats) {
        m.each_way(
            "causeway_kernel_relayed_packets_total",
            "Packets relayed by the kernel fast path (also in causeway_relayed_packets_total).",
            k.to_peer_packets,
            k.from_peer_packets,
        );
        m.each_way(
            "causeway_kernel_relayed_bytes_total",
            "Payload bytes relayed by the kernel fast path.",
            k.to_peer_bytes,
            k.from_peer_bytes,
        );
        m.family(
            "causeway_kernel_passed_packets_total",
            "counter",
            "Routed packets the kernel fast path left to userspace, by reason.",
            &k.left_to_userspace
                .iter()
                .map(|(why, n)| (format!("{{reason=\"{why}\"}}"), *n))
                .collect::<Vec<_>>(),
        );
        m.one(
            "causeway_kernel_routes",
            "gauge",
            "Channel routes installed in the kernel fast path.",
            k.routes as u64,
        );
    }
    if per_user {
        let users: Vec<(String, u64)> = stats
            .users()
            .iter()
            .map(|(u, s)| (format!("{{user=\"{}\"}}", label(u)), s.allocations as u64))
            .collect();
        m.family(
            "causeway_user_allocations",
            "gauge",
            "Allocations in use per username (metrics_per_user).",
            &users,
        );
    }
    m.0
}

/// The heaviest accounts by bytes relayed (`metrics_top_accounts` of them):
/// a bounded label set, and an account is the user part of a time-limited
/// credential, the same every hour.
pub(crate) fn accounts_text(top: &[(String, u64)]) -> String {
    let mut m = Text(String::new());
    if top.is_empty() {
        return m.0;
    }
    let samples: Vec<(String, u64)> = top
        .iter()
        .map(|(a, b)| (format!("{{account=\"{}\"}}", label(a)), *b))
        .collect();
    m.family(
        "causeway_account_relayed_bytes_total",
        "counter",
        "Bytes relayed both ways by ended allocations, for the heaviest accounts since \
         the start (metrics_top_accounts).",
        &samples,
    );
    m.0
}

/// The web proxy's families, after the relay's.
pub(crate) fn web_metrics_text(w: &proxy_core::runtime::ProxyStats) -> String {
    let mut m = Text(String::new());
    m.one(
        "causeway_web_connections",
        "gauge",
        "Browser connections the web proxy serves (WebSocket tunnels included).",
        w.connections as u64,
    );
    m.one(
        "causeway_web_queued_bytes",
        "gauge",
        "Bytes the web proxy holds for browsers and web bridges (queues and TLS buffers).",
        w.queued_bytes as u64,
    );
    m.one(
        "causeway_web_memory_budget_bytes",
        "gauge",
        "What the web proxy may hold for browsers and web bridges together (http.memory_budget_mb).",
        w.memory_budget as u64,
    );
    m.one(
        "causeway_web_tunnels",
        "gauge",
        "WebSocket tunnels open.",
        w.tunnels as u64,
    );
    m.one(
        "causeway_web_tunnels_opened_total",
        "counter",
        "WebSocket tunnels opened.",
        w.tunnels_opened,
    );
    m.family(
        "causeway_web_refused_connections_total",
        "counter",
        "Browser connections refused at a limit (http.max_connections, http.max_per_source).",
        &[
            ("{limit=\"max_connections\"}".into(), w.refused_at_limit),
            ("{limit=\"max_per_source\"}".into(), w.refused_per_source),
        ],
    );
    m.one(
        "causeway_web_bridge_connections_total",
        "counter",
        "Connections made to web bridges.",
        w.bridge_connections,
    );
    m.one(
        "causeway_web_bridge_reuses_total",
        "counter",
        "Requests sent on a kept-alive web bridge connection.",
        w.bridge_reuses,
    );
    m.one(
        "causeway_web_bridge_retries_total",
        "counter",
        "Requests (GET, HEAD, OPTIONS without a body) sent again on a new connection after a kept-alive one failed before answering.",
        w.bridge_retries,
    );
    m.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_username_label_unless_asked_and_labels_escaped() {
        let stats = Stats::default();
        let text = metrics_text(&stats, true, false);
        assert!(!text.contains("user="), "{text}");
        assert!(text.contains("causeway_ready 1\n"));
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split_whitespace().nth(2).unwrap();
            if line.ends_with("counter") {
                assert!(name.ends_with("_total"), "{line}");
            }
        }
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let web = web_metrics_text(&proxy_core::runtime::ProxyStats::default());
        assert!(
            web.contains("causeway_web_refused_connections_total{limit=\"max_per_source\"} 0\n")
        );
        for line in web.lines().filter(|l| l.ends_with("counter")) {
            assert!(
                line.split_whitespace().nth(2).unwrap().ends_with("_total"),
                "{line}"
            );
        }
    }
}
