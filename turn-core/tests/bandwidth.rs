//! Bandwidth limits on the caller's clock: a client over its allocation's limit
//! is held to it (within 10 %) while another is untouched; peers' traffic to a
//! client likewise; a user's allocations share the user's limit; capacity refuses
//! new allocations (508, or 300 to the alternate) and drops nothing; with a limit
//! no kernel route is announced.

mod common;

use common::*;
use stun_core::channel_data;
use turn_core::server::{Bandwidth, Config, Refusal};
use turn_core::{Instant, Transport};

const T0: Instant = Instant::from_secs(1_764_000_000);
const RATE: u32 = 100_000;

fn limited() -> Config {
    let mut cfg = config();
    cfg.allocation_bandwidth = Some(Bandwidth::new(RATE, 10_000));
    cfg
}

fn channel_data(ch: u16, len: usize) -> Vec<u8> {
    let mut frame = vec![0u8; channel_data::HEADER_LEN + len];
    frame[..2].copy_from_slice(&ch.to_be_bytes());
    frame[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    frame
}

/// Offers `bytes_per_sec` in 1000-byte ChannelData for `secs`; returns the
/// payload bytes relayed.
fn offer(
    s: &mut TestServer,
    h: &mut FakeHost,
    c: &Client,
    start: Instant,
    bytes_per_sec: u64,
    secs: u64,
) -> u64 {
    let frame = channel_data(0x4000, 1000);
    let packets = bytes_per_sec * secs / 1000;
    let gap_us = 1_000_000 / (bytes_per_sec / 1000);
    let mut relayed = 0;
    for i in 0..packets {
        let now = start.plus_millis(i * gap_us / 1000);
        match c.send_raw(s, h, now, &frame).0 {
            Answer::ToPeer { data, .. } => relayed += data.len() as u64,
            Answer::Nothing(Some(Refusal::OverBandwidth)) => {}
            o => panic!("{o:?}"),
        }
    }
    relayed
}

fn within_10_percent(measured: u64, expected: u64) {
    assert!(
        measured.abs_diff(expected) * 10 <= expected,
        "{measured} is not within 10 % of {expected}"
    );
}

#[test]
fn a_client_over_its_limit_is_held_to_it_and_another_is_untouched() {
    let mut s = server_with(limited(), 4);
    let mut h = FakeHost::new();
    let mut loud = Client::new("198.51.100.7:1", "alice", "wonderland");
    let mut quiet = Client::new("198.51.100.8:1", "alice", "wonderland");
    for c in [&mut loud, &mut quiet] {
        assert_success(&c.allocate(&mut s, &mut h, T0), c);
        assert_success(&c.bind(&mut s, &mut h, T0, 0x4000, "8.8.8.8:5000"), c);
    }
    // The loud one offers 3x its limit for 10 s: it gets the limit.
    let got = offer(&mut s, &mut h, &loud, T0, 3 * u64::from(RATE), 10);
    within_10_percent(got / 10, u64::from(RATE));
    let dropped = s.counters().bandwidth_dropped;
    assert!(dropped > 1500, "{dropped}");
    // The quiet one, under its limit over the same seconds, loses nothing.
    let got = offer(&mut s, &mut h, &quiet, T0, u64::from(RATE) / 2, 10);
    assert_eq!(got, 10 * u64::from(RATE) / 2);
    // The drops are the loud allocation's, counted in its traffic.
    let traffic: Vec<_> = s.allocations().map(|a| *a.traffic()).collect();
    assert!(traffic.iter().any(|t| t.to_peer_dropped == dropped));
    assert!(traffic.iter().any(|t| t.to_peer_dropped == 0));
}

#[test]
fn peers_traffic_to_a_client_is_held_to_the_limit_too() {
    let mut s = server_with(limited(), 4);
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    assert_success(&c.allocate(&mut s, &mut h, T0), &c);
    assert_success(&c.permit(&mut s, &mut h, T0, "8.8.8.8:1"), &c);
    let local = relay_local(&h);
    let payload = [7u8; 1000];
    let mut relayed = 0u64;
    // 300 kB/s for 10 s.
    for i in 0..3000u64 {
        let now = T0.plus_millis(i * 10 / 3);
        if from_peer(&mut s, &mut h, now, local, "8.8.8.8:9", &payload).is_some() {
            relayed += 1000;
        }
    }
    within_10_percent(relayed / 10, u64::from(RATE));
}

#[test]
fn a_users_allocations_share_its_limit() {
    let mut cfg = config();
    cfg.user_bandwidth = Some(Bandwidth::new(RATE, 10_000));
    let mut s = server_with(cfg, 4);
    let mut h = FakeHost::new();
    let mut a1 = Client::new("198.51.100.7:1", "alice", "wonderland");
    let mut a2 = Client::new("198.51.100.8:1", "alice", "wonderland");
    let mut b = Client::new("198.51.100.9:1", "bob", "builder");
    for c in [&mut a1, &mut a2, &mut b] {
        assert_success(&c.allocate(&mut s, &mut h, T0), c);
        assert_success(&c.bind(&mut s, &mut h, T0, 0x4000, "8.8.8.8:5000"), c);
    }
    // Each of alice's two offers the user's whole limit, interleaved.
    let frame = channel_data(0x4000, 1000);
    let (mut alice, mut bob) = (0u64, 0u64);
    for i in 0..1000u64 {
        let now = T0.plus_millis(i * 10);
        for c in [&a1, &a2] {
            if matches!(
                c.send_raw(&mut s, &mut h, now, &frame).0,
                Answer::ToPeer { .. }
            ) {
                alice += 1000;
            }
        }
        // bob, at half his own limit, loses nothing.
        if i % 2 == 0
            && matches!(
                b.send_raw(&mut s, &mut h, now, &frame).0,
                Answer::ToPeer { .. }
            )
        {
            bob += 1000;
        }
    }
    within_10_percent(alice / 10, u64::from(RATE));
    assert_eq!(bob, 500 * 1000);
}

#[test]
fn capacity_refuses_new_allocations_and_drops_no_media() {
    let mut cfg = config();
    cfg.capacity_bytes_per_sec = Some(50_000);
    let mut s = server_with(cfg.clone(), 4);
    let mut h = FakeHost::new();
    let mut a = Client::new("198.51.100.7:1", "alice", "wonderland");
    assert_success(&a.allocate(&mut s, &mut h, T0), &a);
    assert_success(&a.bind(&mut s, &mut h, T0, 0x4000, "8.8.8.8:5000"), &a);
    // 100 kB/s for 3 s: all relayed, though it is twice the capacity.
    let got = offer(&mut s, &mut h, &a, T0, 100_000, 3);
    assert_eq!(got, 300_000);
    let late = T0.plus_secs(3);
    s.handle_timeout(late, &mut h);
    let mut b = Client::new("198.51.100.8:1", "bob", "builder");
    let r = b.allocate(&mut s, &mut h, late);
    assert_eq!(r.code(), Some(508));
    assert_eq!(r.refusal, Some(Refusal::Capacity));
    // With an alternate server, 300 there.
    cfg.alternate_server = Some(addr("203.0.113.6:3478"));
    s.reconfigure(cfg).unwrap();
    let r = b.allocate(&mut s, &mut h, late.plus_millis(10));
    assert_eq!(r.code(), Some(300));
    // Once the traffic stops, the next second's measure lets allocations in.
    s.handle_timeout(late.plus_secs(2), &mut h);
    s.handle_timeout(late.plus_secs(4), &mut h);
    let mut b = Client::new("198.51.100.9:1", "bob", "builder");
    assert_success(&b.allocate(&mut s, &mut h, late.plus_secs(4)), &b);
}

#[test]
fn with_a_limit_no_kernel_route_is_announced() {
    for (cfg, routes) in [(config(), 1), (limited(), 0)] {
        let mut s = server_with(cfg, 4);
        let mut h = FakeHost::new();
        let mut c = Client::with_transport("198.51.100.7:1", "alice", "wonderland", Transport::Udp);
        assert_success(&c.allocate(&mut s, &mut h, T0), &c);
        assert_success(&c.bind(&mut s, &mut h, T0, 0x4000, "8.8.8.8:5000"), &c);
        assert_eq!(h.routes.len(), routes);
    }
}

#[test]
fn a_limit_that_cannot_pass_a_datagram_is_refused() {
    let mut cfg = config();
    cfg.allocation_bandwidth = Some(Bandwidth::new(RATE, 1000));
    assert_eq!(cfg.validate().unwrap_err().field, "bandwidth.allocation");
    cfg.allocation_bandwidth = None;
    cfg.capacity_bytes_per_sec = Some(0);
    assert_eq!(cfg.validate().unwrap_err().field, "bandwidth.capacity");
}
