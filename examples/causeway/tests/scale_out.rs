//! Scale-out by simulation (root: network namespaces): three `causeway serve`
//! nodes, each in a namespace of its own joined to this one by a veth pair and
//! reached through a forwarder that delays each datagram (RTT 300, 20 and
//! 100 ms: far enough apart that a busy machine's jitter cannot reorder them,
//! and below the probes' first retransmission at 500 ms; the delay is done in
//! userspace), sharing a secret. `causeway
//! select` (turn-core's selector) picks the fastest and allocates there;
//! draining that node sends the next allocation to its alternate by 300;
//! with the node gone, the selector fails over to the next fastest; and the
//! Prometheus server scraping all three sees the allocations move.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Output;
use common::bridge::TempDir;
use common::delay::delayed;
use common::prometheus::Prometheus;
use common::tools::run_with_timeout;
use common::tools::sh;
use common::wait::PATIENCE;

/// One-way delay per node: node 2 is the fastest, then node 3, then node 1.
const DELAY_MS: [u32; 3] = [150, 10, 50];
/// How long `select` waits for a probe's answer: many times the slowest RTT.
const PROBE_TIMEOUT: &str = "10";

/// The namespaces (and with them their veth pairs), deleted when dropped.
struct Topology {
    names: Vec<String>,
    subnet: u32,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Topology {
    fn new() -> Topology {
        assert!(
            Command::new("id")
                .arg("-u")
                .output()
                .is_ok_and(|o| o.stdout == b"0\n"),
            "the scale-out simulation needs root (namespaces, veth, netem)"
        );
        let subnet = 100 + std::process::id() % 50;
        let mut t = Topology {
            names: Vec::new(),
            subnet,
        };
        for k in 0..DELAY_MS.len() {
            let k = k + 1;
            let ns = format!("cwso{}n{k}", t.subnet);
            let (here, there) = (
                format!("cwso{}h{k}", t.subnet),
                format!("cwso{}t{k}", t.subnet),
            );
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            let _ = Command::new("ip").args(["link", "del", &here]).output();
            sh(&["ip", "netns", "add", &ns]);
            t.names.push(ns.clone());
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            sh(&[
                "ip", "link", "add", &here, "type", "veth", "peer", "name", &there, "netns", &ns,
            ]);
            sh(&[
                "ip",
                "addr",
                "add",
                &format!("{}/24", t.host(k)),
                "dev",
                &here,
            ]);
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", t.node(k)),
                "dev",
                &there,
            ]);
            sh(&["ip", "link", "set", &here, "up"]);
            sh(&["ip", "-n", &ns, "link", "set", &there, "up"]);
        }
        t
    }

    fn host(&self, k: usize) -> String {
        format!("10.{}.{k}.1", self.subnet)
    }

    fn node(&self, k: usize) -> String {
        format!("10.{}.{k}.2", self.subnet)
    }
}

/// A node: `causeway serve` in namespace `k`, ready when this returns; its
/// output kept for a failure message.
struct Node(Child, Output);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            eprintln!("--- a node's output ---\n{}", self.1.tail(40));
        }
    }
}

impl Node {
    fn start(t: &Topology, k: usize, alternate: Option<String>) -> Node {
        let node = t.node(k);
        let mut args = vec![
            "netns".to_string(),
            "exec".into(),
            t.names[k - 1].clone(),
            env!("CARGO_BIN_EXE_causeway").into(),
            "serve".into(),
            "--listen".into(),
            format!("{node}:3478"),
            "--admin".into(),
            format!("{node}:4455"),
            "--shared-secret".into(),
            "scale-secret".into(),
            "--allow-peer".into(),
            format!("10.{}.0.0/16", t.subnet),
        ];
        if let Some(a) = alternate {
            args.extend(["--alternate-server".into(), a]);
        }
        let mut child = Command::new("ip")
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Output::of(&mut child);
        if !out.wait_for("causeway: ready", PATIENCE) {
            panic!("node {k} did not start:\n{}", out.tail(40));
        }
        Node(child, out)
    }

    fn signal(&self, sig: &str) {
        sh(&["kill", sig, &self.0.id().to_string()]);
    }
}

fn select(servers: &std::path::Path, hold: u64) -> (Child, Output) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args([
            "select",
            "--servers",
            servers.to_str().unwrap(),
            "--probe-timeout",
            PROBE_TIMEOUT,
            "--hold",
            &hold.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Output::of(&mut child);
    (child, out)
}

/// Lines a `select` printed once it allocated.
fn until_allocated(out: &Output) -> Vec<String> {
    if out
        .wait_line(PATIENCE, |l| l.starts_with("mapped "))
        .is_none()
    {
        panic!("select did not allocate:\n{}", out.tail(40));
    }
    out.lines()
}

fn rtt(lines: &[String], k: usize) -> u64 {
    let l = lines
        .iter()
        .find(|l| l.starts_with(&format!("server {k} ")))
        .unwrap_or_else(|| panic!("{lines:?}"));
    l.split("rtt ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rtt for server {k}: {l}"))
}

#[test]
fn the_fastest_is_chosen_a_drain_redirects_and_a_lost_node_fails_over() {
    let t = Topology::new();
    let dir = TempDir::new("scale-out");
    let fronts: Vec<SocketAddr> = (1..=3)
        .map(|k| {
            delayed(
                t.host(k).parse().unwrap(),
                format!("{}:3478", t.node(k)).parse().unwrap(),
                Duration::from_millis(u64::from(DELAY_MS[k - 1])),
            )
        })
        .collect();
    let mut list = String::new();
    for f in &fronts {
        list.push_str(&format!(
            "[[server]]\nserver_address = \"{f}\"\ntype = \"udp\"\nusername = \"bridge\"\nshared_secret = \"scale-secret\"\n\n"
        ));
    }
    let servers = dir.write("servers.toml", &list);
    let n1 = Node::start(&t, 1, None);
    let n3 = Node::start(&t, 3, None);
    // Node 2's alternate is the next fastest, node 3.
    let n2 = Node::start(&t, 2, Some(format!("{}:3478", t.node(3))));
    let admins: Vec<String> = (1..=3).map(|k| format!("{}:4455", t.node(k))).collect();
    let prometheus = Prometheus::start(dir.path(), &admins);
    let created = |k: usize| {
        format!(
            "causeway_allocations_created_total{{instance=\"{}\"}}",
            admins[k - 1]
        )
    };

    // The fastest, node 2, is measured so and chosen; the allocation is held.
    let (mut first, first_out) = select(&servers, 600);
    let lines = until_allocated(&first_out);
    let (r1, r2, r3) = (rtt(&lines, 1), rtt(&lines, 2), rtt(&lines, 3));
    assert!(r2 < r3 && r3 < r1, "RTTs {r1} {r2} {r3}: {lines:?}");
    // (A probe the machine was too slow to answer before its retransmission
    // is estimated at half its time: the lower bounds allow for it.)
    assert!(r2 >= 10 && r1 >= 150, "the links' delays: {r1} {r2} {r3}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("chosen   server 2 {}", fronts[1]))),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("redirected")),
        "{lines:?}"
    );
    if let Err(e) = prometheus.wait_for(
        &format!("causeway_allocations{{instance=\"{}\"}}", admins[1]),
        1.0,
        PATIENCE,
    ) {
        panic!("{e}");
    }

    // Drain node 2 (its allocation keeps it running): still the fastest to
    // answer, it sends the next allocation to node 3.
    n2.signal("-TERM");
    if let Err(e) = prometheus.wait_for(
        &format!("causeway_ready{{instance=\"{}\"}}", admins[1]),
        0.0,
        PATIENCE,
    ) {
        panic!("{e}");
    }
    let (ok, out) = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_causeway")).args([
            "select",
            "--servers",
            servers.to_str().unwrap(),
            "--probe-timeout",
            PROBE_TIMEOUT,
        ]),
        2 * PATIENCE,
    );
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("chosen   server 2 {}", fronts[1])),
        "{out}"
    );
    assert!(
        out.contains(&format!("redirected to {}:3478", t.node(3))),
        "{out}"
    );

    // Node 2 gone: its probe fails, and the next fastest, node 3, is chosen.
    n2.signal("-KILL");
    drop(n2);
    let _ = first.kill();
    let _ = first.wait();
    let (ok, out) = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_causeway")).args([
            "select",
            "--servers",
            servers.to_str().unwrap(),
            "--probe-timeout",
            PROBE_TIMEOUT,
        ]),
        2 * PATIENCE,
    );
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("server 2 {} udp: failed: no answer", fronts[1])),
        "{out}"
    );
    assert!(
        out.contains(&format!("chosen   server 3 {}", fronts[2])),
        "{out}"
    );
    assert!(!out.contains("redirected"), "{out}");

    // Prometheus saw the shift: node 2 made one allocation and went down,
    // node 3 took the next two, node 1 (the slowest) none.
    if let Err(e) = prometheus.wait_for(&format!("up{{instance=\"{}\"}}", admins[1]), 0.0, PATIENCE)
    {
        panic!("{e}");
    }
    if let Err(e) = prometheus.wait_for(
        &format!("max_over_time({}[10m])", created(2)),
        1.0,
        PATIENCE,
    ) {
        panic!("{e}");
    }
    if let Err(e) = prometheus.wait_for(&created(3), 2.0, PATIENCE) {
        panic!("{e}");
    }
    if let Err(e) = prometheus.wait_for(&created(1), 0.0, PATIENCE) {
        panic!("{e}");
    }
    drop((n1, n3));
}
