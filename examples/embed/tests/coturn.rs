//! The embedding examples against coturn's tools: the 16-line relay relays
//! `turnutils_uclient` to `turnutils_peer` over UDP and TCP without losing a
//! packet, and the 18-line client allocates on coturn's `turnserver` and gets
//! its echo back through the relay.

use causeway_testkit::tools;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tools::{PEER_IP, Peer, coturn_tool, free_udp_port, run_with_timeout, totals};

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_embedded_relay_carries_turnutils_uclient_without_loss() {
    let uclient = coturn_tool("turnutils_uclient");
    let peer = Peer::start();
    let mut child = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["127.0.0.1:0", "alice", "wonderland", "127.0.0.2/32"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _relay = Running(child);
    // "relaying on [127.0.0.1:PORT]"
    let port = line
        .trim()
        .trim_end_matches(']')
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    for transport in [&[][..], &["-t"][..]] {
        let mut cmd = Command::new(&uclient);
        cmd.args(transport).args([
            "-u",
            "alice",
            "-w",
            "wonderland",
            "-e",
            PEER_IP,
            "-r",
            &peer.1.to_string(),
            "-p",
            &port,
            "-n",
            "50",
            "-m",
            "4",
            "-l",
            "160",
            "127.0.0.1",
        ]);
        let (_, out) = run_with_timeout(&mut cmd, Duration::from_secs(60));
        match totals(&out) {
            Some((sent, received, 0)) if sent > 0 && sent == received => {}
            t => panic!("{transport:?}: {t:?}\n{out}"),
        }
    }
}

#[test]
fn the_embedded_client_relays_through_coturn() {
    let peer = Peer::start();
    let port = free_udp_port().to_string();
    let _coturn = Running(
        Command::new(coturn_tool("turnserver"))
            .args([
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
                "example",
                "--user",
                "alice:wonderland",
                "--allow-loopback-peers",
                "--cli-password",
                "unused",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let peer_addr = format!("{PEER_IP}:{}", peer.1);
    let server = format!("127.0.0.1:{port}");
    // coturn takes a moment to listen.
    std::thread::sleep(Duration::from_millis(500));
    let mut last = String::new();
    for _ in 0..20 {
        let (ok, out) = run_with_timeout(
            Command::new(env!("CARGO_BIN_EXE_client")).args([
                &server,
                "alice",
                "wonderland",
                &peer_addr,
            ]),
            Duration::from_secs(30),
        );
        if ok {
            assert!(out.contains("relayed 127.0.0.1:41"), "{out}");
            assert!(
                out.contains(&format!("{peer_addr} echoed \"hello through the relay\"")),
                "{out}"
            );
            return;
        }
        last = out;
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("the client never relayed through coturn: {last}");
}
