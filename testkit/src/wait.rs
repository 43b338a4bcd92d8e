//! Readiness of exactly what a test will use, polled up to a limit: a TCP port
//! that accepts, a TLS port that completes a handshake, a STUN server that
//! answers a Binding request over UDP or TCP, a UDP echo peer that echoes. Each
//! returns as soon as the thing is ready; the limit only costs time when it never
//! is, and then the panic says what was awaited and the last error.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The limit for anything a test waits on: many times what a busy machine
/// needs.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The pause between two tries of a poll.
const STEP: Duration = Duration::from_millis(50);

/// Calls `f` until it returns `Ok`, or `limit` passes; the value, or the last
/// error with how long it was tried.
pub fn poll<T, E: std::fmt::Display>(
    limit: Duration,
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<T, String> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() >= limit => {
                return Err(format!("{e} (still so after {:?})", start.elapsed()));
            }
            Err(_) => std::thread::sleep(STEP),
        }
    }
}

/// As [`poll`], panicking with `what` when the limit passes.
pub fn until<T, E: std::fmt::Display>(
    what: &str,
    limit: Duration,
    f: impl FnMut() -> Result<T, E>,
) -> T {
    poll(limit, f).unwrap_or_else(|e| panic!("waited for {what}: {e}"))
}

/// Calls `f` until it holds or `limit` passes; whether it held.
pub fn holds(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    poll(limit, || if f() { Ok(()) } else { Err("not yet") }).is_ok()
}

/// Waits until `addr` accepts TCP connections.
pub fn tcp(addr: SocketAddr, limit: Duration) {
    try_tcp(addr, limit).unwrap_or_else(|e| panic!("waited for {e}"));
}

/// As [`tcp`], with the failure returned.
pub fn try_tcp(addr: SocketAddr, limit: Duration) -> Result<(), String> {
    poll(limit, || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map(drop)
    })
    .map_err(|e| format!("TCP {addr} to accept: {e}"))
}

/// Waits until `addr` completes a TLS handshake for `name` with `cfg`.
pub fn tls(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>, name: &str, limit: Duration) {
    let server = rustls::pki_types::ServerName::try_from(name.to_string()).expect("a server name");
    until(&format!("TLS {addr} ({name}) to handshake"), limit, || {
        let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
        let mut conn = rustls::ClientConnection::new(cfg.clone(), server.clone())
            .map_err(std::io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok::<_, std::io::Error>(())
    });
}

/// A STUN Binding request with transaction id `id` (RFC 8489: no attributes).
pub fn binding_request(id: [u8; 12]) -> [u8; 20] {
    let mut m = [0u8; 20];
    m[..2].copy_from_slice(&0x0001u16.to_be_bytes());
    m[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    m[8..].copy_from_slice(&id);
    m
}

/// Whether `m` is a STUN response (success or error) to transaction `id`.
pub fn answers(m: &[u8], id: &[u8; 12]) -> bool {
    // The class's high bit (C1, 0x0100) marks a response, success or error.
    m.len() >= 20 && m[0] & 0xC0 == 0 && m[0] & 0x01 != 0 && m.get(8..20) == Some(&id[..])
}

fn txid() -> [u8; 12] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut id = [0u8; 12];
    id.copy_from_slice(&nanos.to_be_bytes()[4..]);
    id
}

/// Waits until a STUN server on UDP `server` answers a Binding request.
pub fn stun_udp(server: SocketAddr, limit: Duration) {
    try_stun_udp(server, limit).unwrap_or_else(|e| panic!("waited for {e}"));
}

/// As [`stun_udp`], with the failure returned.
pub fn try_stun_udp(server: SocketAddr, limit: Duration) -> Result<(), String> {
    let any: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(any).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    poll(limit, || {
        let id = txid();
        sock.send_to(&binding_request(id), server)?;
        let mut buf = [0u8; 1500];
        loop {
            let (n, _) = sock.recv_from(&mut buf)?;
            if answers(&buf[..n], &id) {
                return Ok::<_, std::io::Error>(());
            }
        }
    })
    .map_err(|e| format!("a STUN answer on UDP {server}: {e}"))
}

/// Waits until a STUN server on TCP `server` answers a Binding request.
pub fn stun_tcp(server: SocketAddr, limit: Duration) {
    try_stun_tcp(server, limit).unwrap_or_else(|e| panic!("waited for {e}"));
}

/// As [`stun_tcp`], with the failure returned.
pub fn try_stun_tcp(server: SocketAddr, limit: Duration) -> Result<(), String> {
    poll(limit, || {
        let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let id = txid();
        s.write_all(&binding_request(id))?;
        let mut head = [0u8; 20];
        s.read_exact(&mut head)?;
        if answers(&head, &id) {
            Ok(())
        } else {
            Err(std::io::Error::other(
                "not an answer to the Binding request",
            ))
        }
    })
    .map_err(|e| format!("a STUN answer on TCP {server}: {e}"))
}

/// Waits until a UDP echo peer on `peer` echoes a datagram sent from `from`
/// (an address of this host).
pub fn udp_echo(from: IpAddr, peer: SocketAddr, limit: Duration) {
    try_udp_echo(from, peer, limit).unwrap_or_else(|e| panic!("waited for {e}"));
}

/// As [`udp_echo`], with the failure returned.
pub fn try_udp_echo(from: IpAddr, peer: SocketAddr, limit: Duration) -> Result<(), String> {
    let sock = UdpSocket::bind(SocketAddr::new(from, 0)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .map_err(|e| e.to_string())?;
    poll(limit, || {
        let probe = txid();
        sock.send_to(&probe, peer)?;
        let mut buf = [0u8; 1500];
        loop {
            let (n, from) = sock.recv_from(&mut buf)?;
            if from == peer && buf[..n] == probe {
                return Ok::<_, std::io::Error>(());
            }
        }
    })
    .map_err(|e| format!("an echo from UDP {peer}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_request_and_what_answers_it() {
        let id = [7u8; 12];
        let req = binding_request(id);
        assert_eq!(&req[..8], &[0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42]);
        assert!(!answers(&req, &id), "a request answers nothing");
        let mut ok = req;
        ok[0] = 0x01;
        assert!(answers(&ok, &id), "0x0101");
        let mut err = req;
        (err[0], err[1]) = (0x01, 0x11);
        assert!(answers(&err, &id));
        assert!(!answers(&ok, &[8u8; 12]));
    }

    #[test]
    fn a_poll_returns_the_value_or_the_last_error() {
        let mut n = 0;
        assert_eq!(
            poll(PATIENCE, || {
                n += 1;
                if n < 3 { Err("not yet") } else { Ok(n) }
            }),
            Ok(3)
        );
        let e = poll(Duration::ZERO, || Err::<(), _>("never")).unwrap_err();
        assert!(e.starts_with("never"), "{e}");
    }
}
