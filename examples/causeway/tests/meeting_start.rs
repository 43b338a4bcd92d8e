//! A meeting starts, against `causeway serve` with its default settings and the
//! one TURN user a meeting server hands to every browser: hundreds of
//! participants from many addresses (127.0.0.x) and a thousand from one office
//! NAT (one address, many ports) allocate at once. Every allocation is granted,
//! and none waits for more than its first retransmission: the server's budget
//! of unauthenticated answers for the office's address drops at most the first
//! try of a request, as it opens once one browser there authenticated. Which
//! tries went unanswered is counted by each client and checked against the
//! server's own count of drops, so a busy machine that reads answers late (and
//! retransmits for it) does not fail the test. Latencies are printed, not
//! asserted (a benchmark measures them).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant as StdInstant};

use common::Server;
use common::turn::UdpTurn;
use common::wait::PATIENCE;

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
    let deadline = StdInstant::now() + 2 * PATIENCE;
    loop {
        let mut done = true;
        for p in everyone.iter_mut() {
            done &= p.step(&mut buf);
        }
        if done || StdInstant::now() > deadline {
            break;
        }
        // A poll step: the answers are what is awaited.
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
    let count = |metrics: &str, name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    // Late answers (to tries this machine retransmitted before reading the
    // first answer) are read until what no client heard is what the server
    // dropped; counts are published about once a second.
    let (mut metrics, mut unanswered, mut rate_limited) = (String::new(), 0, 0);
    let all = format!("causeway_allocations_created_total {}\n", everyone.len());
    let settled = common::wait::holds(PATIENCE, || {
        for p in everyone.iter_mut() {
            p.step(&mut buf);
        }
        metrics = common::http_get(&server.admin_addr(), "/metrics");
        unanswered = everyone
            .iter()
            .map(|p| u64::from(p.unanswered()))
            .sum::<u64>();
        rate_limited = count(
            &metrics,
            "causeway_refusals_by_reason_total{reason=\"rate_limited\"}",
        );
        metrics.contains(&all) && unanswered == rate_limited
    });
    assert!(
        settled,
        "{unanswered} tries unanswered, {rate_limited} dropped by the server\n{metrics}"
    );
    assert_eq!(
        count(&metrics, "causeway_client_dropped_packets_total"),
        rate_limited,
        "nothing dropped but for the budget"
    );
    let worst = everyone.iter().map(UdpTurn::unanswered).max().unwrap_or(0);
    assert!(
        worst <= 1,
        "a participant's requests were dropped {worst} times ({rate_limited} drops in all)"
    );
    let mut waits: Vec<Duration> = everyone.iter().filter_map(|p| p.allocated).collect();
    waits.sort();
    let p50 = waits[waits.len() / 2];
    let max = *waits.last().unwrap();
    eprintln!(
        "{} allocations: p50 {p50:?}, max {max:?}; transmissions per allocation at most {}; \
         {rate_limited} first tries dropped by the office's budget",
        waits.len(),
        everyone.iter().map(|p| p.sent).max().unwrap()
    );
}
