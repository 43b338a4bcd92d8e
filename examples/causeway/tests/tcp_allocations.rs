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
use common::tools::{free_udp_port, totals};
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
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--user",
        "alice:wonderland",
        "--allow-peer",
        "127.0.0.0/8",
        "--realm",
        "TANDBERG",
    ]);
    let coturn_port = free_udp_port();
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
