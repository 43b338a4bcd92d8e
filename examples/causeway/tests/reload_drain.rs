//! Operating the real server: coturn's `turnutils_uclient` relays over TURN-TLS
//! through a SIGHUP that rotates the shared secret (new first, old still
//! accepted) and the certificate (new connections get the new one, the open one
//! continues), and on through a SIGTERM drain: readiness drops at once, new
//! allocations are sent to the alternate server (300), the old ones relay until
//! the drain's deadline, and then the process exits.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::bridge::{Leaf, TempDir, TestCa};
use common::tools::{PEER_IP, Peer, coturn_tool, run_with_timeout, totals};
use common::wait::{self, PATIENCE};
use common::{Output, Server, status_code};
use rustls::pki_types::ServerName;

const NAME: &str = "turn.example.test";
/// The drain's deadline: several times what the TLS client below needs (about
/// 10 s from its start on an idle machine: up to 6 s of coturn's random start,
/// then 4 s of sending), so that a busy machine still fits it.
const DRAIN_SECS: u64 = 40;

fn config(dir: &TempDir, leaf: &Leaf, secrets: &[&str], alternate: SocketAddr) -> String {
    let cert = dir.write("turn.pem", &leaf.cert_pem);
    let key = dir.write("turn.key", &leaf.key_pem);
    let secrets: Vec<String> = secrets.iter().map(|s| format!("\"{s}\"")).collect();
    let toml = format!(
        r#"listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
cert = "{cert}"
key = "{key}"
shared_secret = [{secrets}]
allow_peer = ["127.0.0.0/8"]
alternate_server = "{alternate}"
drain_timeout = {DRAIN_SECS}
"#,
        cert = cert.display(),
        key = key.display(),
        secrets = secrets.join(", "),
    );
    dir.write("causeway.toml", &toml).display().to_string()
}

/// The certificate a new TLS connection to `addr` is shown.
fn presented(ca: &TestCa, addr: SocketAddr) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut conn =
        rustls::ClientConnection::new(ca.client_config(), ServerName::try_from(NAME).unwrap())
            .unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    conn.peer_certificates().unwrap()[0].to_vec()
}

fn signal(server: &Server, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &server.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

fn allocate(server: SocketAddr, secret: &str) -> (bool, String) {
    run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_causeway")).args([
            "allocate",
            "--server",
            &server.to_string(),
            "--user",
            "guest",
            "--shared-secret",
            secret,
        ]),
        PATIENCE,
    )
}

#[test]
fn a_relaying_client_survives_a_rotation_and_a_drain_until_its_deadline() {
    let uclient = coturn_tool("turnutils_uclient");
    let peer = Peer::start();
    let ca = TestCa::new();
    let (first, second) = (ca.leaf(&[NAME]), ca.leaf(&[NAME]));
    // The node drained clients are sent to, which knows the new secret.
    let alternate = Server::start(&["--listen", "127.0.0.1:0", "--shared-secret", "new"]);
    let dir = TempDir::new("reload-drain");
    let cfg = config(&dir, &first, &["old"], alternate.addr());
    let server = Server::start(&["--config", &cfg]);
    let tls = server.startup_addr("causeway: listening on tls ");
    let admin = server.admin_addr();
    assert_eq!(presented(&ca, tls), first.cert_der.to_vec());

    // A UDP allocation held past the drain's deadline (stopped by the test).
    let mut held = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args([
            "allocate",
            "--server",
            &server.addr().to_string(),
            "--user",
            "guest",
            "--shared-secret",
            "old",
            "--hold",
            "600",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let held_out = Output::of(&mut held);
    assert!(
        held_out.wait_for("relayed", PATIENCE),
        "the held allocation: {}",
        held_out.tail(20)
    );
    // ChannelData over TURN-TLS with the old secret, started before the rotation
    // and relaying on through the drain.
    let mut cmd = Command::new(&uclient);
    cmd.args([
        "-t",
        "-S",
        "-W",
        "old",
        "-u",
        "guest",
        "-e",
        PEER_IP,
        "-r",
        &peer.1.to_string(),
        "-p",
        &tls.port().to_string(),
        "-n",
        "200",
        "-z",
        "20",
        "-m",
        "1",
        "-l",
        "160",
        "127.0.0.1",
    ]);
    let relaying = std::thread::spawn(move || {
        let r = run_with_timeout(&mut cmd, Duration::from_secs(180));
        (r, Instant::now())
    });
    server.wait_status("the held and the TLS client's allocations", |s| {
        s["allocations_in_use"].as_u64() >= Some(2)
    });

    // Rotate: the new secret first, the old still accepted; a renewed certificate.
    config(&dir, &second, &["new", "old"], alternate.addr());
    signal(&server, "-HUP");
    server.wait_log("SIGHUP: configuration reloaded");
    assert_eq!(
        presented(&ca, tls),
        second.cert_der.to_vec(),
        "new connections, new certificate"
    );
    let (ok, out) = allocate(server.addr(), "new");
    assert!(
        ok && out.contains("relayed  127.0.0.1:"),
        "the new secret: {out}"
    );
    assert!(!out.contains("redirected"), "{out}");

    // Drain: not ready at once; new clients go to the alternate.
    let drain_started = Instant::now();
    signal(&server, "-TERM");
    server.wait_log("SIGTERM: draining");
    assert_eq!(
        status_code(&admin, "/readyz"),
        "503",
        "not ready once draining"
    );
    assert!(
        wait::holds(PATIENCE, || status_code(&admin, "/healthz") == "200"),
        "a draining node is still healthy"
    );
    let (ok, out) = allocate(server.addr(), "new");
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("redirected to {}", alternate.addr())),
        "{out}"
    );
    alternate.wait_status("the redirected allocation", |s| {
        s["totals"]["allocations_created"] == 1
    });

    // When the process exits (a zombie until reaped), timed from the drain.
    let pid = server.child.id();
    let exit_watch = std::thread::spawn(move || {
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            if matches!(state, None | Some("Z")) {
                return drain_started.elapsed();
            }
            // A poll step: the process's exit is what is awaited.
            std::thread::sleep(Duration::from_millis(50));
        }
    });

    // The TLS client relays on through the drain, losing nothing (had the node
    // stopped relaying before it was done sending, packets would be lost).
    let ((_, out), done) = relaying.join().unwrap();
    let (sent, received, lost) = totals(&out).unwrap_or_else(|| panic!("{out}"));
    let client_took = done - drain_started;
    assert!(
        client_took < Duration::from_secs(DRAIN_SECS),
        "the TLS client needed {client_took:?} of the {DRAIN_SECS} s drain: this machine is \
         too slow for the test's window\n{out}"
    );
    assert!(
        sent >= 180 && received == sent && lost == 0,
        "{sent} {received} {lost}: {out}"
    );

    // The held allocation kept the node draining until the deadline; then it exited.
    let took = exit_watch.join().unwrap();
    assert!(
        took >= Duration::from_secs(DRAIN_SECS - 1)
            && took < Duration::from_secs(DRAIN_SECS) + PATIENCE,
        "exited {took:?} into a {DRAIN_SECS} s drain\n{}",
        server.log_tail()
    );
    assert!(
        server.log.contains("drain deadline reached"),
        "{}",
        server.log_tail()
    );
    let mut server = server;
    assert!(server.child.wait().unwrap().success());
    // The allocation the deadline cut is said to end, as every other one.
    assert!(
        server
            .log
            .wait_for("ended (cut: the server stopped)", PATIENCE),
        "{}",
        server.log_tail()
    );
    let _ = held.kill();
    let _ = held.wait();
}
