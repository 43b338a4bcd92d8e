//! Choosing a TURN server over std sockets: two relays answer the selector's
//! probes over UDP and TCP with a round-trip time, a silent address is marked
//! failed by the deadline, and the best is a reachable one; a failure reported
//! moves the choice on.

#![cfg(feature = "std")]

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use turn_core::Transport;
use turn_core::adapters::std::Relay;
use turn_core::adapters::std::client::probe;
use turn_core::client::{Candidate, CandidateState, Failure, Selector};

#[test]
fn reachable_servers_are_measured_and_a_silent_one_fails() {
    let relays: Vec<Relay> = (0..2)
        .map(|_| {
            Relay::builder()
                .listen("127.0.0.1:0".parse().unwrap())
                .user("cmsturn", "pw")
                .threads(1)
                .start()
                .unwrap()
        })
        .collect();
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut s = Selector::<4>::new([3; 32]);
    let add = |s: &mut Selector<4>, addr, t| {
        s.add(Candidate::new(addr, t, "cmsturn", "pw").unwrap())
            .unwrap()
    };
    let udp = add(&mut s, relays[0].local_addrs()[0], Transport::Udp);
    let tcp = add(&mut s, relays[1].local_addrs()[0], Transport::Tcp);
    let dead = add(&mut s, silent.local_addr().unwrap(), Transport::Udp);
    // The silent one takes the whole window; the others answer in it.
    let window = Duration::from_secs(5);
    let started = Instant::now();
    probe(&mut s, window).unwrap();
    let took = started.elapsed();
    assert!(
        took + Duration::from_millis(100) >= window
            && took < window + causeway_testkit::wait::PATIENCE,
        "the probe ends at its deadline, not before or long after: {took:?}"
    );
    assert!(s.get(udp).unwrap().rtt_ms().is_some(), "{:?}", s.get(udp));
    assert!(s.get(tcp).unwrap().rtt_ms().is_some(), "{:?}", s.get(tcp));
    assert_eq!(
        s.get(dead).unwrap().state,
        CandidateState::Failed(Failure::Timeout)
    );
    let best = s.best().unwrap();
    assert_ne!(best, dead);
    // The caller's allocation failed there: the next reachable one is chosen.
    s.mark_failed(best, Failure::Code(508));
    let next = s.best().unwrap();
    assert!(next != best && next != dead);
    s.mark_failed(next, Failure::Timeout);
    assert_eq!(s.best(), None);
}
