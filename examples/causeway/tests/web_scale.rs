//! The web proxy at meeting scale, end to end against the stand-in web bridge:
//! hundreds of WebSocket tunnels served by the same few threads, the per-source
//! limit refusing, counting and logging once, page loads reusing one connection
//! to the web bridge (and a request the bridge drops on a kept connection sent
//! again only if it changes nothing), and a browser that stops reading stopping
//! the bridge instead of growing the proxy's memory.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::bridge::{TempDir, TestCa, start_bridge};
use common::wait::{self, PATIENCE};
use common::{Server, front_toml, http_get};
use rustls::pki_types::ServerName;

const JOIN: &str = "join.example.test";

struct Setup {
    dir: TempDir,
    ca: TestCa,
    server: Server,
    tls_addr: SocketAddr,
    /// The configuration without `extra`.
    base: String,
}

impl Setup {
    /// Writes the configuration again with `extra` and reloads it (SIGHUP);
    /// the log line that says how it went.
    fn reload(&self, extra: &str) -> String {
        self.dir
            .write("causeway.toml", &format!("{}{extra}\n", self.base));
        let mark = self.server.log.mark();
        let pid = self.server.child.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
        self.server
            .log
            .wait_line_since(mark, PATIENCE, |l| l.contains("SIGHUP"))
            .unwrap_or_else(|| panic!("no word on the reload\n{}", self.server.log_tail()))
    }
}

/// causeway in front of a stand-in bridge, with `extra` TOML.
fn setup(extra: &str) -> Setup {
    let ca = TestCa::new();
    let bridge = start_bridge(&ca.leaf(&["localhost"]));
    let dir = TempDir::new("web-scale");
    let base = format!(
        "{}proxy = [\"{JOIN}=https://localhost:{}\"]\n",
        front_toml(&ca, &[JOIN], &dir),
        bridge.port()
    );
    let cfg = dir.write("causeway.toml", &format!("{base}{extra}\n"));
    let server = Server::start(&["--config", cfg.to_str().unwrap()]);
    let tls_addr = server.startup_addr("causeway: listening on tls ");
    Setup {
        dir,
        ca,
        server,
        tls_addr,
        base,
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(s: &Setup) -> Tls {
    let tcp = TcpStream::connect(s.tls_addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let conn = rustls::ClientConnection::new(
        s.ca.client_config(),
        ServerName::try_from(JOIN.to_string()).unwrap(),
    )
    .unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// One GET with keep-alive; the status and body, or `None` if the connection
/// closed (or was reset) without an answer. An answer that never comes fails
/// the test.
fn get(t: &mut Tls, path: &str) -> Option<(u16, String)> {
    exchange(t, &format!("GET {path} HTTP/1.1\r\nHost: {JOIN}\r\n\r\n"))
}

/// Sends `req`; the answer's status and body, or `None` as for [`get`].
fn exchange(t: &mut Tls, req: &str) -> Option<(u16, String)> {
    // A write may fail on a connection already closed: its close is read below.
    let _ = t.write_all(req.as_bytes()).and_then(|()| t.flush());
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match t.read(&mut chunk) {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => return None,
            Err(e) if closed(&e) => return None,
            Err(e) => panic!("no answer and no close: {e}"),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match t.read(&mut chunk) {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => return None,
            Err(e) if closed(&e) => return None,
            Err(e) => panic!("the rest of the answer never came: {e}"),
        }
    }
    Some((
        status,
        String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string(),
    ))
}

/// Whether a read error means the peer closed the connection (as TLS over a
/// reset or truncated stream reports it).
fn closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | UnexpectedEof | BrokenPipe
    )
}

/// A metric's value from `/metrics` (the first sample whose line starts so).
fn metric(s: &Setup, prefix: &str) -> u64 {
    let text = http_get(&s.server.admin_addr(), "/metrics");
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in {text}"))
}

/// Waits until `metric` is `want` (they are updated by the loops as they go).
fn wait_metric(s: &Setup, prefix: &str, want: u64) {
    let mut got = 0;
    if !wait::holds(PATIENCE, || {
        got = metric(s, prefix);
        got == want
    }) {
        panic!("{prefix}: {got}, want {want}\n{}", s.server.log_tail());
    }
}

/// A `/proc/PID/status` field of the server, as a number (kB for sizes).
fn proc_status(s: &Setup, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{}/status", s.server.child.id())).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn hundreds_of_tunnels_share_the_same_few_threads() {
    let s = setup("");
    let threads_before = proc_status(&s, "Threads:");
    let mut tunnels = Vec::new();
    for i in 0..300 {
        let (mut ws, resp) = tungstenite::client::client(format!("wss://{JOIN}/ws"), connect(&s))
            .expect("WebSocket handshake through the proxy");
        assert_eq!(resp.status(), 101);
        let msg = format!("browser {i} joined");
        ws.send(tungstenite::Message::text(msg.clone())).unwrap();
        assert_eq!(ws.read().unwrap().into_text().unwrap().as_str(), msg);
        tunnels.push(ws);
    }
    let threads = proc_status(&s, "Threads:");
    // The old runtime had a thread per connection: 300 more.
    assert!(
        threads <= threads_before + 4,
        "{threads} threads with 300 tunnels, {threads_before} before"
    );
    wait_metric(&s, "causeway_web_tunnels ", 300);
    wait_metric(&s, "causeway_web_connections ", 300);
    let status = s.server.status();
    assert_eq!(
        (&status["web"]["tunnels"], &status["web"]["connections"]),
        (&serde_json::json!(300), &serde_json::json!(300)),
        "{status:#}"
    );
    // Every tunnel still relays, both ways.
    for (i, ws) in tunnels.iter_mut().enumerate() {
        let msg = vec![i as u8; 1000 + i];
        ws.send(tungstenite::Message::binary(msg.clone())).unwrap();
        assert_eq!(ws.read().unwrap().into_data().as_ref(), msg.as_slice());
    }
    for mut ws in tunnels {
        ws.close(None).unwrap();
        let _ = ws.flush();
    }
    wait_metric(&s, "causeway_web_tunnels ", 0);
    wait_metric(&s, "causeway_web_connections ", 0);
    assert_eq!(metric(&s, "causeway_web_tunnels_opened_total "), 300);
}

#[test]
fn a_source_over_its_limit_is_refused_counted_and_logged_once() {
    let s = setup("[http]\nmax_per_source = 4\n");
    let mut held: Vec<Tls> = (0..4)
        .map(|_| {
            let mut t = connect(&s);
            assert_eq!(get(&mut t, "/api/x").map(|r| r.0), Some(200));
            t
        })
        .collect();
    let burst = Instant::now();
    for _ in 0..12 {
        let mut t = connect(&s);
        assert_eq!(get(&mut t, "/api/x"), None, "refused without an answer");
    }
    let burst = burst.elapsed();
    wait_metric(
        &s,
        "causeway_web_refused_connections_total{limit=\"max_per_source\"}",
        12,
    );
    assert_eq!(
        metric(
            &s,
            "causeway_web_refused_connections_total{limit=\"max_connections\"}"
        ),
        0
    );
    s.server.wait_log("web proxy: refused");
    let log = s.server.log_lines();
    let refused: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("web proxy: refused"))
        .collect();
    // One line for the burst (and one more per 10 s it lasted, on a slow
    // machine), not one per connection.
    let most = 1 + burst.as_secs() as usize / 10;
    assert!(
        refused.len() <= most,
        "{} lines for a burst of {burst:?}: {log:#?}",
        refused.len()
    );
    assert!(
        refused[0].contains("over 4 from one address (web proxy `max_per_source`)")
            && refused[0].contains("127.0.0.1"),
        "{}",
        refused[0]
    );
    // The kept connections still work, and a place freed is taken again.
    assert_eq!(get(&mut held[0], "/api/y").map(|r| r.0), Some(200));
    drop(held.pop());
    assert!(
        wait::holds(PATIENCE, || {
            let mut t = connect(&s);
            get(&mut t, "/api/z").map(|r| r.0) == Some(200)
        }),
        "the freed place never came back"
    );
}

#[test]
fn page_loads_on_new_connections_reuse_one_bridge_connection() {
    // One loop, so one pool: every request finds the connection the last left.
    let s = setup("[http]\nevent_loops = 1\n");
    let mut ids = Vec::new();
    for _ in 0..20 {
        let mut t = connect(&s);
        let (status, body) = get(&mut t, "/conn").expect("an answer");
        assert_eq!(status, 200);
        ids.push(body);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "bridge connections used: {ids:?}");
    assert_eq!(metric(&s, "causeway_web_bridge_connections_total "), 1);
    assert_eq!(metric(&s, "causeway_web_bridge_reuses_total "), 19);
}

#[test]
fn a_request_the_bridge_drops_on_a_kept_connection_is_sent_again_if_it_changes_nothing() {
    let s = setup("[http]\nevent_loops = 1\n");
    let mut t = connect(&s);
    assert_eq!(get(&mut t, "/drop-next").map(|r| r.0), Some(200));
    // The bridge closes that connection as this request reaches it: a GET goes
    // again on a new connection, and the browser sees only the answer.
    let (status, body) = get(&mut t, "/api/after").expect("an answer");
    assert_eq!(
        (status, body.starts_with("GET /api/after")),
        (200, true),
        "{body}"
    );
    assert_eq!(metric(&s, "causeway_web_bridge_retries_total "), 1);
    assert_eq!(metric(&s, "causeway_web_bridge_connections_total "), 2);
    // A POST is never sent twice: the browser gets 502.
    assert_eq!(get(&mut t, "/drop-next").map(|r| r.0), Some(200));
    let post = format!("POST /api/upload HTTP/1.1\r\nHost: {JOIN}\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(exchange(&mut t, &post).map(|r| r.0), Some(502));
    assert_eq!(metric(&s, "causeway_web_bridge_retries_total "), 1);
}

#[test]
fn a_reload_keeps_tunnels_and_their_count_and_refuses_a_new_loop_count() {
    let s = setup("[http]\nmax_per_source = 100\n");
    let (mut ws, _) = tungstenite::client::client(format!("wss://{JOIN}/ws"), connect(&s))
        .expect("WebSocket handshake through the proxy");
    ws.send(tungstenite::Message::text("before")).unwrap();
    assert_eq!(ws.read().unwrap().into_text().unwrap().as_str(), "before");
    // One place per source now: the tunnel opened before the reload holds it.
    let said = s.reload("[http]\nmax_per_source = 1\n");
    assert!(said.contains("configuration reloaded"), "{said}");
    let mut t = connect(&s);
    assert_eq!(get(&mut t, "/api/x"), None, "refused: the tunnel counts");
    wait_metric(
        &s,
        "causeway_web_refused_connections_total{limit=\"max_per_source\"}",
        1,
    );
    ws.send(tungstenite::Message::text("after")).unwrap();
    assert_eq!(ws.read().unwrap().into_text().unwrap().as_str(), "after");
    assert_eq!(metric(&s, "causeway_web_tunnels "), 1);
    // The event loops stay as they started.
    let said = s.reload("[http]\nevent_loops = 7\n");
    assert!(
        said.contains("`http.event_loops`") && said.contains("restart"),
        "{said}"
    );
    ws.send(tungstenite::Message::text("still")).unwrap();
    assert_eq!(ws.read().unwrap().into_text().unwrap().as_str(), "still");
}

#[test]
fn idle_connections_on_port_80_take_no_thread_and_starve_no_redirect() {
    let s = setup("");
    let http = s.server.startup_addr("causeway: redirecting http ");
    let threads_before = proc_status(&s, "Threads:");
    // More idle connections than the old redirect server had threads (256).
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(http).unwrap())
        .collect();
    // Connections are accepted in order: once this one is answered, the idle
    // ones were taken before it.
    let mut t = TcpStream::connect(http).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    t.write_all(format!("GET /meeting?id=1 HTTP/1.1\r\nHost: {JOIN}\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    let _ = t.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 301") && answer.contains(&format!("Location: https://{JOIN}")),
        "{answer}"
    );
    let threads = proc_status(&s, "Threads:");
    assert!(
        threads <= threads_before + 2,
        "{threads} threads with 300 idle connections, {threads_before} before"
    );
    drop(idle);
}

/// A masked binary WebSocket frame carrying `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x82];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    // A zero mask: the payload goes as it is.
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn a_browser_that_stops_reading_stops_the_bridge_not_the_proxy_memory() {
    let s = setup("");
    let mut t = connect(&s);
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {JOIN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    t.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(t.read(&mut byte).unwrap(), 1);
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    let rss_before = proc_status(&s, "VmRSS:");
    // The bridge echoes everything; this browser never reads. Its writes must
    // stop once the queues and socket buffers on the way are full.
    t.get_ref()
        .set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let chunk = frame(&[0x5a; 60_000]);
    let mut sent = 0usize;
    let blocked = loop {
        if sent > 512 << 20 {
            break false;
        }
        match t.write_all(&chunk).and_then(|()| t.flush()) {
            Ok(()) => sent += chunk.len(),
            Err(_) => break true,
        }
    };
    assert!(blocked, "512 MiB taken from a browser that never reads");
    let grown = proc_status(&s, "VmRSS:").saturating_sub(rss_before);
    assert!(
        grown < 16 * 1024,
        "the proxy grew {grown} kB holding what a browser does not read ({sent} bytes sent)"
    );
    eprintln!("blocked after {sent} bytes; the proxy grew {grown} kB");
}
