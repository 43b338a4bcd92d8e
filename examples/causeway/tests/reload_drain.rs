//! Operating the real server: coturn's `turnutils_uclient` relays over TURN-TLS
//! through a SIGHUP that rotates the shared secret (new first, old still
//! accepted) and the certificate (new connections get the new one, the open one
//! continues), and on through a SIGTERM drain: readiness drops at once, new
//! allocations are sent to the alternate server (300), the old ones relay until
//! the drain's deadline, and then the process exits.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;
use common::bridge::{Leaf, TempDir, TestCa};
use common::tools::{PEER_IP, Peer, coturn_tool, run_with_timeout, totals};
use rustls::pki_types::ServerName;

const NAME: &str = "turn.example.test";
const DRAIN_SECS: u64 = 12;

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
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
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
        Duration::from_secs(20),
    )
}

fn wait_log(server: &Server, log: &mut Vec<String>, needle: &str) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        log.extend(server.log_lines());
        if log.iter().any(|l| l.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn status_code(admin: &str, path: &str) -> String {
    common::http_get(admin, path)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
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
    let mut log = Vec::new();

    // ~11 s of ChannelData over TURN-TLS with the old secret.
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
        "550",
        "-z",
        "20",
        "-m",
        "1",
        "-l",
        "160",
        "127.0.0.1",
    ]);
    let relaying = std::thread::spawn(move || run_with_timeout(&mut cmd, Duration::from_secs(60)));
    // And a UDP allocation held past the drain's deadline.
    let held = {
        let a = server.addr().to_string();
        std::thread::spawn(move || {
            run_with_timeout(
                Command::new(env!("CARGO_BIN_EXE_causeway")).args([
                    "allocate",
                    "--server",
                    &a,
                    "--user",
                    "guest",
                    "--shared-secret",
                    "old",
                    "--hold",
                    "40",
                ]),
                Duration::from_secs(60),
            )
        })
    };
    std::thread::sleep(Duration::from_secs(2));

    // Rotate: the new secret first, the old still accepted; a renewed certificate.
    config(&dir, &second, &["new", "old"], alternate.addr());
    signal(&server, "-HUP");
    assert!(
        wait_log(&server, &mut log, "SIGHUP: configuration reloaded"),
        "{log:?}"
    );
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
    std::thread::sleep(Duration::from_secs(1));
    let drain_started = Instant::now();
    signal(&server, "-TERM");
    assert!(wait_log(&server, &mut log, "SIGTERM: draining"), "{log:?}");
    assert_eq!(status_code(&admin, "/readyz"), "503");
    assert_eq!(status_code(&admin, "/healthz"), "200");
    let (ok, out) = allocate(server.addr(), "new");
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("redirected to {}", alternate.addr())),
        "{out}"
    );
    // (Status snapshots are published once a second.)
    let until = Instant::now() + Duration::from_secs(5);
    while alternate.status()["totals"]["allocations_created"] != 1 {
        assert!(Instant::now() < until, "no allocation on the alternate");
        std::thread::sleep(Duration::from_millis(200));
    }

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
            std::thread::sleep(Duration::from_millis(50));
        }
    });

    // The TLS client relays on through the drain, losing nothing (had the node
    // stopped relaying before it was done sending, packets would be lost).
    let (_, out) = relaying.join().unwrap();
    let (sent, received, lost) = totals(&out).unwrap_or_else(|| panic!("{out}"));
    assert!(
        sent >= 500 && received == sent && lost == 0,
        "{sent} {received} {lost}: {out}"
    );

    // The held allocation kept the node draining until the deadline; then it exited.
    let took = exit_watch.join().unwrap();
    assert!(
        took >= Duration::from_secs(DRAIN_SECS - 1) && took < Duration::from_secs(DRAIN_SECS + 4),
        "exited {took:?} into a {DRAIN_SECS} s drain"
    );
    let mut server = server;
    assert!(server.child.wait().unwrap().success());
    let _ = held.join();
}
