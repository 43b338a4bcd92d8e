//! A TURN client over a UDP socket for end-to-end tests: turn-core's client,
//! driven step by step without blocking, so a test can run many at once.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::OnceLock;
use std::time::{Duration, Instant as StdInstant};

use turn_core::Instant;
use turn_core::client::{Client, ClientConfig, ClientEvent, State};

/// A monotonic clock as turn-core's time: milliseconds since the first call.
pub fn now() -> Instant {
    static ORIGIN: OnceLock<StdInstant> = OnceLock::new();
    let origin = ORIGIN.get_or_init(StdInstant::now);
    Instant::from_millis(origin.elapsed().as_millis() as u64)
}

/// A TURN client on its own UDP socket.
pub struct UdpTurn {
    pub sock: UdpSocket,
    pub client: Client,
    pub started: StdInstant,
    /// When it allocated, after the start.
    pub allocated: Option<Duration>,
    /// Why it failed, if it did.
    pub failed: Option<String>,
    /// Requests sent (retransmissions included).
    pub sent: u32,
    /// Each request's transaction id, how many times it was sent and how many
    /// answers to it arrived (a retransmitted request may be answered twice).
    pub transactions: Vec<([u8; 12], u32, u32)>,
    /// Data from peers: (peer, payload).
    pub received: Vec<(SocketAddr, Vec<u8>)>,
    /// Peers whose permission the server confirmed.
    pub permitted: Vec<IpAddr>,
}

impl UdpTurn {
    /// A client on `ip` for `server` with `user`:`pass`, asked to allocate.
    pub fn allocating(
        ip: IpAddr,
        server: SocketAddr,
        user: &str,
        pass: &str,
        seed: u32,
    ) -> UdpTurn {
        let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
        sock.set_nonblocking(true).unwrap();
        let cfg = ClientConfig::new(server, user, pass).unwrap();
        let mut s = [0u8; 32];
        s[..4].copy_from_slice(&seed.to_le_bytes());
        let mut client = Client::new(cfg, s);
        client.allocate(now()).unwrap();
        UdpTurn {
            sock,
            client,
            started: StdInstant::now(),
            allocated: None,
            failed: None,
            sent: 0,
            transactions: Vec::new(),
            received: Vec::new(),
            permitted: Vec::new(),
        }
    }

    /// Sends what is due, reads what came, runs timers; whether the allocation
    /// is decided (made or failed).
    pub fn step(&mut self, buf: &mut [u8]) -> bool {
        let t = now();
        if self.client.poll_timeout().is_some_and(|d| d <= t) {
            self.client.handle_timeout(t);
        }
        while let Some(tx) = self.client.poll_transmit(t, buf) {
            let _ = self.sock.send_to(&buf[..tx.len], tx.destination);
            self.sent += 1;
            if let Some(id) = stun_request_id(&buf[..tx.len]) {
                match self.transactions.iter_mut().find(|(t, ..)| *t == id) {
                    Some((_, sent, _)) => *sent += 1,
                    None => self.transactions.push((id, 1, 0)),
                }
            }
        }
        while let Ok((n, from)) = self.sock.recv_from(buf) {
            if let Some(id) = stun_response_id(&buf[..n])
                && let Some((_, _, answered)) =
                    self.transactions.iter_mut().find(|(t, ..)| *t == id)
            {
                *answered += 1;
            }
            if let Some(r) = self.client.handle_input(now(), from, &buf[..n]) {
                self.received.push((r.peer, buf[r.data].to_vec()));
            }
        }
        while let Some(e) = self.client.poll_event() {
            match e {
                ClientEvent::Allocated { .. } if self.allocated.is_none() => {
                    self.allocated = Some(self.started.elapsed())
                }
                ClientEvent::Failed { failure, .. } => self.failed = Some(failure.to_string()),
                ClientEvent::PermissionCreated(ip) => self.permitted.push(ip),
                _ => {}
            }
        }
        self.allocated.is_some() || self.failed.is_some() || self.client.state() == State::Failed
    }

    /// Transmissions of its requests that got no answer (so far).
    pub fn unanswered(&self) -> u32 {
        self.transactions
            .iter()
            .map(|(_, sent, answered)| sent.saturating_sub(*answered))
            .sum()
    }

    /// Steps until `done` holds or `within` passes; whether it held.
    pub fn until(&mut self, within: Duration, mut done: impl FnMut(&UdpTurn) -> bool) -> bool {
        let mut buf = vec![0u8; 1500];
        let end = StdInstant::now() + within;
        while StdInstant::now() < end {
            self.step(&mut buf);
            if done(self) {
                return true;
            }
            // A poll step: the condition is what is awaited.
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    /// Sends `data` to `peer` through the relay (a Send indication, or
    /// ChannelData once a channel is bound).
    pub fn send(&mut self, peer: SocketAddr, data: &[u8]) {
        let mut out = vec![0u8; 1500];
        let tx = self.client.send_to(peer, data, &mut out).unwrap();
        self.sock.send_to(&out[..tx.len], tx.destination).unwrap();
    }
}

/// The transaction id of a STUN request.
fn stun_request_id(m: &[u8]) -> Option<[u8; 12]> {
    (m.len() >= 20 && m[0] & 0xC1 == 0 && m[1] & 0x10 == 0).then(|| m[8..20].try_into().ok())?
}

/// The transaction id of a STUN response (success or error).
fn stun_response_id(m: &[u8]) -> Option<[u8; 12]> {
    (m.len() >= 20 && m[0] & 0xC0 == 0 && m[0] & 0x01 != 0).then(|| m[8..20].try_into().ok())?
}
