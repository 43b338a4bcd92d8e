//! HTTP/1.1 responses read off a stream: what the web proxy tests check.

use std::io::{Read, Write};

/// Reads one response: its status, its head, and as much body as its
/// Content-Length says (panicking, with what came, if the stream ends or fails
/// first). Bytes past it are dropped; [`read_next`] keeps them.
pub fn read_response<R: Read + ?Sized>(t: &mut R) -> (u16, String, String) {
    read_next(t, &mut Vec::new())
}

/// As [`read_response`], starting with what `buf` holds and leaving in it what
/// follows the response (the next of several pipelined ones).
pub fn read_next<R: Read + ?Sized>(t: &mut R, buf: &mut Vec<u8>) -> (u16, String, String) {
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = t.read(&mut chunk).unwrap_or_else(|e| {
            panic!(
                "no response ({:?}) after {:?}",
                e.kind(),
                String::from_utf8_lossy(buf)
            )
        });
        assert!(
            n > 0,
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = t
            .read(&mut chunk)
            .unwrap_or_else(|e| panic!("inside a body: {:?}", e.kind()));
        assert!(n > 0, "closed inside a body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
    buf.drain(..head_end + len);
    (status, head, body)
}

/// Asks for a WebSocket on `/ws` of `host` over `t` and checks the 101.
pub fn ws_upgrade<S: Read + Write>(t: &mut S, host: &str) {
    write!(
        t,
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .and_then(|()| t.flush())
    .unwrap_or_else(|e| panic!("WebSocket request: {e}"));
    let (status, head, _) = read_response(t);
    assert_eq!(status, 101, "{head}");
}

/// Sends a masked text frame "ping" on a WebSocket and reads the echo (the
/// stand-in web bridges echo): whether it came back.
pub fn ws_echoes<S: Read + Write>(t: &mut S) -> bool {
    let frame = [
        0x81,
        0x84,
        1,
        2,
        3,
        4,
        b'p' ^ 1,
        b'i' ^ 2,
        b'n' ^ 3,
        b'g' ^ 4,
    ];
    if t.write_all(&frame).and_then(|()| t.flush()).is_err() {
        return false;
    }
    let mut back = [0u8; 6];
    t.read_exact(&mut back).is_ok() && back == [0x81, 4, b'p', b'i', b'n', b'g']
}
