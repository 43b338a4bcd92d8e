//! The saturation benchmark's one-way loads against the real server.
//! `causeway load --mode from-peer`: peers of the load tool send to four
//! clients' relayed addresses, the server relays each datagram to its client
//! as ChannelData on the channel bound to that peer, and the tool counts them
//! back byte-exact, each client's on its own channel; sent in bursts of one
//! GSO send each, they arrive one by one. `--mode to-peer`: the clients'
//! ChannelData, in bursts too, reaches the tool's peers, or a sink this test
//! holds (what the XDP benchmark counts with a program on the peer's side).

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::Server;
use common::tools::run_with_timeout;
use common::wait::PATIENCE;

/// The count `key=N` in the load tool's output.
fn count(out: &str, key: &str) -> u64 {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {out}"))
}

/// 4 clients x 50 datagrams/s of 1200 B from 2 peers, for 2 s: a relay
/// socket's default receive buffer holds seconds of it, so a busy machine
/// delays it and loses none.
const CLIENTS: u64 = 4;
const RATE: u64 = 50;
const SECS: u64 = 2;

/// `causeway serve` with the load's user, peers on loopback allowed.
fn serve() -> Server {
    Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--user",
        "meeting:pw",
        "--allow-peer",
        "127.0.0.0/8",
    ])
}

/// Runs `causeway load --mode MODE` against `server` with `extra` flags
/// and checks the sender kept its pace (it catches up after a stall, so all
/// but the last moment's datagrams went); returns what it sent and its
/// output.
fn load(server: &Server, mode: &str, extra: &[&str]) -> (u64, String) {
    let (ok, out) = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_causeway"))
            .args([
                "load",
                "--mode",
                mode,
                "--server",
                &server.addr().to_string(),
                "--user",
                "meeting:pw",
                "--clients",
                &CLIENTS.to_string(),
                "--rate",
                &RATE.to_string(),
                "--size",
                "1200",
                "--duration",
                &SECS.to_string(),
            ])
            .args(extra),
        Duration::from_secs(SECS) + 2 * PATIENCE,
    );
    assert!(ok, "{out}{}", server.log_tail());
    let sent = count(&out, "sent");
    assert!(sent >= CLIENTS * RATE * SECS / 2, "{out}");
    (sent, out)
}

/// Runs the `mode` load against a new server and checks what every counted
/// run must show: none lost, none corrupt. Returns the datagrams sent, the
/// output and the server.
fn delivered(mode: &str, extra: &[&str]) -> (u64, String, Server) {
    let server = serve();
    let (sent, out) = load(&server, mode, &[&["--peers", "2"], extra].concat());
    let received = count(&out, "received");
    assert!(received <= sent, "{out}");
    assert!(
        received * 100 >= sent * 98,
        "lost: {out}{}",
        server.log_tail()
    );
    assert_eq!(count(&out, "corrupt"), 0, "{out}");
    (sent, out, server)
}

#[test]
fn datagrams_from_peers_reach_their_clients_as_channel_data() {
    delivered("from-peer", &[]);
}

#[test]
fn bursts_sent_in_one_gso_send_arrive_as_datagrams_each_on_its_channel() {
    // Bursts of 4 (one send each, the kernel cuts it): every datagram is
    // relayed on its own and counted byte-exact.
    let (sent, out, _) = delivered("from-peer", &["--burst", "4"]);
    assert_eq!(sent % 4, 0, "whole bursts: {out}");
}

#[test]
fn channel_data_from_clients_in_bursts_reaches_the_peers_byte_exact() {
    let (sent, out, server) = delivered("to-peer", &["--burst", "4"]);
    assert_eq!(sent % 4, 0, "whole bursts: {out}");
    // A burst comes in back to back (a GRO train): it leaves its relay
    // socket as one GSO send, not four.
    let received = count(&out, "received");
    let sum = |s: &serde_json::Value, key: &str| -> u64 {
        s["workers"]
            .as_array()
            .map_or(0, |w| w.iter().filter_map(|w| w[key].as_u64()).sum())
    };
    let status = server.wait_status("the peer datagrams counted", |s| {
        sum(s, "peer_datagrams") >= received
    });
    let (datagrams, sends) = (sum(&status, "peer_datagrams"), sum(&status, "peer_sends"));
    assert!(
        sends * 2 <= datagrams,
        "{sends} sends for {datagrams} datagrams: {out}"
    );
}

#[test]
fn a_sink_elsewhere_gets_what_the_tool_says_it_sent() {
    // The sink counts on its own, as the XDP benchmark's peer-side program
    // does: each ChannelData of each burst arrives as one datagram of the
    // payload alone.
    let server = serve();
    // Not the server's own address: it refuses to relay to itself.
    let sink = UdpSocket::bind("127.0.0.2:0").unwrap();
    socket2::SockRef::from(&sink)
        .set_recv_buffer_size(4 << 20)
        .unwrap();
    sink.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let at = sink.local_addr().unwrap().to_string();
    let (tell, sent_was) = mpsc::channel::<u64>();
    let reader = thread::spawn(move || {
        let (mut got, mut wrong, mut buf) = (0u64, 0u64, [0u8; 2048]);
        let (mut sent, mut quiet_since) = (None, Instant::now());
        // Once the tool said how many it sent: until all came, or none came
        // for PATIENCE.
        while sent.is_none_or(|s| got < s && quiet_since.elapsed() < PATIENCE) {
            sent = sent.or(sent_was.try_recv().ok());
            if let Ok(n) = sink.recv(&mut buf) {
                got += 1;
                wrong += u64::from(n != 1200);
                quiet_since = Instant::now();
            }
        }
        (got, wrong)
    });
    let (sent, out) = load(&server, "to-peer", &["--peer", &at, "--burst", "4"]);
    assert!(
        out.contains(&format!("counted at {at}, 1 port(s)")),
        "{out}"
    );
    tell.send(sent).unwrap();
    let (got, wrong) = reader.join().unwrap();
    assert_eq!(wrong, 0, "datagrams not of the payload's size: {out}");
    assert!(got <= sent, "{got} came: {out}");
    assert!(
        got * 100 >= sent * 98,
        "{got} came: {out}{}",
        server.log_tail()
    );
}
