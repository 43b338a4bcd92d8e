//! The server's configuration: realm, credentials, lifetimes, relay addresses and
//! ports, peer policy, and limits.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use stun_core::credentials::Algorithm;

use super::bandwidth::Bandwidth;
use super::policy::PeerPolicy;

/// Permission lifetime (RFC 8656 §9: 300 s, not negotiable).
pub const PERMISSION_LIFETIME_SECS: u64 = 300;
/// Channel binding lifetime (RFC 8656 §12: 600 s).
pub const CHANNEL_LIFETIME_SECS: u64 = 600;
/// After a channel binding expires, its number and peer stay unavailable to other
/// bindings this long (RFC 8656 §12).
pub const CHANNEL_COOLDOWN_SECS: u64 = 300;
/// How long an EVEN-PORT reservation is held (RFC 8656 §7.2 suggests ~30 s).
pub const RESERVATION_LIFETIME_SECS: u64 = 30;
/// Longest username the server stores with an allocation.
pub const USERNAME_MAX: usize = 128;
/// Longest realm, in bytes.
pub const REALM_MAX: usize = 64;
/// Longest SOFTWARE text, in bytes.
pub const SOFTWARE_MAX: usize = 64;
/// Most shared secrets at once.
pub const SECRETS_MAX: usize = 4;
/// Longest shared secret.
pub const SECRET_MAX: usize = 128;

/// A shared secret's bytes.
pub type Secret = heapless::Vec<u8, SECRET_MAX>;

/// The TURN server's configuration. [`Config::new`] gives the defaults of RFC 8656
/// and of the reference deployment's relay port range.
#[derive(Debug, Clone)]
pub struct Config {
    /// The realm (the reference deployment uses `TANDBERG`).
    pub realm: heapless::String<REALM_MAX>,
    /// SOFTWARE attribute in success responses; empty to omit.
    pub software: heapless::String<SOFTWARE_MAX>,
    /// Seconds after which a nonce is stale (438).
    pub nonce_lifetime_secs: u64,
    /// Secrets of time-limited credentials (TURN REST scheme), up to
    /// [`SECRETS_MAX`]: any verifies, so a secret rotates without a flag day
    /// (the issuer switches to the new one while both are accepted). Empty:
    /// disabled.
    pub shared_secrets: heapless::Vec<Secret, SECRETS_MAX>,
    /// Allocation lifetime when the client asks for less (RFC 8656: 600 s).
    pub default_lifetime_secs: u64,
    /// The most an allocation may ask for.
    pub max_lifetime_secs: u64,
    /// Address IPv4 relay sockets bind to: the one peers' packets arrive on
    /// (behind static NAT, the address it translates the public one to).
    pub relay_v4: Option<Ipv4Addr>,
    /// Address IPv6 relay sockets bind to.
    pub relay_v6: Option<Ipv6Addr>,
    /// IPv4 address advertised in XOR-RELAYED-ADDRESS (static NAT); default the
    /// relay address.
    pub external_v4: Option<Ipv4Addr>,
    /// IPv6 address advertised in XOR-RELAYED-ADDRESS; default the relay address.
    pub external_v6: Option<Ipv6Addr>,
    /// Lowest relay port.
    pub port_min: u16,
    /// Highest relay port.
    pub port_max: u16,
    /// Which peers may be relayed to.
    pub policy: PeerPolicy,
    /// Sent with 300 Try Alternate when this node is full.
    pub alternate_server: Option<SocketAddr>,
    /// Unauthenticated answers (401, 438) allowed per source IP at once...
    pub unauth_burst: u32,
    /// ...and per second after that; past it, silence.
    pub unauth_per_sec: u32,
    /// Unauthenticated answers per second over all sources (and as a burst).
    pub unauth_global_per_sec: u32,
    /// Unauthenticated answers per second (and as a burst) to a source that has
    /// authenticated within a nonce's lifetime (an office NAT whose browsers keep
    /// allocating); the global budget does not count them.
    pub unauth_verified_per_sec: u32,
    /// Accept ChannelBind for 0x5000-0x7FFF as RFC 5766 did (older clients such as
    /// coturn's tools and pjnath use them); RFC 8656 allows 0x4000-0x4FFF only.
    pub legacy_channels: bool,
    /// Peer TCP connections one TCP allocation (RFC 6062) may hold at once
    /// (connecting, waiting for a ConnectionBind, or bound): a Connect past it
    /// gets 508, a peer's connection past it is closed. The server's own total
    /// is its `T`.
    pub peer_connections_per_allocation: usize,
    /// Whether the host can send with the DF bit set; without it, DONT-FRAGMENT is
    /// refused with 420 as RFC 8656 §7.2 requires.
    pub dont_fragment: bool,
    /// Password algorithms offered in PASSWORD-ALGORITHMS with the nonce cookie of
    /// RFC 8489 §9.2, in order of preference (default SHA-256, then MD5). Clients
    /// that predate RFC 8489 ignore the offer and use MD5. Empty: no offer.
    pub password_algorithms: heapless::Vec<Algorithm, 2>,
    /// Offer username anonymity (USERHASH, RFC 8489 §9.2): the host must answer
    /// [`Host::username_by_hash`](super::Host::username_by_hash).
    pub userhash: bool,
    /// Each allocation's limit, each way (see [`bandwidth`](super::bandwidth));
    /// none by default.
    pub allocation_bandwidth: Option<Bandwidth>,
    /// Each user's limit over all its allocations, each way, kept by the host;
    /// none by default.
    pub user_bandwidth: Option<Bandwidth>,
    /// What this server may relay in all, bytes per second both ways together:
    /// new allocations are refused while the last second's traffic (plus one
    /// allocation's limit) would pass it. None by default.
    pub capacity_bytes_per_sec: Option<u64>,
    /// Answer RFC 3489 Binding requests (no magic cookie) with MAPPED-ADDRESS,
    /// as RFC 8489 §12.2 allows (see [`stun_core::classic`]: never to another
    /// address, never from another); off, they are dropped and counted. On by
    /// default, as coturn does.
    pub classic_stun: bool,
    /// Take TCP allocations (RFC 6062) on a server with room for peer
    /// connections; `false` answers an Allocate for TCP with 442.
    pub tcp_allocations: bool,
}

/// A configuration the server refuses, naming the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.field, self.problem)
    }
}

impl core::error::Error for ConfigError {}

impl Config {
    /// Defaults: 600 s allocations (at most 3600 s), nonces stale after 600 s,
    /// relay ports 49152-65535, 100 unauthenticated UDP answers per IP at once then
    /// 50 a second (2000 a second in all), 10000 a second to an address that has
    /// authenticated (a corporate NAT with many browsers behind it), SHA-256 and
    /// MD5 offered as password algorithms, no relay address yet (set at least one).
    pub fn new(realm: &str) -> Config {
        let mut r = heapless::String::new();
        let _ = r.push_str(realm);
        let mut software = heapless::String::new();
        let _ = software.push_str("causeway");
        Config {
            realm: r,
            software,
            nonce_lifetime_secs: 600,
            shared_secrets: heapless::Vec::new(),
            default_lifetime_secs: 600,
            max_lifetime_secs: 3600,
            relay_v4: None,
            relay_v6: None,
            external_v4: None,
            external_v6: None,
            port_min: 49152,
            port_max: 65535,
            policy: PeerPolicy::default(),
            alternate_server: None,
            unauth_burst: 100,
            unauth_per_sec: 50,
            unauth_global_per_sec: 2000,
            unauth_verified_per_sec: 10_000,
            dont_fragment: false,
            legacy_channels: false,
            peer_connections_per_allocation: 32,
            password_algorithms: heapless::Vec::from_slice(&[Algorithm::Sha256, Algorithm::Md5])
                .unwrap_or_default(),
            userhash: false,
            allocation_bandwidth: None,
            user_bandwidth: None,
            capacity_bytes_per_sec: None,
            classic_stun: true,
            tcp_allocations: true,
        }
    }

    /// Checks the configuration; the server refuses to start otherwise.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let e = |field, problem| Err(ConfigError { field, problem });
        if self.realm.is_empty() {
            return e("realm", "must not be empty");
        }
        if self.port_min == 0 || self.port_min > self.port_max {
            return e("relay_range", "needs 1 <= low <= high");
        }
        if self.relay_v4.is_none() && self.relay_v6.is_none() {
            return e("relay_ip", "at least one relay address is needed");
        }
        if self
            .relay_v4
            .is_some_and(|a| a.is_unspecified() || a.is_multicast())
            || self
                .relay_v6
                .is_some_and(|a| a.is_unspecified() || a.is_multicast())
        {
            return e("relay_ip", "must be a unicast address of this host");
        }
        if self
            .external_v4
            .is_some_and(|a| a.is_unspecified() || a.is_multicast())
            || self
                .external_v6
                .is_some_and(|a| a.is_unspecified() || a.is_multicast())
        {
            return e("external_ip", "must be a unicast address");
        }
        if (self.external_v4.is_some() && self.relay_v4.is_none())
            || (self.external_v6.is_some() && self.relay_v6.is_none())
        {
            return e("external_ip", "has no relay address of its family");
        }
        if self.default_lifetime_secs == 0 || self.max_lifetime_secs < self.default_lifetime_secs {
            return e(
                "max_lifetime",
                "must be at least the default lifetime (600 s)",
            );
        }
        if self.nonce_lifetime_secs == 0 {
            return e("nonce_lifetime", "must be at least 1 s");
        }
        let bad = |b: Option<Bandwidth>| b.is_some_and(|b| !b.is_valid());
        if bad(self.allocation_bandwidth) {
            return e(
                "bandwidth.allocation",
                "needs a rate above 0 and a burst of at least 1500 bytes",
            );
        }
        if bad(self.user_bandwidth) {
            return e(
                "bandwidth.user",
                "needs a rate above 0 and a burst of at least 1500 bytes",
            );
        }
        if self.capacity_bytes_per_sec == Some(0) {
            return e("bandwidth.capacity", "must be above 0");
        }
        let relay_ports = |l: &&super::policy::LocalPeer| {
            self.relay_ips()
                .into_iter()
                .flatten()
                .any(|ip| l.names_ip(ip))
                && l.overlaps(self.port_min, self.port_max)
        };
        if self.policy.local.iter().any(|l| relay_ports(&l)) {
            return e(
                "allow_local_peer",
                "must not cover the relay port range on a relay address (relay to relay needs no \
                 entry)",
            );
        }
        Ok(())
    }

    /// Whether packets are metered (so the kernel fast path must not take them).
    pub(crate) fn meters_packets(&self) -> bool {
        self.allocation_bandwidth.is_some() || self.user_bandwidth.is_some()
    }

    /// The address relayed-address sockets of `family` bind to.
    pub(crate) fn relay_ip(&self, v6: bool) -> Option<IpAddr> {
        if v6 {
            self.relay_v6.map(IpAddr::V6)
        } else {
            self.relay_v4.map(IpAddr::V4)
        }
    }

    /// The address advertised for a relay socket bound to `local`.
    pub(crate) fn advertised(&self, local: SocketAddr) -> SocketAddr {
        let ip = match local.ip() {
            IpAddr::V4(a) => IpAddr::V4(self.external_v4.unwrap_or(a)),
            IpAddr::V6(a) => IpAddr::V6(self.external_v6.unwrap_or(a)),
        };
        SocketAddr::new(ip, local.port())
    }

    /// The relay socket address that `addr` names, when `addr` is on one of this
    /// server's relay or advertised IPs with a port in the relay range: the
    /// advertised IP stands for the relay IP of its family behind static NAT.
    pub(crate) fn relay_local(&self, addr: SocketAddr) -> Option<SocketAddr> {
        if !(self.port_min..=self.port_max).contains(&addr.port()) {
            return None;
        }
        let local = match addr.ip() {
            IpAddr::V4(a) if Some(a) == self.relay_v4 => IpAddr::V4(a),
            IpAddr::V4(a) if Some(a) == self.external_v4 => IpAddr::V4(self.relay_v4?),
            IpAddr::V6(a) if Some(a) == self.relay_v6 => IpAddr::V6(a),
            IpAddr::V6(a) if Some(a) == self.external_v6 => IpAddr::V6(self.relay_v6?),
            _ => return None,
        };
        Some(SocketAddr::new(local, addr.port()))
    }

    /// Whether `ip` is one of this server's relay or advertised IPs (exactly, not
    /// in an embedding form).
    pub(crate) fn is_relay_ip(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => Some(a) == self.relay_v4 || Some(a) == self.external_v4,
            IpAddr::V6(a) => Some(a) == self.relay_v6 || Some(a) == self.external_v6,
        }
    }

    /// The relay and advertised IPs, for the peer policy's own addresses.
    pub(crate) fn relay_ips(&self) -> [Option<IpAddr>; 4] {
        [
            self.relay_v4.map(IpAddr::V4),
            self.relay_v6.map(IpAddr::V6),
            self.external_v4.map(IpAddr::V4),
            self.external_v6.map(IpAddr::V6),
        ]
    }

    /// Whether time-limited credentials are on.
    pub(crate) fn time_limited(&self) -> bool {
        self.shared_secrets.iter().any(|s| !s.is_empty())
    }

    /// SOFTWARE to send, if any.
    pub(crate) fn software(&self) -> Option<&str> {
        (!self.software.is_empty()).then_some(self.software.as_str())
    }
}
