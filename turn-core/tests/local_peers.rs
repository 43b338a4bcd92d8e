//! A media server on this host (an SFU beside the relay, on its address): out
//! of reach by default, with a CreatePermission that says so (403) instead of a
//! 200 whose packets then vanish; reachable on exactly the transport addresses
//! `allow_local_peer` names, in both directions, with every other port of the
//! host still closed.

mod common;

use common::*;
use turn_core::Instant;
use turn_core::server::policy::{Cidr, LocalPeer, Verdict};
use turn_core::server::{Refusal, Server, Slot};

const T0: Instant = Instant::from_secs(1_764_000_000);

/// The SFU listens on the relay's own address (10.0.0.5, advertised 203.0.113.5).
const SFU: &str = "10.0.0.5:7882";

fn with_sfu() -> TestServer {
    let mut cfg = config();
    cfg.policy
        .local
        .push(LocalPeer::parse(SFU).unwrap())
        .unwrap();
    server_with(cfg, 16)
}

#[test]
fn without_an_entry_the_permission_is_refused_not_granted_and_dead() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    assert_success(&c.allocate(&mut s, &mut h, T0), &c);
    let r = c.permit(&mut s, &mut h, T0, SFU);
    assert_eq!(r.code(), Some(403), "{:?}", r.refusal);
    assert!(matches!(
        r.refusal,
        Some(Refusal::ForbiddenPeer(_, Verdict::DeniedOwnAddress))
    ));
    let text = r.refusal.unwrap().to_string();
    assert!(text.contains("allow_local_peer"), "the way out: {text}");
    assert_eq!(c.bind(&mut s, &mut h, T0, 0x4000, SFU).code(), Some(403));
    // Naming no port, the relay IP is still granted for relay to relay.
    assert_success(&c.permit(&mut s, &mut h, T0, "10.0.0.5:0"), &c);
    let ind = c.send_indication(SFU, b"x");
    assert!(matches!(
        c.send_raw(&mut s, &mut h, T0, &ind).0,
        Answer::Nothing(Some(Refusal::NotLiveRelay(_)))
    ));
}

#[test]
fn the_named_address_is_reached_both_ways_and_nothing_else() {
    let mut s = with_sfu();
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    assert_success(&c.allocate(&mut s, &mut h, T0), &c);
    let local = relay_local(&h);
    assert_success(&c.permit(&mut s, &mut h, T0, SFU), &c);
    // Send indication to the SFU: relayed from the allocation's socket.
    let ind = c.send_indication(SFU, b"offer");
    match c.send_raw(&mut s, &mut h, T0, &ind).0 {
        Answer::ToPeer { peer, from, .. } => {
            assert_eq!(peer, addr(SFU));
            assert_eq!(from, local);
        }
        o => panic!("relayed to the SFU: {o:?}"),
    }
    // The SFU's answer reaches the client...
    assert!(from_peer(&mut s, &mut h, T0, local, SFU, b"answer").is_some());
    // ...and nothing else of the host's does, nor can the client reach it.
    for other in ["10.0.0.5:3478", "10.0.0.5:22", "10.0.0.5:7883"] {
        assert!(
            from_peer(&mut s, &mut h, T0, local, other, b"x").is_none(),
            "{other}"
        );
        let ind = c.send_indication(other, b"x");
        assert!(
            matches!(
                c.send_raw(&mut s, &mut h, T0, &ind).0,
                Answer::Nothing(Some(_))
            ),
            "{other}"
        );
        assert_eq!(
            c.permit(&mut s, &mut h, T0, other).code(),
            Some(403),
            "{other}"
        );
    }
    // A channel to it works; to its neighbour port, 403.
    assert_success(&c.bind(&mut s, &mut h, T0, 0x4001, SFU), &c);
    assert_eq!(
        c.bind(&mut s, &mut h, T0, 0x4002, "10.0.0.5:7883").code(),
        Some(403)
    );
    let (tuple, data) = from_peer(&mut s, &mut h, T0, local, SFU, b"media").unwrap();
    assert_eq!(tuple, c.tuple);
    assert_eq!(&data[..2], &[0x40, 0x01], "as ChannelData on its channel");
}

#[test]
fn a_permission_naming_no_port_opens_the_entries_alone() {
    let mut s = with_sfu();
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    assert_success(&c.allocate(&mut s, &mut h, T0), &c);
    let local = relay_local(&h);
    assert_success(&c.permit(&mut s, &mut h, T0, "10.0.0.5:0"), &c);
    let ind = c.send_indication(SFU, b"x");
    assert!(matches!(
        c.send_raw(&mut s, &mut h, T0, &ind).0,
        Answer::ToPeer { .. }
    ));
    let ind = c.send_indication("10.0.0.5:22", b"x");
    assert!(matches!(
        c.send_raw(&mut s, &mut h, T0, &ind).0,
        Answer::Nothing(Some(Refusal::NotLiveRelay(_)))
    ));
    assert!(from_peer(&mut s, &mut h, T0, local, SFU, b"answer").is_some());
    assert!(from_peer(&mut s, &mut h, T0, local, "10.0.0.5:22", b"x").is_none());
}

#[test]
fn an_entry_over_the_relay_range_is_refused() {
    let mut cfg = config();
    cfg.policy
        .local
        .push(LocalPeer::parse("203.0.113.5:29000-30000").unwrap())
        .unwrap();
    let e = Server::new(cfg, vec![Slot::<8, 8>::EMPTY; 4], [1; 32]).unwrap_err();
    assert_eq!(e.field, "allow_local_peer");
    let mut cfg = config();
    cfg.policy
        .local
        .push(LocalPeer::parse("10.0.0.5:30000").unwrap())
        .unwrap();
    assert!(Server::new(cfg, vec![Slot::<8, 8>::EMPTY; 4], [1; 32]).is_ok());
}

/// An entry's IP that another rule allows whole (an allow_peer range over the
/// host's private NIC, which is no own address when the listener is on the
/// public one): still only the entry's port, by permission, channel or kernel
/// route.
#[test]
fn an_entrys_ip_keeps_its_other_ports_closed_whatever_else_allows_it() {
    let mut cfg = config();
    cfg.policy
        .allow
        .push(Cidr::parse("10.9.0.0/16").unwrap())
        .unwrap();
    cfg.policy
        .local
        .push(LocalPeer::parse("10.9.0.9:7882").unwrap())
        .unwrap();
    let mut s = server_with(cfg, 16);
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    assert_success(&c.allocate(&mut s, &mut h, T0), &c);
    assert_eq!(
        c.permit(&mut s, &mut h, T0, "10.9.0.9:22").code(),
        Some(403)
    );
    assert_eq!(
        c.bind(&mut s, &mut h, T0, 0x4000, "10.9.0.9:22").code(),
        Some(403)
    );
    assert!(h.routes.iter().all(|r| r.peer.port() != 22));
    // The entry's own port: a channel, and its kernel route, with its own
    // permission's lifetime.
    assert_success(&c.bind(&mut s, &mut h, T0, 0x4001, "10.9.0.9:7882"), &c);
    assert!(h.routes.iter().any(|r| r.peer == addr("10.9.0.9:7882")));
    // The rest of the range is whole-IP as before.
    assert_success(&c.permit(&mut s, &mut h, T0, "10.9.0.10:22"), &c);
}

/// A reload that removes an entry leaves its exact permissions exact: they
/// never become whole-IP ones opening the host's other ports (here an admin
/// address of the host, 10.0.0.7, with a media server on 7882).
#[test]
fn a_removed_entry_opens_nothing_more() {
    let own = |with_entry: bool| {
        let mut cfg = config();
        assert!(cfg.policy.add_own("10.0.0.7".parse().unwrap()));
        if with_entry {
            cfg.policy
                .local
                .push(LocalPeer::parse("10.0.0.7:7882").unwrap())
                .unwrap();
        }
        cfg
    };
    let mut s = server_with(own(true), 16);
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    assert_success(&c.allocate(&mut s, &mut h, T0), &c);
    let local = relay_local(&h);
    assert_success(&c.permit(&mut s, &mut h, T0, "10.0.0.7:7882"), &c);
    s.reconfigure(own(false)).unwrap();
    for other in ["10.0.0.7:4455", "10.0.0.7:22", "10.0.0.7:7882"] {
        let ind = c.send_indication(other, b"x");
        assert!(
            matches!(
                c.send_raw(&mut s, &mut h, T0, &ind).0,
                Answer::Nothing(Some(_))
            ),
            "{other}"
        );
        assert!(
            from_peer(&mut s, &mut h, T0, local, other, b"x").is_none(),
            "{other}"
        );
    }
}

/// Only the address itself, or it as IPv4-mapped IPv6: no other embedding
/// (6to4, ISATAP, Teredo, NAT64) of it reaches the entry.
#[test]
fn an_entry_is_one_address_not_its_embeddings() {
    let mut s = with_sfu();
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    assert_success(&c.allocate(&mut s, &mut h, T0), &c);
    let entry = LocalPeer::parse(SFU).unwrap();
    assert!(entry.contains(&addr("[::ffff:10.0.0.5]:7882")));
    for embedded in [
        "[2002:a00:5::1]:7882",        // 6to4
        "[2001:db8::5efe:a00:5]:7882", // ISATAP
        "[64:ff9b::a00:5]:7882",       // NAT64
    ] {
        assert!(!entry.contains(&addr(embedded)), "{embedded}");
    }
}
