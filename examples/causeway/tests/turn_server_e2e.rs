//! `causeway serve` as a TURN server, end to end with our own client tools: the
//! status page and metrics, a flood of garbage and unauthenticated requests, the
//! troubleshooting walk, and configuration refused at start.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::wait::{self, PATIENCE};
use common::{Output, Server, run_with_timeout};
use stun_core::attributes::RequestedTransport;
use stun_core::{Class, MessageBuilder, MessageType, Method, TransactionId};

fn causeway(args: &[&str]) -> (bool, String) {
    run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_causeway")).args(args),
        2 * PATIENCE,
    )
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn status_page_shows_relay_usage() {
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--user",
        "alice:pw",
        "--realm",
        "TANDBERG",
    ]);
    let addr = server.addr().to_string();
    let mut hold = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args([
            "allocate", "--server", &addr, "--user", "alice:pw", "--hold", "600",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let held = Output::of(&mut hold);
    assert!(
        held.wait_for("relayed  127.0.0.1:", PATIENCE),
        "{}",
        held.tail(20)
    );
    let admin = server.admin_addr();
    let status = server.admin("GET", "/status");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let json = server.wait_status("the held allocation", |s| s["allocations_in_use"] == 1);
    assert_eq!(json["realm"], "TANDBERG");
    assert_eq!(json["allocations_in_use"], 1);
    assert_eq!(json["users"]["alice"]["allocations"], 1);
    let a = &json["allocations"][0];
    assert_eq!(a["username"], "alice");
    assert_eq!(a["transport"], "udp");
    let left = a["lifetime_left_secs"].as_u64().unwrap();
    assert!(
        (500..=600).contains(&left),
        "{left} s of the default 600 s left"
    );
    assert!(a["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    let metrics = common::http_get(&admin, "/metrics");
    assert!(metrics.contains("causeway_allocations 1"), "{metrics}");
    assert!(
        metrics.contains("causeway_allocations_created_total 1"),
        "{metrics}"
    );
    // No username labels unless the operator opts in (metrics_per_user).
    assert!(!metrics.contains("user=\""), "{metrics}");
    assert!(server.admin("GET", "/nope").starts_with("HTTP/1.1 404"));
    let _ = hold.kill();
    let _ = hold.wait();
}

#[test]
fn flood_creates_nothing_and_valid_clients_are_still_served() {
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--user",
        "alice:pw",
    ]);
    let target = server.addr();
    let rss_before = rss_kb(server.child.id());
    let socks: Vec<UdpSocket> = (0..8)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut unauth = vec![0u8; 64];
    let mut b = MessageBuilder::new(
        &mut unauth,
        MessageType::new(Method::ALLOCATE, Class::Request),
        TransactionId::new([1; 12]),
    )
    .unwrap();
    b.add(&RequestedTransport::UDP).unwrap();
    let n = b.finish();
    unauth.truncate(n);
    for i in 0u32..100_000 {
        let sock = &socks[(i % 8) as usize];
        let pkt: Vec<u8> = match i % 4 {
            0 => i.to_be_bytes().repeat(6),
            1 => unauth.clone(),
            2 => vec![0x40, 0x01, 0xff, 0xff, 0, 0],
            _ => {
                let mut p = unauth.clone();
                p[3] = 0xff; // length beyond the datagram
                p
            }
        };
        let _ = sock.send_to(&pkt, target);
        if i % 2000 == 0 {
            // Pacing, not a wait: the flood stays within the sockets' buffers.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let (ok, out) = causeway(&[
        "allocate",
        "--server",
        &target.to_string(),
        "--user",
        "alice:pw",
    ]);
    assert!(ok, "a valid client is still served after the flood: {out}");
    let rss_after = rss_kb(server.child.id());
    assert!(
        rss_after < rss_before + 8 * 1024,
        "memory grew from {rss_before} kB to {rss_after} kB under the flood"
    );
    // Workers publish their counters about once a second.
    let mut metrics = String::new();
    assert!(
        wait::holds(PATIENCE, || {
            metrics = common::http_get(&server.admin_addr(), "/metrics");
            !metrics.contains("causeway_allocations_created_total 0\n")
        }),
        "{metrics}"
    );
    assert!(
        metrics.contains("causeway_allocations_created_total 1\n"),
        "only the valid client allocated: {metrics}"
    );
}

#[test]
fn check_walks_every_step_against_our_server() {
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--user",
        "alice:pw",
        "--allow-peer",
        "127.0.0.0/8",
    ]);
    let addr = server.addr().to_string();
    for transport in ["udp", "tcp"] {
        let (ok, out) = causeway(&[
            "check",
            "--server",
            &addr,
            "--user",
            "alice:pw",
            "--transport",
            transport,
            "--timeout",
            "20",
        ]);
        assert!(ok, "{out}");
        for step in [
            "reach",
            "binding",
            "allocate",
            "permission",
            "channel",
            "relay",
        ] {
            assert!(
                out.contains(&format!("[PASS] {step}")),
                "{transport}: {out}"
            );
        }
    }
    // The default peer policy forbids loopback peers on a server without the allow entry.
    let strict = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--user",
        "alice:pw",
    ]);
    let (ok, out) = causeway(&[
        "check",
        "--server",
        &strict.addr().to_string(),
        "--user",
        "alice:pw",
        "--timeout",
        "20",
    ]);
    assert!(!ok);
    assert!(
        out.contains("[FAIL] permission") && out.contains("peer policy"),
        "{out}"
    );
    // Nothing listening: unreachable.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (ok, out) = causeway(&[
        "check",
        "--server",
        &silent.local_addr().unwrap().to_string(),
        "--user",
        "a:b",
        "--timeout",
        "2",
    ]);
    assert!(!ok);
    assert!(
        out.contains("[FAIL] reach") && out.contains("unreachable"),
        "{out}"
    );
}

#[test]
fn bad_configurations_are_refused_naming_the_field() {
    let cases: &[(&[&str], &str)] = &[
        (&["--relay-range", "30000-20000"], "relay_range"),
        (&["--admin", "127.0.0.1:443"], "admin"),
        (&["--allow-peer", "10.0.0.0/40"], "allow_peer"),
        (&["--user", "nopass"], "user"),
        (&["--external-ip", "2001:db8::1"], "external_ip"),
        (&["--listen", "0.0.0.0:3478"], "relay_ip"),
    ];
    for (args, name) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_causeway"))
            .arg("serve")
            .args(*args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("`{name}`")), "{args:?}: {err}");
    }
}
