//! A web bridge stand-in speaking plain HTTP/1.1 on loopback, for the web
//! proxy's in-process tests: it answers `200 hello PATH` (keep-alive), a
//! WebSocket upgrade with 101 and then echoes raw bytes, and hands each request
//! head it reads to the test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, mpsc};

/// A web bridge speaking plain HTTP/1.1 on loopback: answers every request
/// `200 hello <path>` (keep-alive), a WebSocket upgrade with 101 and then
/// echoes; sends every request head it reads to the test.
pub struct Bridge {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Each request head it read.
    pub heads: mpsc::Receiver<String>,
    /// Connections it accepted.
    pub connections: Arc<Mutex<usize>>,
}

/// Starts one.
pub fn bridge() -> Bridge {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, heads) = mpsc::channel();
    let connections = Arc::new(Mutex::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { return };
            *counted.lock().unwrap() += 1;
            let tx = tx.clone();
            std::thread::spawn(move || serve_bridge(s, tx));
        }
    });
    Bridge {
        addr,
        heads,
        connections,
    }
}

fn serve_bridge(s: TcpStream, heads: mpsc::Sender<String>) {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let _ = heads.send(head.clone());
        let path = head.split(' ').nth(1).unwrap_or("").to_string();
        if head.to_ascii_lowercase().contains("upgrade: websocket") {
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap_or("")
                .trim()
                .to_string();
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            let _ = write!(
                w,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            // Echo raw bytes from here on: frames come back as they went.
            let mut buf = [0u8; 4096];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if w.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        let body = format!("hello {path}");
        let _ = write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    }
}
