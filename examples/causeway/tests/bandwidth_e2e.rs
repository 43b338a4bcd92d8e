//! Bandwidth limits against the real server: with `[bandwidth]
//! allocation_bytes_per_sec`, a client offering three times its limit through
//! coturn's echo peer gets its limit (within 10 %), and a client under the
//! limit at the same time loses nothing; the drops are counted on `/metrics`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Server;
use common::bridge::TempDir;
use common::tools::{PEER_IP, Peer, run_with_timeout};

const LIMIT: u64 = 100_000;
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
            Duration::from_secs(SECS + 30),
        )
    })
}

fn received(out: &str) -> u64 {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix("received="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no received= in {out}"))
}

#[test]
fn a_client_over_its_limit_is_held_to_it_and_another_is_untouched() {
    let peer = Peer::start();
    let dir = TempDir::new("bandwidth");
    let config = dir.write(
        "causeway.toml",
        &format!("[bandwidth]\nallocation_bytes_per_sec = {LIMIT}\n"),
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
    assert!(ok, "{loud}");
    let (ok, quiet) = quiet.join().unwrap();
    assert!(ok, "{quiet}");
    eprintln!("loud: {loud}\nquiet: {quiet}");
    // Each echo crosses the allocation both ways; each way holds the limit.
    let loud_rate = received(&loud) * SIZE / SECS;
    assert!(
        loud_rate.abs_diff(LIMIT) * 10 <= LIMIT,
        "held to {loud_rate} B/s, not {LIMIT} within 10 %: {loud}"
    );
    assert!(quiet.contains("loss=0.000%"), "the quiet one lost: {quiet}");
    let metrics = common::http_get(&server.admin_addr(), "/metrics");
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("causeway_bandwidth_dropped_packets_total "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(dropped > 1000, "{dropped} dropped");
}
