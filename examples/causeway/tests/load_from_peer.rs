//! The saturation benchmark's reverse direction, `causeway load --mode
//! from-peer`, against the real server: peers of the load tool send to four
//! clients' relayed addresses, the server relays each datagram to its client
//! as ChannelData on the channel bound to that peer, and the tool counts them
//! back byte-exact, each client's on its own channel; sent in bursts of one
//! GSO send each, they arrive one by one.

mod common;

use std::process::Command;
use std::time::Duration;

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

/// Runs `causeway load --mode from-peer` against a new server with `extra`
/// flags and checks what every run must show: the sender kept its pace (it
/// catches up after a stall, so all but the last moment's datagrams went),
/// none lost, none corrupt. Returns the datagrams sent and the output.
fn delivered(extra: &[&str]) -> (u64, String) {
    let server = serve();
    let (ok, out) = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_causeway"))
            .args([
                "load",
                "--mode",
                "from-peer",
                "--server",
                &server.addr().to_string(),
                "--user",
                "meeting:pw",
                "--clients",
                &CLIENTS.to_string(),
                "--peers",
                "2",
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
    let (sent, received) = (count(&out, "sent"), count(&out, "received"));
    assert!(sent >= CLIENTS * RATE * SECS / 2, "{out}");
    assert!(received <= sent, "{out}");
    assert!(
        received * 100 >= sent * 98,
        "lost: {out}{}",
        server.log_tail()
    );
    assert_eq!(count(&out, "corrupt"), 0, "{out}");
    (sent, out)
}

#[test]
fn datagrams_from_peers_reach_their_clients_as_channel_data() {
    delivered(&[]);
}

#[test]
fn bursts_sent_in_one_gso_send_arrive_as_datagrams_each_on_its_channel() {
    // Bursts of 4 (one send each, the kernel cuts it): every datagram is
    // relayed on its own and counted byte-exact.
    let (sent, out) = delivered(&["--burst", "4"]);
    assert_eq!(sent % 4, 0, "whole bursts: {out}");
}
