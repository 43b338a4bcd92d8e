//! Refusals counted by kind: a flat, bounded set of reasons (one per
//! [`Refusal`] variant, without its data) that metrics can label with, and the
//! three groups an operator reads apart: the routine rounds of authentication
//! (401 challenge, 438 stale nonce), refusals worth acting on (an error response
//! for anything else), and packets dropped in silence.

use super::refusal::Refusal;

/// What kind of refusal: [`Refusal`] without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
#[allow(missing_docs)] // each is the `Refusal` variant of the same name
pub enum Reason {
    StaleNonce,
    UnknownUser,
    IntegrityFailure,
    CredentialExpired,
    WrongRealm,
    WrongCredentials,
    AllocationMismatch,
    UnsupportedTransport,
    FamilyNotSupported,
    PeerFamilyMismatch,
    ForbiddenPeer,
    UserQuota,
    Capacity,
    Draining,
    NoRelayPort,
    NoReservation,
    ReservationNotOffered,
    AllocationFull,
    BadRequest,
    UnknownAttribute,
    RateLimited,
    Malformed,
    BadFingerprint,
    /// Neither STUN nor ChannelData.
    NotTurn,
    /// A STUN response, or an indication other than Send.
    UnexpectedMessage,
    /// A Send indication without XOR-PEER-ADDRESS or DATA.
    IncompleteSend,
    /// A Send indication with DONT-FRAGMENT, not honoured.
    DontFragment,
    /// A ChannelData length that does not fit the packet.
    BadChannelData,
    NoPermission,
    NotLiveRelay,
    OverBandwidth,
    NoChannel,
    NoAllocation,
    OutputTooSmall,
    ClassicOff,
    ConnectionExists,
    ConnectionFailed,
    TcpAllocation,
}

/// How many reasons there are.
pub const REASONS: usize = 38;

impl Reason {
    /// Every reason, in a fixed order (the index of [`RefusalCounts`]).
    pub const ALL: [Reason; REASONS] = [
        Reason::StaleNonce,
        Reason::UnknownUser,
        Reason::IntegrityFailure,
        Reason::CredentialExpired,
        Reason::WrongRealm,
        Reason::WrongCredentials,
        Reason::AllocationMismatch,
        Reason::UnsupportedTransport,
        Reason::FamilyNotSupported,
        Reason::PeerFamilyMismatch,
        Reason::ForbiddenPeer,
        Reason::UserQuota,
        Reason::Capacity,
        Reason::Draining,
        Reason::NoRelayPort,
        Reason::NoReservation,
        Reason::ReservationNotOffered,
        Reason::AllocationFull,
        Reason::BadRequest,
        Reason::UnknownAttribute,
        Reason::RateLimited,
        Reason::Malformed,
        Reason::BadFingerprint,
        Reason::NotTurn,
        Reason::UnexpectedMessage,
        Reason::IncompleteSend,
        Reason::DontFragment,
        Reason::BadChannelData,
        Reason::NoPermission,
        Reason::NotLiveRelay,
        Reason::OverBandwidth,
        Reason::NoChannel,
        Reason::NoAllocation,
        Reason::OutputTooSmall,
        Reason::ClassicOff,
        Reason::ConnectionExists,
        Reason::ConnectionFailed,
        Reason::TcpAllocation,
    ];

    /// A short name for labels (`snake_case`, stable).
    pub const fn name(self) -> &'static str {
        match self {
            Reason::StaleNonce => "stale_nonce",
            Reason::UnknownUser => "unknown_user",
            Reason::IntegrityFailure => "integrity_failure",
            Reason::CredentialExpired => "credential_expired",
            Reason::WrongRealm => "wrong_realm",
            Reason::WrongCredentials => "wrong_credentials",
            Reason::AllocationMismatch => "allocation_mismatch",
            Reason::UnsupportedTransport => "unsupported_transport",
            Reason::FamilyNotSupported => "family_not_supported",
            Reason::PeerFamilyMismatch => "peer_family_mismatch",
            Reason::ForbiddenPeer => "forbidden_peer",
            Reason::UserQuota => "user_quota",
            Reason::Capacity => "capacity",
            Reason::Draining => "draining",
            Reason::NoRelayPort => "no_relay_port",
            Reason::NoReservation => "no_reservation",
            Reason::ReservationNotOffered => "reservation_not_offered",
            Reason::AllocationFull => "allocation_full",
            Reason::BadRequest => "bad_request",
            Reason::UnknownAttribute => "unknown_attribute",
            Reason::RateLimited => "rate_limited",
            Reason::Malformed => "malformed",
            Reason::BadFingerprint => "bad_fingerprint",
            Reason::NotTurn => "not_turn",
            Reason::UnexpectedMessage => "unexpected_message",
            Reason::IncompleteSend => "incomplete_send",
            Reason::DontFragment => "dont_fragment",
            Reason::BadChannelData => "bad_channel_data",
            Reason::NoPermission => "no_permission",
            Reason::NotLiveRelay => "not_live_relay",
            Reason::OverBandwidth => "over_bandwidth",
            Reason::NoChannel => "no_channel",
            Reason::NoAllocation => "no_allocation",
            Reason::OutputTooSmall => "output_too_small",
            Reason::ClassicOff => "classic_off",
            Reason::ConnectionExists => "connection_exists",
            Reason::ConnectionFailed => "connection_failed",
            Reason::TcpAllocation => "tcp_allocation",
        }
    }

    /// Its place in [`Reason::ALL`].
    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    /// The group it is counted in.
    pub(crate) const fn group(self) -> Group {
        match self {
            Reason::StaleNonce => Group::Challenge,
            Reason::RateLimited
            | Reason::Malformed
            | Reason::BadFingerprint
            | Reason::NotTurn
            | Reason::UnexpectedMessage
            | Reason::IncompleteSend
            | Reason::DontFragment
            | Reason::BadChannelData
            | Reason::NoPermission
            | Reason::NotLiveRelay
            | Reason::OverBandwidth
            | Reason::NoChannel
            | Reason::NoAllocation
            | Reason::OutputTooSmall
            | Reason::TcpAllocation
            | Reason::ClassicOff => Group::Dropped,
            _ => Group::Refused,
        }
    }
}

/// The three groups refusals are read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Group {
    /// The routine rounds of long-term authentication: a 438 with a fresh
    /// nonce (the first 401 with a nonce is no refusal at all: it is counted in
    /// [`Counters::challenges`](super::Counters::challenges) only). Nothing to
    /// act on.
    Challenge,
    /// An error response an operator may act on (credentials, policy, quotas,
    /// capacity, malformed requests).
    Refused,
    /// A packet dropped in silence (no allocation, permission or channel for it,
    /// over a limit, not STUN at all).
    Dropped,
}

impl Refusal {
    /// Its kind.
    pub const fn reason(&self) -> Reason {
        match self {
            Refusal::RateLimited => Reason::RateLimited,
            Refusal::StaleNonce => Reason::StaleNonce,
            Refusal::UnknownUser => Reason::UnknownUser,
            Refusal::IntegrityFailure => Reason::IntegrityFailure,
            Refusal::CredentialExpired { .. } => Reason::CredentialExpired,
            Refusal::WrongRealm => Reason::WrongRealm,
            Refusal::WrongCredentials => Reason::WrongCredentials,
            Refusal::AllocationMismatch => Reason::AllocationMismatch,
            Refusal::UnsupportedTransport(_) => Reason::UnsupportedTransport,
            Refusal::FamilyNotSupported => Reason::FamilyNotSupported,
            Refusal::PeerFamilyMismatch => Reason::PeerFamilyMismatch,
            Refusal::ForbiddenPeer(..) => Reason::ForbiddenPeer,
            Refusal::UserQuota => Reason::UserQuota,
            Refusal::Capacity => Reason::Capacity,
            Refusal::Draining | Refusal::Redirected { draining: true, .. } => Reason::Draining,
            Refusal::Redirected {
                draining: false, ..
            } => Reason::Capacity,
            Refusal::NoRelayPort => Reason::NoRelayPort,
            Refusal::NoReservation => Reason::NoReservation,
            Refusal::ReservationNotOffered => Reason::ReservationNotOffered,
            Refusal::AllocationFull => Reason::AllocationFull,
            Refusal::BadRequest(_) => Reason::BadRequest,
            Refusal::UnknownAttribute(_) => Reason::UnknownAttribute,
            Refusal::Malformed(_) => Reason::Malformed,
            Refusal::BadFingerprint => Reason::BadFingerprint,
            Refusal::NotTurn => Reason::NotTurn,
            Refusal::UnexpectedMessage => Reason::UnexpectedMessage,
            Refusal::IncompleteSend => Reason::IncompleteSend,
            Refusal::DontFragment => Reason::DontFragment,
            Refusal::BadChannelData => Reason::BadChannelData,
            Refusal::NoPermission(_) => Reason::NoPermission,
            Refusal::NotLiveRelay(_) => Reason::NotLiveRelay,
            Refusal::OverBandwidth => Reason::OverBandwidth,
            Refusal::NoChannel(_) => Reason::NoChannel,
            Refusal::NoAllocation => Reason::NoAllocation,
            Refusal::OutputTooSmall => Reason::OutputTooSmall,
            Refusal::ClassicOff => Reason::ClassicOff,
            Refusal::ConnectionExists(_) => Reason::ConnectionExists,
            Refusal::ConnectionFailed(_) => Reason::ConnectionFailed,
            Refusal::TcpAllocation => Reason::TcpAllocation,
        }
    }
}

/// How many refusals of each [`Reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalCounts([u64; REASONS]);

impl Default for RefusalCounts {
    fn default() -> Self {
        RefusalCounts([0; REASONS])
    }
}

impl RefusalCounts {
    /// Counts one.
    pub fn add(&mut self, reason: Reason) {
        if let Some(n) = self.0.get_mut(reason.index()) {
            *n = n.saturating_add(1);
        }
    }

    /// How many of `reason`.
    pub fn get(&self, reason: Reason) -> u64 {
        self.0.get(reason.index()).copied().unwrap_or(0)
    }

    /// How many in `group`.
    pub fn in_group(&self, group: Group) -> u64 {
        self.iter()
            .filter(|(r, _)| r.group() == group)
            .map(|(_, n)| n)
            .sum()
    }

    /// Each reason with its count, in [`Reason::ALL`]'s order.
    pub fn iter(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL.iter().copied().zip(self.0.iter().copied())
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &RefusalCounts) {
        for (n, m) in self.0.iter_mut().zip(other.0.iter()) {
            *n = n.saturating_add(*m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_place_and_a_distinct_name() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
            assert!(
                Reason::ALL[..i].iter().all(|o| o.name() != r.name()),
                "{r:?}"
            );
        }
    }

    #[test]
    fn groups_keep_the_routine_401_apart_from_what_an_operator_acts_on() {
        let mut c = RefusalCounts::default();
        c.add(Refusal::StaleNonce.reason());
        c.add(Refusal::StaleNonce.reason());
        c.add(Refusal::IntegrityFailure.reason());
        c.add(Refusal::NoAllocation.reason());
        c.add(Refusal::RateLimited.reason());
        assert_eq!(c.in_group(Group::Challenge), 2);
        assert_eq!(c.in_group(Group::Refused), 1);
        assert_eq!(c.in_group(Group::Dropped), 2);
        assert_eq!(c.get(Reason::RateLimited), 1);
        let mut d = c;
        d.merge(&c);
        assert_eq!(d.get(Reason::StaleNonce), 4);
    }

    #[test]
    fn every_silence_is_dropped_and_every_error_response_is_not() {
        use crate::server::BadRequest;
        use core::net::{IpAddr, Ipv4Addr, SocketAddr};
        use stun_core::{AttributeType, ParseError};
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let samples = [
            Refusal::RateLimited,
            Refusal::StaleNonce,
            Refusal::UnknownUser,
            Refusal::IntegrityFailure,
            Refusal::CredentialExpired { expiry: 1, now: 2 },
            Refusal::WrongRealm,
            Refusal::WrongCredentials,
            Refusal::AllocationMismatch,
            Refusal::UnsupportedTransport(6),
            Refusal::FamilyNotSupported,
            Refusal::PeerFamilyMismatch,
            Refusal::ForbiddenPeer(ip, crate::server::policy::Verdict::DeniedByDefault),
            Refusal::UserQuota,
            Refusal::Capacity,
            Refusal::Draining,
            Refusal::NoRelayPort,
            Refusal::NoReservation,
            Refusal::ReservationNotOffered,
            Refusal::AllocationFull,
            Refusal::BadRequest(BadRequest::TokenConflict),
            Refusal::UnknownAttribute(AttributeType::new(0x7abc)),
            Refusal::Malformed(ParseError::NotStun),
            Refusal::BadFingerprint,
            Refusal::NotTurn,
            Refusal::UnexpectedMessage,
            Refusal::IncompleteSend,
            Refusal::DontFragment,
            Refusal::BadChannelData,
            Refusal::NoPermission(ip),
            Refusal::NotLiveRelay(SocketAddr::new(ip, 1)),
            Refusal::OverBandwidth,
            Refusal::NoChannel(0x4000),
            Refusal::NoAllocation,
            Refusal::OutputTooSmall,
            Refusal::ClassicOff,
            Refusal::ConnectionExists(SocketAddr::new(ip, 1)),
            Refusal::ConnectionFailed(SocketAddr::new(ip, 1)),
            Refusal::TcpAllocation,
        ];
        for r in samples {
            assert_eq!(
                r.reason().group() == Group::Dropped,
                r.code().is_none(),
                "{r:?}"
            );
        }
        let mut seen: heapless::Vec<Reason, REASONS> = heapless::Vec::new();
        for r in samples {
            assert!(!seen.contains(&r.reason()), "{r:?} twice");
            let _ = seen.push(r.reason());
        }
        assert_eq!(seen.len(), REASONS, "a sample of every reason");
    }
}
