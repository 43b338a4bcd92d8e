//! The web proxy end to end: a stand-in web bridge (HTTPS and WSS, throwaway CA
//! made here) behind `causeway serve --tls-listen --proxy`, driven by a TLS client
//! and a real WebSocket client; plus the 80 → 443 redirect, refusals, unreachable
//! web bridges, and TURN sharing port 443.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::bridge::{TempDir, TestCa, start_bridge};
use common::http::read_response;
use common::wait::PATIENCE;
use common::{Server, front_toml, run_with_timeout, start_front};
use rustls::pki_types::ServerName;

const JOIN: &str = "join.example.test";

struct Setup {
    _dir: TempDir,
    _closed: socket2::Socket,
    ca: TestCa,
    server: Server,
    tls_addr: SocketAddr,
    http_addr: SocketAddr,
}

fn setup(extra_toml: &str) -> Setup {
    let ca = TestCa::new();
    let bridge = start_bridge(&ca.leaf(&["localhost"]));
    let dir = TempDir::new("proxy");
    // A port bound and never listened on: connections to it are refused, and
    // no other test can take it meanwhile.
    let closed_sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    closed_sock
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let closed = closed_sock.local_addr().unwrap().as_socket().unwrap();
    let toml = format!(
        r#"{front}proxy = ["{JOIN}=https://localhost:{bport}", "meet.example.test=https://localhost:{closed}"]
{extra_toml}
"#,
        front = front_toml(&ca, &[JOIN, "meet.example.test"], &dir),
        bport = bridge.port(),
        closed = closed.port(),
    );
    let cfg = dir.write("causeway.toml", &toml);
    let server = Server::start(&["--config", cfg.to_str().unwrap()]);
    let tls_addr = server.startup_addr("causeway: listening on tls ");
    let http_addr = server.startup_addr("causeway: redirecting http ");
    Setup {
        _dir: dir,
        _closed: closed_sock,
        ca,
        server,
        tls_addr,
        http_addr,
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(s: &Setup, sni: &str) -> Tls {
    let tcp = TcpStream::connect(s.tls_addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let conn = rustls::ClientConnection::new(
        s.ca.client_config(),
        ServerName::try_from(sni.to_string()).unwrap(),
    )
    .unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Sends raw request bytes and reads one response (head and Content-Length body).
fn exchange(t: &mut Tls, request: &[u8]) -> (u16, String, String) {
    t.write_all(request).unwrap();
    t.flush().unwrap();
    read_response(t)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {JOIN}\r\n\r\n").into_bytes()
}

#[test]
fn allowed_requests_pass_with_the_normalised_path() {
    let s = setup("");
    let mut t = connect(&s, JOIN);
    let (status, _, body) = exchange(&mut t, &get("/api/../api/./echo//x?q=1"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("GET /api/echo/x?q=1 body=0"),
        "the bridge sees the normalised path: {body}"
    );
    assert!(body.contains("xff=127.0.0.1"));
    // Keep-alive: a POST with a body on the same connection.
    let payload = vec![7u8; 300_000];
    let mut req = format!(
        "POST /api/upload HTTP/1.1\r\nHost: {JOIN}\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    )
    .into_bytes();
    req.extend_from_slice(&payload);
    let (status, _, body) = exchange(&mut t, &req);
    assert_eq!(status, 200);
    assert_eq!(
        body,
        format!(
            "POST /api/upload body=300000 sum={} xff=127.0.0.1",
            7 * 300_000
        )
    );
    // Chunked request body.
    let (status, _, body) = exchange(
        &mut t,
        format!("PUT /api/c HTTP/1.1\r\nHost: {JOIN}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").as_bytes(),
    );
    assert_eq!(status, 200);
    assert!(body.starts_with("PUT /api/c body=11"), "{body}");
    // A large chunked response streams through.
    t.write_all(&get("/big")).unwrap();
    let mut all = Vec::new();
    let mut chunk = [0u8; 65536];
    while !all.ends_with(b"0\r\n\r\n") {
        let n = t.read(&mut chunk).unwrap();
        assert!(n > 0);
        all.extend_from_slice(&chunk[..n]);
    }
    let zs = all.iter().filter(|b| **b == b'z').count();
    assert_eq!(zs, 1 << 20);
}

#[test]
fn refusals() {
    let s = setup(
        r#"web_bridge_rules = false
[[rule]]
scheme = ["https"]
match = "prefix"
path = "/api"
methods = ["GET", "POST"]
[[rule]]
scheme = ["https"]
match = "exact"
path = "/"
methods = ["GET"]
[[rule]]
scheme = ["wss"]
match = "exact"
path = "/ws"
methods = ["GET"]
"#,
    );
    let cases: &[(&str, u16)] = &[
        (
            "GET /secret HTTP/1.1\r\nHost: join.example.test\r\n\r\n",
            403,
        ),
        (
            "GET /api/../secret HTTP/1.1\r\nHost: join.example.test\r\n\r\n",
            403,
        ),
        (
            "GET /api/%2e%2e/secret HTTP/1.1\r\nHost: join.example.test\r\n\r\n",
            403,
        ),
        (
            "DELETE /api/x HTTP/1.1\r\nHost: join.example.test\r\n\r\n",
            405,
        ),
        (
            "OPTIONS /api/x HTTP/1.1\r\nHost: join.example.test\r\n\r\n",
            405,
        ),
        (
            "GET /api%2fx HTTP/1.1\r\nHost: join.example.test\r\n\r\n",
            400,
        ),
        (
            "GET /api\\x HTTP/1.1\r\nHost: join.example.test\r\n\r\n",
            400,
        ),
        ("GET / HTTP/1.1\r\nHost: evil.example.test\r\n\r\n", 421),
        (
            "POST /api/x HTTP/1.1\r\nHost: join.example.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (
            "POST /api/x HTTP/1.1\r\nHost: join.example.test\r\nContent-Length: +3\r\n\r\nabc",
            400,
        ),
        (
            "GET /api/x HTTP/1.1\r\nHost: join.example.test\r\nHost: join.example.test\r\n\r\n",
            400,
        ),
    ];
    for (req, want) in cases {
        let mut t = connect(&s, JOIN);
        let (status, _, body) = exchange(&mut t, req.as_bytes());
        assert_eq!(status, *want, "{req:?}: {body}");
    }
    let mut long = format!(
        "GET /api/{} HTTP/1.1\r\nHost: {JOIN}\r\n\r\n",
        "a".repeat(5000)
    );
    let mut t = connect(&s, JOIN);
    assert_eq!(exchange(&mut t, long.as_bytes()).0, 414);
    long = format!(
        "GET /api/x HTTP/1.1\r\nHost: {JOIN}\r\nX: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    let mut t = connect(&s, JOIN);
    assert_eq!(exchange(&mut t, long.as_bytes()).0, 431);
    // SNI for one site, Host for another: 421.
    let mut t = connect(&s, "meet.example.test");
    assert_eq!(exchange(&mut t, &get("/api/x")).0, 421);
    // Allowed ones still pass.
    let mut t = connect(&s, JOIN);
    assert_eq!(exchange(&mut t, &get("/api/x")).0, 200);
    s.server.wait_log("403 path not in the allow list");
}

#[test]
fn websocket_echo_both_ways_and_refused_upgrades() {
    let s = setup("");
    let t = connect(&s, JOIN);
    let (mut ws, resp) = tungstenite::client::client(format!("wss://{JOIN}/ws"), t)
        .expect("WebSocket handshake through the proxy");
    assert_eq!(resp.status(), 101);
    for i in 0..20 {
        let msg = format!("message {i}");
        ws.send(tungstenite::Message::text(msg.clone())).unwrap();
        assert_eq!(ws.read().unwrap().into_text().unwrap().as_str(), msg);
    }
    ws.send(tungstenite::Message::binary(vec![1u8; 70_000]))
        .unwrap();
    assert_eq!(ws.read().unwrap().into_data().len(), 70_000);
    ws.close(None).unwrap();

    // An upgrade the bridge answers with 403: relayed as a response, no tunnel.
    let mut t = connect(&s, JOIN);
    let req = format!(
        "GET /ws-refused HTTP/1.1\r\nHost: {JOIN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let (status, _, body) = exchange(&mut t, req.as_bytes());
    assert_eq!((status, body.as_str()), (403, "refused"));
    // The connection is plain HTTP again.
    assert_eq!(exchange(&mut t, &get("/api/after")).0, 200);
    // A 101 whose accept key does not match: relayed, then the connection closes
    // (no tunnel, and the switched web bridge connection is not reused).
    let mut t = connect(&s, JOIN);
    let req = format!(
        "GET /ws-bad-accept HTTP/1.1\r\nHost: {JOIN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    assert_eq!(exchange(&mut t, req.as_bytes()).0, 101);
    assert_eq!(t.read(&mut [0u8; 64]).unwrap(), 0, "closed after the 101");
    // An upgrade with a body is refused by the proxy itself.
    let mut t = connect(&s, JOIN);
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {JOIN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 2\r\n\r\nhi"
    );
    assert_eq!(exchange(&mut t, req.as_bytes()).0, 400);
}

#[test]
fn interim_responses_are_relayed_before_the_final_one() {
    let s = setup("");
    let mut t = connect(&s, JOIN);
    t.write_all(&get("/early-hints")).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.ends_with(b"final") {
        let n = t.read(&mut chunk).unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{got}");
    assert!(got.contains("\r\n\r\nHTTP/1.1 200 OK\r\n"), "{got}");
    // The next response on the connection is the next request's, not a leftover.
    let (status, _, body) = exchange(&mut t, &get("/api/after"));
    assert_eq!(status, 200);
    assert!(body.starts_with("GET /api/after"), "{body}");
}

#[test]
fn plain_http_is_redirected_to_https() {
    let s = setup("");
    let mut t = TcpStream::connect(s.http_addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    t.write_all(format!("GET /meeting/123?lang=it HTTP/1.1\r\nHost: {JOIN}\r\n\r\n").as_bytes())
        .unwrap();
    let (status, head, _) = read_response(&mut t);
    assert_eq!(status, 301);
    assert!(
        head.contains(&format!("Location: https://{JOIN}/meeting/123?lang=it\r\n")),
        "{head}"
    );
    // Plain HTTP on the TLS port gets the same redirect.
    let mut t = TcpStream::connect(s.tls_addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    t.write_all(format!("GET /x HTTP/1.1\r\nHost: {JOIN}\r\n\r\n").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut t).0, 301);
}

#[test]
fn unreachable_web_bridges_get_502_and_a_log_line_with_the_cause() {
    let s = setup("");
    let mut t = connect(&s, "meet.example.test");
    let req = b"GET /x HTTP/1.1\r\nHost: meet.example.test\r\n\r\n";
    assert_eq!(exchange(&mut t, req).0, 502);
    let line = s
        .server
        .wait_log("web bridge connection failed for join URL `meet.example.test`");
    assert!(line.contains("cannot connect"), "{line}");
}

#[test]
fn dns_failure_of_the_web_bridge_is_named() {
    // A certificate covering the join URL whose bridge does not resolve.
    let ca = TestCa::new();
    let (server, _dir, tls_addr) = start_front(
        &ca,
        "nowhere.example.test",
        "nowhere.example.test=https://no-such-host.invalid:443",
    );
    let tcp = TcpStream::connect(tls_addr).unwrap();
    // The resolver's own retries come first: give it a couple of minutes.
    tcp.set_read_timeout(Some(2 * PATIENCE)).unwrap();
    let conn = rustls::ClientConnection::new(
        ca.client_config(),
        ServerName::try_from("nowhere.example.test").unwrap(),
    )
    .unwrap();
    let mut t = rustls::StreamOwned::new(conn, tcp);
    let (status, _, _) = exchange(
        &mut t,
        b"GET / HTTP/1.1\r\nHost: nowhere.example.test\r\n\r\n",
    );
    assert_eq!(status, 502);
    let line = server.wait_log("join URL `nowhere.example.test`");
    assert!(line.contains("DNS failure"), "{line}");
}

#[test]
fn turn_still_works_on_port_443_with_the_proxy() {
    let s = setup("");
    // TURN over plain TCP on the TLS port, demultiplexed by its first bytes.
    let (ok, out) = run_with_timeout(
        std::process::Command::new(env!("CARGO_BIN_EXE_causeway")).args([
            "allocate",
            "--server",
            &s.tls_addr.to_string(),
            "--user",
            "alice:pw",
            "--transport",
            "tcp",
        ]),
        PATIENCE,
    );
    assert!(ok, "{out}");
    assert!(out.contains("relayed"), "{out}");
    // TURN over TLS on the same port: the TLS opening, then STUN inside.
    let ca = s._dir.write("turn-ca.pem", &s.ca.cert_pem);
    let (ok, out) = run_with_timeout(
        std::process::Command::new(env!("CARGO_BIN_EXE_causeway")).args([
            "check",
            "--server",
            &s.tls_addr.to_string(),
            "--user",
            "alice:pw",
            "--transport",
            "tls",
            "--ca",
            ca.to_str().unwrap(),
            "--server-name",
            JOIN,
            "--timeout",
            "20",
        ]),
        2 * PATIENCE,
    );
    assert!(out.contains("[PASS] allocate"), "{out}");
    let _ = ok; // the relay step needs an allowed loopback peer, not configured here
}

#[test]
fn bad_tls_configurations_are_refused_at_start() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["other.example.test"]);
    let dir = TempDir::new("badtls");
    let cert = dir.write("c.pem", &leaf.cert_pem);
    let key = dir.write("k.pem", &leaf.key_pem);
    let ca_file = dir.write("ca.pem", &ca.cert_pem);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_causeway"))
            .arg("serve")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(&["--tls-listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("`cert`"), "{err}");
    let (code, err) = run(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--upstream-ca",
        ca_file.to_str().unwrap(),
        "--proxy",
        "join.example.test=https://localhost:1",
    ]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("does not cover the join URL `join.example.test`"),
        "{err}"
    );
    let (code, err) = run(&[
        "--listen",
        "127.0.0.1:4443",
        "--tls-listen",
        "127.0.0.1:4443",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("`tls_listen`") && err.contains("already claimed"),
        "{err}"
    );
    assert!(
        err.contains(
            "; with tls_listen on 443, TURN over TCP and TLS are served there too, so drop"
        ),
        "one readable sentence: {err}"
    );
    let (code, err) = run(&["--proxy", "join.example.test=https://localhost:1"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("`proxy`"), "{err}");
}

/// A node that is only the web proxy: no TURN listener, no TURN users. It
/// starts (with a warning saying what it is), serves HTTPS on its TLS listener
/// with the listener's own port in the Host, and opens nothing else for TURN.
#[test]
fn a_web_proxy_only_node_serves_https_with_no_turn_listener() {
    let ca = TestCa::new();
    let bridge = start_bridge(&ca.leaf(&["localhost"]));
    let dir = TempDir::new("web-only");
    let front = ca.leaf(&[JOIN]);
    let cert = dir.write("front.pem", &front.cert_pem);
    let key = dir.write("front.key", &front.key_pem);
    let ca_file = dir.write("ca.pem", &ca.cert_pem);
    let toml = format!(
        r#"listen = []
tls_listen = ["127.0.0.1:0"]
admin = "127.0.0.1:0"
cert = "{cert}"
key = "{key}"
upstream_ca = "{ca}"
proxy = ["{JOIN}=https://localhost:{bport}"]
"#,
        cert = cert.display(),
        key = key.display(),
        ca = ca_file.display(),
        bport = bridge.port(),
    );
    let cfg = dir.write("causeway.toml", &toml);
    let server = Server::start(&["--config", cfg.to_str().unwrap()]);
    let tls_addr = server.startup_addr("causeway: listening on tls ");
    server.wait_log("a web-proxy-only node");
    let s = Setup {
        _dir: dir,
        _closed: socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap(),
        ca,
        server,
        tls_addr,
        http_addr: tls_addr,
    };
    let mut t = connect(&s, JOIN);
    // The Host names the port the browser reached: the listener's own.
    let request = format!(
        "GET /index.html HTTP/1.1\r\nHost: {JOIN}:{}\r\n\r\n",
        tls_addr.port()
    );
    let (status, head, body) = exchange(&mut t, request.as_bytes());
    assert_eq!(status, 200, "{head}{body}");
    assert!(
        !s.server
            .log_lines()
            .iter()
            .any(|l| l.starts_with("causeway: listening on udp")),
        "a TURN listener was opened: {}",
        s.server.log_tail()
    );
}
