//! Usage records end to end: `causeway serve --usage-log FILE` relays coturn's
//! `turnutils_uclient` over TCP (its allocations end when it exits), the JSON
//! lines of each run sum to what uclient sent and got back, a SIGHUP after the
//! file is moved away (as logrotate does) starts a new one, and `/metrics`
//! names the heaviest account: the user of a time-limited credential.

mod common;

use std::path::Path;
use std::process::Command;

use common::tools::{PEER_IP, Peer, totals};
use common::wait::{self, PATIENCE};
use common::{Server, coturn_tool, run_with_timeout};

/// Runs uclient over TCP (`extra` flags added); what it sent and got back.
fn uclient(port: &str, peer_port: &str, extra: &[&str]) -> (u64, u64) {
    let mut cmd = Command::new(coturn_tool("turnutils_uclient"));
    cmd.args(["-t", "-u", "alice"]).args(extra).args([
        "-e",
        PEER_IP,
        "-r",
        peer_port,
        "-p",
        port,
        "-n",
        "30",
        "-m",
        "2",
        "-l",
        "160",
        "127.0.0.1",
    ]);
    let (_, out) = run_with_timeout(&mut cmd, 2 * PATIENCE);
    match totals(&out) {
        Some((sent, received, 0)) if sent > 0 && sent == received => (sent, received),
        t => panic!("uclient: {t:?}\n{out}"),
    }
}

/// The records in `file` once every allocation has ended and been written:
/// none in use, and as many lines in `file` (and `before`) as allocations the
/// server has ended. (uclient's probe and RTCP allocations end as it exits,
/// with no packets: waiting for the packets alone could read too early.)
fn records(server: &Server, file: &Path, before: usize) -> Vec<serde_json::Value> {
    let what = format!("every record written to {}", file.display());
    wait::until(&what, PATIENCE, || {
        let metrics = server.admin("GET", "/metrics");
        let metric = |name: &str| -> u64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or(u64::MAX)
        };
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        let (in_use, ended) = (
            metric("causeway_allocations"),
            metric("causeway_allocations_ended_total"),
        );
        if in_use == 0 && ended == (before + lines.len()) as u64 {
            Ok(lines)
        } else {
            Err(format!(
                "{} records, {in_use} allocations in use, {ended} ended",
                lines.len()
            ))
        }
    })
}

fn sum(records: &[serde_json::Value], key: &str) -> u64 {
    records.iter().map(|r| r[key].as_u64().unwrap()).sum()
}

#[test]
fn records_sum_to_what_uclient_relayed_and_follow_a_rotation() {
    let dir = causeway_testkit::bridge::TempDir::new("usage");
    let file = dir.0.join("usage.jsonl");
    let peer = Peer::start();
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--user",
        "alice:wonderland",
        "--shared-secret",
        "usage-secret-for-this-test",
        "--allow-peer",
        "127.0.0.2/32",
        "--usage-log",
        file.to_str().unwrap(),
    ]);
    let port = server.addr().port().to_string();
    let peer_port = peer.1.to_string();

    // Two clients (and uclient's first probe): a record each.
    let (sent, received) = uclient(&port, &peer_port, &["-w", "wonderland"]);
    let first = records(&server, &file, 0);
    assert!(first.len() >= 2, "{first:#?}");
    assert_eq!(sum(&first, "to_peer_packets"), sent, "{first:#?}");
    assert_eq!(sum(&first, "from_peer_packets"), received, "{first:#?}");
    assert_eq!(sum(&first, "to_peer_bytes"), 160 * sent);
    assert_eq!(sum(&first, "from_peer_bytes"), 160 * received);
    for r in &first {
        assert_eq!(r["user"], "alice");
        assert_eq!(r["transport"], "tcp");
        assert!(
            ["connection_closed", "released"].contains(&r["reason"].as_str().unwrap()),
            "{r}"
        );
        assert_eq!(r["listener"], format!("127.0.0.1:{port}"));
        assert!(r["relayed"][0].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(r["end_ms"].as_u64() >= r["start_ms"].as_u64());
    }

    // logrotate: the file is moved away, then SIGHUP.
    let rotated = dir.0.join("usage.jsonl.1");
    std::fs::rename(&file, &rotated).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    server.wait_log("SIGHUP: configuration reloaded");
    let (sent, received) = uclient(&port, &peer_port, &["-W", "usage-secret-for-this-test"]);
    let second = records(&server, &file, first.len());
    assert_eq!(sum(&second, "to_peer_packets"), sent, "{second:#?}");
    assert_eq!(sum(&second, "from_peer_packets"), received, "{second:#?}");
    for r in &second {
        // A time-limited credential: `expiry:alice`, counted for alice.
        assert!(r["user"].as_str().unwrap().ends_with(":alice"), "{r}");
        assert_eq!(r["account"], "alice");
    }
    assert_eq!(
        std::fs::read_to_string(&rotated).unwrap().lines().count(),
        first.len(),
        "the rotated file untouched"
    );

    let metrics = server.admin("GET", "/metrics");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("causeway_account_relayed_bytes_total{account=\"alice\"}"))
        .unwrap_or_else(|| panic!("{metrics}"));
    let bytes: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(
        bytes,
        sum(&first, "to_peer_bytes")
            + sum(&first, "from_peer_bytes")
            + sum(&second, "to_peer_bytes")
            + sum(&second, "from_peer_bytes")
    );
}
