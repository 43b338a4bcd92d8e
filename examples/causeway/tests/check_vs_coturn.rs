//! `causeway allocate` and `causeway check` against a real third-party TURN server,
//! coturn's `turnserver`: allocation over UDP and TCP; the credentials diagnosis
//! when the passwords differ; and the relay-port diagnosis when a firewall drops
//! traffic to the relay port range (coturn runs in a network namespace the test
//! creates, with an nftables rule in it).

mod common;

use std::net::SocketAddr;
use std::process::Command;

use causeway_testkit::coturn::{Coturn, Ready};
use common::run_with_timeout;
use common::wait::PATIENCE;

#[test]
fn allocate_and_check_over_tls_against_coturn() {
    let ca = common::bridge::TestCa::new();
    let leaf = ca.leaf(&["localhost"]);
    let dir = common::bridge::TempDir::new("coturn-tls");
    let cert = dir.write("cert.pem", &leaf.cert_pem);
    let key = dir.write("key.pem", &leaf.key_pem);
    let ca_file = dir.write("ca.pem", &ca.cert_pem);
    let port = free_port();
    let tls_port = free_port();
    let ct = coturn_with(
        None,
        port,
        "wonderland",
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--pkey",
            key.to_str().unwrap(),
            "--tls-listening-port",
            &tls_port.to_string(),
        ],
        &[Ready::Tls(([127, 0, 0, 1], tls_port).into())],
    );
    let server = format!("127.0.0.1:{tls_port}");
    let tls = [
        "--transport",
        "tls",
        "--ca",
        ca_file.to_str().unwrap(),
        "--server-name",
        "localhost",
    ];
    let mut args = vec![
        "allocate",
        "--server",
        &server,
        "--user",
        "alice:wonderland",
    ];
    args.extend(tls);
    let (ok, out) = causeway(None, &args);
    assert!(ok, "{out}{}", ct.tail());
    assert!(out.contains("relayed  127.0.0.1:4"), "{out}");
    let mut args = vec![
        "check",
        "--server",
        &server,
        "--user",
        "alice:wonderland",
        "--timeout",
        "20",
    ];
    args.extend(tls);
    let (ok, out) = causeway(None, &args);
    assert!(ok, "{out}{}", ct.tail());
    assert!(
        out.contains("over tls") && out.contains("[PASS] relay"),
        "{out}{}",
        ct.tail()
    );
    // A client that does not trust the server's CA fails before TURN starts.
    let other = common::bridge::TestCa::new();
    let other_file = dir.write("other.pem", &other.cert_pem);
    let (ok, out) = causeway(
        None,
        &[
            "allocate",
            "--server",
            &server,
            "--user",
            "alice:wonderland",
            "--transport",
            "tls",
            "--ca",
            other_file.to_str().unwrap(),
            "--server-name",
            "localhost",
        ],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("cannot reach"), "{out}");
}

/// A port free for UDP and TCP on loopback right now, outside coturn's relay
/// range below.
fn free_port() -> u16 {
    common::tools::free_port_outside(40000..=40999)
}

/// Starts coturn on loopback (inside `netns` if given) with user alice:`password`,
/// and waits until it answers STUN on `port` over UDP and TCP.
fn coturn(netns: Option<&str>, port: u16, password: &str) -> Coturn {
    coturn_with(netns, port, password, &[], &[])
}

/// As [`coturn`], with extra flags and more to wait for.
fn coturn_with(
    netns: Option<&str>,
    port: u16,
    password: &str,
    extra: &[&str],
    ready: &[Ready],
) -> Coturn {
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let port = port.to_string();
    let user = format!("alice:{password}");
    let mut args = vec![
        "-n",
        "--no-cli",
        "--no-dtls",
        "--listening-ip",
        "127.0.0.1",
        "--listening-port",
        &port,
        "--relay-ip",
        "127.0.0.1",
        "--min-port",
        "40000",
        "--max-port",
        "40999",
        "--lt-cred-mech",
        "--realm",
        "TANDBERG",
        "--user",
        &user,
        "--allow-loopback-peers",
        "--fingerprint",
    ];
    args.extend(extra);
    let mut all = vec![Ready::Udp(listen), Ready::Tcp(listen)];
    all.extend(ready);
    Coturn::start(netns, &args, &all)
}

fn causeway(netns: Option<&str>, args: &[&str]) -> (bool, String) {
    let bin = env!("CARGO_BIN_EXE_causeway");
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, bin]);
            c
        }
        None => Command::new(bin),
    };
    run_with_timeout(cmd.args(args), PATIENCE * 2)
}

/// A network namespace with loopback up, deleted when dropped.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("cw-check-{}", std::process::id());
        let ok = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        let _ = ok(&["netns", "del", &name]);
        assert!(
            ok(&["netns", "add", &name]),
            "cannot create a network namespace (needs root and iproute2)"
        );
        assert!(ok(&[
            "netns", "exec", &name, "ip", "link", "set", "lo", "up"
        ]));
        // Clients' ephemeral ports stay clear of coturn's relay range (which a
        // test blocks): a client port drawn in it would have its answers
        // dropped too.
        assert!(ok(&[
            "netns",
            "exec",
            &name,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_local_port_range=41000 60999",
        ]));
        Netns(name)
    }

    fn nft(&self, args: &[&str]) {
        common::ensure_package("/usr/sbin/nft", "nftables");
        let status = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft"])
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "nft {args:?}");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn allocate_and_check_pass_against_coturn() {
    let port = free_port();
    let ct = coturn(None, port, "wonderland");
    let server = format!("127.0.0.1:{port}");
    for transport in ["udp", "tcp"] {
        let (ok, out) = causeway(
            None,
            &[
                "allocate",
                "--server",
                &server,
                "--user",
                "alice:wonderland",
                "--transport",
                transport,
            ],
        );
        assert!(ok, "{transport}: {out}{}", ct.tail());
        assert!(out.contains("relayed  127.0.0.1:4"), "{out}");
        let (ok, out) = causeway(
            None,
            &[
                "check",
                "--server",
                &server,
                "--user",
                "alice:wonderland",
                "--transport",
                transport,
                "--timeout",
                "20",
            ],
        );
        assert!(ok, "{transport}: {out}{}", ct.tail());
        assert!(out.contains("[PASS] relay"), "{out}{}", ct.tail());
    }
}

#[test]
fn check_diagnoses_a_password_mismatch() {
    let port = free_port();
    let ct = coturn(None, port, "the-real-password");
    let (ok, out) = causeway(
        None,
        &[
            "check",
            "--server",
            &format!("127.0.0.1:{port}"),
            "--user",
            "alice:a-stale-password",
            "--timeout",
            "20",
        ],
    );
    assert!(!ok);
    assert!(out.contains("[PASS] reach"), "{out}{}", ct.tail());
    assert!(out.contains("[FAIL] allocate"), "{out}{}", ct.tail());
    assert!(out.contains("credentials differ"), "{out}{}", ct.tail());
}

#[test]
fn check_diagnoses_a_blocked_relay_port_range() {
    let ns = Netns::new();
    // The firewall of the TURN host drops UDP to the relay port range.
    ns.nft(&["add", "table", "inet", "cwtest"]);
    ns.nft(&[
        "add",
        "chain",
        "inet",
        "cwtest",
        "input",
        "{ type filter hook input priority 0 ; }",
    ]);
    ns.nft(&[
        "add",
        "rule",
        "inet",
        "cwtest",
        "input",
        "udp",
        "dport",
        "40000-40999",
        "drop",
    ]);
    let ct = coturn(Some(&ns.0), 3478, "wonderland");
    let (ok, out) = causeway(
        Some(&ns.0),
        &[
            "check",
            "--server",
            "127.0.0.1:3478",
            "--user",
            "alice:wonderland",
            // Each step's wait: the relay step, which fails here, takes all of it.
            "--timeout",
            "10",
        ],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("[PASS] allocate") && out.contains("[PASS] channel"),
        "{out}{}",
        ct.tail()
    );
    assert!(
        out.contains("[FAIL] relay") && out.contains("blocked by a firewall"),
        "{out}{}",
        ct.tail()
    );
}
