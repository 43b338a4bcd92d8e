//! The web proxy's runtime in-process, without the causeway program: connections
//! handed to [`Proxy::hand_off`] over loopback socket pairs (the browser's side
//! speaks TLS with a throwaway CA), a plain-HTTP web bridge stand-in that
//! records what it was sent, and a table of requests with the answer each must
//! get. Then the connection machine's longer paths: keep-alive reuse of a
//! bridge connection, a WebSocket tunnel, plain HTTP redirected, a drain.
#![cfg(feature = "tls")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use causeway_testkit::bridge::TestCa;
use causeway_testkit::http::read_response;
use causeway_testkit::plain_bridge::{Bridge, bridge};
use causeway_testkit::wait::PATIENCE;
use proxy_core::runtime::{Link, Proxy, Upstream};
use rustls::pki_types::ServerName;

const JOIN: &str = "join.example.test";

/// The proxy in front of `bridge`, with its TLS configuration for browsers.
fn proxy(bridge: &Bridge, ca: &TestCa) -> (Arc<Proxy>, Arc<rustls::ServerConfig>) {
    let up = Upstream::parse(&format!("http://{}", bridge.addr)).unwrap();
    let proxy = Proxy::builder().site(JOIN, up).loops(1).build().unwrap();
    let leaf = ca.leaf(&[JOIN]);
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.cert_der.clone()], leaf.key_der.clone_key())
    .unwrap();
    (proxy, Arc::new(tls))
}

/// A browser's connection handed to the proxy as a TLS front would: the
/// server end of a loopback pair with a fresh TLS session, the SNI the browser
/// sends. Returns the browser's end, speaking TLS (or plain, without `tls`).
fn browser(
    proxy: &Proxy,
    tls: Option<&Arc<rustls::ServerConfig>>,
    ca: &TestCa,
) -> Box<dyn ReadWrite> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, peer) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let session = tls.map(|cfg| rustls::ServerConnection::new(cfg.clone()).unwrap());
    let sni = tls.map(|_| JOIN.to_string());
    proxy.hand_off(Link::accepted(server, session), Vec::new(), sni, peer);
    match tls {
        None => Box::new(client),
        Some(_) => {
            let conn = rustls::ClientConnection::new(
                ca.client_config(),
                ServerName::try_from(JOIN).unwrap(),
            )
            .unwrap();
            Box::new(rustls::StreamOwned::new(conn, client))
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[test]
fn each_request_gets_the_answer_its_case_says() {
    let ca = TestCa::new();
    let bridge = bridge();
    let (proxy, tls) = proxy(&bridge, &ca);
    // (what, request, status, what the body or head must hold)
    let cases: &[(&str, String, u16, &str)] = &[
        (
            "a page, forwarded",
            format!("GET /meeting/1 HTTP/1.1\r\nHost: {JOIN}\r\n\r\n"),
            200,
            "hello /meeting/1",
        ),
        (
            "a path normalised before it goes on",
            format!("GET /a/../b/./c HTTP/1.1\r\nHost: {JOIN}\r\n\r\n"),
            200,
            "hello /b/c",
        ),
        (
            "a host that is no join URL",
            "GET / HTTP/1.1\r\nHost: other.example.test\r\n\r\n".to_string(),
            421,
            "",
        ),
        (
            "a Host naming a port the proxy is not reached on",
            format!("GET / HTTP/1.1\r\nHost: {JOIN}:1\r\n\r\n"),
            421,
            "another port",
        ),
        (
            "a method the web bridge rule does not allow",
            format!("TRACE / HTTP/1.1\r\nHost: {JOIN}\r\n\r\n"),
            405,
            "",
        ),
        (
            "conflicting lengths (request smuggling)",
            format!(
                "POST / HTTP/1.1\r\nHost: {JOIN}\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            400,
            "",
        ),
    ];
    for (what, request, status, holds) in cases {
        let mut b = browser(&proxy, Some(&tls), &ca);
        b.write_all(request.as_bytes()).unwrap();
        let (got, head, body) = read_response(&mut *b);
        assert_eq!(got, *status, "{what}: {head}");
        assert!(
            body.contains(holds) || head.contains(holds),
            "{what}: {head}\n{body}"
        );
    }
    // What the web bridge was sent carries the client's address, and no
    // hop-by-hop field of the browser's.
    let head = bridge.heads.recv_timeout(PATIENCE).unwrap();
    assert!(head.contains("X-Forwarded-For: 127.0.0.1"), "{head}");
    assert!(head.contains("X-Forwarded-Proto: https"), "{head}");
}

#[test]
fn a_kept_alive_bridge_connection_carries_the_next_requests() {
    let ca = TestCa::new();
    let bridge = bridge();
    let (proxy, tls) = proxy(&bridge, &ca);
    let mut b = browser(&proxy, Some(&tls), &ca);
    for i in 0..3 {
        write!(b, "GET /r{i} HTTP/1.1\r\nHost: {JOIN}\r\n\r\n").unwrap();
        let (status, _, body) = read_response(&mut *b);
        assert_eq!((status, body), (200, format!("hello /r{i}")));
    }
    assert_eq!(
        *bridge.connections.lock().unwrap(),
        1,
        "one bridge connection"
    );
    let stats = proxy.stats();
    assert_eq!((stats.bridge_connections, stats.bridge_reuses), (1, 2));
}

#[test]
fn a_websocket_tunnel_relays_both_ways_and_is_counted() {
    let ca = TestCa::new();
    let bridge = bridge();
    let (proxy, tls) = proxy(&bridge, &ca);
    let mut b = browser(&proxy, Some(&tls), &ca);
    write!(
        b,
        "GET /ws HTTP/1.1\r\nHost: {JOIN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let (status, head, _) = read_response(&mut *b);
    assert_eq!(status, 101, "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    // A masked text frame "ping" goes up; the bridge echoes it down as is.
    let frame = [
        0x81,
        0x84,
        1,
        2,
        3,
        4,
        b'p' ^ 1,
        b'i' ^ 2,
        b'n' ^ 3,
        b'g' ^ 4,
    ];
    b.write_all(&frame).unwrap();
    let mut back = [0u8; 10];
    b.read_exact(&mut back).unwrap();
    assert_eq!(back, frame);
    assert_eq!(proxy.stats().tunnels, 1);
}

#[test]
fn plain_http_on_the_tls_port_is_sent_to_https() {
    let ca = TestCa::new();
    let bridge = bridge();
    let (proxy, _) = proxy(&bridge, &ca);
    let mut b = browser(&proxy, None, &ca);
    write!(b, "GET /join?id=1 HTTP/1.1\r\nHost: {JOIN}\r\n\r\n").unwrap();
    let (status, head, _) = read_response(&mut *b);
    assert_eq!(status, 301, "{head}");
    assert!(
        head.contains(&format!("Location: https://{JOIN}/join?id=1")),
        "{head}"
    );
}

#[test]
fn a_draining_proxy_refuses_a_new_connection_and_serves_a_kept_one() {
    let ca = TestCa::new();
    let bridge = bridge();
    let (proxy, tls) = proxy(&bridge, &ca);
    let mut kept = browser(&proxy, Some(&tls), &ca);
    write!(kept, "GET /before HTTP/1.1\r\nHost: {JOIN}\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut *kept).0, 200);
    proxy.drain();
    let mut new = browser(&proxy, Some(&tls), &ca);
    write!(new, "GET / HTTP/1.1\r\nHost: {JOIN}\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut *new).0, 503);
    // The kept connection's next request is answered, and it is closed after.
    write!(kept, "GET /after HTTP/1.1\r\nHost: {JOIN}\r\n\r\n").unwrap();
    let (status, head, _) = read_response(&mut *kept);
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
}

#[test]
fn a_tls_listener_of_the_proxys_own_serves_its_join_urls() {
    let ca = TestCa::new();
    let bridge = bridge();
    let (proxy, tls) = proxy(&bridge, &ca);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = proxy.clone();
    std::thread::spawn(move || serving.serve_tls(listener, tls));
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let conn =
        rustls::ClientConnection::new(ca.client_config(), ServerName::try_from(JOIN).unwrap())
            .unwrap();
    let mut b = rustls::StreamOwned::new(conn, tcp);
    // The Host names the listener's own port: no ProxyBuilder::port needed.
    write!(
        b,
        "GET /own HTTP/1.1\r\nHost: {JOIN}:{}\r\n\r\n",
        addr.port()
    )
    .unwrap();
    let (status, head, body) = read_response(&mut b);
    assert_eq!((status, body.as_str()), (200, "hello /own"), "{head}");
}

#[test]
fn settings_are_data_and_a_bad_set_is_refused_by_name() {
    use proxy_core::runtime::{ProxyError, ProxySettings};
    let up = Upstream::parse("http://127.0.0.1:9").unwrap();
    let mut s = ProxySettings::default();
    assert_eq!((s.max_per_source, s.bridge_keepalive), (8192, 64));
    s.sites.push((JOIN.to_string(), up.clone()));
    s.sites.push((JOIN.to_ascii_uppercase(), up));
    s.event_loops = Some(1);
    match Proxy::with_settings(s).build() {
        Err(ProxyError::DuplicateSite(host)) => assert_eq!(host, JOIN),
        other => panic!("{other:?}"),
    }
}
