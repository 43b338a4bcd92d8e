//! The TLS port against handshake floods: one captured ClientHello replayed
//! from one source is answered only up to the source's handshake rate (the
//! rest closed unsigned and counted), while another source's real handshake
//! goes through; a ClientHello that arrives after its opening deadline is never
//! answered; and connections still opening count against
//! `tcp.max_connections`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::Server;
use common::bridge::{AcceptAny, TempDir, TestCa};
use common::wait::{self, PATIENCE};
use rustls::pki_types::ServerName;

/// `causeway serve` with a TLS listener and `extra` TOML; its TLS address.
fn tls_server(extra: &str) -> (Server, TempDir, SocketAddr) {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["turn.example.test"]);
    let dir = TempDir::new("tls-handshakes");
    let cert = dir.write("c.pem", &leaf.cert_pem);
    let key = dir.write("c.key", &leaf.key_pem);
    let toml = format!(
        "listen = [\"127.0.0.1:0\"]\ntls_listen = [\"127.0.0.1:0\"]\ncert = \"{}\"\nkey = \"{}\"\nuser = [\"a:b\"]\nthreads = 1\n{extra}\n",
        cert.display(),
        key.display()
    );
    let file = dir.write("c.toml", &toml);
    let server = Server::start(&["--config", file.to_str().unwrap()]);
    let tls = server.startup_addr("causeway: listening on tls ");
    (server, dir, tls)
}

fn client_config() -> Arc<rustls::ClientConfig> {
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny::default()))
        .with_no_client_auth(),
    )
}

/// A ClientHello as a client would send it, captured once to be replayed.
fn captured_hello() -> Vec<u8> {
    let name = ServerName::try_from("turn.example.test").unwrap();
    let mut c = rustls::ClientConnection::new(client_config(), name).unwrap();
    let mut hello = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut hello).unwrap();
    }
    hello
}

/// Sends `hello` from `from` and says whether the server answered it (a
/// ServerHello record) rather than closing the connection.
fn answered(from: &str, to: SocketAddr, hello: &[u8]) -> bool {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.connect(&to.into()).unwrap();
    let mut s: TcpStream = s.into();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(hello).unwrap();
    let mut first = [0u8; 1];
    // 22: a handshake record (the ServerHello); EOF or a reset: refused.
    matches!(s.read(&mut first), Ok(1) if first[0] == 22)
}

/// A metric's value on the admin port.
fn metric(server: &Server, line_start: &str) -> u64 {
    let m = common::http_get(&server.admin_addr(), "/metrics");
    m.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in {m}"))
}

#[test]
fn a_replayed_client_hello_flood_from_one_source_is_held_to_its_rate() {
    // Five handshakes at once from a source, then one a second.
    let (server, _dir, tls) =
        tls_server("[tcp]\ntls_handshakes_per_sec = 1\ntls_handshake_burst = 5\n");
    let hello = captured_hello();
    let flood = std::time::Instant::now();
    let answers = (0..40)
        .filter(|_| answered("127.0.0.3", tls, &hello))
        .count();
    let flood_secs = flood.elapsed().as_secs();
    // The burst, and the odd token that refilled while the flood ran.
    assert!(
        (5..40).contains(&answers),
        "{answers} of 40 replayed hellos answered"
    );
    let over = metric(&server, "causeway_tls_refused_total{reason=\"over_rate\"}");
    assert!(
        over >= 40 - answers as u64 && over > 0,
        "{over} counted over the rate, {answers} answered"
    );
    server.wait_log("over the TLS handshakes allowed per second from one source");
    // Another source completes a real handshake meanwhile.
    let name = ServerName::try_from("turn.example.test").unwrap();
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&"127.0.0.4:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.connect(&tls.into()).unwrap();
    let mut tcp: TcpStream = s.into();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut c = rustls::ClientConnection::new(client_config(), name).unwrap();
    while c.is_handshaking() {
        c.complete_io(&mut tcp).unwrap();
    }
    // Lines about it: a handful, not one per hello. Each TLS thread (one per
    // core) logs at most a line a second, so the bound follows how long the
    // flood took on this machine.
    let lines = server
        .log_lines()
        .iter()
        .filter(|l| l.contains("over the TLS handshakes"))
        .count() as u64;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let bound = threads * (2 + flood_secs);
    assert!(
        lines <= bound.min(39),
        "{lines} log lines for one flood of 40 hellos in {flood_secs} s"
    );
}

#[test]
fn a_backlog_past_its_deadline_is_closed_unsigned() {
    // One TLS thread, a one-second opening deadline, no rate or count limits in
    // the way: more ClientHellos at once than it signs in a second.
    let (server, _dir, tls) = tls_server(
        "[tcp]\ntls_threads = 1\nhandshake_timeout_secs = 1\nmax_connections = 100000\n\
         max_per_source = 100000\ntls_handshakes_per_sec = 1000000\ntls_handshake_burst = 1000000\n",
    );
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let hello = captured_hello();
    let conns: Vec<TcpStream> = (0..1500)
        .filter_map(|_| {
            let mut s = TcpStream::connect(tls).ok()?;
            s.write_all(&hello).ok()?;
            Some(s)
        })
        .collect();
    // Those the thread reached too late went unanswered: counted, not signed.
    let unsigned = || {
        metric(&server, "causeway_tls_refused_total{reason=\"late\"}")
            + metric(&server, "causeway_tls_refused_total{reason=\"queue_full\"}")
    };
    assert!(
        wait::holds(PATIENCE, || unsigned() > 0),
        "every one of {} hellos was answered, however late",
        conns.len()
    );
    drop(conns);
    // And the port serves on.
    let name = ServerName::try_from("turn.example.test").unwrap();
    wait::until("a handshake after the backlog", PATIENCE, || {
        let mut tcp = TcpStream::connect(tls)?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut c = rustls::ClientConnection::new(client_config(), name.clone())
            .map_err(std::io::Error::other)?;
        while c.is_handshaking() {
            c.complete_io(&mut tcp)?;
        }
        Ok::<_, std::io::Error>(())
    });
}

#[test]
fn connections_still_opening_count_against_max_connections() {
    let (server, _dir, tls) = tls_server("[tcp]\nmax_connections = 20\nmax_per_source = 1000\n");
    // One byte each: openings that never finish.
    let mut held: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(tls).unwrap();
            s.write_all(&[22]).unwrap();
            s
        })
        .collect();
    // The next ones are refused at once (closed), not held open.
    assert!(
        wait::holds(PATIENCE, || {
            let mut s = TcpStream::connect(tls).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(&[22]);
            // Closed (a timeout is not a close: it was held).
            match s.read(&mut [0u8; 1]) {
                Ok(0) => true,
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                Ok(_) => false,
            }
        }),
        "a 21st opening was held"
    );
    server.wait_log("connections already open or opening");
    // One closes: a place comes back.
    drop(held.pop());
    let name = ServerName::try_from("turn.example.test").unwrap();
    wait::until("a freed place", PATIENCE, || {
        let mut tcp = TcpStream::connect(tls)?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut c = rustls::ClientConnection::new(client_config(), name.clone())
            .map_err(std::io::Error::other)?;
        while c.is_handshaking() {
            c.complete_io(&mut tcp)?;
        }
        Ok::<_, std::io::Error>(())
    });
}
