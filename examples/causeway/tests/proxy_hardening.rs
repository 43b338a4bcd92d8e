//! The web proxy under hostile and realistic traffic, end to end against the
//! stand-in web bridge: exactly one answer per request (refused, then the next
//! one; pipelined, in order), `Connection: close` honoured everywhere, hop-by-hop
//! and forwarding fields as the bridge and the browser receive them, bridges that
//! say more than they framed, redirects that cannot be aimed elsewhere, timers
//! that follow progress, path parameters, and SNI against Host when the
//! ClientHello spans several records or carries no SNI.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::bridge::{TempDir, TestCa, start_bridge};
use common::wait::PATIENCE;
use common::{Server, front_toml};
use rustls::pki_types::ServerName;

const JOIN: &str = "join.example.test";
const OTHER: &str = "meet.example.test";

struct Setup {
    _dir: TempDir,
    ca: TestCa,
    server: Server,
    tls: SocketAddr,
    http: SocketAddr,
}

/// The proxy with an allow list of its own: `/api`, `/headers`, `/conn`,
/// `/overlong`, `/hop-response`, `/slow` and `/` for GET, POST and HEAD; anything
/// else is 403 (or 405 for other methods). `extra` holds more sections.
fn setup(extra: &str) -> Setup {
    let ca = TestCa::new();
    let bridge = start_bridge(&ca.leaf(&["localhost"]));
    let dir = TempDir::new("hardening");
    let mut rules = String::new();
    for path in [
        "/api",
        "/headers",
        "/conn",
        "/overlong",
        "/hop-response",
        "/slow",
    ] {
        rules.push_str(&format!(
            "[[rule]]\nscheme = [\"https\"]\nmatch = \"prefix\"\npath = \"{path}\"\nmethods = [\"GET\", \"POST\", \"HEAD\"]\n"
        ));
    }
    let toml = format!(
        r#"{front}proxy = ["{JOIN}=https://localhost:{port}", "{OTHER}=https://localhost:{port}"]
web_bridge_rules = false
{extra}
{rules}"#,
        front = front_toml(&ca, &[JOIN, OTHER], &dir),
        port = bridge.port(),
    );
    let cfg = dir.write("causeway.toml", &toml);
    let server = Server::start(&["--config", cfg.to_str().unwrap()]);
    let tls = server.startup_addr("causeway: listening on tls ");
    let http = server.startup_addr("causeway: redirecting http ");
    Setup {
        _dir: dir,
        ca,
        server,
        tls,
        http,
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect_with(s: &Setup, cfg: Arc<rustls::ClientConfig>, name: ServerName<'static>) -> Tls {
    let tcp = TcpStream::connect(s.tls).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let conn = rustls::ClientConnection::new(cfg, name).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

fn connect(s: &Setup) -> Tls {
    connect_with(s, s.ca.client_config(), ServerName::try_from(JOIN).unwrap())
}

/// One response: status, head, body (Content-Length framed).
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn field(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Reads one response from `t`, keeping what follows it in `buf`.
fn read_one(t: &mut impl Read, buf: &mut Vec<u8>) -> Answer {
    let (status, head, body) = common::http::read_next(t, buf);
    Answer { status, head, body }
}

fn send(t: &mut Tls, bytes: &[u8]) {
    t.write_all(bytes).unwrap();
    t.flush().unwrap();
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {JOIN}\r\n\r\n")
}

/// Whether the peer closed (EOF or reset), with nothing more sent.
fn closes_quietly(t: &mut Tls, buf: &[u8]) -> bool {
    assert!(
        buf.is_empty(),
        "more was sent: {:?}",
        String::from_utf8_lossy(buf)
    );
    t.get_ref().set_read_timeout(Some(PATIENCE)).unwrap();
    let mut b = [0u8; 64];
    match t.read(&mut b) {
        Ok(0) => true,
        Err(e) => matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
        ),
        Ok(_) => false,
    }
}

/// Whether nothing more arrives within half a second (the connection idles).
fn silent(t: &mut Tls) -> bool {
    t.get_ref()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut b = [0u8; 64];
    let quiet = matches!(t.read(&mut b), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
    t.get_ref()
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    quiet
}

#[test]
fn a_refused_request_gets_one_answer_and_the_next_request_is_read() {
    let s = setup("");
    let mut t = connect(&s);
    let mut buf = Vec::new();
    send(&mut t, get("/secret").as_bytes());
    let a = read_one(&mut t, &mut buf);
    assert_eq!(a.status, 403);
    assert_eq!(a.field("connection"), None, "kept alive");
    assert!(silent(&mut t), "exactly one answer");
    send(&mut t, get("/api/next").as_bytes());
    let a = read_one(&mut t, &mut buf);
    assert_eq!(a.status, 200);
    assert!(a.body.starts_with("GET /api/next "), "{}", a.body);
    // A method no rule allows, then another host: one answer each, in turn.
    send(
        &mut t,
        format!("DELETE /api/x HTTP/1.1\r\nHost: {JOIN}\r\n\r\n").as_bytes(),
    );
    assert_eq!(read_one(&mut t, &mut buf).status, 405);
    send(&mut t, get("/api/after-405").as_bytes());
    assert_eq!(read_one(&mut t, &mut buf).status, 200);
    s.server.wait_log("/secret");
    let refusals = s
        .server
        .log_lines()
        .iter()
        .filter(|l| l.contains("/secret") && l.contains("403"))
        .count();
    assert_eq!(refusals, 1, "one log line for one refusal");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = setup("");
    let mut t = connect(&s);
    let mut buf = Vec::new();
    let post = format!("POST /api/4 HTTP/1.1\r\nHost: {JOIN}\r\nContent-Length: 3\r\n\r\nabc");
    let all = [get("/api/1"), get("/secret"), get("/api/3"), post].concat();
    send(&mut t, all.as_bytes());
    let answers: Vec<Answer> = (0..4).map(|_| read_one(&mut t, &mut buf)).collect();
    assert_eq!(answers[0].status, 200);
    assert!(answers[0].body.starts_with("GET /api/1 "));
    assert_eq!(answers[1].status, 403);
    assert_eq!(answers[2].status, 200);
    assert!(answers[2].body.starts_with("GET /api/3 "));
    assert_eq!(answers[3].status, 200);
    assert!(
        answers[3].body.starts_with("POST /api/4 body=3"),
        "{}",
        answers[3].body
    );
    assert!(silent(&mut t));
}

#[test]
fn connection_close_is_honoured_on_every_path() {
    let s = setup("");
    let close = |path: &str, host: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };
    for (req, status) in [
        (close("/secret", JOIN), 403),
        (close("/api/x", JOIN), 200),
        (close("/api/x", "unknown.example.test"), 421),
        (close("/api/..;/secret", JOIN), 400),
    ] {
        let mut t = connect(&s);
        let mut buf = Vec::new();
        send(&mut t, req.as_bytes());
        let a = read_one(&mut t, &mut buf);
        assert_eq!(a.status, status, "{req}");
        assert_eq!(a.field("connection").as_deref(), Some("close"), "{req}");
        assert!(closes_quietly(&mut t, &buf), "{req}");
    }
}

#[test]
fn hop_by_hop_and_forwarding_fields_as_the_bridge_and_browser_see_them() {
    let s = setup("");
    let mut t = connect(&s);
    let mut buf = Vec::new();
    send(
        &mut t,
        format!(
            "GET /headers HTTP/1.1\r\nHost: {JOIN}\r\nConnection: keep-alive, X-Secret\r\n\
             Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nProxy-Connection: keep-alive\r\n\
             Proxy-Authorization: Basic Zm9vOmJhcg==\r\nX-Secret: internal\r\n\
             X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: evil.example\r\n\
             X-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nAccept: text/plain\r\n\r\n"
        )
        .as_bytes(),
    );
    let a = read_one(&mut t, &mut buf);
    assert_eq!(a.status, 200);
    let got: Vec<String> = a
        .body
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let want = [
        format!("Host: {JOIN}"),
        "Accept: text/plain".into(),
        "X-Forwarded-For: 127.0.0.1".into(),
        "X-Forwarded-Proto: https".into(),
        format!("X-Forwarded-Host: {JOIN}"),
        "X-Real-IP: 127.0.0.1".into(),
        format!("Forwarded: for=127.0.0.1;proto=https;host=\"{JOIN}\""),
    ];
    assert_eq!(got, want, "the head the bridge received");
    // And the other way: the bridge's hop-by-hop fields stop at the proxy.
    send(&mut t, get("/hop-response").as_bytes());
    let a = read_one(&mut t, &mut buf);
    assert_eq!(a.status, 200);
    assert_eq!(a.field("x-kept").as_deref(), Some("yes"));
    for gone in [
        "connection",
        "keep-alive",
        "x-internal",
        "proxy-authenticate",
    ] {
        assert_eq!(a.field(gone), None, "{gone} in {}", a.head);
    }
}

#[test]
fn a_bridge_that_says_more_than_it_framed_is_not_reused() {
    let s = setup("");
    let mut t = connect(&s);
    let mut buf = Vec::new();
    send(&mut t, get("/conn").as_bytes());
    let first = read_one(&mut t, &mut buf);
    send(&mut t, get("/conn").as_bytes());
    assert_eq!(
        read_one(&mut t, &mut buf).body,
        first.body,
        "reused while clean"
    );
    send(&mut t, get("/overlong").as_bytes());
    let over = read_one(&mut t, &mut buf);
    assert_eq!((over.status, over.body.as_str()), (200, "ok"));
    send(&mut t, get("/conn").as_bytes());
    let next = read_one(&mut t, &mut buf);
    assert_eq!(next.status, 200);
    assert_ne!(
        next.body, first.body,
        "a new bridge connection after the overlong one"
    );
    // A body after HEAD.
    send(
        &mut t,
        format!("HEAD /overlong HTTP/1.1\r\nHost: {JOIN}\r\n\r\n").as_bytes(),
    );
    let mut head_buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head_buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = t.read(&mut chunk).unwrap();
        head_buf.extend_from_slice(&chunk[..n]);
    }
    send(&mut t, get("/conn").as_bytes());
    let after_head = read_one(&mut t, &mut buf);
    assert_eq!(after_head.status, 200, "{}", after_head.head);
    assert_ne!(after_head.body, next.body);
}

#[test]
fn redirects_never_name_the_requests_host() {
    let s = setup("");
    for addr in [s.http, s.tls] {
        for (host, want) in [
            (JOIN, format!("https://{JOIN}/a?b=1")),
            ("MEET.example.test:80", format!("https://{OTHER}/a?b=1")),
            ("evil.example.net", format!("https://{JOIN}/a?b=1")),
        ] {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            write!(c, "GET /a?b=1 HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
            let mut buf = Vec::new();
            let a = read_one(&mut c, &mut buf);
            assert_eq!(a.status, 301, "{addr} {host}");
            assert_eq!(a.field("location"), Some(want), "{addr} {host}");
        }
    }
}

#[test]
fn the_head_timer_starts_at_the_first_byte_not_at_idle() {
    let s = setup("[http]\nhead_timeout_secs = 3\nkeepalive_timeout_secs = 60\n");
    let mut t = connect(&s);
    let mut buf = Vec::new();
    send(&mut t, get("/api/1").as_bytes());
    assert_eq!(read_one(&mut t, &mut buf).status, 200);
    // Idle longer than the head timeout (a timer started at idle would have
    // fallen), then a head in two parts well inside it.
    std::thread::sleep(Duration::from_millis(3500));
    let req = get("/api/2");
    let (a, b) = req.split_at(10);
    send(&mut t, a.as_bytes());
    std::thread::sleep(Duration::from_millis(200));
    send(&mut t, b.as_bytes());
    assert_eq!(read_one(&mut t, &mut buf).status, 200);
    // A head that never ends is 408 once the timeout passes.
    send(&mut t, b"GET /api/3 HTTP/1.1\r\n");
    t.get_ref().set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(read_one(&mut t, &mut buf).status, 408);
}

#[test]
fn a_slow_but_moving_download_is_not_cut() {
    // The bridge sends 64 KiB over 1.6 s; the browser reads 4 KiB at a time with
    // pauses (each far shorter than the send timeout), for longer than the send
    // timeout in all.
    let s = setup("[http]\nsend_timeout_secs = 5\n");
    let mut t = connect(&s);
    send(&mut t, get("/slow").as_bytes());
    let start = Instant::now();
    let mut got = 0;
    let mut chunk = [0u8; 4096];
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = t.read(&mut chunk[..1]).unwrap();
        head.extend_from_slice(&chunk[..n]);
    }
    while got < 16 * 4096 {
        let n = t.read(&mut chunk).unwrap();
        assert!(n > 0, "cut after {got} bytes in {:?}", start.elapsed());
        got += n;
        std::thread::sleep(Duration::from_millis(400));
    }
    assert!(
        start.elapsed() > Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_body_below_the_minimum_rate_is_refused() {
    let s = setup("[http]\nbody_grace_secs = 1\nbody_min_rate = 200\nbody_timeout_secs = 30\n");
    let mut t = connect(&s);
    send(
        &mut t,
        format!("POST /api/upload HTTP/1.1\r\nHost: {JOIN}\r\nContent-Length: 100000\r\n\r\n")
            .as_bytes(),
    );
    // A byte every 200 ms: never a long pause, but 5 bytes/s.
    let start = Instant::now();
    let mut b = [0u8; 512];
    let status = loop {
        // A write may fail once the answer came and the connection closed:
        // what arrived before the close is read either way.
        let wrote = t.write_all(b"x").and_then(|()| t.flush()).is_ok();
        t.get_ref()
            .set_read_timeout(Some(Duration::from_millis(if wrote {
                200
            } else {
                30_000
            })))
            .unwrap();
        match t.read(&mut b) {
            Ok(n) if n > 0 => break Some(String::from_utf8_lossy(&b[..n]).to_string()),
            Ok(_) => break None,
            Err(_) if !wrote => break None,
            Err(_) => {}
        }
        assert!(start.elapsed() < PATIENCE, "never cut");
    };
    let status = status.expect("an answer before the close");
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");
    assert!(status.contains("minimum rate"), "{status}");
}

/// A TLS client whose ClientHello is cut into many records.
fn fragmented(s: &Setup) -> Arc<rustls::ClientConfig> {
    let mut cfg = (*s.ca.client_config()).clone();
    cfg.max_fragment_size = Some(64);
    Arc::new(cfg)
}

#[test]
fn sni_and_host_must_agree_however_the_client_hello_is_cut() {
    let s = setup("");
    // SNI names the other join URL, Host this one: domain fronting, refused
    // whether the ClientHello comes in one record or in many.
    for cfg in [s.ca.client_config(), fragmented(&s)] {
        let mut t = connect_with(&s, cfg, ServerName::try_from(OTHER).unwrap());
        let mut buf = Vec::new();
        send(&mut t, get("/api/x").as_bytes());
        assert_eq!(read_one(&mut t, &mut buf).status, 421);
    }
    // SNI and Host agree: served, fragmented or not.
    let mut t = connect_with(&s, fragmented(&s), ServerName::try_from(JOIN).unwrap());
    let mut buf = Vec::new();
    send(&mut t, get("/api/x").as_bytes());
    assert_eq!(read_one(&mut t, &mut buf).status, 200);
    // No SNI at all (an IP-literal URL): the Host alone must name a join URL.
    let mut cfg = (*s.ca.client_config()).clone();
    cfg.dangerous()
        .set_certificate_verifier(Arc::new(common::bridge::AcceptAny::default()));
    let cfg = Arc::new(cfg);
    let ip = ServerName::IpAddress(s.tls.ip().into());
    let mut t = connect_with(&s, cfg.clone(), ip.clone());
    send(&mut t, get("/api/x").as_bytes());
    assert_eq!(read_one(&mut t, &mut buf).status, 200);
    let mut t = connect_with(&s, cfg, ip);
    send(
        &mut t,
        b"GET /api/x HTTP/1.1\r\nHost: unknown.example.test\r\n\r\n",
    );
    assert_eq!(read_one(&mut t, &mut buf).status, 421);
}

#[test]
fn path_parameters_cannot_hide_a_dot_segment() {
    let s = setup("");
    let mut t = connect(&s);
    let mut buf = Vec::new();
    for path in [
        "/api/..;/secret",
        "/api/..;jsessionid=x/secret",
        "/api/..%3b/secret",
    ] {
        let mut t = connect(&s);
        send(&mut t, get(path).as_bytes());
        assert_eq!(read_one(&mut t, &mut buf).status, 400, "{path}");
    }
    // A parameter on a name is part of it: no rule covers `/api;x`.
    send(&mut t, get("/api;x/y").as_bytes());
    assert_eq!(read_one(&mut t, &mut buf).status, 403);
}
