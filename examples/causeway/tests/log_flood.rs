//! A client cannot fill the disk through the log: one TLS connection that
//! pipelines thousands of refused requests, and a stream of connections that
//! open with a PROXY header from an address that is no load balancer, each
//! cause a handful of lines a second, the rest counted in the next line.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use common::bridge::{TempDir, TestCa, start_bridge};
use common::wait::PATIENCE;
use common::{Server, front_toml};
use rustls::pki_types::ServerName;

const JOIN: &str = "join.example.test";

/// Lines of `server`'s log that contain `needle`.
fn lines_with(server: &Server, needle: &str) -> Vec<String> {
    server
        .log_lines()
        .into_iter()
        .filter(|l| l.contains(needle))
        .collect()
}

#[test]
fn pipelined_refusals_cause_a_handful_of_lines() {
    let ca = TestCa::new();
    let bridge = start_bridge(&ca.leaf(&["localhost"]));
    let dir = TempDir::new("log-flood");
    let toml = format!(
        "{}proxy = [\"{JOIN}=https://localhost:{}\"]\n",
        front_toml(&ca, &[JOIN], &dir),
        bridge.port()
    );
    let cfg = dir.write("causeway.toml", &toml);
    let server = Server::start(&["--config", cfg.to_str().unwrap()]);
    let tls = server.startup_addr("causeway: listening on tls ");
    let tcp = TcpStream::connect(tls).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let conn =
        rustls::ClientConnection::new(ca.client_config(), ServerName::try_from(JOIN).unwrap())
            .unwrap();
    let mut t = rustls::StreamOwned::new(conn, tcp);
    // 2000 requests for a path no rule allows (a method no rule takes), sent
    // in batches, every answer read.
    let start = Instant::now();
    let one = format!("PATCH /x HTTP/1.1\r\nHost: {JOIN}\r\n\r\n");
    let mut answers = 0;
    let mut buf = vec![0u8; 65536];
    let mut text = String::new();
    for batch in 1..=20 {
        t.write_all(one.repeat(100).as_bytes()).unwrap();
        t.flush().unwrap();
        while answers < 100 * batch {
            let n = t.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {answers} answers: {text:.300}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            answers = text.matches("HTTP/1.1 ").count();
        }
    }
    let took = start.elapsed();
    assert!(answers >= 2000, "{answers} answers");
    assert!(text.starts_with("HTTP/1.1 405"), "{text:.200}");
    let lines = lines_with(&server, "PATCH /x");
    // Ten a second per event loop at most, after a burst of as many.
    let most = 10 + (took.as_secs() as usize + 1) * 10 * 2;
    assert!(
        lines.len() <= most,
        "{} lines for {answers} refusals in {took:?}",
        lines.len()
    );
    // Once the budget refills, the next line says how many were held back.
    let said = common::wait::holds(PATIENCE, || {
        t.write_all(one.as_bytes()).unwrap();
        t.flush().unwrap();
        let _ = t.read(&mut buf);
        server
            .log
            .wait_for("lines held back", std::time::Duration::from_millis(200))
    });
    assert!(said, "{}", server.log_tail());
}

#[test]
fn stray_proxy_headers_cause_a_handful_of_lines() {
    let server = Server::start(&["--listen", "127.0.0.1:0", "--user", "a:b", "--threads", "2"]);
    let turn = server.addr();
    let stray = || {
        let mut s = TcpStream::connect(turn).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let _ = s.write_all(b"PROXY TCP4 198.51.100.20 127.0.0.1 5555 3478\r\n");
        // Closed by the server: a PROXY header from no load balancer.
        let _ = s.read(&mut [0u8; 16]);
    };
    let start = Instant::now();
    for _ in 0..500 {
        stray();
    }
    let took = start.elapsed();
    server.wait_log("not in proxy_protocol_from");
    let lines = lines_with(&server, "not in proxy_protocol_from");
    // Twenty a second per worker, after a burst of as many.
    let most = 2 * (20 + (took.as_secs() as usize + 1) * 20);
    assert!(
        lines.len() <= most,
        "{} lines for 500 stray headers in {took:?}",
        lines.len()
    );
    // Once the budget refills, the next line says how many were held back.
    let said = common::wait::holds(PATIENCE, || {
        stray();
        server
            .log
            .wait_for("lines held back", std::time::Duration::from_millis(200))
    });
    assert!(said, "{}", server.log_tail());
}

#[test]
fn a_media_stream_toward_an_unreachable_peer_causes_a_line_each_ten_seconds() {
    use common::turn::{UdpTurn, now};
    use std::time::Duration;
    let server = Server::start(&["--listen", "127.0.0.1:0", "--user", "a:b", "--threads", "1"]);
    let ip = "127.0.0.1".parse().unwrap();
    let mut c = UdpTurn::allocating(ip, server.addr(), "a", "b", 7);
    assert!(
        c.until(PATIENCE, |c| c.allocated.is_some()),
        "{:?}",
        c.failed
    );
    // A permission for the server's own IP (as a browser asks for the call
    // bridge's relayed address), then media to a port of it that is no live
    // relayed address: every packet is dropped.
    c.client.create_permission(now(), ip).unwrap();
    assert!(c.until(PATIENCE, |c| c.permitted.contains(&ip)));
    let dead = std::net::SocketAddr::new(ip, 9);
    let start = Instant::now();
    for _ in 0..300 {
        c.send(dead, b"audio");
        // 50 packets a second, as audio.
        std::thread::sleep(Duration::from_millis(4));
    }
    server.wait_log("no live relayed address");
    let took = start.elapsed();
    let lines = lines_with(&server, "no live relayed address");
    // One a ten seconds, the first at once.
    let most = 1 + took.as_secs() as usize / 10;
    assert!(
        lines.len() <= most,
        "{} lines for 300 dropped packets in {took:?}: {lines:#?}",
        lines.len()
    );
    // Ten seconds on, the next says how many were held back.
    let said = common::wait::holds(PATIENCE, || {
        c.send(dead, b"audio");
        server
            .log
            .wait_for("lines held back", Duration::from_millis(500))
    });
    assert!(said, "{}", server.log_tail());
}
