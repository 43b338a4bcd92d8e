//! Interop with a real third-party TURN client: coturn's `turnutils_uclient` against
//! `causeway serve`, relaying to coturn's `turnutils_peer` echo server, over UDP and
//! TCP, with long-term and with time-limited shared-secret credentials, with
//! channels and with Send/Data indications, and client to client through two
//! relays. Each run must get back every packet it sent.

mod common;

use std::process::Command;

use common::tools::{PEER_IP, Peer, totals};
use common::wait::PATIENCE;
use common::{Server, coturn_tool, run_with_timeout};

#[test]
fn turnutils_uclient_relays_without_loss() {
    let uclient = coturn_tool("turnutils_uclient");
    let peer = Peer::start();
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--user",
        "alice:wonderland",
        "--shared-secret",
        "north-secret",
        "--allow-peer",
        "127.0.0.0/8",
        "--realm",
        "TANDBERG",
    ]);
    let port = server.addr().port().to_string();
    let peer_port = peer.1.to_string();
    let variants: &[(&str, &[&str])] = &[
        ("udp, long-term, channels", &[]),
        ("udp, long-term, send indications", &["-s"]),
        ("tcp, long-term, channels", &["-t"]),
        ("tcp, long-term, send indications", &["-t", "-s"]),
        ("udp, shared secret, channels", &["-W", "north-secret"]),
        (
            "udp, shared secret, send indications",
            &["-W", "north-secret", "-s"],
        ),
        (
            "tcp, shared secret, channels",
            &["-W", "north-secret", "-t"],
        ),
        (
            "tcp, shared secret, send indications",
            &["-W", "north-secret", "-t", "-s"],
        ),
        ("udp, client to client through two relays", &["-y"]),
        ("tcp, client to client through two relays", &["-y", "-t"]),
    ];
    // Five at a time: each uclient counts an echo later than 10 s as lost.
    let mut failures = Vec::new();
    for batch in variants.chunks(5) {
        let runs: Vec<_> = batch
            .iter()
            .map(|(name, flags)| {
                let mut cmd = Command::new(&uclient);
                cmd.args(*flags).args([
                    "-u",
                    "alice",
                    "-w",
                    "wonderland",
                    "-e",
                    PEER_IP,
                    "-r",
                    &peer_port,
                    "-p",
                    &port,
                    "-n",
                    "40",
                    "-m",
                    "2",
                    "-l",
                    "160",
                    "127.0.0.1",
                ]);
                let name = name.to_string();
                std::thread::spawn(move || (name, run_with_timeout(&mut cmd, 2 * PATIENCE)))
            })
            .collect();
        for r in runs {
            let (name, (_, out)) = r.join().unwrap();
            match totals(&out) {
                Some((sent, received, lost)) if sent > 0 && sent == received && lost == 0 => {}
                t => failures.push(format!("{name}: {t:?}\n{out}")),
            }
        }
    }
    let log = server.log_lines().join("\n");
    assert!(
        failures.is_empty(),
        "uclient runs failed:\n{}\n--- server log ---\n{log}",
        failures.join("\n\n")
    );
    assert!(log.contains("allocation for `alice`"), "{log}");
    assert!(
        log.contains(":alice`"),
        "time-limited usernames were used: {log}"
    );
}

#[test]
fn wrong_password_is_logged_as_a_credentials_problem() {
    let uclient = coturn_tool("turnutils_uclient");
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--user",
        "alice:wonderland",
    ]);
    let port = server.addr().port().to_string();
    let (_, out) = run_with_timeout(
        Command::new(uclient).args([
            "-y",
            "-u",
            "alice",
            "-w",
            "wrong",
            "-p",
            &port,
            "-n",
            "1",
            "127.0.0.1",
        ]),
        PATIENCE,
    );
    assert!(
        out.contains("Cannot complete Allocation"),
        "uclient should fail: {out}"
    );
    let line = server.wait_log("user `alice` Allocate: 401 integrity check failed");
    assert!(line.contains("check credentials"), "{line}");
}
