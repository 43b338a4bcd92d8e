//! [`Link`] over real sockets on loopback: a write that finds the TLS buffer
//! full but the socket free moves the buffer out and takes the new bytes
//! (before, it took nothing though the socket had room, and nothing was left to
//! wake the writer: a large response stalled); a drained socket is not read
//! again until its event loop says it is readable.
#![cfg(feature = "tls")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use causeway_testkit::bridge::TestCa;
use causeway_testkit::wait::PATIENCE;
use proxy_core::runtime::Link;
use rustls::pki_types::ServerName;

/// A server link over loopback with its handshake done, and the client's
/// thread reading everything it is sent (the count comes back at the end).
fn linked() -> (Link, std::thread::JoinHandle<usize>) {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["localhost"]);
    let server_cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.cert_der.clone()], leaf.key_der.clone_key())
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client_cfg = ca.client_config();
    let client = std::thread::spawn(move || {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        let conn =
            rustls::ClientConnection::new(client_cfg, ServerName::try_from("localhost").unwrap())
                .unwrap();
        let mut t = rustls::StreamOwned::new(conn, tcp);
        let mut all = 0;
        let mut buf = [0u8; 65536];
        loop {
            match t.read(&mut buf) {
                Ok(0) | Err(_) => return all,
                Ok(n) => all += n,
            }
        }
    });
    let (sock, _) = listener.accept().unwrap();
    sock.set_nonblocking(true).unwrap();
    let tls = rustls::ServerConnection::new(server_cfg).unwrap();
    let mut link = Link::new(mio::net::TcpStream::from_std(sock), Some(tls.into()));
    let start = Instant::now();
    while link.tls.as_ref().unwrap().is_handshaking() {
        assert!(start.elapsed() < PATIENCE, "no handshake");
        // No event loop here: every pass counts as a readable event.
        link.readable();
        let _ = link.read_plain(&mut [0u8; 1]);
        let _ = link.flush();
        std::thread::yield_now();
    }
    (link, client)
}

#[test]
fn a_full_tls_buffer_the_socket_can_take_does_not_refuse_a_write() {
    let (mut link, client) = linked();
    let tls = link.tls.as_mut().unwrap();
    tls.set_buffer_limit(Some(16 * 1024));
    // The TLS buffer full, nothing written to the socket yet.
    let filled = tls.writer().write(&[1u8; 16 * 1024]).unwrap();
    assert!(filled > 0);
    assert!(tls.writer().write(&[1u8; 100]).unwrap() == 0, "not full");
    // The socket is free: the buffer goes out and new bytes are taken.
    let n = link.write_plain(&[2u8; 32 * 1024]).unwrap();
    assert!(n > 0, "a write refused with a free socket");
    let start = Instant::now();
    while !link.flush().unwrap() {
        assert!(start.elapsed() < PATIENCE, "never flushed");
        std::thread::yield_now();
    }
    link.close();
    drop(link);
    assert_eq!(client.join().unwrap(), filled + n);
}

#[test]
fn a_drained_socket_is_read_again_only_once_readable() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (sock, _) = listener.accept().unwrap();
    sock.set_nonblocking(true).unwrap();
    let mut link = Link::plain(mio::net::TcpStream::from_std(sock));
    let mut buf = [0u8; 64];
    let would_block = |r: std::io::Result<usize>| matches!(r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    assert!(would_block(link.read_plain(&mut buf)), "nothing sent yet");
    peer.write_all(b"hello").unwrap();
    // Until the event loop sees it readable, the link does not ask the kernel.
    let start = Instant::now();
    let mut seen = Vec::new();
    while seen.len() < 5 {
        assert!(start.elapsed() < PATIENCE, "the bytes never came");
        assert!(
            would_block(link.read_plain(&mut buf)),
            "read without an event"
        );
        link.readable();
        match link.read_plain(&mut buf) {
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
        }
    }
    assert_eq!(seen, b"hello");
    // A short read drained the queue: the next read costs nothing.
    assert!(would_block(link.read_plain(&mut buf)));
    // The end of the stream is seen once readable.
    drop(peer);
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < PATIENCE, "the end never came");
        link.readable();
        match link.read_plain(&mut buf) {
            Ok(0) => break,
            Ok(n) => panic!("{n} bytes after the end"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
        }
    }
}
