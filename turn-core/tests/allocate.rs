//! Allocate: the 401 round, success, retransmission, and every error of RFC 8656
//! §7.2, each checked to leave no state behind.

mod common;

use common::*;
use stun_core::attributes::*;
use stun_core::{AttributeType, Class, Method};
use turn_core::server::{Group, Refusal};
use turn_core::{Instant, Transport};

const T0: Instant = Instant::from_secs(1_764_000_000);

#[test]
fn challenge_then_allocate() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:50000", "alice", "wonderland");

    // First round: 401 with REALM and NONCE and no MESSAGE-INTEGRITY.
    let tid = c.tid();
    let req = c.build(
        Method::ALLOCATE,
        tid,
        &|b| b.add(&RequestedTransport::UDP).unwrap(),
        false,
    );
    let r = c.exchange(&mut s, &mut h, T0, &req).unwrap();
    assert_eq!(r.code(), Some(401));
    // The routine first round is no refusal: counted as a challenge only.
    assert_eq!(r.refusal, None);
    let counters = s.counters();
    assert_eq!((counters.challenges, counters.refused), (1, 0));
    assert_eq!(counters.refusals.in_group(Group::Challenge), 0);
    assert_eq!(r.msg().attribute::<Realm>().unwrap(), Some(Realm(REALM)));
    assert!(r.nonce().is_some());
    assert!(!r.msg().has_integrity());
    assert_eq!(s.allocation_count(), 0);

    let r = c.allocate(&mut s, &mut h, T0);
    assert_success(&r, &c);
    let m = r.msg();
    let relayed = m.attribute::<XorRelayedAddress>().unwrap().unwrap().0;
    assert_eq!(
        relayed.ip(),
        addr("203.0.113.5:0").ip(),
        "advertises the external (NAT) address"
    );
    assert!((24000..=29999).contains(&relayed.port()));
    assert_eq!(
        m.attribute::<XorMappedAddress>().unwrap().unwrap().0,
        c.tuple.client
    );
    assert_eq!(m.attribute::<Lifetime>().unwrap(), Some(Lifetime(600)));
    // The socket is bound on the private relay address with the same port.
    assert_eq!(
        relay_local(&h),
        addr(&format!("10.0.0.5:{}", relayed.port()))
    );
    assert_eq!(s.allocation_count(), 1);
    assert_eq!(h.total(), 1);
    let ev = s.poll_event().unwrap();
    assert!(
        matches!(ev, turn_core::server::Event::Allocated { ref username, .. } if username == "alice")
    );
}

#[test]
fn retransmitted_allocate_gets_the_same_answer_and_a_new_one_gets_437() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:50000", "alice", "wonderland");
    let tid = c.tid();
    let first = c.build(
        Method::ALLOCATE,
        tid,
        &|b| b.add(&RequestedTransport::UDP).unwrap(),
        false,
    );
    c.nonce = c.exchange(&mut s, &mut h, T0, &first).unwrap().nonce();
    let tid = c.tid();
    let req = c.build(
        Method::ALLOCATE,
        tid,
        &|b| b.add(&RequestedTransport::UDP).unwrap(),
        true,
    );
    let a = c.exchange(&mut s, &mut h, T0, &req).unwrap();
    assert_success(&a, &c);
    let b = c.exchange(&mut s, &mut h, T0.plus_secs(1), &req).unwrap();
    assert_success(&b, &c);
    assert_eq!(relayed(&a), relayed(&b));
    assert_eq!(s.allocation_count(), 1);
    assert_eq!(h.bound.len(), 1);

    let r = c.allocate(&mut s, &mut h, T0);
    assert_eq!(r.code(), Some(437));
    r.msg().verify_integrity(&c.key()).unwrap();
}

#[test]
fn bad_credentials_change_nothing() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:50000", "alice", "not-the-password");
    let r = c.allocate(&mut s, &mut h, T0);
    assert_eq!(r.code(), Some(401));
    assert_eq!(r.refusal, Some(Refusal::IntegrityFailure));
    assert!(r.nonce().is_some(), "a 401 always carries a fresh nonce");

    let mut u = Client::new("198.51.100.8:50000", "mallory", "x");
    let r = u.allocate(&mut s, &mut h, T0);
    assert_eq!(r.refusal, Some(Refusal::UnknownUser));

    let mut w = Client::new("198.51.100.9:50000", "alice", "wonderland");
    w.realm = "OTHER".into();
    let r = w.allocate(&mut s, &mut h, T0);
    assert_eq!(r.refusal, Some(Refusal::WrongRealm));

    assert_eq!(s.allocation_count(), 0);
    assert!(h.bound.is_empty());
    assert_eq!(h.total(), 0);
}

#[test]
fn stale_nonce_gets_438_and_a_new_nonce() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:50000", "alice", "wonderland");
    // An allocation that outlives the nonce (nonces go stale after 600 s).
    let r = c.request(&mut s, &mut h, T0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add(&Lifetime(3600)).unwrap();
    });
    assert_success(&r, &c);
    let old = c.nonce.clone();
    let tid = c.tid();
    let req = c.build(Method::REFRESH, tid, &|_| {}, true);
    let r = c.exchange(&mut s, &mut h, T0.plus_secs(601), &req).unwrap();
    assert_eq!(r.code(), Some(438));
    assert_ne!(r.nonce(), old);
    c.nonce = r.nonce();
    let r = c.refresh(&mut s, &mut h, T0.plus_secs(601), 600);
    assert_success(&r, &c);

    // A nonce made for another client address is refused too.
    let mut other = Client::new("198.51.100.99:1", "bob", "builder");
    other.nonce = c.nonce.clone();
    let tid = other.tid();
    let req = other.build(
        Method::ALLOCATE,
        tid,
        &|b| b.add(&RequestedTransport::UDP).unwrap(),
        true,
    );
    assert_eq!(
        other
            .exchange(&mut s, &mut h, T0.plus_secs(601), &req)
            .unwrap()
            .code(),
        Some(438)
    );
}

#[test]
fn request_errors() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:50000", "alice", "wonderland");
    let t0 = T0;

    let r = c.request(&mut s, &mut h, t0, Method::ALLOCATE, &|_| {});
    assert_eq!(r.code(), Some(400));
    r.msg()
        .verify_integrity(&c.key())
        .expect("errors to authenticated requests carry MI");

    let r = c.request(&mut s, &mut h, t0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::TCP).unwrap()
    });
    assert_eq!(r.code(), Some(442));

    let r = c.request(&mut s, &mut h, t0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add_raw(AttributeType::new(0x7f33), b"?").unwrap();
    });
    assert_eq!(r.code(), Some(420));
    assert_eq!(unknown_list(&r), vec![AttributeType::new(0x7f33)]);

    // DONT-FRAGMENT is refused with 420 when the host cannot set DF.
    let r = c.request(&mut s, &mut h, t0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add(&DontFragment).unwrap();
    });
    assert_eq!(r.code(), Some(420));
    assert_eq!(unknown_list(&r), vec![AttributeType::DONT_FRAGMENT]);

    // IPv6 relay not configured: 440; an unknown family: 440.
    let r = c.request(&mut s, &mut h, t0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add(&RequestedAddressFamily(AddressFamily::Ipv6)).unwrap();
    });
    assert_eq!(r.code(), Some(440));
    let r = c.request(&mut s, &mut h, t0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add_raw(AttributeType::REQUESTED_ADDRESS_FAMILY, &[3, 0, 0, 0])
            .unwrap();
    });
    assert_eq!(r.code(), Some(440));

    // Malformed attribute: 400.
    let r = c.request(&mut s, &mut h, t0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add_raw(AttributeType::LIFETIME, &[1, 2]).unwrap();
    });
    assert_eq!(r.code(), Some(400));

    // Unknown method: 400.
    let r = c.request(&mut s, &mut h, t0, Method::new(0x0ff).unwrap(), &|_| {});
    assert_eq!(r.code(), Some(400));

    // MESSAGE-INTEGRITY without USERNAME: 400.
    let tid = c.tid();
    let mut buf = vec![0u8; 256];
    let mut b = stun_core::MessageBuilder::new(
        &mut buf,
        stun_core::MessageType::new(Method::ALLOCATE, Class::Request),
        tid,
    )
    .unwrap();
    b.add(&RequestedTransport::UDP).unwrap();
    b.add_message_integrity(b"whatever").unwrap();
    let n = b.finish();
    assert_eq!(
        c.exchange(&mut s, &mut h, t0, &buf[..n]).unwrap().code(),
        Some(400)
    );

    // RESERVATION-TOKEN with EVEN-PORT: 400.
    let r = c.request(&mut s, &mut h, t0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add(&EvenPort {
            reserve_next: false,
        })
        .unwrap();
        b.add(&ReservationToken([1; 8])).unwrap();
    });
    assert_eq!(r.code(), Some(400));

    assert_eq!(s.allocation_count(), 0);
    assert!(h.bound.is_empty());
    assert_eq!(h.total(), 0);
}

#[test]
fn lifetime_is_clamped() {
    let mut cfg = config();
    cfg.max_lifetime_secs = 3600;
    let mut s = server_with(cfg, 4);
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:50000", "alice", "wonderland");
    let r = c.request(&mut s, &mut h, T0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add(&Lifetime(99_999)).unwrap();
    });
    assert_eq!(
        r.msg().attribute::<Lifetime>().unwrap(),
        Some(Lifetime(3600))
    );
    let mut d = Client::new("198.51.100.8:50000", "alice", "wonderland");
    let r = d.request(&mut s, &mut h, T0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add(&Lifetime(5)).unwrap();
    });
    assert_eq!(
        r.msg().attribute::<Lifetime>().unwrap(),
        Some(Lifetime(600))
    );
}

#[test]
fn quotas_capacity_and_alternate_server() {
    let mut s = server_with(config(), 3);
    let mut h = FakeHost::new();
    h.user_quota = 2;
    for port in 1..=2 {
        let mut c = Client::new(&format!("198.51.100.7:{port}"), "alice", "wonderland");
        assert_eq!(c.allocate(&mut s, &mut h, T0).class(), Class::Success);
    }
    let mut c = Client::new("198.51.100.7:3", "alice", "wonderland");
    let r = c.allocate(&mut s, &mut h, T0);
    assert_eq!(r.code(), Some(486));
    assert_eq!(h.bound.len(), 2, "a refused allocation binds nothing");

    let mut b = Client::new("198.51.100.8:1", "bob", "builder");
    assert_eq!(b.allocate(&mut s, &mut h, T0).class(), Class::Success);
    // The table (3 slots) is full now.
    let mut b2 = Client::new("198.51.100.8:2", "bob", "builder");
    let r = b2.allocate(&mut s, &mut h, T0);
    assert_eq!(r.code(), Some(508));

    // With an alternate server configured, a full node redirects with 300.
    let mut cfg = config();
    cfg.alternate_server = Some(addr("192.0.2.50:3478"));
    let mut s = server_with(cfg, 1);
    let mut h = FakeHost::new();
    Client::new("198.51.100.7:1", "alice", "wonderland").allocate(&mut s, &mut h, T0);
    let mut c = Client::new("198.51.100.7:2", "alice", "wonderland");
    let r = c.allocate(&mut s, &mut h, T0);
    assert_eq!(r.code(), Some(300));
    assert_eq!(
        r.msg().attribute::<AlternateServer>().unwrap().unwrap().0,
        addr("192.0.2.50:3478")
    );

    // The host's total quota (shared by workers) is honoured the same way.
    let mut s = server();
    let mut h = FakeHost::new();
    h.total_quota = 1;
    Client::new("198.51.100.7:1", "alice", "wonderland").allocate(&mut s, &mut h, T0);
    let r = Client::new("198.51.100.7:2", "bob", "builder").allocate(&mut s, &mut h, T0);
    assert_eq!(r.code(), Some(508));
}

#[test]
fn relay_ports_exhausted_or_unavailable() {
    let mut cfg = config();
    cfg.port_min = 24000;
    cfg.port_max = 24001;
    let mut s = server_with(cfg, 8);
    let mut h = FakeHost::new();
    for port in 1..=2 {
        let mut c = Client::new(&format!("198.51.100.7:{port}"), "alice", "wonderland");
        assert_eq!(c.allocate(&mut s, &mut h, T0).class(), Class::Success);
    }
    let mut c = Client::new("198.51.100.7:3", "alice", "wonderland");
    let r = c.allocate(&mut s, &mut h, T0);
    assert_eq!(r.code(), Some(508));
    assert_eq!(r.refusal, Some(Refusal::NoRelayPort));
    assert_eq!(h.total(), 2, "quota of the refused allocation was released");

    let mut s = server();
    let mut h = FakeHost::new();
    h.unavailable = true;
    let r = Client::new("198.51.100.7:1", "alice", "wonderland").allocate(&mut s, &mut h, T0);
    assert_eq!(r.code(), Some(508));
    assert_eq!(h.total(), 0);
}

#[test]
fn even_port_and_reservation_token() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut a = Client::new("198.51.100.7:1", "alice", "wonderland");
    let r = a.request(&mut s, &mut h, T0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add(&EvenPort { reserve_next: true }).unwrap();
    });
    assert_success(&r, &a);
    let port = relayed(&r).port();
    assert_eq!(port % 2, 0);
    let token = r
        .msg()
        .attribute::<ReservationToken>()
        .unwrap()
        .expect("a token");
    assert_eq!(h.bound.len(), 1);
    assert_eq!(
        h.reserved.len(),
        1,
        "the next port is held for the reservation"
    );

    let mut b = Client::new("198.51.100.7:2", "alice", "wonderland");
    let r = b.request(&mut s, &mut h, T0, Method::ALLOCATE, &move |bb| {
        bb.add(&RequestedTransport::UDP).unwrap();
        bb.add(&token).unwrap();
    });
    assert_success(&r, &b);
    assert_eq!(relayed(&r).port(), port + 1);
    assert_eq!(h.bound.len(), 2);
    assert!(h.reserved.is_empty());

    // A token used twice, or unknown: 508.
    let mut c = Client::new("198.51.100.7:3", "alice", "wonderland");
    let r = c.request(&mut s, &mut h, T0, Method::ALLOCATE, &move |bb| {
        bb.add(&RequestedTransport::UDP).unwrap();
        bb.add(&token).unwrap();
    });
    assert_eq!(r.code(), Some(508));
}

#[test]
fn even_port_reservations_expire() {
    let mut cfg = config();
    cfg.port_min = 24000;
    cfg.port_max = 24099;
    let mut s = server_with(cfg, 64);
    let mut h = FakeHost::new();
    for i in 0..40 {
        let mut c = Client::new(
            &format!("198.51.100.{}:1000", 10 + i),
            "alice",
            "wonderland",
        );
        let r = c.request(&mut s, &mut h, T0, Method::ALLOCATE, &|b| {
            b.add(&RequestedTransport::UDP).unwrap();
            b.add(&EvenPort { reserve_next: true }).unwrap();
        });
        assert_success(&r, &c);
    }
    assert_eq!(h.reserved.len(), 40);
    // After 30 s the reserved ports are released, and the pool is whole again.
    let later = T0.plus_secs(31);
    s.handle_timeout(later, &mut h);
    assert_eq!(h.reserved.len(), 0);
}

#[test]
fn a_reservation_outliving_its_allocation_is_still_released() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    let r = c.request(&mut s, &mut h, T0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add(&EvenPort { reserve_next: true }).unwrap();
    });
    assert_success(&r, &c);
    let r = c.request(&mut s, &mut h, T0, Method::REFRESH, &|b| {
        b.add(&Lifetime(0)).unwrap();
    });
    assert_success(&r, &c);
    assert_eq!(s.allocation_count(), 0);
    assert_eq!(h.reserved.len(), 1);
    // The caller runs the server's timers only when it asks; it must still ask.
    let mut now = T0;
    while let Some(t) = s.poll_timeout() {
        now = t;
        s.handle_timeout(now, &mut h);
    }
    assert!(now >= T0.plus_secs(30), "sweeps stopped at {now:?}");
    assert!(h.reserved.is_empty(), "the reserved port was released");
}

#[test]
fn ipv6_and_dual_allocations() {
    let mut cfg = config();
    cfg.relay_v6 = Some("fd00::5".parse().unwrap());
    cfg.external_v6 = Some("2001:db8::5".parse().unwrap());
    let mut s = server_with(cfg, 8);
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    let r = c.request(&mut s, &mut h, T0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add(&RequestedAddressFamily(AddressFamily::Ipv6)).unwrap();
    });
    assert_success(&r, &c);
    assert!(relayed(&r).is_ipv6());
    assert_eq!(
        relayed(&r).ip(),
        "2001:db8::5".parse::<std::net::IpAddr>().unwrap()
    );

    let mut d = Client::new("198.51.100.7:2", "alice", "wonderland");
    let r = d.request(&mut s, &mut h, T0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add(&AdditionalAddressFamily(AddressFamily::Ipv6))
            .unwrap();
    });
    assert_success(&r, &d);
    let m = r.msg();
    let addrs: Vec<_> = m
        .attributes_of::<XorRelayedAddress>()
        .map(|a| a.unwrap().0)
        .collect();
    assert_eq!(addrs.len(), 2);
    assert!(addrs[0].is_ipv4() && addrs[1].is_ipv6());

    // Without an IPv6 relay, the dual request gets IPv4 and ADDRESS-ERROR-CODE 440.
    let mut s = server();
    let mut h = FakeHost::new();
    let mut e = Client::new("198.51.100.7:3", "alice", "wonderland");
    let r = e.request(&mut s, &mut h, T0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add(&AdditionalAddressFamily(AddressFamily::Ipv6))
            .unwrap();
    });
    assert_success(&r, &e);
    let m = r.msg();
    let aec = m.attribute::<AddressErrorCode>().unwrap().unwrap();
    assert_eq!((aec.family, aec.code), (2, 440));
    // ADDITIONAL-ADDRESS-FAMILY IPv4 is a bad request.
    let mut f = Client::new("198.51.100.7:4", "alice", "wonderland");
    let r = f.request(&mut s, &mut h, T0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add(&AdditionalAddressFamily(AddressFamily::Ipv4))
            .unwrap();
    });
    assert_eq!(r.code(), Some(400));
}

#[test]
fn time_limited_shared_secret_credentials() {
    let mut cfg = config();
    cfg.shared_secrets
        .push(turn_core::server::Secret::from_slice(b"cluster-secret").unwrap())
        .unwrap();
    // Two nodes of a cluster: the second has never seen the user.
    let mut node_a = server_with(cfg.clone(), 4);
    let mut node_b = server_with(cfg, 4);
    let mut h = FakeHost::new();
    let secret = stun_core::credentials::SharedSecret::new(b"cluster-secret");
    let user = format!("{}:webrtc-guest", T0.as_secs() + 3600);
    let pass = secret.password(&user).as_str().to_string();
    let mut c = Client::new("198.51.100.7:1", &user, &pass);
    assert_success(&c.allocate(&mut node_a, &mut h, T0), &c);
    let mut c2 = Client::new("198.51.100.7:2", &user, &pass);
    assert_success(&c2.allocate(&mut node_b, &mut h, T0), &c2);

    let expired = format!("{}:webrtc-guest", T0.as_secs() - 1);
    let mut e = Client::new(
        "198.51.100.7:3",
        &expired,
        secret.password(&expired).as_str(),
    );
    let r = e.allocate(&mut node_a, &mut h, T0);
    assert_eq!(r.code(), Some(401));
    assert!(matches!(r.refusal, Some(Refusal::CredentialExpired { .. })));

    let mut wrong = Client::new("198.51.100.7:4", &user, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    assert_eq!(
        wrong.allocate(&mut node_a, &mut h, T0).refusal,
        Some(Refusal::IntegrityFailure)
    );
    // Local users still work beside the shared secret.
    let mut local = Client::new("198.51.100.7:5", "alice", "wonderland");
    assert_success(&local.allocate(&mut node_a, &mut h, T0), &local);
}

#[test]
fn a_shared_secret_rotates_while_old_and_new_verify() {
    let secret = |s: &[u8]| turn_core::server::Secret::from_slice(s).unwrap();
    let old = stun_core::credentials::SharedSecret::new(b"secret-2026-11");
    let new = stun_core::credentials::SharedSecret::new(b"secret-2026-12");
    let user = format!("{}:guest", T0.as_secs() + 3600);
    let mut h = FakeHost::new();

    // During the rotation both secrets are configured: either issuer works.
    let mut cfg = config();
    cfg.shared_secrets.push(secret(b"secret-2026-11")).unwrap();
    cfg.shared_secrets.push(secret(b"secret-2026-12")).unwrap();
    let mut s = server_with(cfg, 4);
    let mut a = Client::new("198.51.100.7:1", &user, old.password(&user).as_str());
    assert_success(&a.allocate(&mut s, &mut h, T0), &a);
    let mut b = Client::new("198.51.100.7:2", &user, new.password(&user).as_str());
    assert_success(&b.allocate(&mut s, &mut h, T0), &b);
    // Responses are signed with the key that verified the request.
    let mut r = a.refresh(&mut s, &mut h, T0, 600);
    assert_success(&r, &a);
    r = b.refresh(&mut s, &mut h, T0, 600);
    assert_success(&r, &b);

    // After it, only the new secret verifies.
    let mut cfg = config();
    cfg.shared_secrets.push(secret(b"secret-2026-12")).unwrap();
    let mut s = server_with(cfg, 4);
    let mut a = Client::new("198.51.100.7:3", &user, old.password(&user).as_str());
    assert_eq!(
        a.allocate(&mut s, &mut h, T0).refusal,
        Some(Refusal::IntegrityFailure)
    );
    let mut b = Client::new("198.51.100.7:4", &user, new.password(&user).as_str());
    assert_success(&b.allocate(&mut s, &mut h, T0), &b);
}

#[test]
fn unauthenticated_answers_are_rate_limited_per_source() {
    let mut s = server();
    let mut h = FakeHost::new();
    let c = Client::new("198.51.100.7:1", "alice", "wonderland");
    let mut answered = 0;
    for i in 0..100u8 {
        let req = c.build(
            Method::ALLOCATE,
            stun_core::TransactionId::new([i; 12]),
            &|_| {},
            false,
        );
        if let (Answer::ToClient { .. }, _) = c.send_raw(&mut s, &mut h, T0, &req) {
            answered += 1;
        }
    }
    assert_eq!(answered, 10, "the burst, then silence");
    // Another source is not affected, and the budget refills.
    let d = Client::new("198.51.100.8:1", "alice", "wonderland");
    let req = d.build(
        Method::ALLOCATE,
        stun_core::TransactionId::new([1; 12]),
        &|_| {},
        false,
    );
    assert!(matches!(
        d.send_raw(&mut s, &mut h, T0, &req).0,
        Answer::ToClient { .. }
    ));
    let req = c.build(
        Method::ALLOCATE,
        stun_core::TransactionId::new([1; 12]),
        &|_| {},
        false,
    );
    assert!(matches!(
        c.send_raw(&mut s, &mut h, T0.plus_secs(1), &req).0,
        Answer::ToClient { .. }
    ));
}

#[test]
fn binding_is_answered_without_authentication() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::with_transport("198.51.100.7:1", "alice", "wonderland", Transport::Tcp);
    let tid = c.tid();
    let req = c.build(Method::BINDING, tid, &|_| {}, false);
    let r = c.exchange(&mut s, &mut h, T0, &req).unwrap();
    assert_eq!(r.class(), Class::Success);
    assert_eq!(
        r.msg().attribute::<XorMappedAddress>().unwrap().unwrap().0,
        c.tuple.client
    );
}

#[test]
fn small_responses_no_amplification() {
    // The 401 to the smallest request is at most a few times its size.
    let mut s = server();
    let mut h = FakeHost::new();
    let c = Client::new("198.51.100.7:1", "alice", "wonderland");
    let req = c.build(
        Method::ALLOCATE,
        stun_core::TransactionId::new([1; 12]),
        &|_| {},
        false,
    );
    let (_, out) = c.send_raw(&mut s, &mut h, T0, &req);
    assert!(
        out.len() <= 4 * req.len(),
        "401 is {} bytes for a {}-byte request",
        out.len(),
        req.len()
    );
}
