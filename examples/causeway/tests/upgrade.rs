//! Upgrading the real server in place: coturn's `turnutils_uclient` streams
//! ChannelData over UDP and over TURN-TLS while `causeway serve` gets SIGUSR2;
//! the binary starts again, takes the relay over (the UDP allocations with
//! their relayed addresses, the listeners, the admin and redirect ports) and
//! tells the service manager it is the main process; no packet is lost on
//! either client, a WSS tunnel open across it keeps echoing, TLS connections
//! opened one after another throughout are all answered, new connections reach
//! the new process, and the old one exits once its TLS client and tunnel are
//! done. Before that, an upgrade (asked on the admin port) whose new process refuses
//! the configuration leaves the old one serving, and says why.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::process::Command;

use common::bridge::{TempDir, TestCa, start_bridge};
use common::http::{ws_echoes, ws_upgrade};
use common::tools::{PEER_IP, Peer, Pid, coturn_tool, run_with_timeout, totals};
use common::wait::{self, PATIENCE};
use common::{Server, front_toml, http_get, try_http_with};
use rustls::pki_types::ServerName;

const NAME: &str = "turn.example.test";
const JOIN: &str = "join.example.test";

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

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

/// A TLS connection to the TLS port, for `name`, its handshake done.
fn tls_to(ca: &TestCa, addr: SocketAddr, name: &str) -> Result<Tls, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(PATIENCE))
        .map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(
        ca.client_config(),
        ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let mut t = rustls::StreamOwned::new(conn, tcp);
    while t.conn.is_handshaking() {
        t.conn.complete_io(&mut t.sock).map_err(|e| e.to_string())?;
    }
    Ok(t)
}

/// A WebSocket tunnel through the web proxy to the stand-in web bridge.
fn tunnel(ca: &TestCa, addr: SocketAddr) -> Tls {
    let mut ws = tls_to(ca, addr, JOIN).unwrap();
    ws_upgrade(&mut ws, JOIN);
    assert!(ws_echoes(&mut ws));
    ws
}

fn uclient(flags: &[&str], port: u16, peer: u16, messages: &str) -> Command {
    let mut cmd = Command::new(coturn_tool("turnutils_uclient"));
    cmd.args(flags).args([
        "-u",
        "alice",
        "-w",
        "pw",
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
    let bridge = start_bridge(&ca.leaf(&["localhost"]));
    let dir = TempDir::new("upgrade");
    let good = format!(
        "{}proxy = [\"{JOIN}=https://localhost:{}\"]\nallow_peer = [\"127.0.0.0/8\"]\n\
         drain_timeout = 120\n",
        front_toml(&ca, &[JOIN, NAME], &dir),
        bridge.port()
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
    let redirect = server.startup_addr("causeway: redirecting http ");

    // A new binary that refuses its configuration: the old one serves on and
    // says why, on the admin port (POST /upgrade answers once it is over) and
    // in its log.
    dir.write("causeway.toml", "listen = [\"not an address\"]\n");
    let answer = server.admin("POST", "/upgrade");
    assert!(
        answer.starts_with("HTTP/1.1 422") && answer.contains("exited (exit status: 2)"),
        "{answer}"
    );
    server.wait_log("admin: upgrade refused");
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
    let mut ws = tunnel(&ca, tls);
    // TLS connections one after another, through the switch.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let opening = {
        let (ca_cfg, stop) = (ca.client_config(), stop.clone());
        std::thread::spawn(move || {
            let (mut opened, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let tcp = TcpStream::connect(tls).unwrap();
                tcp.set_read_timeout(Some(PATIENCE)).unwrap();
                let mut conn = rustls::ClientConnection::new(
                    ca_cfg.clone(),
                    ServerName::try_from(NAME).unwrap(),
                )
                .unwrap();
                let mut tcp = tcp;
                let mut result = Ok(());
                while conn.is_handshaking() && result.is_ok() {
                    result = conn.complete_io(&mut tcp).map(|_| ());
                }
                match result {
                    Ok(()) => opened += 1,
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (opened, failed)
        })
    };
    signal(old, "-USR2");
    let upgraded = server.wait_log("SIGUSR2: upgraded: pid ");
    let (new, moved) = common::tools::upgraded(&upgraded);
    let _new_guard = Pid(new);
    assert!(moved >= 4, "the UDP clients' allocations moved: {upgraded}");
    let said = notified(&manager);
    assert!(said.contains(&format!("MAINPID={new}")), "{said}");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (opened, failed) = opening.join().unwrap();
    assert!(
        opened > 0 && failed.is_empty(),
        "{opened} TLS connections opened across the switch, failed: {failed:?}"
    );
    // The tunnel open across it still echoes (the old process serves it); new
    // ones, the redirect and the admin port are the new process's.
    assert!(ws_echoes(&mut ws), "the tunnel opened before the upgrade");
    let mut ws_new = tunnel(&ca, tls);
    assert!(http_get(&redirect.to_string(), "/").starts_with("HTTP/1.1 301"));
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

    assert!(
        ws_echoes(&mut ws),
        "the tunnel, after the UDP clients are done"
    );
    drop(ws);
    // The old process exits once its TLS client and tunnel are done; the new
    // one serves.
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
    assert!(ws_echoes(&mut ws_new));
    // And SIGHUP reaches it as the unit's main process would be reloaded.
    signal(new, "-HUP");
    server.wait_log("SIGHUP: configuration reloaded");
}
