//! The embedding examples against coturn's tools: the 16-line relay relays
//! `turnutils_uclient` to `turnutils_peer` over UDP and TCP without losing a
//! packet, and the 18-line client allocates on coturn's `turnserver` and gets
//! its echo back through the relay.

use causeway_testkit::tools;

use std::process::{Child, Command, Stdio};

use causeway_testkit::Output;
use causeway_testkit::coturn::{Coturn, Ready};
use causeway_testkit::wait::PATIENCE;
use tools::{PEER_IP, Peer, coturn_tool, run_with_timeout, totals};

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
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Output::of(&mut child);
    let _relay = Running(child);
    // "relaying on [127.0.0.1:PORT]"
    let line = out
        .wait_line(PATIENCE, |l| l.starts_with("relaying on"))
        .unwrap_or_else(|| panic!("the relay did not start:\n{}", out.tail(20)));
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
        let (_, uout) = run_with_timeout(&mut cmd, 2 * PATIENCE);
        match totals(&uout) {
            Some((sent, received, 0)) if sent > 0 && sent == received => {}
            t => panic!(
                "{transport:?}: {t:?}\n{uout}\n--- the relay ---\n{}",
                out.tail(40)
            ),
        }
    }
}

/// A port free for UDP and TCP on 127.0.0.1 right now.
fn free_port() -> u16 {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if !(41000..=41999).contains(&port)
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

#[test]
fn the_embedded_client_relays_through_coturn() {
    let peer = Peer::start();
    let port = free_port();
    let listen: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let port = port.to_string();
    let coturn = Coturn::start(
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
            "example",
            "--user",
            "alice:wonderland",
            "--allow-loopback-peers",
            "--cli-password",
            "unused",
        ],
        &[Ready::Udp(listen)],
    );
    let peer_addr = format!("{PEER_IP}:{}", peer.1);
    let server = format!("127.0.0.1:{port}");
    let (ok, out) = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_client")).args([
            &server,
            "alice",
            "wonderland",
            &peer_addr,
        ]),
        2 * PATIENCE,
    );
    assert!(
        ok,
        "the client never relayed through coturn: {out}{}",
        coturn.tail()
    );
    assert!(out.contains("relayed 127.0.0.1:41"), "{out}");
    assert!(
        out.contains(&format!("{peer_addr} echoed \"hello through the relay\"")),
        "{out}"
    );
}

/// The README's way out, followed literally: coturn's `turnutils_peer -L
/// 127.0.0.1` on the relay's own address is denied by the own-address rule
/// until `allow_local_peer` names it; then `turnutils_uclient` relays to it
/// without loss.
#[test]
fn a_peer_on_the_relays_own_address_is_reached_through_allow_local_peer() {
    use turn_core::adapters::std::Relay;
    use turn_core::server::policy::LocalPeer;
    let uclient = coturn_tool("turnutils_uclient");
    let peer = Peer::start_on([127, 0, 0, 1].into());
    let relay = Relay::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .relay_range(61000, 61999) // above the ephemeral port the peer drew
        .realm("example")
        .user("alice", "wonderland")
        // uclient binds a channel to the peer's port and the next (RTCP).
        .allow_local_peer(
            LocalPeer::parse(&format!("127.0.0.1:{}-{}", peer.1, peer.1 + 1)).unwrap(),
        )
        .start()
        .unwrap();
    let port = relay.local_addrs()[0].port().to_string();
    let (_, out) = run_with_timeout(
        Command::new(&uclient).args([
            "-u",
            "alice",
            "-w",
            "wonderland",
            "-e",
            "127.0.0.1",
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
        ]),
        2 * PATIENCE,
    );
    match totals(&out) {
        Some((sent, received, 0)) if sent > 0 && sent == received => {}
        t => panic!("{t:?}\n{out}"),
    }
    relay.shutdown();
    relay.join();
}
