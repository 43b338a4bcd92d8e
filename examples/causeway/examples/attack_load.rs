//! Load for the attack benchmark (`bench/attack.sh`): what a hostile client
//! does to the TLS front, measured from outside the server.
//!
//! ```text
//! attack_load handshakes ADDR CA.pem SOURCE N      # N handshakes one after another: p50/p90 ms
//! attack_load hello-flood ADDR SOURCES SECS THREADS [RATE] # one ClientHello replayed: attempts/s
//! attack_load stall ADDR CA.pem SOURCES N PATH     # N browsers ask for PATH and never read
//! attack_load idle ADDR CA.pem SOURCES N           # N browsers, one request each, then idle
//! attack_load refusals ADDR CA.pem SECS            # one connection pipelining refused requests
//! ```
//!
//! `stall` and `idle` print `ready N` once every connection is open (and its
//! request sent, or answered) and hold them until stdin closes. SOURCES is how
//! many loopback addresses (127.0.1.1 on) the connections come from.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const JOIN: &str = "join.example.test";

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn config(ca: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(c.expect("CA certificate")).expect("add CA");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// A TCP connection to `addr` from `source` (any port).
fn connect_from(addr: SocketAddr, source: IpAddr) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::new(source, 0).into())?;
    sock.connect(&addr.into())?;
    let tcp: TcpStream = sock.into();
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(tcp)
}

/// A TLS connection to the front, handshake done.
fn open(addr: SocketAddr, source: IpAddr, cfg: &Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let mut tcp = connect_from(addr, source)?;
    let name = ServerName::try_from(JOIN).expect("name");
    let mut conn =
        rustls::ClientConnection::new(cfg.clone(), name).map_err(std::io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// The `i`th of `sources` loopback addresses.
fn source(i: usize, sources: usize) -> IpAddr {
    let k = i % sources.max(1);
    IpAddr::from([127, 0, 1 + (k / 250) as u8, 1 + (k % 250) as u8])
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage(what))
}

fn usage(what: &str) -> ! {
    eprintln!("attack_load: bad or missing {what} (see the module doc for the usage)");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or_default();
    let addr: SocketAddr = arg(&args, 2, "ADDR");
    match mode {
        "handshakes" => handshakes(
            addr,
            &config(&args[3]),
            arg(&args, 4, "SOURCE"),
            arg(&args, 5, "N"),
        ),
        "hello-flood" => hello_flood(
            addr,
            arg(&args, 3, "SOURCES"),
            Duration::from_secs(arg(&args, 4, "SECS")),
            arg(&args, 5, "THREADS"),
            args.get(6).map_or(0, |_| arg(&args, 6, "RATE")),
        ),
        "stall" | "idle" => hold(
            mode,
            addr,
            &config(&args[3]),
            arg(&args, 4, "SOURCES"),
            arg(&args, 5, "N"),
            args.get(6).map(String::as_str).unwrap_or("/"),
        ),
        "refusals" => refusals(
            addr,
            &config(&args[3]),
            Duration::from_secs(arg(&args, 4, "SECS")),
        ),
        _ => usage("mode"),
    }
}

/// `n` full handshakes from `source`, one after another; their p50 and p90.
fn handshakes(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>, source: IpAddr, n: usize) {
    let mut ms: Vec<f64> = Vec::with_capacity(n);
    let mut failed = 0;
    for _ in 0..n {
        let start = Instant::now();
        match open(addr, source, cfg) {
            Ok(_) => ms.push(start.elapsed().as_secs_f64() * 1e3),
            Err(_) => failed += 1,
        }
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| {
        ms.get(((ms.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!("p50 {:.2} p90 {:.2} failed {failed}", at(0.5), at(0.9));
}

/// The first flight of a real client: one ClientHello, replayed as is.
fn client_hello() -> Vec<u8> {
    let cfg = config_without_roots();
    let name = ServerName::try_from(JOIN).expect("name");
    let mut conn = rustls::ClientConnection::new(cfg, name).expect("client");
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).expect("write hello");
    }
    hello
}

fn config_without_roots() -> Arc<rustls::ClientConfig> {
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth(),
    )
}

/// Replays one ClientHello from `sources` addresses on `threads` connections
/// at a time for `secs`: connect, send it, read what comes (the server's
/// flight, or a close), close; at `rate` attempts/s in all (0: as fast as
/// they go). Prints attempts/s and how many got a server flight.
fn hello_flood(addr: SocketAddr, sources: usize, secs: Duration, threads: usize, rate: u64) {
    // Each thread's interval between attempts.
    let every = (rate > 0).then(|| Duration::from_secs_f64(threads as f64 / rate as f64));
    let hello = Arc::new(client_hello());
    let stop = Arc::new(AtomicBool::new(false));
    let (tries, answered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let source = source(i, sources);
            let (hello, stop, tries, answered) =
                (hello.clone(), stop.clone(), tries.clone(), answered.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if let Some(every) = every {
                        std::thread::sleep(next.saturating_duration_since(Instant::now()));
                        next += every;
                    }
                    let Ok(mut tcp) = connect_from(addr, source) else {
                        continue;
                    };
                    tries.fetch_add(1, Ordering::Relaxed);
                    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
                    if tcp.write_all(&hello).is_ok() && matches!(tcp.read(&mut buf), Ok(n) if n > 0)
                    {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let start = Instant::now();
    std::thread::sleep(secs);
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for w in workers {
        let _ = w.join();
    }
    let (t, a) = (
        tries.load(Ordering::Relaxed),
        answered.load(Ordering::Relaxed),
    );
    println!(
        "attempts/s {:.0} answered/s {:.0} ({t} attempts, {a} answered in {elapsed:.1} s)",
        t as f64 / elapsed,
        a as f64 / elapsed
    );
}

/// Opens `n` browsers from `sources` addresses; `stall` sends `GET path` and
/// reads nothing, `idle` reads one answer to `GET /` and waits. Holds them until
/// stdin closes.
fn hold(
    mode: &str,
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    sources: usize,
    n: usize,
    path: &str,
) {
    let mut held = Vec::with_capacity(n);
    let mut buf = vec![0u8; 65536];
    for i in 0..n {
        let mut t = match open(addr, source(i, sources), cfg) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("attack_load: browser {i}: {e}");
                std::process::exit(1);
            }
        };
        let req = format!("GET {path} HTTP/1.1\r\nHost: {JOIN}\r\n\r\n");
        t.write_all(req.as_bytes()).expect("send the request");
        t.flush().expect("send the request");
        if mode == "idle" {
            // The stand-in's `/` answers with a short body in one go.
            let n = t.read(&mut buf).expect("read the answer");
            assert!(buf[..n].starts_with(b"HTTP/1.1 "), "no answer");
        }
        held.push(t);
    }
    println!("ready {}", held.len());
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// One connection pipelining requests no rule allows, every answer read, for
/// `secs`; prints requests/s.
fn refusals(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>, secs: Duration) {
    let mut t = open(addr, source(0, 1), cfg).expect("connect");
    let batch = format!("PATCH /x HTTP/1.1\r\nHost: {JOIN}\r\n\r\n").repeat(100);
    let mut buf = vec![0u8; 65536];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < secs {
        t.write_all(batch.as_bytes()).expect("send");
        t.flush().expect("send");
        sent += 100;
        // Read until this batch is answered (each answer is one head).
        let mut heads = 0;
        let mut tail = Vec::new();
        while heads < 100 {
            let n = t.read(&mut buf).expect("read");
            assert!(n > 0, "the front closed the connection");
            tail.extend_from_slice(&buf[..n]);
            heads += tail.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
            let keep = tail.len().saturating_sub(8);
            tail.drain(..keep);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "requests/s {:.0} ({sent} in {elapsed:.1} s)",
        sent as f64 / elapsed
    );
}
