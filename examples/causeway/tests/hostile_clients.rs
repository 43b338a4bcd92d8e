//! `causeway serve` against hostile stream clients and log injection: connections
//! per source capped, a deadline for the opening that trickling bytes do not move
//! (TURN over TCP and over TLS), little memory for a connection without an
//! allocation, TLS handshakes kept off the packet threads, and client text
//! escaped in log lines.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::Server;
use common::bridge::{TempDir, TestCa};
use common::wait::{self, PATIENCE};
use stun_core::attributes::{Nonce, Realm, RequestedTransport, Username};
use stun_core::{Class, MessageBuilder, MessageType, Method, TransactionId};

/// Whether the server closed `c` within `within` (EOF or reset).
fn closed_within(c: &mut TcpStream, within: Duration) -> bool {
    c.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 256];
    loop {
        match c.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

fn binding() -> Vec<u8> {
    let mut buf = vec![0u8; 64];
    let b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId::new([3; 12]),
    )
    .unwrap();
    let n = b.finish();
    buf.truncate(n);
    buf
}

#[test]
fn connections_per_source_are_capped() {
    // The cap comes from the config file; flags give the rest.
    let dir = TempDir::new("per-source");
    let file = dir.write("c.toml", "[tcp]\nmax_per_source = 5\n");
    let server = Server::start(&[
        "--config",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--user",
        "a:b",
    ]);
    let addr = server.addr();
    // A Binding over a new connection, answered (or why not).
    let answered = || -> std::io::Result<TcpStream> {
        let mut c = TcpStream::connect(addr)?;
        c.set_read_timeout(Some(Duration::from_secs(30)))?;
        c.write_all(&binding())?;
        let mut b = [0u8; 128];
        match c.read(&mut b)? {
            0 => Err(std::io::Error::other("closed without an answer")),
            _ => Ok(c),
        }
    };
    let mut open: Vec<TcpStream> = (0..5)
        .map(|i| answered().unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    let mut sixth = TcpStream::connect(addr).unwrap();
    assert!(
        closed_within(&mut sixth, PATIENCE),
        "the sixth is refused\n{}",
        server.log_tail()
    );
    server.wait_log("tcp.max_per_source");
    // One closes: its place comes back (once the server saw it close).
    drop(open.pop());
    wait::until("a freed place for a sixth connection", PATIENCE, answered);
}

/// A TLS listener with a throwaway certificate; returns the server, its files and
/// the TLS address.
fn tls_server(extra: &str) -> (Server, TempDir, std::net::SocketAddr) {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["turn.example.test"]);
    let dir = TempDir::new("hostile");
    let cert = dir.write("c.pem", &leaf.cert_pem);
    let key = dir.write("c.key", &leaf.key_pem);
    let toml = format!(
        "listen = [\"127.0.0.1:0\"]\ntls_listen = [\"127.0.0.1:0\"]\ncert = \"{}\"\nkey = \"{}\"\nuser = [\"a:b\"]\n{extra}\n",
        cert.display(),
        key.display()
    );
    let file = dir.write("c.toml", &toml);
    let server = Server::start(&["--config", file.to_str().unwrap()]);
    let tls = server.startup_addr("causeway: listening on tls ");
    (server, dir, tls)
}

#[test]
fn an_opening_that_trickles_in_is_cut_at_a_fixed_deadline() {
    const DEADLINE: Duration = Duration::from_secs(2);
    let (server, _dir, tls) = tls_server("[tcp]\nhandshake_timeout_secs = 2\n");
    // TURN over TCP: a STUN header, then one byte every 200 ms, never a whole
    // message. A deadline refreshed by every byte would never fall (the test
    // gives up after a minute of trickling).
    let mut header = binding();
    header[3] = 100; // a 100-byte body that never comes whole
    // Our clock starts before either connection is accepted: what it measures
    // can only be longer than the server's, however slow the machine.
    let start = Instant::now();
    let mut tcp = TcpStream::connect(server.addr()).unwrap();
    tcp.write_all(&header).unwrap();
    // A TLS ClientHello, byte by byte.
    let mut hello = TcpStream::connect(tls).unwrap();
    let record = [22u8, 3, 1, 0x01, 0x00, 1, 0, 0, 0xfc, 3, 3];
    let (mut tcp_closed, mut tls_closed) = (None, None);
    let mut i = 0;
    while start.elapsed() < PATIENCE && (tcp_closed.is_none() || tls_closed.is_none()) {
        let tick = Duration::from_millis(100);
        if tcp_closed.is_none() && (tcp.write_all(&[0]).is_err() || closed_within(&mut tcp, tick)) {
            tcp_closed = Some(start.elapsed());
        }
        let b = record.get(i).copied().unwrap_or(0);
        if tls_closed.is_none()
            && (hello.write_all(&[b]).is_err() || closed_within(&mut hello, tick))
        {
            tls_closed = Some(start.elapsed());
        }
        i += 1;
    }
    let tcp_closed =
        tcp_closed.unwrap_or_else(|| panic!("the TCP opening is cut\n{}", server.log_tail()));
    let tls_closed =
        tls_closed.unwrap_or_else(|| panic!("the TLS opening is cut\n{}", server.log_tail()));
    // Not before the deadline (the server's clock starts at accept, after ours).
    let early = DEADLINE - Duration::from_millis(300);
    assert!(tcp_closed >= early, "{tcp_closed:?}");
    assert!(tls_closed >= early, "{tls_closed:?}");
}

#[test]
fn a_connection_without_an_allocation_may_not_send_large_frames() {
    let server = Server::start(&["--listen", "127.0.0.1:0", "--user", "a:b"]);
    let mut c = TcpStream::connect(server.addr()).unwrap();
    // A STUN header announcing 60000 bytes: the server would have to buffer them.
    let mut header = binding();
    header[2..4].copy_from_slice(&60000u16.to_be_bytes());
    c.write_all(&header).unwrap();
    c.write_all(&[0u8; 1000]).unwrap();
    assert!(closed_within(&mut c, PATIENCE), "{}", server.log_tail());
}

/// CPU ticks (user + system) of each thread of `pid`, by thread name.
fn thread_ticks(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        // Fields after the ")" that closes the name: state is 3rd, utime 14th.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
        out.push((comm.trim().to_string(), ticks));
    }
    out
}

#[test]
fn tls_handshakes_run_off_the_packet_threads() {
    let (server, dir, tls) = tls_server("");
    let _ = dir;
    let ca_cfg = {
        // Trust any certificate: only the handshake's cost matters here.
        let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(common::bridge::AcceptAny::default()))
        .with_no_client_auth();
        std::sync::Arc::new(cfg)
    };
    let pid = server.child.id();
    let before = thread_ticks(pid);
    let name = rustls::pki_types::ServerName::try_from("turn.example.test").unwrap();
    // Handshakes that end there (as a flood of them would): all their cost is
    // the handshake's.
    for _ in 0..600 {
        let mut tcp = TcpStream::connect(tls).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut conn = rustls::ClientConnection::new(ca_cfg.clone(), name.clone()).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).unwrap();
        }
    }
    // TURN over TLS still works beside them.
    let tcp = TcpStream::connect(tls).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let conn = rustls::ClientConnection::new(ca_cfg.clone(), name.clone()).unwrap();
    let mut t = rustls::StreamOwned::new(conn, tcp);
    t.write_all(&binding()).unwrap();
    let mut b = [0u8; 128];
    assert!(t.read(&mut b).unwrap() > 0, "TURN over TLS answers");
    let after = thread_ticks(pid);
    let spent = |prefix: &str| -> u64 {
        let total = |v: &[(String, u64)]| -> u64 {
            v.iter()
                .filter(|(n, _)| n.starts_with(prefix))
                .map(|(_, t)| t)
                .sum()
        };
        total(&after) - total(&before)
    };
    // The relay library names its threads `turn-tls` and `turn-worker-N`.
    let tls_thread = spent("turn-tls");
    let workers: u64 = after
        .iter()
        .filter(|(n, _)| n.starts_with("turn-worker-"))
        .map(|(n, t)| t - before.iter().find(|(m, _)| m == n).map_or(0, |(_, b)| *b))
        .sum();
    eprintln!("TLS thread {tls_thread} ticks, packet threads {workers}");
    assert!(
        tls_thread >= 5,
        "the TLS thread did the handshakes: {tls_thread} ticks"
    );
    assert!(
        workers * 5 < tls_thread,
        "packet threads spent {workers} ticks, the TLS thread {tls_thread}"
    );
}

#[test]
fn client_text_is_escaped_in_log_lines() {
    let server = Server::start(&["--listen", "127.0.0.1:0", "--user", "alice:pw"]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // A first Allocate for the nonce, then one with a username that tries to
    // forge a log line and recolour the terminal.
    let mut buf = vec![0u8; 512];
    let build = |buf: &mut Vec<u8>, nonce: Option<&str>| {
        buf.resize(512, 0);
        let mut b = MessageBuilder::new(
            buf,
            MessageType::new(Method::ALLOCATE, Class::Request),
            TransactionId::new([7; 12]),
        )
        .unwrap();
        b.add(&RequestedTransport::UDP).unwrap();
        if let Some(n) = nonce {
            b.add(&Username(
                "mallory\n2026-12-01T00:00:00Z INFO forged line\u{1b}[31m",
            ))
            .unwrap();
            b.add(&Realm("causeway")).unwrap();
            b.add(&Nonce(n)).unwrap();
            b.add_message_integrity(&[0; 16]).unwrap();
        }
        let n = b.finish();
        buf.truncate(n);
    };
    build(&mut buf, None);
    let mut reply = [0u8; 1500];
    // Sent again until answered (UDP).
    let n = wait::until("the 401 with a nonce", PATIENCE, || {
        sock.send_to(&buf, server.addr())?;
        sock.recv(&mut reply)
    });
    let m = stun_core::Message::new_checked(&reply[..n]).unwrap();
    let nonce = m.attribute::<Nonce>().unwrap().unwrap().0.to_string();
    build(&mut buf, Some(&nonce));
    wait::until("a log line about the forged username", PATIENCE, || {
        sock.send_to(&buf, server.addr())?;
        match server
            .log
            .wait_for("user `mallory", Duration::from_millis(500))
        {
            true => Ok(()),
            false => Err(std::io::Error::other("not logged yet")),
        }
    });
    let log = server.log_lines();
    assert!(
        log.iter()
            .all(|l| !l.starts_with("2026-12-01T00:00:00Z INFO forged")),
        "a forged line: {log:?}"
    );
    assert!(
        log.iter().all(|l| !l.contains('\u{1b}')),
        "a raw escape: {log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("user `mallory\\n2026-12-01T00:00:00Z INFO forged line\\x1b[31m`")),
        "{log:?}"
    );
}
