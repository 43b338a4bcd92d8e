//! Lifetimes driven by a fake clock: Refresh, deletion, and the expiry of
//! allocations, permissions and channel bindings over hours of simulated time.

mod common;

use common::*;
use stun_core::Class;
use stun_core::attributes::*;
use turn_core::Instant;
use turn_core::server::{EndReason, Event};

const T0: Instant = Instant::from_secs(1_764_000_000);

/// Advances the clock to `until`, calling `handle_timeout` whenever the server asks.
fn run_until(s: &mut TestServer, h: &mut FakeHost, from: Instant, until: Instant) -> Instant {
    let mut now = from;
    while let Some(t) = s.poll_timeout() {
        if t > until {
            break;
        }
        now = t.max(now);
        s.handle_timeout(now, h);
    }
    until.max(now)
}

#[test]
fn allocation_expires_and_releases_everything() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    c.allocate(&mut s, &mut h, T0);
    while s.poll_event().is_some() {}
    assert!(s.poll_timeout().is_some());
    run_until(&mut s, &mut h, T0, T0.plus_secs(599));
    assert_eq!(s.allocation_count(), 1);
    run_until(&mut s, &mut h, T0, T0.plus_secs(601));
    assert_eq!(s.allocation_count(), 0);
    assert!(h.bound.is_empty(), "relay socket closed");
    assert_eq!(h.total(), 0, "quota released");
    assert!(matches!(
        s.poll_event(),
        Some(Event::Ended {
            reason: EndReason::Expired,
            ..
        })
    ));
    assert_eq!(s.poll_timeout(), None, "nothing left to expire");
}

#[test]
fn refresh_keeps_it_alive_for_hours_and_zero_deletes() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    c.allocate(&mut s, &mut h, T0);
    let mut now = T0;
    // Six hours, refreshing every 5 minutes (with nonces going stale on the way).
    for _ in 0..72 {
        now = run_until(&mut s, &mut h, now, now.plus_secs(300));
        let r = c.refresh(&mut s, &mut h, now, 600);
        assert_success(&r, &c);
        assert_eq!(
            r.msg().attribute::<Lifetime>().unwrap(),
            Some(Lifetime(600))
        );
        assert_eq!(s.allocation_count(), 1);
    }
    let r = c.refresh(&mut s, &mut h, now, 0);
    assert_success(&r, &c);
    assert_eq!(r.msg().attribute::<Lifetime>().unwrap(), Some(Lifetime(0)));
    assert_eq!(s.allocation_count(), 0);
    assert!(h.bound.is_empty());
    assert_eq!(h.total(), 0);
    let ended = std::iter::from_fn(|| s.poll_event()).find(|e| matches!(e, Event::Ended { .. }));
    assert!(matches!(
        ended,
        Some(Event::Ended {
            reason: EndReason::Released,
            ..
        })
    ));
    // A refresh of nothing: 437.
    assert_eq!(c.refresh(&mut s, &mut h, now, 600).code(), Some(437));
}

#[test]
fn other_user_on_the_same_five_tuple_gets_441() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut a = Client::new("198.51.100.7:1", "alice", "wonderland");
    a.allocate(&mut s, &mut h, T0);
    let mut b = Client::new("198.51.100.7:1", "bob", "builder");
    let r = b.refresh(&mut s, &mut h, T0, 600);
    assert_eq!(r.code(), Some(441));
    let r = b.permit(&mut s, &mut h, T0, "8.8.8.8:1");
    assert_eq!(r.code(), Some(441));
}

#[test]
fn an_expired_allocation_is_gone_before_the_sweep_reaches_it() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    assert_success(&c.allocate(&mut s, &mut h, T0), &c);
    // No timer has run: the allocation is still in the table at 600 s.
    let end = T0.plus_secs(600);
    assert_eq!(s.allocation_count(), 1);
    let r = c.permit(&mut s, &mut h, end, "8.8.8.8:1000");
    assert_eq!(r.code(), Some(437), "not revived by a CreatePermission");
    let r = c.request(&mut s, &mut h, end, stun_core::Method::REFRESH, &|_| {});
    assert_eq!(r.code(), Some(437), "not revived by a Refresh");
    // A new Allocate on the same 5-tuple succeeds, on a fresh allocation.
    assert_success(&c.allocate(&mut s, &mut h, end), &c);
    assert_eq!(s.allocation_count(), 1);
    assert_eq!(h.bound.len(), 1, "the old relay socket was closed");
}

#[test]
fn permissions_expire_after_300_seconds() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    c.request(&mut s, &mut h, T0, stun_core::Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add(&Lifetime(3600)).unwrap();
    });
    assert_success(&c.permit(&mut s, &mut h, T0, "8.8.8.8:1000"), &c);
    let local = relay_local(&h);
    assert!(from_peer(&mut s, &mut h, T0.plus_secs(299), local, "8.8.8.8:9", b"x").is_some());
    assert!(from_peer(&mut s, &mut h, T0.plus_secs(300), local, "8.8.8.8:9", b"x").is_none());
    // Refreshing the permission before expiry extends it.
    c.permit(&mut s, &mut h, T0.plus_secs(299), "8.8.8.8:1");
    assert!(from_peer(&mut s, &mut h, T0.plus_secs(500), local, "8.8.8.8:9", b"x").is_some());
    run_until(&mut s, &mut h, T0, T0.plus_secs(600));
    assert_eq!(
        s.allocations().next().unwrap().permission_count(),
        0,
        "swept"
    );
}

#[test]
fn channels_expire_after_600_seconds_then_cool_down() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    c.request(&mut s, &mut h, T0, stun_core::Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add(&Lifetime(3600)).unwrap();
    });
    assert_success(&c.bind(&mut s, &mut h, T0, 0x4001, "8.8.8.8:1000"), &c);
    let local = relay_local(&h);
    // Keep the permission alive but not the channel.
    c.permit(&mut s, &mut h, T0.plus_secs(290), "8.8.8.8:1");
    c.permit(&mut s, &mut h, T0.plus_secs(580), "8.8.8.8:1");
    let (_, d) = from_peer(
        &mut s,
        &mut h,
        T0.plus_secs(599),
        local,
        "8.8.8.8:1000",
        b"x",
    )
    .unwrap();
    assert_eq!(d[0] & 0xc0, 0x40, "ChannelData while the channel lives");
    let (_, d) = from_peer(
        &mut s,
        &mut h,
        T0.plus_secs(600),
        local,
        "8.8.8.8:1000",
        b"x",
    )
    .unwrap();
    assert_eq!(d[0] & 0xc0, 0x00, "Data indication once it expired");
    // During the 5-minute cooldown the number cannot go to another peer, nor the
    // peer to another number; the same pair may be bound again.
    let t = T0.plus_secs(700);
    assert_eq!(
        c.bind(&mut s, &mut h, t, 0x4001, "8.8.4.4:1000").code(),
        Some(400)
    );
    assert_eq!(
        c.bind(&mut s, &mut h, t, 0x4002, "8.8.8.8:1000").code(),
        Some(400)
    );
    assert_success(&c.bind(&mut s, &mut h, t, 0x4001, "8.8.8.8:1000"), &c);
    // After expiry plus cooldown, both are free again.
    let t2 = t.plus_secs(600 + 300);
    run_until(&mut s, &mut h, t, t2);
    assert_success(&c.bind(&mut s, &mut h, t2, 0x4001, "8.8.4.4:1000"), &c);
}

#[test]
fn failed_requests_never_touch_lifetimes() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    c.allocate(&mut s, &mut h, T0);
    let before = s.allocations().next().unwrap().expires();
    let mut bad = Client::new("198.51.100.7:1", "alice", "wrong");
    bad.nonce = c.nonce.clone();
    assert_eq!(
        bad.refresh(&mut s, &mut h, T0.plus_secs(100), 3600).class(),
        Class::Error
    );
    assert_eq!(s.allocations().next().unwrap().expires(), before);
    let r = bad.refresh(&mut s, &mut h, T0.plus_secs(100), 0);
    assert_eq!(r.code(), Some(401));
    assert_eq!(
        s.allocation_count(),
        1,
        "a refresh that fails integrity deletes nothing"
    );
}

#[test]
fn closing_a_tcp_connection_deletes_its_allocation() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::with_transport(
        "198.51.100.7:1",
        "alice",
        "wonderland",
        turn_core::Transport::Tcp,
    );
    c.allocate(&mut s, &mut h, T0);
    let mut u = Client::new("198.51.100.7:1", "alice", "wonderland");
    u.allocate(&mut s, &mut h, T0);
    assert_eq!(
        s.allocation_count(),
        2,
        "the UDP 5-tuple is a different allocation"
    );
    s.connection_closed(&c.tuple, &mut h);
    assert_eq!(s.allocation_count(), 1);
    assert_eq!(h.bound.len(), 1);
    let ended = std::iter::from_fn(|| s.poll_event()).find(|e| matches!(e, Event::Ended { .. }));
    assert!(matches!(
        ended,
        Some(Event::Ended {
            reason: EndReason::ConnectionClosed,
            ..
        })
    ));
}

#[test]
fn a_stop_ends_every_allocation_each_with_its_event() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut a = Client::new("198.51.100.7:5000", "alice", "wonderland");
    let mut b = Client::new("198.51.100.8:5000", "bob", "builder");
    assert_success(&a.allocate(&mut s, &mut h, T0), &a);
    assert_success(&b.allocate(&mut s, &mut h, T0), &b);
    while s.poll_event().is_some() {}
    let mut ended = Vec::new();
    s.stop(&mut h, |s| {
        ended.extend(std::iter::from_fn(|| s.poll_event()))
    });
    assert_eq!(ended.len(), 2, "{ended:?}");
    assert!(ended.iter().all(|e| matches!(
        e,
        Event::Ended {
            reason: EndReason::Stopped,
            ..
        }
    )));
    assert_eq!(s.allocation_count(), 0);
    assert!(h.bound.is_empty(), "relay sockets closed");
    assert_eq!(h.total(), 0, "quotas released");
}

#[test]
fn an_allocation_names_its_peers_a_channel_standing_for_its_permission() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut a = Client::new("198.51.100.7:5000", "alice", "wonderland");
    assert_success(&a.allocate(&mut s, &mut h, T0), &a);
    assert_success(&a.permit(&mut s, &mut h, T0, "8.8.8.8:0"), &a);
    assert_success(&a.permit(&mut s, &mut h, T0, "9.9.9.9:0"), &a);
    assert_success(&a.bind(&mut s, &mut h, T0, 0x4000, "8.8.8.8:5000"), &a);
    let peers: Vec<std::net::SocketAddr> = s.allocations().next().unwrap().peers().collect();
    assert_eq!(
        peers,
        [
            "8.8.8.8:5000".parse().unwrap(),
            "9.9.9.9:0".parse().unwrap()
        ]
    );
}

/// The end's event is a usage record's worth: when it started, its relayed
/// address, what it relayed, and what was refused on it, both sides (the
/// routine 401 of its first Allocate not among them).
#[test]
fn an_ended_allocation_says_when_it_started_where_it_relayed_and_what_was_refused() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:5000", "alice", "wonderland");
    let relayed_at = relayed(&c.allocate(&mut s, &mut h, T0));
    let later = T0.plus_secs(42);
    assert_success(&c.permit(&mut s, &mut h, later, "8.8.8.8:53"), &c);
    // A forbidden peer (403) and a Send to an unpermitted one (dropped).
    assert_eq!(
        c.permit(&mut s, &mut h, later, "10.9.9.9:1").code(),
        Some(403)
    );
    let ind = c.send_indication("9.9.9.9:53", b"x");
    let _ = c.send_raw(&mut s, &mut h, later, &ind);
    let ind = c.send_indication("8.8.8.8:53", b"hello");
    let _ = c.send_raw(&mut s, &mut h, later, &ind);
    // A scan from a peer never permitted, and one that was.
    let local = relay_local(&h);
    assert!(from_peer(&mut s, &mut h, later, local, "1.2.3.4:9", b"scan").is_none());
    assert!(from_peer(&mut s, &mut h, later, local, "8.8.8.8:53", b"answer").is_some());
    while s.poll_event().is_some() {}
    assert_success(&c.refresh(&mut s, &mut h, later, 0), &c);
    match s.poll_event() {
        Some(Event::Ended {
            started,
            relayed,
            traffic,
            reason: EndReason::Released,
            ..
        }) => {
            assert_eq!(started, T0);
            assert_eq!(relayed, [Some(relayed_at), None]);
            assert_eq!((traffic.to_peer_packets, traffic.to_peer_bytes), (1, 5));
            assert_eq!((traffic.from_peer_packets, traffic.from_peer_bytes), (1, 6));
            assert_eq!((traffic.refused, traffic.peer_refused), (2, 1));
        }
        e => panic!("{e:?}"),
    }
}

/// A meeting's allocations expiring in one sweep each get their end event (a
/// usage record's worth) when the host reads events after each call: the
/// sweep ends no more than the queue holds and asks to be called again at
/// once.
#[test]
fn a_crowd_expiring_together_loses_no_end_event() {
    let mut s = server_with(config(), 64);
    let mut h = FakeHost::new();
    for i in 0..40 {
        let mut c = Client::new(&format!("198.51.100.7:{}", 5000 + i), "alice", "wonderland");
        assert_success(&c.allocate(&mut s, &mut h, T0), &c);
    }
    while s.poll_event().is_some() {}
    let end = T0.plus_secs(601);
    let mut ended = 0;
    let mut calls = 0;
    while let Some(t) = s.poll_timeout().filter(|t| *t <= end) {
        s.handle_timeout(t.max(T0), &mut h);
        ended += std::iter::from_fn(|| s.poll_event())
            .filter(|e| matches!(e, Event::Ended { .. }))
            .count();
        calls += 1;
        assert!(calls < 10_000, "the sweep keeps asking");
    }
    assert_eq!(s.allocation_count(), 0);
    assert_eq!(ended, 40);
}
