//! Load for the web proxy benchmark: HTTPS requests/s over keep-alive connections,
//! and WSS echo messages/s, against any reverse proxy in front of the stand-in web
//! bridge (ours or nginx), with TLS verified against the test CA and SNI/Host set
//! to the join URL.
//!
//! `proxy_load ADDR CA.pem https|wss CONNECTIONS SECONDS`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const JOIN: &str = "join.example.test";

fn tls(
    addr: &str,
    cfg: &Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_nodelay(true).ok();
    let conn =
        rustls::ClientConnection::new(cfg.clone(), ServerName::try_from(JOIN).unwrap()).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, ca, mode, conns, secs] = &args[..] else {
        eprintln!("usage: proxy_load ADDR CA.pem https|wss CONNECTIONS SECONDS");
        std::process::exit(2);
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let conns: usize = conns.parse().unwrap();
    let duration = Duration::from_secs(secs.parse().unwrap());
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..conns {
        let (addr, cfg, done, stop, mode) = (
            addr.clone(),
            cfg.clone(),
            done.clone(),
            stop.clone(),
            mode.clone(),
        );
        handles.push(std::thread::spawn(move || {
            let mut s = tls(&addr, &cfg);
            if mode == "wss" {
                let (mut ws, _) = tungstenite::client::client(format!("wss://{JOIN}/ws"), s)
                    .expect("ws handshake");
                let msg = tungstenite::Message::text("x".repeat(100));
                while !stop.load(Ordering::Relaxed) {
                    ws.send(msg.clone()).unwrap();
                    ws.read().unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                let req = format!("GET /api/ping HTTP/1.1\r\nHost: {JOIN}\r\n\r\n");
                let mut buf = vec![0u8; 16384];
                while !stop.load(Ordering::Relaxed) {
                    s.write_all(req.as_bytes()).unwrap();
                    // Read one response: head, then its Content-Length body.
                    let mut got = Vec::new();
                    loop {
                        let n = s.read(&mut buf).unwrap();
                        assert!(n > 0, "proxy closed the connection");
                        got.extend_from_slice(&buf[..n]);
                        if let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&got[..p]).to_ascii_lowercase();
                            let len: usize = head
                                .lines()
                                .find_map(|l| {
                                    l.strip_prefix("content-length:")
                                        .map(|v| v.trim().parse().unwrap())
                                })
                                .unwrap_or(0);
                            if got.len() >= p + 4 + len {
                                assert!(head.starts_with("http/1.1 200"), "{head}");
                                break;
                            }
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let start = Instant::now();
    std::thread::sleep(duration);
    let n = done.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for h in handles {
        let _ = h.join();
    }
    println!(
        "{mode}: {:.0}/s ({n} in {elapsed:.1} s over {conns} connections)",
        n as f64 / elapsed
    );
}
