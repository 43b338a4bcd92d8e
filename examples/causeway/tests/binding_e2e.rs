//! `causeway serve` as a STUN Binding server, end to end: coturn's
//! `turnutils_stunclient` over UDP, raw Binding requests over TCP (framed across
//! writes), bad input met with 420/400 or silence, and a clean stop on SIGTERM.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::wait::{self, PATIENCE};
use common::{Server, coturn_tool, ensure_package, run_with_timeout};
use stun_core::attributes::{ErrorCode, Software, UnknownAttributes, XorMappedAddress};
use stun_core::{
    AttributeType, Class, Message, MessageBuilder, MessageType, Method, TransactionId,
};

fn request(tid: u8, extra: Option<(u16, &[u8])>) -> Vec<u8> {
    let mut buf = vec![0u8; 128];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId::new([tid; 12]),
    )
    .unwrap();
    if let Some((t, v)) = extra {
        b.add_raw(AttributeType::new(t), v).unwrap();
    }
    b.add_fingerprint().unwrap();
    let n = b.finish();
    buf.truncate(n);
    buf
}

#[test]
fn turnutils_stunclient_gets_its_reflexive_address() {
    let tool = coturn_tool("turnutils_stunclient");
    let server = Server::start(&["--listen", "127.0.0.1:0"]);
    let port = server.addr().port().to_string();
    let (ok, out) = run_with_timeout(
        Command::new(tool).args(["-p", &port, "127.0.0.1"]),
        PATIENCE,
    );
    assert!(ok, "turnutils_stunclient failed: {out}");
    assert!(
        out.contains("UDP reflexive addr: 127.0.0.1:"),
        "unexpected output: {out}"
    );
}

/// Sends `req` until an answer to transaction `tid` arrives (UDP may lose
/// either); `answered` holds the transactions answered before, whose late
/// duplicates (a resend answered twice) are skipped. Fails on any other
/// datagram, so nothing else may have been answered since the last call.
fn ask(sock: &UdpSocket, req: &[u8], tid: u8, answered: &mut Vec<u8>, buf: &mut [u8]) -> usize {
    let n = wait::until(&format!("an answer to transaction {tid}"), PATIENCE, || {
        sock.send(req)?;
        loop {
            let n = sock.recv(buf)?;
            let m = Message::new_checked(&buf[..n]).expect("a STUN answer");
            let got = m.transaction_id();
            if answered.iter().any(|t| got == TransactionId::new([*t; 12])) {
                continue;
            }
            assert_eq!(
                got,
                TransactionId::new([tid; 12]),
                "an answer to another request"
            );
            return Ok::<_, std::io::Error>(n);
        }
    });
    answered.push(tid);
    n
}

#[test]
fn udp_answers_and_refusals() {
    let server = Server::start(&["--listen", "127.0.0.1:0", "--software", "causeway-test"]);
    // (The embedded default's demo user makes this a full TURN server too.)
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    sock.connect(server.addr()).unwrap();
    let mut buf = [0u8; 1500];

    let mut answered = Vec::new();
    let n = ask(&sock, &request(1, None), 1, &mut answered, &mut buf);
    let m = Message::new_checked(&buf[..n]).unwrap();
    assert_eq!(m.class(), Class::Success);
    assert_eq!(m.transaction_id(), TransactionId::new([1; 12]));
    assert_eq!(
        m.attribute::<XorMappedAddress>().unwrap().unwrap().0,
        sock.local_addr().unwrap()
    );
    assert_eq!(
        m.attribute::<Software>().unwrap(),
        Some(Software("causeway-test"))
    );
    m.verify_fingerprint().unwrap();

    // Unknown comprehension-required attribute: 420 naming it.
    let n = ask(
        &sock,
        &request(2, Some((0x7abc, b"?"))),
        2,
        &mut answered,
        &mut buf,
    );
    let m = Message::new_checked(&buf[..n]).unwrap();
    assert_eq!(m.attribute::<ErrorCode>().unwrap().unwrap().code, 420);
    let list = m.attribute::<UnknownAttributes>().unwrap().unwrap();
    assert!(list.iter().eq([AttributeType::new(0x7abc)]));

    // Malformed XOR-MAPPED-ADDRESS in a request: 400.
    let n = ask(
        &sock,
        &request(3, Some((0x0020, &[0, 1, 2]))),
        3,
        &mut answered,
        &mut buf,
    );
    let m = Message::new_checked(&buf[..n]).unwrap();
    assert_eq!(m.attribute::<ErrorCode>().unwrap().unwrap().code, 400);

    // Garbage and a corrupted FINGERPRINT: silence (the next answer is the
    // next good request's), and the server still serves.
    sock.send(b"definitely not STUN").unwrap();
    let mut bad = request(4, None);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    sock.send(&bad).unwrap();
    ask(&sock, &request(5, None), 5, &mut answered, &mut buf);

    server.wait_log("420 unknown attribute 0x7abc");
}

#[test]
fn tcp_frames_split_and_coalesced() {
    let server = Server::start(&["--listen", "127.0.0.1:0"]);
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    // Two requests in one write, the second split across two writes.
    let a = request(7, None);
    let b = request(8, None);
    let mut all = a.clone();
    all.extend_from_slice(&b[..10]);
    s.write_all(&all).unwrap();
    // Not a wait: the pause makes the second request arrive in two segments.
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(&b[10..]).unwrap();
    for tid in [7u8, 8] {
        let mut head = [0u8; 20];
        s.read_exact(&mut head).unwrap();
        let len = u16::from_be_bytes([head[2], head[3]]) as usize;
        let mut msg = head.to_vec();
        msg.resize(20 + len, 0);
        s.read_exact(&mut msg[20..]).unwrap();
        let m = Message::new_checked(&msg[..]).unwrap();
        assert_eq!(m.transaction_id(), TransactionId::new([tid; 12]));
        assert_eq!(
            m.attribute::<XorMappedAddress>().unwrap().unwrap().0,
            s.local_addr().unwrap()
        );
    }
    // A stream that is not STUN is closed.
    s.write_all(b"\xffnot stun at all").unwrap();
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("not closed: {other:?} {rest:?}\n{}", server.log_tail()),
    }
}

#[test]
fn stops_cleanly_on_sigterm() {
    let mut server = Server::start(&["--listen", "127.0.0.1:0"]);
    let (_, ok) = server.terminate();
    assert!(
        ok,
        "causeway did not exit 0 after SIGTERM\n{}",
        server.log_tail()
    );
}

#[test]
fn bad_config_is_refused_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("causeway-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "listen = [\"127.0.0.1:0\"]\nlog_levle = \"info\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["serve", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("log_levle"), "stderr: {err}");
}

/// Debian's `stun` (stun-client, an RFC 3489 client: no magic cookie) runs its
/// test I (a Binding with a CHANGE-REQUEST asking for no change) and gets its
/// mapped address, and nothing a one-address server would be wrong to claim.
#[test]
fn a_classic_stun_client_gets_its_mapped_address() {
    ensure_package("/usr/bin/stun", "stun-client");
    let server = Server::start(&["--listen", "127.0.0.1:0"]);
    let target = format!("127.0.0.1:{}", server.addr().port());
    // UDP: the tool sends once, so it is run again should loopback lose one.
    let out = wait::until("the stun client's mapped address", PATIENCE, || {
        let (_, out) = run_with_timeout(
            Command::new("/usr/bin/stun").args([target.as_str(), "1", "-v"]),
            Duration::from_secs(20),
        );
        if out.contains("MappedAddress = 127.0.0.1:") {
            Ok(out)
        } else {
            Err(out)
        }
    });
    assert!(
        !out.contains("ChangedAddress") && !out.contains("SourceAddress"),
        "only MAPPED-ADDRESS is sent: {out}"
    );
}

/// A classic Binding asking to be answered elsewhere (RESPONSE-ADDRESS) or from
/// another address (CHANGE-REQUEST) gets a 420 at its source, and nothing is
/// sent to the address it named.
#[test]
fn a_classic_binding_is_never_answered_elsewhere() {
    let server = Server::start(&["--listen", "127.0.0.1:0"]);
    let victim = UdpSocket::bind("127.0.0.1:0").unwrap();
    victim.set_nonblocking(true).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    sock.connect(server.addr()).unwrap();
    let mut elsewhere = vec![0u8, 2, 0, 8, 0, 1];
    elsewhere.extend_from_slice(&victim.local_addr().unwrap().port().to_be_bytes());
    elsewhere.extend_from_slice(&[127, 0, 0, 1]);
    for (tid, attr) in [(0x31u8, elsewhere), (0x32, vec![0, 3, 0, 4, 0, 0, 0, 6])] {
        let mut req = vec![0u8, 1, 0, attr.len() as u8];
        req.extend_from_slice(&[tid; 16]);
        req.extend_from_slice(&attr);
        let mut buf = [0u8; 1500];
        let n = wait::until("a classic 420", PATIENCE, || {
            sock.send(&req)?;
            loop {
                // A late duplicate answer to the request before is skipped.
                let n = sock.recv(&mut buf)?;
                if buf[4..20] != [tid - 1; 16] {
                    return Ok::<_, std::io::Error>(n);
                }
            }
        });
        assert_eq!(buf[..2], [0x01, 0x11], "an error response");
        assert_eq!(buf[4..20], [tid; 16]);
        assert_eq!(buf[24..28], [0, 0, 4, 20], "420");
        assert_eq!(buf[n - 4..n - 2], attr[..2], "names the attribute");
    }
    assert!(
        victim.recv(&mut [0u8; 64]).is_err(),
        "nothing was sent to RESPONSE-ADDRESS"
    );
}
