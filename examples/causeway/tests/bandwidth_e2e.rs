//! Bandwidth limits against the real server: with `[bandwidth]
//! allocation_bytes_per_sec`, a client offering three times its limit through
//! coturn's echo peer is held to its limit (never more than the rate and one
//! burst, and not starved), and a client under the limit at the same time loses
//! nothing; the drops are counted on `/metrics`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Server;
use common::bridge::TempDir;
use common::tools::{PEER_IP, Peer, run_with_timeout};
use common::wait::PATIENCE;

const LIMIT: u64 = 100_000;
/// A second of the rate: a client under the limit loses nothing to a stall of
/// its sender (which then catches up in a burst) shorter than several seconds.
const BURST: u64 = 100_000;
const SIZE: u64 = 500;
const SECS: u64 = 6;

fn load(server: &str, peer: &str, rate: u64) -> std::thread::JoinHandle<(bool, String)> {
    let (server, peer) = (server.to_string(), peer.to_string());
    std::thread::spawn(move || {
        run_with_timeout(
            Command::new(env!("CARGO_BIN_EXE_causeway")).args([
                "load",
                "--server",
                &server,
                "--user",
                "meeting:pw",
                "--peer",
                &peer,
                "--clients",
                "1",
                "--rate",
                &rate.to_string(),
                "--size",
                &SIZE.to_string(),
                "--duration",
                &SECS.to_string(),
            ]),
            Duration::from_secs(SECS) + 2 * PATIENCE,
        )
    })
}

/// The count `key=N` in the load tool's output.
fn count(out: &str, key: &str) -> u64 {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {out}"))
}

#[test]
fn a_client_over_its_limit_is_held_to_it_and_another_is_untouched() {
    let peer = Peer::start();
    let dir = TempDir::new("bandwidth");
    let config = dir.write(
        "causeway.toml",
        &format!(
            "[bandwidth]\nallocation_bytes_per_sec = {LIMIT}\nallocation_burst_bytes = {BURST}\n"
        ),
    );
    let server = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--user",
        "meeting:pw",
        "--allow-peer",
        "127.0.0.0/8",
    ]);
    let addr = server.addr().to_string();
    let peer_addr = format!("{PEER_IP}:{}", peer.1);
    // 3x the limit (600 packets/s of 500 B), and a fifth of it.
    let loud = load(&addr, &peer_addr, 3 * LIMIT / SIZE);
    let quiet = load(&addr, &peer_addr, LIMIT / 5 / SIZE);
    let (ok, loud) = loud.join().unwrap();
    assert!(ok, "{loud}{}", server.log_tail());
    let (ok, quiet) = quiet.join().unwrap();
    assert!(ok, "{quiet}{}", server.log_tail());
    eprintln!("loud: {loud}\nquiet: {quiet}");
    // Each echo crosses the allocation both ways; each way holds the limit:
    // never more than the rate over the sending time and one burst, and (as it
    // offers three times the rate) not much less, however busy the machine.
    let (sent, received) = (count(&loud, "sent"), count(&loud, "received"));
    let most = LIMIT * SECS + BURST + SIZE;
    assert!(
        received * SIZE <= most,
        "{} B through a limit of {LIMIT} B/s for {SECS} s: {loud}",
        received * SIZE
    );
    assert!(
        received * SIZE >= LIMIT * SECS / 2,
        "starved: {} B of {} B allowed: {loud}",
        received * SIZE,
        LIMIT * SECS
    );
    assert!(quiet.contains("loss=0.000%"), "the quiet one lost: {quiet}");
    // At least what the way to the peer could not take (metrics are published
    // about once a second: wait for them).
    let over = (sent * SIZE).saturating_sub(most) / SIZE;
    assert!(
        over > 0,
        "the loud client never went over its limit: {loud}"
    );
    let mut last = 0;
    let counted = common::wait::holds(PATIENCE, || {
        let m = common::http_get(&server.admin_addr(), "/metrics");
        last = m
            .lines()
            .find_map(|l| l.strip_prefix("causeway_bandwidth_dropped_packets_total "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        last >= over
    });
    assert!(counted, "{last} dropped, at least {over} expected: {loud}");
}
