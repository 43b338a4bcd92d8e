//! The web proxy's memory has a total bound: a hundred browsers that ask for a
//! large response and never read it hold the configured budget between them
//! (not a hundred queues), browsers that read still get their answers, the
//! kernel holds little unsent for a browser that stopped reading, and a web
//! bridge that sends interim (1xx) heads without end gets the browser a 502
//! instead of filling its queue.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::bridge::{TempDir, TestCa, start_bridge};
use common::wait::{self, PATIENCE};
use common::{Server, front_toml, http_get};
use rustls::pki_types::ServerName;

const JOIN: &str = "join.example.test";
const BUDGET_MB: u64 = 1;

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn setup() -> (Server, TempDir, TestCa, SocketAddr) {
    let ca = TestCa::new();
    let bridge = start_bridge(&ca.leaf(&["localhost"]));
    let dir = TempDir::new("proxy-memory");
    let toml = format!(
        "{}proxy = [\"{JOIN}=https://localhost:{}\"]\n[http]\nmemory_budget_mb = {BUDGET_MB}\n",
        front_toml(&ca, &[JOIN], &dir),
        bridge.port()
    );
    let cfg = dir.write("causeway.toml", &toml);
    let server = Server::start(&["--config", cfg.to_str().unwrap()]);
    let tls = server.startup_addr("causeway: listening on tls ");
    (server, dir, ca, tls)
}

fn connect(ca: &TestCa, tls: SocketAddr) -> Tls {
    let tcp = TcpStream::connect(tls).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let conn =
        rustls::ClientConnection::new(ca.client_config(), ServerName::try_from(JOIN).unwrap())
            .unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

fn metric(server: &Server, name: &str) -> u64 {
    let m = http_get(&server.admin_addr(), "/metrics");
    m.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {m}"))
}

#[test]
fn browsers_that_never_read_hold_the_budget_between_them() {
    let (server, _dir, ca, tls) = setup();
    let budget = metric(&server, "causeway_web_memory_budget_bytes");
    assert_eq!(budget, BUDGET_MB << 20);
    // A hundred ask for 4 MiB each and read nothing (TCP takes a little).
    let stalled: Vec<Tls> = (0..100)
        .map(|_| {
            let mut t = connect(&ca, tls);
            write!(t, "GET /large HTTP/1.1\r\nHost: {JOIN}\r\n\r\n").unwrap();
            t.flush().unwrap();
            t
        })
        .collect();
    // The proxy queues until the budget is spent, then stops reading bridges.
    let mut queued = 0;
    assert!(
        wait::holds(PATIENCE, || {
            queued = metric(&server, "causeway_web_queued_bytes");
            queued >= budget / 2
        }),
        "{queued} queued"
    );
    let settled = wait::poll(PATIENCE, || {
        let a = metric(&server, "causeway_web_queued_bytes");
        std::thread::sleep(std::time::Duration::from_millis(500));
        let b = metric(&server, "causeway_web_queued_bytes");
        if a == b { Ok(b) } else { Err("still moving") }
    })
    .unwrap();
    // Within the budget, and what each browser may take once it is spent (a
    // 4 KiB read, and the rest of a 16 KiB record its bridge's TLS session
    // decrypted): 3 MiB, not 100 full queues and TLS buffers (6.4 MiB).
    let bound = budget + 100 * 20 * 1024;
    assert!(
        settled <= bound,
        "{settled} bytes held with a budget of {budget} (at most {bound})"
    );
    // A browser that reads is still served, its empty queue taking reads.
    let mut reader = connect(&ca, tls);
    write!(
        reader,
        "GET /large HTTP/1.1\r\nHost: {JOIN}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = Vec::new();
    reader.read_to_end(&mut body).unwrap();
    assert!(body.len() > 64 * 65536, "{} bytes", body.len());
    drop(stalled);
    assert!(
        wait::holds(PATIENCE, || metric(&server, "causeway_web_queued_bytes")
            == 0),
        "queues given back when the browsers leave"
    );
}

/// The bytes the kernel holds in `local`'s send queue toward `peer` (`ss`'s
/// `skmem` `w`), once the connection is found.
fn kernel_send_queue(local: SocketAddr, peer: SocketAddr) -> u64 {
    common::tools::ensure_package("/usr/bin/ss", "iproute2");
    let filter = format!("( sport = :{} and dport = :{} )", local.port(), peer.port());
    let out = std::process::Command::new("ss")
        .args(["-tmnH", "state", "established", &filter])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let skmem = text
        .split("skmem:(")
        .nth(1)
        .unwrap_or_else(|| panic!("no such connection in ss: {text}"));
    skmem
        .split([',', ')'])
        .find_map(|f| f.strip_prefix('w')?.parse().ok())
        .unwrap_or_else(|| panic!("no w in {skmem}"))
}

#[test]
fn the_kernel_holds_little_for_a_browser_that_stopped_reading() {
    let (server, _dir, ca, tls) = setup();
    // A browser with a small window asks for 4 MiB and reads nothing.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(32 * 1024).unwrap();
    sock.connect(&tls.into()).unwrap();
    let tcp: TcpStream = sock.into();
    let me = tcp.local_addr().unwrap();
    let conn =
        rustls::ClientConnection::new(ca.client_config(), ServerName::try_from(JOIN).unwrap())
            .unwrap();
    let mut t = rustls::StreamOwned::new(conn, tcp);
    write!(t, "GET /large HTTP/1.1\r\nHost: {JOIN}\r\n\r\n").unwrap();
    t.flush().unwrap();
    // Once the proxy's queue for it stops moving, the kernel's send queue
    // toward it holds the unsent low-water mark (64 KiB) and what is in
    // flight, not the megabytes a send buffer grows to when left to itself.
    let settled = wait::poll(PATIENCE, || {
        let a = metric(&server, "causeway_web_queued_bytes");
        std::thread::sleep(std::time::Duration::from_millis(500));
        let b = metric(&server, "causeway_web_queued_bytes");
        if a == b && b > 0 {
            Ok(b)
        } else {
            Err("still moving")
        }
    })
    .unwrap();
    let kernel = kernel_send_queue(tls, me);
    assert!(
        kernel < 512 * 1024,
        "the kernel holds {kernel} bytes for the browser (the proxy {settled})"
    );
    drop(t);
}

#[test]
fn a_bridge_that_sends_interim_heads_without_end_gets_a_502() {
    let (server, _dir, ca, tls) = setup();
    let mut t = connect(&ca, tls);
    write!(
        t,
        "GET /interim-flood HTTP/1.1\r\nHost: {JOIN}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = t.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let interims = text.matches("HTTP/1.1 103").count();
    assert!(interims <= 8, "{interims} interim heads relayed");
    assert!(text.contains("HTTP/1.1 502"), "{text}");
    server.wait_log("more interim (1xx) responses than relayed");
}
