//! Relay to relay against the real server: a browser and a call bridge allocated
//! on one `causeway serve` exchange media through their two relayed addresses,
//! while the server's own TURN listener, on the same IP as the relay, stays out of
//! reach through a relay (no TURN inside TURN). Their permissions name the
//! server's IP without a port, so each relayed address is let in once the
//! other side sent to it, as ICE's checks do both ways: a third allocation on
//! the same server is never let in by them.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::Server;
use common::turn::UdpTurn;
use common::wait::PATIENCE;
use stun_core::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};

#[test]
fn two_allocations_relay_to_each_other_and_the_listener_stays_closed() {
    let server = Server::start(&["--listen", "127.0.0.1:0", "--user", "meeting:pw"]);
    let listener = server.addr();
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut browser = UdpTurn::allocating(local, listener, "meeting", "pw", 1);
    let mut bridge = UdpTurn::allocating(local, listener, "meeting", "pw", 2);
    let within = PATIENCE;
    assert!(
        browser.until(within, |c| c.allocated.is_some()),
        "{:?}",
        browser.failed
    );
    assert!(
        bridge.until(within, |c| c.allocated.is_some()),
        "{:?}",
        bridge.failed
    );
    let rb = browser.client.relayed().unwrap();
    let rc = bridge.client.relayed().unwrap();
    // Each permits the other's relayed address (on the server's own IP).
    browser
        .client
        .create_permission(common::turn::now(), rc.ip())
        .unwrap();
    bridge
        .client
        .create_permission(common::turn::now(), rb.ip())
        .unwrap();
    assert!(
        browser.until(within, |c| c.permitted.contains(&rc.ip())),
        "{:?}",
        browser.failed
    );
    assert!(
        bridge.until(within, |c| c.permitted.contains(&rb.ip())),
        "{:?}",
        bridge.failed
    );
    // The bridge's check first: dropped at the browser's relay, which has not
    // sent to it yet, but it opens the bridge's side to the browser.
    bridge.send(rb, b"check from the bridge");
    browser.send(rc, b"audio from the browser");
    assert!(
        bridge.until(within, |c| !c.received.is_empty()),
        "the bridge got nothing"
    );
    assert_eq!(bridge.received[0], (rb, b"audio from the browser".to_vec()));
    bridge.send(rb, b"audio from the bridge");
    // (The first check may have arrived too, had the browser's send gone first.)
    let want = (rc, b"audio from the bridge".to_vec());
    assert!(
        browser.until(within, |c| c.received.contains(&want)),
        "{:?}",
        browser.received
    );
    // Both went from one relay socket to the other inside the server (status is
    // published about once a second).
    let handed = |s: &serde_json::Value| -> u64 {
        s["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["relay_to_relay_handed_off"].as_u64().unwrap())
            .sum()
    };
    let status = server.wait_status("the three datagrams handed over", |s| handed(s) >= 3);
    assert_eq!(handed(&status), 3, "handed over without the kernel");

    // The permission for the server's IP does not open its TURN listener: a
    // Binding request sent through the relay to it gets no answer back.
    let mut binding = vec![0u8; 64];
    let b = MessageBuilder::new(
        &mut binding,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId::new([9; 12]),
    )
    .unwrap();
    let n = b.finish();
    binding.truncate(n);
    assert_eq!(listener.ip(), rc.ip(), "the listener shares the relay's IP");
    browser.received.clear();
    browser.send(listener, &binding);
    // Nor a port in the relay range that no allocation holds.
    let free = SocketAddr::new(
        rc.ip(),
        if rc.port() == 65535 {
            65534
        } else {
            rc.port() + 1
        },
    );
    if free != rb {
        browser.send(free, b"probe");
    }
    let _ = browser.until(Duration::from_secs(1), |_| false);
    assert!(
        browser.received.is_empty(),
        "something came back: {:?}",
        browser
            .received
            .iter()
            .map(|(p, d)| (p, Message::new_checked(&d[..]).is_ok()))
            .collect::<Vec<_>>()
    );
    server.wait_log("is an address of this server but no live relayed address");
}
