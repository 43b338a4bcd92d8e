//! TCP allocations (RFC 6062) end to end, against a client nobody here wrote:
//! coturn's `turnutils_uclient` with a TCP relay, active (`-T`: each client of
//! a pair Connects to the other's relayed address, and the other accepts) and
//! passive (`-P`: a plain TCP peer connects to the client's relayed address),
//! through `causeway serve` and through coturn's `turnserver` in the same
//! test. Each must deliver what it delivers through coturn, and the usage
//! records must count every byte each way.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use causeway_testkit::coturn::{Coturn, Ready};
use common::bridge::TempDir;
use common::tools::{free_port_outside, totals};
use common::wait::PATIENCE;
use common::{Server, coturn_tool, run_with_timeout};

/// coturn on 127.0.0.1:`port`, relaying from 127.0.0.1, loopback peers allowed.
fn coturn(port: u16) -> Coturn {
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let port = port.to_string();
    Coturn::start(
        None,
        &[
            "-n",
            "--no-cli",
            "--no-dtls",
            "--no-tls",
            "--listening-ip",
            "127.0.0.1",
            "--listening-port",
            &port,
            "--relay-ip",
            "127.0.0.1",
            "--min-port",
            "41000",
            "--max-port",
            "41999",
            "--lt-cred-mech",
            "--realm",
            "TANDBERG",
            "--user",
            "alice:wonderland",
            "--allow-loopback-peers",
        ],
        &[Ready::Tcp(listen)],
    )
}

/// A port free for UDP and TCP on loopback, outside coturn's relay range.
fn free_port() -> u16 {
    free_port_outside(41000..=41999)
}

/// `causeway check --tcp-relay` against `server`: whether it passed, and
/// what it printed.
fn check_tcp(server: &str) -> (bool, String) {
    run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_causeway")).args([
            "check",
            "--server",
            server,
            "--user",
            "alice:wonderland",
            "--tcp-relay",
            "--timeout",
            "20",
        ]),
        3 * PATIENCE,
    )
}

/// `causeway serve` on loopback with alice, loopback peers allowed, and
/// `extra` flags.
fn causeway(extra: &[&str]) -> Server {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--user",
        "alice:wonderland",
        "--allow-peer",
        "127.0.0.0/8",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// One uclient run against the server on `port`: (sent, received, lost).
fn uclient(port: u16, flags: &[&str], n: &str, size: &str) -> (String, Option<(u64, u64, u64)>) {
    let port = port.to_string();
    let mut cmd = Command::new(coturn_tool("turnutils_uclient"));
    cmd.args(flags).args([
        "-u",
        "alice",
        "-w",
        "wonderland",
        "-p",
        &port,
        "-n",
        n,
        "-m",
        "2",
        "-l",
        size,
        "127.0.0.1",
    ]);
    let (_, out) = run_with_timeout(&mut cmd, 2 * PATIENCE);
    let t = totals(&out);
    (out, t)
}

#[test]
fn uclient_relays_over_tcp_allocations_as_it_does_through_coturn() {
    let server = causeway(&["--realm", "TANDBERG"]);
    let coturn_port = free_port();
    let _coturn = coturn(coturn_port);
    let ports = [("causeway", server.addr().port()), ("coturn", coturn_port)];

    // All at once, both servers side by side. Active: three pairs each, 100
    // messages of 1000 bytes each way. Passive: a plain TCP peer (on
    // 127.0.0.2, an address the relay does not hold) connects to the client's
    // relayed address; uclient counts only one direction as received in this
    // mode, through either server: the two must agree, and causeway's usage
    // record shows both ways whole.
    let active: Vec<_> = ports
        .iter()
        .flat_map(|&(name, port)| {
            (0..3).map(move |_| {
                std::thread::spawn(move || (name, uclient(port, &["-T"], "100", "1000")))
            })
        })
        .collect();
    let passive: Vec<_> = ports
        .iter()
        .map(|&(_, port)| {
            std::thread::spawn(move || uclient(port, &["-P", "-L", "127.0.0.2"], "50", "160"))
        })
        .collect();
    for r in active {
        let (name, (out, t)) = r.join().unwrap();
        match t {
            Some((sent, received, 0)) if sent > 0 && sent == received => {}
            t => panic!("{name}: uclient -T: {t:?}\n{out}\n{}", server.log_tail()),
        }
    }
    let mut passive = passive.into_iter().map(|r| r.join().unwrap());
    let (out_c, through_causeway) = passive.next().unwrap();
    let (out_t, through_coturn) = passive.next().unwrap();
    assert!(
        through_coturn.is_some_and(|(sent, received, _)| sent > 0 && received > 0),
        "coturn: {out_t}"
    );
    assert_eq!(
        through_causeway, through_coturn,
        "causeway:\n{out_c}\ncoturn:\n{out_t}"
    );
    let record = server.wait_log("/ 8000 bytes to peers, 0 / 8000 from peers");
    assert!(record.contains("127.0.0.2:"), "{record}");
}

#[test]
fn check_walks_the_tcp_relay_and_names_a_server_without_one() {
    let server = causeway(&[]);
    let coturn_port = free_port();
    let _coturn = coturn(coturn_port);
    for target in [
        server.addr().to_string(),
        format!("127.0.0.1:{coturn_port}"),
    ] {
        let (ok, out) = check_tcp(&target);
        assert!(ok, "{target}: {out}");
        for step in [
            "[PASS] tcp allocate",
            "[PASS] tcp connect",
            "[PASS] tcp relay",
        ] {
            assert!(out.contains(step), "{target}: {out}");
        }
    }
    // TCP allocations turned off: 442, named.
    let dir = TempDir::new("tcp-off");
    let cfg = dir.write(
        "causeway.toml",
        "listen = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\nuser = [\"alice:wonderland\"]\n\
         allow_peer = [\"127.0.0.0/8\"]\ntcp_allocations = false\n",
    );
    let off = Server::start(&["--config", cfg.to_str().unwrap()]);
    let (ok, out) = check_tcp(&off.addr().to_string());
    assert!(!ok, "{out}");
    assert!(
        out.contains("[FAIL] tcp allocate: 442") && out.contains("tcp_allocations = true"),
        "{out}"
    );
    off.wait_log("442 unsupported transport protocol 6");
}

#[test]
fn a_tcp_relay_works_over_tls_with_tls_data_connections() {
    let ca = common::bridge::TestCa::new();
    let leaf = ca.leaf(&["localhost"]);
    let dir = TempDir::new("tcp-relay-tls");
    let cert = dir.write("cert.pem", &leaf.cert_pem);
    let key = dir.write("key.pem", &leaf.key_pem);
    let ca_file = dir.write("ca.pem", &ca.cert_pem);
    let server = causeway(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    let tls = server
        .startup_addr("causeway: listening on tls ")
        .to_string();
    let (ok, out) = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_causeway")).args([
            "check",
            "--server",
            &tls,
            "--user",
            "alice:wonderland",
            "--transport",
            "tls",
            "--ca",
            ca_file.to_str().unwrap(),
            "--server-name",
            "localhost",
            "--tcp-relay",
            "--timeout",
            "20",
        ]),
        3 * PATIENCE,
    );
    assert!(ok, "{out}\n{}", server.log_tail());
    assert!(
        out.contains("over tls") && out.contains("[PASS] tcp relay"),
        "{out}"
    );
    // The usage record: 16 bytes each way over the data connection.
    let record = server.wait_log("/ 16 bytes to peers, 0 / 16 from peers");
    assert!(
        record.starts_with("[") && record.contains("tls "),
        "{record}"
    );
}
