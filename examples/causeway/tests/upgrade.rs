//! Upgrading the real server in place: coturn's `turnutils_uclient` streams
//! ChannelData over UDP and over TURN-TLS while `causeway serve` gets SIGUSR2;
//! the binary starts again, takes the relay over (the UDP allocations with
//! their relayed addresses, the listeners, the admin port) and tells the
//! service manager it is the main process; no packet is lost on either
//! client, new connections reach the new process, and the old one exits once
//! its TLS client is done. Before that, an upgrade whose new process refuses
//! the configuration leaves the old one serving, and says why.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::process::Command;

use common::bridge::{TempDir, TestCa};
use common::tools::{PEER_IP, Peer, coturn_tool, run_with_timeout, totals};
use common::wait::{self, PATIENCE};
use common::{Server, try_http_with};
use rustls::pki_types::ServerName;

const NAME: &str = "turn.example.test";

/// Kills the process a pid names when dropped (the new server outlives the
/// `Server` the test started).
struct Pid(u32);

impl Drop for Pid {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.to_string()])
            .status();
    }
}

fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next());
    !matches!(state, None | Some("Z"))
}

fn signal(pid: u32, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// The next message the service manager's socket received.
fn notified(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the socket's timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A TLS handshake with the TURN-TLS port: the new process answers it.
fn handshake(ca: &TestCa, addr: SocketAddr) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut conn =
        rustls::ClientConnection::new(ca.client_config(), ServerName::try_from(NAME).unwrap())
            .unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
}

fn uclient(flags: &[&str], port: u16, peer: u16, messages: &str) -> Command {
    let mut cmd = Command::new(coturn_tool("turnutils_uclient"));
    cmd.args(flags).args([
        "-u",
        "alice",
        "-w",
        "wonderland",
        "-e",
        PEER_IP,
        "-r",
        &peer.to_string(),
        "-p",
        &port.to_string(),
        "-n",
        messages,
        "-z",
        "20",
        "-l",
        "160",
        "127.0.0.1",
    ]);
    cmd
}

#[test]
fn clients_relay_through_an_upgrade_and_a_refused_one_changes_nothing() {
    let peer = Peer::start();
    let ca = TestCa::new();
    let leaf = ca.leaf(&[NAME]);
    let dir = TempDir::new("upgrade");
    let cert = dir.write("turn.pem", &leaf.cert_pem);
    let key = dir.write("turn.key", &leaf.key_pem);
    let good = format!(
        r#"listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
cert = "{}"
key = "{}"
user = ["alice:wonderland"]
allow_peer = ["127.0.0.0/8"]
drain_timeout = 120
"#,
        cert.display(),
        key.display()
    );
    let cfg = dir.write("causeway.toml", &good).display().to_string();
    let notify_path = dir.path().join("notify");
    let manager = UnixDatagram::bind(&notify_path).unwrap();
    manager.set_read_timeout(Some(PATIENCE)).unwrap();
    let server = Server::start_env(
        &["--config", &cfg],
        &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())],
    );
    let old = server.child.id();
    assert!(notified(&manager).contains("READY=1"));
    let udp = server.addr();
    let tls = server.startup_addr("causeway: listening on tls ");

    // A new binary that refuses its configuration: the old one serves on.
    dir.write("causeway.toml", "listen = [\"not an address\"]\n");
    signal(old, "-USR2");
    let refused = server.wait_log("SIGUSR2: upgrade refused");
    assert!(refused.contains("exited (exit status: 2)"), "{refused}");
    dir.write("causeway.toml", &good);
    assert!(alive(old));

    // Four UDP clients on channels and one over TURN-TLS, 6 s of sending
    // each, with the upgrade in the middle.
    let runs: Vec<_> = [
        ("udp", uclient(&["-m", "4"], udp.port(), peer.1, "300")),
        (
            "tls",
            uclient(&["-t", "-S", "-m", "1"], tls.port(), peer.1, "300"),
        ),
    ]
    .into_iter()
    .map(|(name, mut cmd)| {
        std::thread::spawn(move || (name, run_with_timeout(&mut cmd, 3 * PATIENCE)))
    })
    .collect();
    server.wait_status("the clients' allocations", |s| {
        s["allocations_in_use"].as_u64() >= Some(5)
    });
    signal(old, "-USR2");
    let upgraded = server.wait_log("SIGUSR2: upgraded: pid ");
    let new: u32 = upgraded
        .split("pid ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{upgraded}"));
    let _new_guard = Pid(new);
    let moved: u64 = upgraded
        .split("serves on (")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{upgraded}"));
    assert!(moved >= 4, "the UDP clients' allocations moved: {upgraded}");
    let said = notified(&manager);
    assert!(said.contains(&format!("MAINPID={new}")), "{said}");

    // New connections, TLS and admin, reach the new process.
    handshake(&ca, tls);
    let token = server.admin_token();
    let status = try_http_with(
        &server.admin_addr(),
        "GET",
        "/readyz",
        &format!("Authorization: Bearer {token}\r\n"),
    )
    .unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    for r in runs {
        let (name, (_, out)) = r.join().unwrap();
        let (sent, received, lost) = totals(&out).unwrap_or_else(|| panic!("{name}: {out}"));
        assert!(
            sent >= 300 && received == sent && lost == 0,
            "{name}: {sent} sent, {received} received, {lost} lost\n{out}\n{}",
            server.log_tail()
        );
    }

    // The old process exits once its TLS client is done; the new one serves.
    assert!(
        wait::holds(PATIENCE, || !alive(old)),
        "the old process is still running\n{}",
        server.log_tail()
    );
    assert!(
        server
            .log
            .contains("the last TCP/TLS client and web tunnel here ended")
    );
    assert!(alive(new));
    let (_, out) = run_with_timeout(
        &mut uclient(&["-m", "2"], udp.port(), peer.1, "20"),
        3 * PATIENCE,
    );
    let (sent, received, lost) = totals(&out).unwrap_or_else(|| panic!("{out}"));
    assert!(sent > 0 && received == sent && lost == 0, "{out}");
    // And SIGHUP reaches it as the unit's main process would be reloaded.
    signal(new, "-HUP");
    server.wait_log("SIGHUP: configuration reloaded");
}
