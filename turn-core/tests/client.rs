//! The TURN client driven against the TURN server of this crate, deterministically:
//! simulated time, injected loss, every path of the client's state machine.

mod common;

use std::net::SocketAddr;

use common::*;
use turn_core::client::{
    Candidate, CandidateState, Client, ClientConfig, ClientEvent, Failure, RequestKind, Selector,
    State,
};
use turn_core::server::{Outgoing, PEER_HEADROOM, PeerBuffer};
use turn_core::{FiveTuple, Instant, Transport, UnixTime};

const T0: Instant = Instant::from_secs(1_764_000_000);
const CLIENT_ADDR: &str = "198.51.100.7:40000";

/// A client and a server wired together, with simulated time and loss.
struct Pair {
    s: TestServer,
    h: FakeHost,
    c: Client,
    now: Instant,
    tuple: FiveTuple,
    /// Drop the client's next N transmissions.
    drop_next: usize,
    /// What the server relayed to peers: (from relay, to peer, payload).
    to_peers: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    events: Vec<ClientEvent>,
}

impl Pair {
    fn new(password: &str, transport: Transport) -> Pair {
        Pair::with_server(server(), password, transport)
    }

    fn with_server(s: TestServer, password: &str, transport: Transport) -> Pair {
        let mut cfg = ClientConfig::new(addr(LISTENER), "alice", password).unwrap();
        cfg.transport = transport;
        Pair {
            s,
            h: FakeHost::new(),
            c: Client::new(cfg, [7; 32]),
            now: T0,
            tuple: FiveTuple {
                client: addr(CLIENT_ADDR),
                server: addr(LISTENER),
                transport,
                socket: 0,
            },
            drop_next: 0,
            to_peers: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Delivers everything queued both ways until quiet.
    fn pump(&mut self) {
        let mut out = [0u8; 1500];
        let mut reply = [0u8; 1500];
        while let Some(t) = self.c.poll_transmit(self.now, &mut out) {
            let n = t.len;
            assert_eq!(t.destination, self.c.server());
            if self.drop_next > 0 {
                self.drop_next -= 1;
                continue;
            }
            match self.s.handle_client(
                self.now,
                UnixTime(self.now.as_secs()),
                &mut self.h,
                self.tuple,
                &out[..n],
                &mut reply,
            ) {
                Outgoing::Client { bytes: reply, .. } => {
                    let from = self.c.server();
                    assert!(self.c.accepts(reply), "a response to its request");
                    assert!(!self.c.accepts(&out[..n]), "its own request");
                    assert!(self.c.handle_input(self.now, from, reply).is_none());
                    assert!(!self.c.accepts(reply), "answered already");
                }
                Outgoing::Peer {
                    from, peer, bytes, ..
                } => {
                    self.to_peers.push((from, peer, bytes.to_vec()));
                }
                Outgoing::Nothing(_) => {}
            }
        }
        while let Some(e) = self.c.poll_event() {
            self.events.push(e);
        }
    }

    /// Advances simulated time to `until`, running both timers on the way.
    fn run_until(&mut self, until: Instant) {
        loop {
            self.pump();
            let next = [self.c.poll_timeout(), self.s.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = t.max(self.now);
                    self.c.handle_timeout(self.now);
                    self.s.handle_timeout(self.now, &mut self.h);
                }
                _ => break,
            }
        }
        self.now = until;
        self.pump();
    }

    /// Sends data from the client to `peer` through the relay.
    fn send(&mut self, peer: &str, data: &[u8]) {
        let mut out = [0u8; 1500];
        let n = self.c.send_to(addr(peer), data, &mut out).unwrap().len;
        let mut reply = [0u8; 1500];
        if let Outgoing::Peer {
            from, peer, bytes, ..
        } = self.s.handle_client(
            self.now,
            UnixTime(self.now.as_secs()),
            &mut self.h,
            self.tuple,
            &out[..n],
            &mut reply,
        ) {
            self.to_peers.push((from, peer, bytes.to_vec()));
        }
    }

    /// A peer sends to the relayed address; returns what the client application gets.
    fn peer_sends(&mut self, peer: &str, data: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
        let local = relay_local(&self.h);
        let handle = self.h.bound[&local];
        let mut buf = vec![0u8; PEER_HEADROOM + data.len() + 3];
        buf[PEER_HEADROOM..PEER_HEADROOM + data.len()].copy_from_slice(data);
        let mut datagram = PeerBuffer::new(&mut buf, data.len()).unwrap();
        let Outgoing::Client { bytes: wire, .. } =
            self.s
                .handle_peer(self.now, &mut self.h, handle, addr(peer), &mut datagram)
        else {
            return None;
        };
        assert!(self.c.accepts(wire), "data from its server");
        let server = self.c.server();
        let r = self.c.handle_input(self.now, server, wire)?;
        Some((r.peer, wire[r.data].to_vec()))
    }

    fn failures(&self) -> Vec<(RequestKind, Failure)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Failed { request, failure } => Some((*request, *failure)),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn allocate_permission_channel_and_data_both_ways() {
    let mut p = Pair::new("wonderland", Transport::Udp);
    p.c.allocate(p.now).unwrap();
    p.pump();
    assert_eq!(p.c.state(), State::Allocated);
    let relayed = p.c.relayed().unwrap();
    assert_eq!(relayed.ip(), addr("203.0.113.5:0").ip());
    assert_eq!(p.c.mapped(), Some(addr(CLIENT_ADDR)));
    assert!(
        p.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Allocated { lifetime: 600, .. }))
    );

    // Send indication before any channel.
    p.c.create_permission(p.now, addr("8.8.8.8:0").ip())
        .unwrap();
    p.pump();
    p.send("8.8.8.8:5000", b"by indication");
    assert_eq!(p.to_peers.last().unwrap().2, b"by indication");
    let (peer, data) = p
        .peer_sends("8.8.8.8:5000", b"data indication back")
        .unwrap();
    assert_eq!(
        (peer, data.as_slice()),
        (addr("8.8.8.8:5000"), &b"data indication back"[..])
    );

    // Channel: ChannelData both ways.
    let ch = p.c.bind_channel(p.now, addr("8.8.4.4:6000")).unwrap();
    assert_eq!(ch, 0x4000);
    p.pump();
    assert!(p.events.iter().any(|e| matches!(
        e,
        ClientEvent::ChannelBound {
            channel: 0x4000,
            ..
        }
    )));
    p.send("8.8.4.4:6000", b"by channel");
    assert_eq!(
        p.to_peers.last().unwrap(),
        &(
            relay_local(&p.h),
            addr("8.8.4.4:6000"),
            b"by channel".to_vec()
        )
    );
    // ChannelData on a channel it never asked for is someone else's.
    let mut other = [0u8; 16];
    let n = stun_core::channel_data::encode(&mut other, 0x4abc, b"x", false).unwrap();
    assert!(!p.c.accepts(&other[..n]));
    let (peer, data) = p.peer_sends("8.8.4.4:6000", b"channel back").unwrap();
    assert_eq!(
        (peer, data.as_slice()),
        (addr("8.8.4.4:6000"), &b"channel back"[..])
    );

    // Deallocate.
    p.c.deallocate(p.now).unwrap();
    p.pump();
    assert_eq!(p.c.state(), State::Closed);
    assert_eq!(p.s.allocation_count(), 0);
}

#[test]
fn retransmits_with_doubling_rto_and_recovers_from_loss() {
    let mut p = Pair::new("wonderland", Transport::Udp);
    p.c.allocate(p.now).unwrap();
    p.drop_next = 3;
    // Transmissions at 0, 0.5, 1.5, 3.5 s: the fourth gets through.
    p.run_until(T0.plus_millis(1499));
    assert_eq!(p.c.state(), State::Allocating);
    p.run_until(T0.plus_millis(3500));
    assert_eq!(p.c.state(), State::Allocated);
    assert!(p.failures().is_empty());
}

#[test]
fn gives_up_after_rc_transmissions() {
    let mut p = Pair::new("wonderland", Transport::Udp);
    p.c.allocate(p.now).unwrap();
    p.drop_next = usize::MAX;
    // 0.5+1+2+4+8+16 s between the 7 transmissions, then 16 × 0.5 s: 39.5 s.
    p.run_until(T0.plus_millis(39_499));
    assert_eq!(p.c.state(), State::Allocating);
    p.run_until(T0.plus_millis(39_500));
    assert_eq!(p.c.state(), State::Failed);
    assert_eq!(
        p.failures(),
        vec![(RequestKind::Allocate, Failure::Timeout)]
    );
    assert!(Failure::Timeout.diagnosis().contains("unreachable"));
}

#[test]
fn tcp_does_not_retransmit() {
    let mut p = Pair::new("wonderland", Transport::Tcp);
    p.c.allocate(p.now).unwrap();
    p.drop_next = 1;
    p.run_until(T0.plus_secs(39));
    assert_eq!(p.c.state(), State::Allocating, "no retransmission over TCP");
    p.run_until(T0.plus_millis(39_500));
    assert_eq!(
        p.failures(),
        vec![(RequestKind::Allocate, Failure::Timeout)]
    );
}

#[test]
fn wrong_password_is_diagnosed_as_credentials() {
    let mut p = Pair::new("not-wonderland", Transport::Udp);
    p.c.allocate(p.now).unwrap();
    p.pump();
    assert_eq!(p.c.state(), State::Failed);
    let f = p.failures();
    assert_eq!(f, vec![(RequestKind::Allocate, Failure::Code(401))]);
    assert!(f[0].1.diagnosis().contains("credentials differ"));
}

#[test]
fn refreshes_keep_everything_alive_for_hours_with_stale_nonces() {
    let mut p = Pair::new("wonderland", Transport::Udp);
    p.c.allocate(p.now).unwrap();
    p.pump();
    p.c.create_permission(p.now, addr("8.8.8.8:0").ip())
        .unwrap();
    p.c.bind_channel(p.now, addr("1.1.1.1:53")).unwrap();
    p.pump();
    // Three hours; nonces go stale every 10 minutes on the way.
    p.run_until(T0.plus_secs(3 * 3600));
    assert_eq!(p.c.state(), State::Allocated);
    assert_eq!(p.s.allocation_count(), 1);
    assert!(p.failures().is_empty(), "{:?}", p.failures());
    assert!(
        p.peer_sends("8.8.8.8:9", b"perm").is_some(),
        "permission still installed"
    );
    let (_, d) = p.peer_sends("1.1.1.1:53", b"chan").unwrap();
    assert_eq!(d, b"chan");
    let refreshes = p
        .events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Refreshed { .. }))
        .count();
    assert!(refreshes >= 3 * 3600 / 600, "refreshed {refreshes} times");
}

#[test]
fn follows_alternate_server() {
    let mut cfg = config();
    cfg.alternate_server = Some(addr("192.0.2.80:3478"));
    let full = server_with(cfg, 1);
    let mut p = Pair::with_server(full, "wonderland", Transport::Udp);
    // Fill the only slot with another client.
    fill_slot(&mut p);
    p.c.allocate(p.now).unwrap();
    p.pump();
    assert!(p.events.contains(&ClientEvent::Redirected {
        server: addr("192.0.2.80:3478")
    }));
    assert_eq!(p.c.server(), addr("192.0.2.80:3478"));
    assert_eq!(
        p.c.state(),
        State::Allocating,
        "allocating again at the alternate"
    );
}

fn fill_slot(p: &mut Pair) {
    let mut other = common::Client::new("198.51.100.99:1", "bob", "builder");
    assert_success(&other.allocate(&mut p.s, &mut p.h, p.now), &other);
}

#[test]
fn selector_picks_the_lowest_rtt_and_fails_over() {
    let mut sel: Selector<4> = Selector::new([3; 32]);
    for (a, t) in [
        ("192.0.2.1:3478", Transport::Udp),
        ("192.0.2.2:3478", Transport::Udp),
        ("192.0.2.3:3478", Transport::Tcp),
    ] {
        sel.add(Candidate::new(addr(a), t, "u", "p").unwrap())
            .unwrap();
    }
    let mut tcp = Candidate::new(addr("192.0.2.4:3478"), Transport::Tcp, "u", "p").unwrap();
    tcp.tcp_port_override = Some(443);
    assert_eq!(tcp.target(), addr("192.0.2.4:443"));

    let t0 = T0;
    sel.probe_all(t0);
    let mut out = [0u8; 128];
    let mut sent = Vec::new();
    while let Some(p) = sel.poll_transmit(t0, &mut out) {
        let t = p.transmit;
        sent.push((p.entry, t.destination, out[..t.len].to_vec()));
    }
    assert_eq!(sent.len(), 3);
    // Server 1 answers after 80 ms, server 2 after 20 ms, server 3 never.
    let answer = |req: &[u8]| {
        let m = stun_core::Message::new_checked(req).unwrap();
        let mut buf = [0u8; 128];
        let stun_core::binding::Outcome::Success(n) =
            stun_core::binding::respond(req, addr(CLIENT_ADDR), None, &mut buf)
        else {
            panic!()
        };
        let _ = m;
        buf[..n].to_vec()
    };
    assert_eq!(
        sel.handle_input(t0.plus_millis(20), &answer(&sent[1].2)),
        Some(1)
    );
    assert_eq!(
        sel.handle_input(t0.plus_millis(80), &answer(&sent[0].2)),
        Some(0)
    );
    assert_eq!(sel.best(), Some(1));
    assert_eq!(sel.get(1).unwrap().rtt_ms(), Some(20));
    // The TCP one times out after 39.5 s.
    while let Some(t) = sel.poll_timeout() {
        sel.handle_timeout(t);
        while sel.poll_transmit(t, &mut out).is_some() {}
    }
    assert_eq!(
        sel.get(2).unwrap().state,
        CandidateState::Failed(Failure::Timeout)
    );
    // Failover when the best fails in use.
    sel.mark_failed(1, Failure::Code(508));
    assert_eq!(sel.best(), Some(0));
    assert_eq!(sel.get(1).unwrap().last_error, Some(Failure::Code(508)));
}

/// Answers the client's next request with an error carrying REALM and NONCE.
fn answer_with_error(c: &mut Client, now: Instant, code: u16) {
    let mut out = [0u8; 1500];
    let n = c
        .poll_transmit(now, &mut out)
        .expect("a request to answer")
        .len;
    let req = stun_core::Message::new_checked(&out[..n]).unwrap();
    let mut buf = [0u8; 256];
    let mut b = stun_core::MessageBuilder::new(
        &mut buf,
        stun_core::MessageType::new(req.method(), stun_core::Class::Error),
        req.transaction_id(),
    )
    .unwrap();
    b.add(&stun_core::attributes::ErrorCode { code, reason: "x" })
        .unwrap();
    b.add(&stun_core::attributes::Realm("causeway")).unwrap();
    b.add(&stun_core::attributes::Nonce("fresh-nonce")).unwrap();
    let len = b.finish();
    let server = c.server();
    assert!(c.handle_input(now, server, &buf[..len]).is_none());
}

#[test]
fn a_server_that_keeps_saying_stale_nonce_fails_the_request() {
    let mut cfg = ClientConfig::new(addr(LISTENER), "alice", "wonderland").unwrap();
    cfg.transport = Transport::Udp;
    let mut c: Client = Client::new(cfg, [3; 32]);
    c.allocate(T0).unwrap();
    answer_with_error(&mut c, T0, 401);
    // One 438 is retried with the new nonce; the second fails the request.
    answer_with_error(&mut c, T0, 438);
    assert_eq!(c.state(), State::Allocating);
    answer_with_error(&mut c, T0, 438);
    assert_eq!(c.state(), State::Failed);
    let mut events = Vec::new();
    while let Some(e) = c.poll_event() {
        events.push(e);
    }
    assert!(
        events.contains(&ClientEvent::Failed {
            request: RequestKind::Allocate,
            failure: Failure::Code(438)
        }),
        "{events:?}"
    );
    assert_eq!(c.poll_transmit(T0, &mut [0u8; 1500]), None);
}

#[test]
fn after_a_failed_refresh_no_timer_is_left_in_the_past() {
    let mut p = Pair::new("wonderland", Transport::Udp);
    p.c.allocate(p.now).unwrap();
    p.pump();
    p.c.create_permission(p.now, addr("8.8.8.8:0").ip())
        .unwrap();
    p.c.bind_channel(p.now, addr("1.1.1.1:53")).unwrap();
    p.pump();
    // The server goes silent: the refresh at 540 s times out 39.5 s later.
    p.drop_next = usize::MAX;
    p.run_until(T0.plus_secs(600));
    assert_eq!(p.c.state(), State::Failed);
    // Later, when the permission and channel would have been refreshed, nothing
    // is due: a failed client asks not to be woken.
    p.now = T0.plus_secs(1200);
    assert!(
        p.c.poll_timeout().is_none_or(|t| t > p.now),
        "a timer due at {:?} with nothing to do at {:?}",
        p.c.poll_timeout(),
        p.now
    );
}

#[test]
fn a_refresh_due_while_requests_fill_the_table_is_retried_not_lost() {
    let mut p = Pair::new("wonderland", Transport::Udp);
    p.c.allocate(p.now).unwrap();
    p.pump();
    // Just before the refresh (540 s), six permission requests that get no
    // answer fill the client's transaction table.
    p.run_until(T0.plus_secs(539));
    p.drop_next = usize::MAX;
    for i in 0..6u8 {
        p.c.create_permission(p.now, addr(&format!("8.8.8.{i}:0")).ip())
            .unwrap();
    }
    p.run_until(T0.plus_secs(541));
    // The server answers again: the permissions' retransmissions get through.
    p.drop_next = 0;
    p.run_until(T0.plus_secs(599));
    assert_eq!(p.c.state(), State::Allocated);
    assert!(
        p.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Refreshed { .. })),
        "the refresh ran once the table had room: {:?}",
        p.events
    );
    assert_eq!(p.s.allocation_count(), 1);
}
