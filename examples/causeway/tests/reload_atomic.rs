//! A reload is all or nothing, and everything it says it reloads is reloaded:
//! a drain survives it (the new web proxy refuses new connections too); a
//! reload refused for one key applies none of the others (the web proxy's
//! limits included); `tcp.max_per_source` and the port-80 redirects follow the
//! new configuration; what needs a restart is refused by name. While draining,
//! a kept-alive browser connection carries one more answer, then closes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

use common::bridge::{TempDir, TestCa, start_bridge};
use common::wait::{self, PATIENCE};
use common::{Output, Server, front_toml};
use rustls::pki_types::ServerName;
use stun_core::{Class, MessageBuilder, MessageType, Method, TransactionId};

const JOIN: &str = "join.example.test";
const OTHER: &str = "meet.example.test";

struct Setup {
    dir: TempDir,
    ca: TestCa,
    server: Server,
    base: String,
    tls: SocketAddr,
}

impl Setup {
    fn new(extra: &str) -> Setup {
        let ca = TestCa::new();
        let bridge = start_bridge(&ca.leaf(&["localhost"]));
        let dir = TempDir::new("reload-atomic");
        let base = format!(
            "{}proxy = [\"{JOIN}=https://localhost:{port}\"]\n",
            front_toml(&ca, &[JOIN, OTHER], &dir),
            port = bridge.port()
        );
        let cfg = dir.write("causeway.toml", &format!("{base}{extra}\n"));
        let server = Server::start(&["--config", cfg.to_str().unwrap()]);
        let tls = server.startup_addr("causeway: listening on tls ");
        Setup {
            dir,
            ca,
            server,
            base,
            tls,
        }
    }

    /// Rewrites the file (the base, then `lines`) and asks for a reload on the
    /// admin port; the answer.
    fn reload(&self, base: &str, lines: &str) -> String {
        self.dir.write("causeway.toml", &format!("{base}{lines}\n"));
        self.server.admin("POST", "/reload")
    }

    /// One GET over a new TLS connection; the status.
    fn get(&self, path: &str) -> u16 {
        let tcp = TcpStream::connect(self.tls).unwrap();
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        let conn = rustls::ClientConnection::new(
            self.ca.client_config(),
            ServerName::try_from(JOIN).unwrap(),
        )
        .unwrap();
        let mut t = rustls::StreamOwned::new(conn, tcp);
        write!(
            t,
            "GET {path} HTTP/1.1\r\nHost: {JOIN}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = t.read_to_string(&mut out);
        out.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no answer: {out:?}"))
    }
}

#[test]
fn a_drain_survives_a_reload() {
    let s = Setup::new("drain_timeout = 600");
    assert_eq!(s.get("/api"), 200);
    // An allocation over TCP keeps the drain open until the test ends.
    let mut held = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["allocate", "--server", &s.server.addr().to_string()])
        .args(["--transport", "tcp", "--user", "alice:pw", "--hold", "600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let held_out = Output::of(&mut held);
    assert!(
        held_out.wait_for("relayed", PATIENCE),
        "{}",
        held_out.tail(20)
    );
    assert!(s.server.admin("POST", "/drain").starts_with("HTTP/1.1 202"));
    s.server.wait_log("admin: draining");
    assert_eq!(s.get("/api"), 503, "draining: new connections refused");
    let answer = s.reload(&s.base, "drain_timeout = 600\nlog_level = \"debug\"");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(s.get("/api"), 503, "still draining after the reload");
    assert_eq!(
        common::status_code(&s.server.admin_addr(), "/readyz"),
        "503"
    );
    let _ = held.kill();
    let _ = held.wait();
}

/// Reads one answer (head and Content-Length body) from `t`; its head.
fn read_answer(t: &mut impl Read) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:")?.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return head;
            }
        }
        let n = t.read(&mut buf).unwrap();
        assert!(n > 0, "closed before a whole answer: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn a_kept_alive_connection_carries_one_more_answer_while_draining_then_closes() {
    let s = Setup::new("drain_timeout = 600");
    let mut held = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["allocate", "--server", &s.server.addr().to_string()])
        .args(["--transport", "tcp", "--user", "alice:pw", "--hold", "600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let held_out = Output::of(&mut held);
    assert!(
        held_out.wait_for("relayed", PATIENCE),
        "{}",
        held_out.tail(20)
    );
    // A browser's connection, kept alive.
    let tcp = TcpStream::connect(s.tls).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let conn =
        rustls::ClientConnection::new(s.ca.client_config(), ServerName::try_from(JOIN).unwrap())
            .unwrap();
    let mut t = rustls::StreamOwned::new(conn, tcp);
    let get = format!("GET /api HTTP/1.1\r\nHost: {JOIN}\r\n\r\n");
    t.write_all(get.as_bytes()).unwrap();
    let head = read_answer(&mut t);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");

    assert!(s.server.admin("POST", "/drain").starts_with("HTTP/1.1 202"));
    s.server.wait_log("admin: draining");
    // Its next request is answered (a page in a meeting keeps working), with
    // the connection closed after it: the browser's next one opens a new
    // connection, which a load balancer sends to another node.
    t.write_all(get.as_bytes()).unwrap();
    let head = read_answer(&mut t);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let mut rest = Vec::new();
    let _ = t.read_to_end(&mut rest);
    assert!(rest.is_empty(), "more after the last answer: {rest:?}");
    // A new connection is refused.
    assert_eq!(s.get("/api"), 503);
    let _ = held.kill();
    let _ = held.wait();
}

#[test]
fn a_refused_reload_applies_nothing_not_even_the_proxy_limits() {
    let s = Setup::new("[http]\nmax_per_source = 100");
    // The web proxy's per-source limit down to 1, and a listener change that
    // needs a restart: refused as a whole.
    let bad_base = s
        .base
        .replace("listen = [\"127.0.0.1:0\"]", "listen = [\"127.0.0.1:1\"]");
    assert_ne!(bad_base, s.base);
    let answer = s.reload(&bad_base, "[http]\nmax_per_source = 1");
    assert!(answer.starts_with("HTTP/1.1 422"), "{answer}");
    assert!(answer.contains("`listen`"), "{answer}");
    // Two connections from one source at once: the old limit (100) still rules.
    let first = TcpStream::connect(s.tls).unwrap();
    let conn =
        rustls::ClientConnection::new(s.ca.client_config(), ServerName::try_from(JOIN).unwrap())
            .unwrap();
    let mut t = rustls::StreamOwned::new(conn, first);
    t.get_ref().set_read_timeout(Some(PATIENCE)).unwrap();
    write!(t, "GET /api HTTP/1.1\r\nHost: {JOIN}\r\n\r\n").unwrap();
    let mut buf = [0u8; 12];
    t.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200", "the first connection, kept open");
    assert_eq!(s.get("/api"), 200, "a second from the same source");
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

/// Whether a Binding over a new TCP connection to `addr` is answered.
fn tcp_answered(addr: SocketAddr) -> Option<TcpStream> {
    let mut c = TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(PATIENCE)).ok()?;
    c.write_all(&binding()).ok()?;
    let mut b = [0u8; 20];
    c.read_exact(&mut b).ok()?;
    Some(c)
}

#[test]
fn tcp_max_per_source_and_the_redirects_follow_a_reload() {
    let s = Setup::new("[tcp]\nmax_per_source = 5");
    let turn = s.server.addr();
    let kept: Vec<TcpStream> = (0..2)
        .map(|i| tcp_answered(turn).unwrap_or_else(|| panic!("connection {i}")))
        .collect();
    // Down to 1 from one source: the two open stay, a third is refused.
    let redirect_base = s.base.replace(
        &format!("proxy = [\"{JOIN}="),
        &format!("proxy = [\"{OTHER}="),
    );
    let answer = s.reload(&redirect_base, "[tcp]\nmax_per_source = 1");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        tcp_answered(turn).is_none(),
        "a third connection from one source"
    );
    drop(kept);
    assert!(
        wait::holds(PATIENCE, || tcp_answered(turn).is_some()),
        "one again once the others closed"
    );
    // Port 80 now names the join URL of the new configuration.
    let http = s.server.startup_addr("causeway: redirecting http ");
    let mut c = TcpStream::connect(http).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        c,
        "GET /x HTTP/1.1\r\nHost: whatever\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    assert!(
        out.contains(&format!("Location: https://{OTHER}/x")),
        "{out}"
    );
}
