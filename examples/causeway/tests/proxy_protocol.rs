//! PROXY protocol behind a stand-in TCP load balancer (connections from
//! 127.0.0.5, configured in `proxy_protocol_from`): the real client is the one
//! TURN answers to (XOR-MAPPED-ADDRESS), logs, counts against `tcp.max_per_source`
//! and the web bridge's forwarding headers name; a header from an address not
//! configured is refused, and a balancer's connection without one is closed.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::Server;
use common::bridge::{TempDir, TestCa, start_bridge};
use rustls::pki_types::ServerName;
use stun_core::attributes::XorMappedAddress;
use stun_core::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};

const JOIN: &str = "join.example.test";
const BALANCER: &str = "127.0.0.5";

struct Setup {
    _dir: TempDir,
    ca: TestCa,
    server: Server,
    tcp: SocketAddr,
    tls: SocketAddr,
}

fn setup() -> Setup {
    let ca = TestCa::new();
    let bridge = start_bridge(&ca.leaf(&["localhost"]));
    let front = ca.leaf(&[JOIN]);
    let dir = TempDir::new("proxy-protocol");
    let cert = dir.write("front.pem", &front.cert_pem);
    let key = dir.write("front.key", &front.key_pem);
    let ca_file = dir.write("ca.pem", &ca.cert_pem);
    let toml = format!(
        r#"listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
cert = "{cert}"
key = "{key}"
upstream_ca = "{ca}"
user = ["alice:pw"]
proxy = ["{JOIN}=https://localhost:{port}"]
web_bridge_rules = false
proxy_protocol_from = ["{BALANCER}/32"]
[tcp]
max_per_source = 1
[[rule]]
scheme = ["https"]
match = "prefix"
path = "/headers"
methods = ["GET"]
"#,
        cert = cert.display(),
        key = key.display(),
        ca = ca_file.display(),
        port = bridge.port(),
    );
    let cfg = dir.write("causeway.toml", &toml);
    let server = Server::start(&["--config", cfg.to_str().unwrap()]);
    let tls = server.startup_addr("causeway: listening on tls ");
    let tcp = server.addr();
    Setup {
        _dir: dir,
        ca,
        server,
        tcp,
        tls,
    }
}

/// A TCP connection from `from` (the balancer's address, or another).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.connect(&to.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

fn v2_header(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(c), SocketAddr::V4(s)) = (client, server) else {
        panic!("IPv4 here")
    };
    let mut h = proxy_core::proxy_protocol::V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&c.ip().octets());
    h.extend_from_slice(&s.ip().octets());
    h.extend_from_slice(&c.port().to_be_bytes());
    h.extend_from_slice(&s.port().to_be_bytes());
    h
}

fn binding() -> Vec<u8> {
    let mut buf = vec![0u8; 64];
    let b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId::new([7; 12]),
    )
    .unwrap();
    let n = b.finish();
    buf.truncate(n);
    buf
}

/// What a Binding over `s` got: the address it was answered with, or
/// `Closed` when the server closed the connection (a read that times out is a
/// failure of the test, not a close).
#[derive(Debug, PartialEq)]
enum Mapped {
    Answered(SocketAddr),
    Closed,
}

fn mapped(s: &mut TcpStream) -> Mapped {
    if s.write_all(&binding()).is_err() {
        return Mapped::Closed;
    }
    let mut buf = [0u8; 512];
    let mut n = 0;
    while n < 20 || n < 20 + usize::from(u16::from_be_bytes([buf[2], buf[3]])) {
        match s.read(&mut buf[n..]) {
            Ok(0) => return Mapped::Closed,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Mapped::Closed,
            Err(e) => panic!("no answer and no close: {e}"),
            Ok(k) => n += k,
        }
    }
    let m = Message::new_checked(&buf[..n]).expect("a STUN answer");
    Mapped::Answered(m.attribute::<XorMappedAddress>().unwrap().unwrap().0)
}

/// Whether the server closes `s` (EOF or reset); a read that times out is not a
/// close.
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

#[test]
fn the_real_client_is_answered_logged_and_counted() {
    let s = setup();
    let real: SocketAddr = "198.51.100.20:5555".parse().unwrap();
    // v1 over TURN-TCP: the Binding answer names the real client.
    let mut a = connect_from(BALANCER, s.tcp);
    a.write_all(
        format!(
            "PROXY TCP4 198.51.100.20 127.0.0.1 5555 {}\r\n",
            s.tcp.port()
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(mapped(&mut a), Mapped::Answered(real));
    s.server
        .wait_log("PROXY header: client Some(198.51.100.20:5555)");
    // max_per_source = 1 counts the real client, not the balancer: a second
    // connection for the same client is refused, one for another is served.
    let mut b = connect_from(BALANCER, s.tcp);
    b.write_all(&v2_header("198.51.100.20:6666".parse().unwrap(), s.tcp))
        .unwrap();
    assert_eq!(
        mapped(&mut b),
        Mapped::Closed,
        "second connection of one client"
    );
    s.server.wait_log("too many connections from this client");
    let mut c = connect_from(BALANCER, s.tcp);
    c.write_all(&v2_header("198.51.100.21:7777".parse().unwrap(), s.tcp))
        .unwrap();
    assert_eq!(
        mapped(&mut c),
        Mapped::Answered("198.51.100.21:7777".parse().unwrap())
    );
    drop(a);
}

#[test]
fn the_bridge_sees_the_real_client_in_its_forwarding_headers() {
    let s = setup();
    let mut tcp = connect_from(BALANCER, s.tls);
    tcp.write_all(&v2_header("203.0.113.9:4444".parse().unwrap(), s.tls))
        .unwrap();
    let conn =
        rustls::ClientConnection::new(s.ca.client_config(), ServerName::try_from(JOIN).unwrap())
            .unwrap();
    let mut t = rustls::StreamOwned::new(conn, tcp);
    t.write_all(
        format!("GET /headers HTTP/1.1\r\nHost: {JOIN}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut out = String::new();
    let _ = t.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("X-Forwarded-For: 203.0.113.9\r\n"), "{out}");
    assert!(out.contains("X-Real-IP: 203.0.113.9\r\n"), "{out}");
}

#[test]
fn a_header_from_elsewhere_is_refused_and_a_balancer_must_send_one() {
    let s = setup();
    for to in [s.tcp, s.tls] {
        let mut t = connect_from("127.0.0.1", to);
        t.write_all(b"PROXY TCP4 198.51.100.20 127.0.0.1 5555 3478\r\n")
            .unwrap();
        t.write_all(&binding()).unwrap();
        assert!(
            closed(&mut t),
            "{to}: a PROXY header from 127.0.0.1 was taken"
        );
    }
    s.server.wait_log("not in proxy_protocol_from");
    // Without a header the balancer's connection is closed, not guessed at.
    let mut t = connect_from(BALANCER, s.tcp);
    assert_eq!(mapped(&mut t), Mapped::Closed);
    s.server.wait_log("sent no PROXY header");
    // A direct client (no header) is served as always.
    let mut d = connect_from("127.0.0.1", s.tcp);
    let Mapped::Answered(a) = mapped(&mut d) else {
        panic!("a direct client is served")
    };
    assert_eq!(a.ip(), "127.0.0.1".parse::<std::net::IpAddr>().unwrap());
}
