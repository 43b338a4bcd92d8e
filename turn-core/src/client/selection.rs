//! Choosing a TURN server, as a meeting server's call bridge does with its
//! `turnServers` list: each entry has the address the bridge reaches
//! (`serverAddress`), the address browsers are given (`clientAddress`), its
//! credentials (or a shared secret for time-limited ones), its transport (`type`) and
//! an optional TCP port override; each has a status with the measured round-trip
//! time and the last error. The selector probes every entry with STUN Binding
//! requests, picks the one with the lowest RTT, and fails over to the next when the
//! caller reports a failure.

use core::net::SocketAddr;

use stun_core::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};

use super::retransmit::{Expiry, Retransmit};
use super::{CREDENTIAL_MAX, ClientConfig, ClientError, Failure, Transmit};
use crate::rng::Random;
use crate::{Instant, Transport};

/// What is known of a candidate server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CandidateState {
    /// Not probed yet.
    Unknown,
    /// A probe is in flight.
    Probing,
    /// Answered, with this round-trip time.
    Reachable {
        /// Milliseconds.
        rtt_ms: u64,
    },
    /// Unreachable, or failed when used.
    Failed(Failure),
}

/// One TURN server entry.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The address this side reaches (`serverAddress`).
    pub server: SocketAddr,
    /// The address given to browsers (`clientAddress`), if different.
    pub client_address: Option<SocketAddr>,
    /// `type`: the transport to the server.
    pub transport: Transport,
    /// `tcpPortNumberOverride`: the port for TCP/TLS, if not the UDP one.
    pub tcp_port_override: Option<u16>,
    /// Username (for time-limited credentials, the user part).
    pub username: heapless::String<CREDENTIAL_MAX>,
    /// Password (unused with a shared secret).
    pub password: heapless::String<CREDENTIAL_MAX>,
    /// Secret for time-limited credentials (`useShortTermCredentials` with
    /// `sharedSecret`); empty for long-term ones.
    pub shared_secret: heapless::Vec<u8, 128>,
    /// Status.
    pub state: CandidateState,
    /// The last failure seen, kept after a later success for the status page.
    pub last_error: Option<Failure>,
    /// Lower is chosen first, whatever the RTT (0: a first choice; 1: a
    /// fallback transport of an entry).
    pub preference: u8,
}

impl Candidate {
    /// An entry with long-term credentials.
    pub fn new(
        server: SocketAddr,
        transport: Transport,
        username: &str,
        password: &str,
    ) -> Option<Candidate> {
        let mut u = heapless::String::new();
        let mut p = heapless::String::new();
        u.push_str(username).ok()?;
        p.push_str(password).ok()?;
        Some(Candidate {
            server,
            client_address: None,
            transport,
            tcp_port_override: None,
            username: u,
            password: p,
            shared_secret: heapless::Vec::new(),
            state: CandidateState::Unknown,
            last_error: None,
            preference: 0,
        })
    }

    /// This entry with time-limited credentials under `secret` (TURN REST:
    /// the username becomes `expiry:username`); `None` when it is too long.
    pub fn with_shared_secret(mut self, secret: &[u8]) -> Option<Candidate> {
        self.shared_secret = heapless::Vec::from_slice(secret).ok()?;
        Some(self)
    }

    /// The same entry over `transport`, as a fallback of this one (preferred
    /// after it), not probed yet.
    pub fn fallback(&self, transport: Transport) -> Candidate {
        Candidate {
            transport,
            state: CandidateState::Unknown,
            last_error: None,
            preference: self.preference.saturating_add(1),
            ..self.clone()
        }
    }

    /// The client configuration for this entry: its target and transport, and
    /// its long-term credentials, or with a shared secret a time-limited
    /// username valid until `expiry` (UNIX seconds).
    pub fn client_config(&self, expiry: u64) -> Result<ClientConfig, ClientError> {
        let mut cfg = if self.shared_secret.is_empty() {
            ClientConfig::new(self.target(), &self.username, &self.password)?
        } else {
            ClientConfig::time_limited(self.target(), &self.username, &self.shared_secret, expiry)?
        };
        cfg.transport = self.transport;
        Ok(cfg)
    }

    /// Where to connect: the TCP port override applies to TCP and TLS.
    pub fn target(&self) -> SocketAddr {
        match (self.transport, self.tcp_port_override) {
            (Transport::Tcp | Transport::Tls, Some(p)) => SocketAddr::new(self.server.ip(), p),
            _ => self.server,
        }
    }

    /// The RTT, if reachable.
    pub fn rtt_ms(&self) -> Option<u64> {
        match self.state {
            CandidateState::Reachable { rtt_ms } => Some(rtt_ms),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    tid: TransactionId,
    timer: Retransmit,
}

/// A probe to send: which entry it is for, and the Binding request written at the
/// start of the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the probe must be sent"]
pub struct ProbeTransmit {
    /// The entry's index (as [`Selector::add`] gave it).
    pub entry: usize,
    /// Where to send it, over what, and its length.
    pub transmit: Transmit,
}

/// Up to `N` candidate servers and their probes.
#[derive(Debug)]
pub struct Selector<const N: usize> {
    candidates: heapless::Vec<(Candidate, Option<Probe>), N>,
    random: Random,
}

impl<const N: usize> Selector<N> {
    /// An empty list; `seed` (from a secure random source) keys the stream the
    /// probes' transaction ids are drawn from.
    pub fn new(seed: [u8; 32]) -> Self {
        Selector {
            candidates: heapless::Vec::new(),
            random: Random::new(seed),
        }
    }

    /// Adds an entry; returns its index, or `None` when the list is full.
    pub fn add(&mut self, c: Candidate) -> Option<usize> {
        self.candidates.push((c, None)).ok()?;
        Some(self.candidates.len() - 1)
    }

    /// The entries, in the order added.
    pub fn candidates(&self) -> impl Iterator<Item = &Candidate> {
        self.candidates.iter().map(|(c, _)| c)
    }

    /// Entry `i`.
    pub fn get(&self, i: usize) -> Option<&Candidate> {
        self.candidates.get(i).map(|(c, _)| c)
    }

    /// Probes every entry (again).
    pub fn probe_all(&mut self, now: Instant) {
        for i in 0..self.candidates.len() {
            let tid = self.random.tid();
            if let Some((c, p)) = self.candidates.get_mut(i) {
                c.state = CandidateState::Probing;
                *p = Some(Probe {
                    tid,
                    timer: Retransmit::new(now),
                });
            }
        }
    }

    /// The next probe to send, written into `out`; `None` when there is nothing
    /// to send now. Call again until it returns `None`.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<ProbeTransmit> {
        for (entry, (c, probe)) in self.candidates.iter_mut().enumerate() {
            let Some(p) = probe.as_mut().filter(|p| p.timer.is_pending()) else {
                continue;
            };
            let mut b = MessageBuilder::new(
                out,
                MessageType::new(Method::BINDING, Class::Request),
                p.tid,
            )
            .ok()?;
            b.add_fingerprint().ok()?;
            let len = b.finish();
            p.timer.sent(now, c.transport.is_stream());
            return Some(ProbeTransmit {
                entry,
                transmit: Transmit {
                    destination: c.target(),
                    transport: c.transport,
                    len,
                },
            });
        }
        None
    }

    /// Whether `bytes` answer one of the probes in flight (so a host sharing a
    /// socket knows to hand them to [`Selector::handle_input`]).
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        let Ok(msg) = Message::new_checked(bytes) else {
            return false;
        };
        let tid = msg.transaction_id();
        msg.method() == Method::BINDING
            && msg.class().is_response()
            && self
                .candidates
                .iter()
                .any(|(_, p)| p.is_some_and(|p| p.tid == tid))
    }

    /// When [`Selector::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.candidates
            .iter()
            .filter_map(|(_, p)| p.as_ref().and_then(|p| p.timer.deadline()))
            .min()
    }

    /// Retransmits probes and marks silent entries failed.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (c, probe) in self.candidates.iter_mut() {
            let Some(p) = probe.as_mut() else { continue };
            if p.timer.expire(now, c.transport.is_stream()) == Expiry::GiveUp {
                c.state = CandidateState::Failed(Failure::Timeout);
                c.last_error = Some(Failure::Timeout);
                *probe = None;
            }
        }
    }

    /// Handles a datagram from a server; returns the entry it answered, if any.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) -> Option<usize> {
        let msg = Message::new_checked(bytes).ok()?;
        if msg.method() != Method::BINDING || !msg.class().is_response() {
            return None;
        }
        let tid = msg.transaction_id();
        let i = self
            .candidates
            .iter()
            .position(|(_, p)| p.is_some_and(|p| p.tid == tid))?;
        let (c, probe) = self.candidates.get_mut(i)?;
        let p = probe.take()?;
        // Karn's rule: only an answer to a single transmission measures the RTT.
        // One to a retransmitted probe still shows the server reachable; its RTT
        // is a rough estimate (elapsed time over transmissions), not a measure.
        let rtt_ms = p.timer.rtt_ms(now, true).unwrap_or(0);
        c.state = if msg.class() == Class::Success {
            CandidateState::Reachable { rtt_ms }
        } else {
            let code = msg
                .attribute::<stun_core::attributes::ErrorCode>()
                .ok()
                .flatten()
                .map_or(400, |e| e.code);
            c.last_error = Some(Failure::Code(code));
            CandidateState::Failed(Failure::Code(code))
        };
        Some(i)
    }

    /// Records that entry `i` failed when used (the caller's allocation failed),
    /// so [`Selector::best`] moves on to the next.
    pub fn mark_failed(&mut self, i: usize, failure: Failure) {
        if let Some((c, _)) = self.candidates.get_mut(i) {
            c.state = CandidateState::Failed(failure);
            c.last_error = Some(failure);
        }
    }

    /// The reachable entry with the lowest RTT among the most preferred.
    pub fn best(&self) -> Option<usize> {
        self.candidates
            .iter()
            .enumerate()
            .filter_map(|(i, (c, _))| c.rtt_ms().map(|r| (c.preference, r, i)))
            .min()
            .map(|(_, _, i)| i)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// A Binding success answering the probe in `request`.
    fn answer(request: &[u8], out: &mut [u8]) -> usize {
        let tid = Message::new_checked(request).unwrap().transaction_id();
        let b = MessageBuilder::new(out, MessageType::new(Method::BINDING, Class::Success), tid)
            .unwrap();
        b.finish()
    }

    #[test]
    fn a_fallback_is_chosen_only_when_nothing_preferred_to_it_answers() {
        let t0 = Instant::from_millis(1000);
        let entry = Candidate::new(
            "192.0.2.10:3478".parse().unwrap(),
            Transport::Udp,
            "cmsturn",
            "pw",
        )
        .unwrap();
        let mut s = Selector::<4>::new([9; 32]);
        let udp = s.add(entry.clone()).unwrap();
        let tcp = s.add(entry.fallback(Transport::Tcp)).unwrap();
        s.probe_all(t0);
        let mut sent = [([0u8; 64], 0); 2];
        for _ in 0..2 {
            let mut out = [0u8; 64];
            let p = s.poll_transmit(t0, &mut out).unwrap();
            let entry = s.get(p.entry).unwrap();
            assert_eq!(p.transmit.transport, entry.transport);
            assert_eq!(p.transmit.destination, entry.target());
            sent[p.entry] = (out, p.transmit.len);
        }
        assert!(s.poll_transmit(t0, &mut [0u8; 64]).is_none());
        // TCP answers first, UDP later: UDP is still the choice.
        let mut a = [0u8; 64];
        let n = answer(&sent[tcp].0[..sent[tcp].1], &mut a);
        assert!(s.accepts(&a[..n]), "an answer to a probe in flight");
        assert!(
            !s.accepts(&sent[tcp].0[..sent[tcp].1]),
            "a request is no answer"
        );
        assert_eq!(s.handle_input(t0.plus_millis(5), &a[..n]), Some(tcp));
        assert!(!s.accepts(&a[..n]), "answered already");
        let n = answer(&sent[udp].0[..sent[udp].1], &mut a);
        assert_eq!(s.handle_input(t0.plus_millis(50), &a[..n]), Some(udp));
        assert_eq!(s.best(), Some(udp));
        // UDP fails when used: the fallback.
        s.mark_failed(udp, Failure::Timeout);
        assert_eq!(s.best(), Some(tcp));
        s.mark_failed(tcp, Failure::Code(401));
        assert_eq!(s.best(), None);
    }
}
