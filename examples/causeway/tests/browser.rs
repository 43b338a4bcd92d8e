//! A real browser through the web proxy: headless Chromium (Debian's `chromium`,
//! installed by `.ci/run`, or here if missing) trusts the test CA through an NSS
//! database made for it, loads the join page over HTTPS through `causeway`, the
//! page opens a WSS to the web bridge and exchanges a message, and the test reads
//! the result the page reports. A screenshot is kept in
//! `target/artifacts/chromium-web-proxy.png`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::bridge::{TestCa, start_bridge};
use common::{ensure_package, start_front};

const JOIN: &str = "join.example.test";

struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP request to the DevTools endpoint; returns the body.
fn devtools_http(addr: SocketAddr, method: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
            });
            if len.is_some_and(|l| body.len() >= l) {
                return body.to_string();
            }
        }
    }
    String::from_utf8_lossy(&buf)
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

#[test]
fn chromium_loads_the_join_page_and_echoes_over_wss() {
    ensure_package("/usr/bin/chromium", "chromium");
    ensure_package("/usr/bin/certutil", "libnss3-tools");

    let ca = TestCa::new();
    let bridge = start_bridge(&ca.leaf(&["localhost"]));
    let (server, dir, tls) = start_front(
        &ca,
        JOIN,
        &format!("{JOIN}=https://localhost:{}", bridge.port()),
    );

    // The browser's own NSS database, trusting the test CA.
    let home = dir.path().join("home");
    let nssdb = home.join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    assert!(
        Command::new("certutil")
            .args(["-d", &db, "-N", "--empty-password"])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        Command::new("certutil")
            .args([
                "-d",
                &db,
                "-A",
                "-t",
                "C,,",
                "-n",
                "causeway-test-ca",
                "-i",
                dir.path().join("ca.pem").to_str().unwrap()
            ])
            .status()
            .unwrap()
            .success()
    );

    let profile = dir.path().join("profile");
    let mut child = Command::new("/usr/bin/chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--host-resolver-rules=MAP {JOIN} 127.0.0.1:{}", tls.port()),
            "about:blank",
        ])
        .env("HOME", &home)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let stderr = child.stderr.take().unwrap();
    let _browser = Browser(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let ws_url = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium printed no DevTools address");
        if let Some(u) = line.strip_prefix("DevTools listening on ") {
            break u.trim().to_string();
        }
    };
    let devtools: SocketAddr = ws_url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    // A page at the join URL, and a DevTools session to it.
    let page: serde_json::Value = serde_json::from_str(&devtools_http(
        devtools,
        "PUT",
        &format!("/json/new?https://{JOIN}/"),
    ))
    .unwrap();
    let page_ws = page["webSocketDebuggerUrl"].as_str().unwrap().to_string();
    let (mut cdp, _) = tungstenite::connect(page_ws).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = cdp.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    }
    let mut id = 0;
    let mut call =
        |cdp: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
         method: &str,
         params: serde_json::Value| {
            id += 1;
            let msg = serde_json::json!({ "id": id, "method": method, "params": params });
            cdp.send(tungstenite::Message::text(msg.to_string()))
                .unwrap();
            loop {
                let m = cdp.read().unwrap();
                let v: serde_json::Value =
                    serde_json::from_str(m.to_text().unwrap_or("{}")).unwrap_or_default();
                if v["id"] == id {
                    return v;
                }
            }
        };
    let start = Instant::now();
    let mut title = String::new();
    while start.elapsed() < Duration::from_secs(30) {
        let v = call(
            &mut cdp,
            "Runtime.evaluate",
            serde_json::json!({ "expression": "document.title" }),
        );
        title = v["result"]["result"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if title.starts_with("echo:") || title == "ws error" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Keep a screenshot as an artifact.
    let shot = call(
        &mut cdp,
        "Page.captureScreenshot",
        serde_json::json!({ "format": "png" }),
    );
    if let Some(data) = shot["result"]["data"].as_str() {
        use base64::Engine;
        if let Ok(png) = base64::engine::general_purpose::STANDARD.decode(data) {
            let dir =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/artifacts");
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(dir.join("chromium-web-proxy.png"), png);
        }
    }
    assert_eq!(
        title,
        "echo: hello through causeway",
        "proxy log:\n{}",
        server.log_lines().join("\n")
    );
}
