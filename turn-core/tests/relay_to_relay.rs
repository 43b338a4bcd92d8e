//! Relay to relay: two allocations on this server exchange data, but a permission
//! for the server's own IP never opens its other ports (the TURN listener, SSH, a
//! freed relay port) in either direction, and the server's own addresses are
//! denied even when an allow entry covers them.

mod common;

use common::*;
use stun_core::Message;
use stun_core::attributes::XorPeerAddress;
use turn_core::Instant;
use turn_core::server::{Refusal, policy::Cidr};

const T0: Instant = Instant::from_secs(1_764_000_000);

/// alice and bob allocated on one server; each permitted the other's advertised
/// relayed address.
fn pair() -> (
    TestServer,
    FakeHost,
    Client,
    Client,
    std::net::SocketAddr,
    std::net::SocketAddr,
) {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut a = Client::new("198.51.100.7:1", "alice", "wonderland");
    let mut b = Client::new("198.51.100.8:1", "bob", "builder");
    let ra = relayed(&a.allocate(&mut s, &mut h, T0));
    let rb = relayed(&b.allocate(&mut s, &mut h, T0));
    assert_success(&a.permit(&mut s, &mut h, T0, &rb.to_string()), &a);
    assert_success(&b.permit(&mut s, &mut h, T0, &ra.to_string()), &b);
    (s, h, a, b, ra, rb)
}

/// The relay socket behind an advertised relayed address (static NAT: 203.0.113.5
/// stands for 10.0.0.5).
fn local_of(advertised: std::net::SocketAddr) -> std::net::SocketAddr {
    addr(&format!("10.0.0.5:{}", advertised.port()))
}

#[test]
fn data_flows_between_two_live_allocations_through_the_relay_sockets() {
    let (mut s, mut h, a, b, ra, rb) = pair();
    // alice sends to bob's advertised address: it leaves from alice's relay socket
    // to bob's relay socket itself, not through a NAT that may not hairpin.
    let ind = a.send_indication(&rb.to_string(), b"to bob");
    let (o, _) = a.send_raw(&mut s, &mut h, T0, &ind);
    let Answer::ToPeer {
        peer,
        from,
        own_relay,
        ..
    } = o
    else {
        panic!("relayed: {o:?}")
    };
    assert_eq!(peer, local_of(rb));
    assert_eq!(from, local_of(ra));
    // The core names it one of its own relay sockets: the host delivers it
    // without the kernel, deciding nothing itself.
    assert_eq!(own_relay, Some(local_of(rb)));
    // It arrives on bob's relay socket from alice's: bob's client sees alice's
    // advertised address, the one it permitted.
    let (tuple, bytes) = from_peer(
        &mut s,
        &mut h,
        T0,
        local_of(rb),
        &local_of(ra).to_string(),
        b"to bob",
    )
    .expect("delivered to bob");
    assert_eq!(tuple, b.tuple);
    let m = Message::new_checked(&bytes[..]).unwrap();
    assert_eq!(m.attribute::<XorPeerAddress>().unwrap().unwrap().0, ra);
}

#[test]
fn the_servers_other_ports_stay_closed_in_both_directions() {
    let (mut s, mut h, a, _b, ra, rb) = pair();
    // alice holds a permission for the server's IP (bob's relayed address). The
    // TURN listener and SSH on that IP are still unreachable...
    for target in [
        "203.0.113.5:3478",
        "10.0.0.5:3478",
        "10.0.0.5:22",
        "203.0.113.5:22",
    ] {
        let ind = a.send_indication(target, b"TURN inside TURN");
        let (o, _) = a.send_raw(&mut s, &mut h, T0, &ind);
        assert!(
            matches!(
                o,
                Answer::Nothing(Some(Refusal::NotLiveRelay(_)))
                    | Answer::Nothing(Some(Refusal::NoPermission(_)))
            ),
            "send to {target}: {o:?}"
        );
    }
    // ...and nothing from them reaches alice's client.
    for source in ["10.0.0.5:3478", "10.0.0.5:22", "203.0.113.5:3478"] {
        assert!(
            from_peer(&mut s, &mut h, T0, local_of(ra), source, b"answer").is_none(),
            "from {source}"
        );
    }
    // A relay port in the range that no allocation holds is closed too.
    let free = (24000..=29999)
        .map(|p| addr(&format!("10.0.0.5:{p}")))
        .find(|a| !h.bound.contains_key(a))
        .unwrap();
    let ind = a.send_indication(&format!("203.0.113.5:{}", free.port()), b"x");
    assert!(matches!(
        a.send_raw(&mut s, &mut h, T0, &ind).0,
        Answer::Nothing(Some(Refusal::NotLiveRelay(_)))
    ));
    assert!(from_peer(&mut s, &mut h, T0, local_of(ra), &free.to_string(), b"x").is_none());
    // The live one still works.
    let ind = a.send_indication(&rb.to_string(), b"x");
    assert!(matches!(
        a.send_raw(&mut s, &mut h, T0, &ind).0,
        Answer::ToPeer { .. }
    ));
}

#[test]
fn a_relayed_address_stops_counting_once_its_allocation_ends() {
    let (mut s, mut h, a, mut b, _ra, rb) = pair();
    let r = b.refresh(&mut s, &mut h, T0, 0);
    assert_success(&r, &b);
    let ind = a.send_indication(&rb.to_string(), b"x");
    assert!(matches!(
        a.send_raw(&mut s, &mut h, T0, &ind).0,
        Answer::Nothing(Some(Refusal::NotLiveRelay(_)))
    ));
    // No channel can be bound to it any more, nor a permission naming it (its
    // packets would never pass); one naming no port still can, and reaches
    // nothing.
    let mut a = a;
    assert_eq!(
        a.bind(&mut s, &mut h, T0, 0x4001, &rb.to_string()).code(),
        Some(403)
    );
    assert_eq!(
        a.permit(&mut s, &mut h, T0, &rb.to_string()).code(),
        Some(403)
    );
    let any_port = format!("{}:0", rb.ip());
    assert_success(&a.permit(&mut s, &mut h, T0, &any_port), &a);
    let ind = a.send_indication(&rb.to_string(), b"x");
    assert!(matches!(
        a.send_raw(&mut s, &mut h, T0, &ind).0,
        Answer::Nothing(Some(Refusal::NotLiveRelay(_)))
    ));
}

#[test]
fn own_addresses_are_denied_even_when_the_allow_list_covers_them() {
    let mut cfg = config();
    // The meeting server's private range holds the relay's own address.
    cfg.policy
        .allow
        .push(Cidr::parse("10.0.0.0/8").unwrap())
        .unwrap();
    // The host adds its listener and admin addresses.
    assert!(cfg.policy.add_own("10.0.0.6".parse().unwrap()));
    let mut s = server_with(cfg, 4);
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    let mut d = Client::new("198.51.100.9:1", "bob", "builder");
    c.allocate(&mut s, &mut h, T0);
    let rd = relayed(&d.allocate(&mut s, &mut h, T0));
    // Media of the meeting server: allowed.
    assert_success(&c.permit(&mut s, &mut h, T0, "10.1.2.3:40000"), &c);
    // The listener and admin addresses the host added: refused.
    for own in ["10.0.0.6:3478", "10.0.0.6:4455"] {
        let r = c.permit(&mut s, &mut h, T0, own);
        assert_eq!(r.code(), Some(403), "{own}");
        assert!(
            matches!(
                r.refusal,
                Some(Refusal::ForbiddenPeer(
                    _,
                    turn_core::server::policy::Verdict::DeniedOwnAddress
                ))
            ),
            "{own}: {:?}",
            r.refusal
        );
    }
    // The relay's own IP: a channel only to a live relayed address; a permission
    // (per IP, port 0 as clients send it) is granted, its packets checked.
    for dead in ["10.0.0.5:3478", "203.0.113.5:3478", "10.0.0.5:24000"] {
        let r = c.bind(&mut s, &mut h, T0, 0x4100, dead);
        assert_eq!(r.code(), Some(403), "{dead}");
    }
    assert_success(&c.permit(&mut s, &mut h, T0, "203.0.113.5:0"), &c);
    assert_success(&c.permit(&mut s, &mut h, T0, &rd.to_string()), &c);
    let local = format!("10.0.0.5:{}", rd.port());
    assert_success(&c.bind(&mut s, &mut h, T0, 0x4000, &local), &c);
}

#[test]
fn the_hosts_own_addresses_past_the_policys_list_are_denied_too() {
    let mut cfg = config();
    cfg.policy
        .allow
        .push(Cidr::parse("10.0.0.0/8").unwrap())
        .unwrap();
    let mut s = server_with(cfg, 4);
    let mut h = FakeHost::new();
    // One of hundreds of ClusterIPs on the node, which the policy cannot hold.
    h.own.insert("10.96.3.7".parse().unwrap());
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    c.allocate(&mut s, &mut h, T0);
    assert_success(&c.permit(&mut s, &mut h, T0, "10.96.3.8:0"), &c);
    for (what, r) in [
        ("permission", c.permit(&mut s, &mut h, T0, "10.96.3.7:0")),
        (
            "channel",
            c.bind(&mut s, &mut h, T0, 0x4001, "10.96.3.7:443"),
        ),
    ] {
        assert_eq!(r.code(), Some(403), "{what}");
        assert!(
            matches!(
                r.refusal,
                Some(Refusal::ForbiddenPeer(
                    _,
                    turn_core::server::policy::Verdict::DeniedOwnAddress
                ))
            ),
            "{what}: {:?}",
            r.refusal
        );
    }
}

#[test]
fn a_permission_for_another_allocation_on_this_server_admits_that_one_only() {
    // alice (the browser) permits bob's relayed address (the call bridge's);
    // mallory, another user with an allocation on the same server, shares its
    // IP. Before, alice's permission was for the IP, and mallory's data came in.
    let (mut s, mut h, a, _b, ra, rb) = pair();
    h.users.insert("mallory".into(), "evil".into());
    let mut m = Client::new("198.51.100.66:1", "mallory", "evil");
    let rm = relayed(&m.allocate(&mut s, &mut h, T0));
    assert_eq!(rm.ip(), rb.ip(), "one server, one relay IP");
    // mallory permits alice (as an attacker would, to send to her).
    assert_success(&m.permit(&mut s, &mut h, T0, &ra.to_string()), &m);
    let ind = m.send_indication(&ra.to_string(), b"injected");
    let (o, _) = m.send_raw(&mut s, &mut h, T0, &ind);
    assert!(matches!(o, Answer::ToPeer { .. }), "{o:?}");
    // It reaches alice's relay socket from mallory's: alice never hears of it.
    assert!(
        from_peer(
            &mut s,
            &mut h,
            T0,
            local_of(ra),
            &local_of(rm).to_string(),
            b"injected",
        )
        .is_none(),
        "mallory's data let in by a permission for bob"
    );
    // bob's still is.
    assert!(
        from_peer(
            &mut s,
            &mut h,
            T0,
            local_of(ra),
            &local_of(rb).to_string(),
            b"from bob",
        )
        .is_some()
    );
    let _ = a;
}

#[test]
fn a_relay_permission_named_without_a_port_opens_what_the_client_sends_to() {
    // A client that sends port 0 in CreatePermission (RFC 8656 lets it): it may
    // send to the IP's live relayed addresses, and each one it sent to may answer.
    let mut s = server();
    let mut h = FakeHost::new();
    h.users.insert("mallory".into(), "evil".into());
    let mut a = Client::new("198.51.100.7:1", "alice", "wonderland");
    let mut b = Client::new("198.51.100.8:1", "bob", "builder");
    let mut m = Client::new("198.51.100.66:1", "mallory", "evil");
    let ra = relayed(&a.allocate(&mut s, &mut h, T0));
    let rb = relayed(&b.allocate(&mut s, &mut h, T0));
    let rm = relayed(&m.allocate(&mut s, &mut h, T0));
    assert_success(&a.permit(&mut s, &mut h, T0, &format!("{}:0", rb.ip())), &a);
    assert_success(&b.permit(&mut s, &mut h, T0, &ra.to_string()), &b);
    // Nothing is let in before alice sends.
    assert!(
        from_peer(
            &mut s,
            &mut h,
            T0,
            local_of(ra),
            &local_of(rb).to_string(),
            b"x"
        )
        .is_none()
    );
    let ind = a.send_indication(&rb.to_string(), b"hello bob");
    let (o, _) = a.send_raw(&mut s, &mut h, T0, &ind);
    assert!(matches!(o, Answer::ToPeer { .. }), "{o:?}");
    // Now bob's answers come in; mallory's do not.
    assert!(
        from_peer(
            &mut s,
            &mut h,
            T0,
            local_of(ra),
            &local_of(rb).to_string(),
            b"y"
        )
        .is_some()
    );
    assert!(
        from_peer(
            &mut s,
            &mut h,
            T0,
            local_of(ra),
            &local_of(rm).to_string(),
            b"z"
        )
        .is_none()
    );
}
