//! A meeting starts, against `causeway serve` with its default settings and the
//! one TURN user a meeting server hands to every browser: hundreds of
//! participants from many addresses (127.0.0.x) and a thousand from one office
//! NAT (one address, many ports) allocate at once. Every allocation is granted,
//! and none waits for more than its first retransmission (RFC 8489: 500 ms), so
//! none waits two seconds.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant as StdInstant};

use common::Server;
use common::turn::UdpTurn;

#[test]
fn a_meeting_starts_with_one_turn_user_and_an_office_behind_one_nat() {
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--user",
        "meeting:shared-by-every-browser",
    ]);
    let target = server.addr();
    // 200 home participants on their own addresses, two tabs each, and 1000 in
    // an office behind 127.0.0.250.
    let mut everyone: Vec<UdpTurn> = Vec::new();
    for i in 0..400u32 {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 10 + (i / 2) as u8));
        everyone.push(UdpTurn::allocating(
            ip,
            target,
            "meeting",
            "shared-by-every-browser",
            i,
        ));
    }
    let office = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 250));
    for i in 0..1000u32 {
        everyone.push(UdpTurn::allocating(
            office,
            target,
            "meeting",
            "shared-by-every-browser",
            10_000 + i,
        ));
    }
    let mut buf = vec![0u8; 1500];
    let deadline = StdInstant::now() + Duration::from_secs(30);
    loop {
        let mut done = true;
        for p in everyone.iter_mut() {
            done &= p.step(&mut buf);
        }
        if done || StdInstant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let failed: Vec<&UdpTurn> = everyone.iter().filter(|p| p.allocated.is_none()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} not allocated, e.g. {:?}",
        failed.len(),
        everyone.len(),
        failed.first().map(|p| (&p.failed, p.sent))
    );
    let mut waits: Vec<Duration> = everyone.iter().filter_map(|p| p.allocated).collect();
    waits.sort();
    let p50 = waits[waits.len() / 2];
    let max = *waits.last().unwrap();
    eprintln!(
        "{} allocations: p50 {p50:?}, max {max:?}; transmissions per allocation at most {}",
        waits.len(),
        everyone.iter().map(|p| p.sent).max().unwrap()
    );
    // The Allocate and its authenticated retry, each sent at most twice.
    assert!(
        everyone.iter().all(|p| p.sent <= 4),
        "a participant needed more than one retransmission per request"
    );
    assert!(max < Duration::from_secs(2), "max wait {max:?}");
}
