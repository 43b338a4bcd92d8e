//! The channel routes a fast path may relay on: announced for UDP clients' live
//! channels with the earliest end of the channel, its permission and its relayed
//! address; moved by CreatePermission and Refresh; never for stream clients, for
//! refused peers, or for peers that are the server's own relayed addresses.

mod common;

use common::*;
use turn_core::Transport;

const T0: turn_core::Instant = turn_core::Instant::from_secs(1000);

#[test]
fn a_bound_channel_is_routed_until_its_first_end() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:5000", "alice", "wonderland");
    assert_success(&c.allocate(&mut s, &mut h, T0), &c);
    assert!(h.routes.is_empty(), "nothing bound yet");
    assert_success(&c.bind(&mut s, &mut h, T0, 0x4001, "8.8.8.8:3000"), &c);
    let r = *h.routes.last().unwrap();
    assert_eq!(r.channel, 0x4001);
    assert_eq!(r.peer, addr("8.8.8.8:3000"));
    assert_eq!(r.relay, relay_local(&h));
    assert_eq!(r.tuple.client, addr("198.51.100.7:5000"));
    // The permission (300 s) ends before the channel (600 s).
    assert_eq!(r.until, T0.plus_secs(300));

    // A CreatePermission 200 s later moves it to the permission's new end.
    let t1 = T0.plus_secs(200);
    assert_success(&c.permit(&mut s, &mut h, t1, "8.8.8.8:1"), &c);
    assert_eq!(h.routes.last().unwrap().until, t1.plus_secs(300));

    // Rebinding refreshes the channel and its permission.
    let t2 = T0.plus_secs(250);
    assert_success(&c.bind(&mut s, &mut h, t2, 0x4001, "8.8.8.8:3000"), &c);
    assert_eq!(h.routes.last().unwrap().until, t2.plus_secs(300));

    // Once channel and permission outlast the relayed address, it bounds the route.
    let t3 = T0.plus_secs(450);
    assert_success(&c.permit(&mut s, &mut h, t3, "8.8.8.8:1"), &c);
    assert_eq!(h.routes.last().unwrap().until, T0.plus_secs(600));
    // A Refresh moves the relayed address's end, and the route with it.
    let t4 = T0.plus_secs(500);
    assert_success(&c.refresh(&mut s, &mut h, t4, 600), &c);
    assert_eq!(h.routes.last().unwrap().until, t3.plus_secs(300));
}

#[test]
fn stream_clients_refused_peers_and_own_relays_get_no_route() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut tcp =
        Client::with_transport("198.51.100.7:6000", "alice", "wonderland", Transport::Tcp);
    assert_success(&tcp.allocate(&mut s, &mut h, T0), &tcp);
    assert_success(&tcp.bind(&mut s, &mut h, T0, 0x4000, "8.8.8.8:3000"), &tcp);
    assert!(h.routes.is_empty(), "TCP clients' data stays in userspace");

    let mut udp = Client::new("198.51.100.7:5000", "alice", "wonderland");
    assert_success(&udp.allocate(&mut s, &mut h, T0), &udp);
    let r = udp.bind(&mut s, &mut h, T0, 0x4000, "10.1.2.3:3000");
    assert_eq!(r.code(), Some(403), "private peers are denied by default");
    assert!(h.routes.is_empty());

    // Another client's relayed address (relay-to-relay): checked per packet.
    let mut other = Client::new("198.51.100.8:5000", "bob", "builder");
    let a = other.allocate(&mut s, &mut h, T0);
    assert_success(&a, &other);
    let r = udp.bind(&mut s, &mut h, T0, 0x4002, &relayed(&a).to_string());
    assert_success(&r, &udp);
    assert!(h.routes.is_empty(), "{:?}", h.routes);
}
