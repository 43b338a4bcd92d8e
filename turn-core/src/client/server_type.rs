//! The `type` of a meeting server's `turnServers` entry, and the transports a
//! call bridge tries for it.
//!
//! The CMS API names the kind of TURN server (`standard`, `cms`, `expressway`,
//! `lyncEdge`), not a transport: a call bridge reaches any of the first three
//! over UDP, and over TCP (on `tcpPortNumberOverride`, else the same port) when
//! UDP does not get through. `udp` and `tcp` name one transport only. A Lync
//! Edge speaks Microsoft's TURN dialect and is refused where a list is read,
//! not at the first call.
//!
//! ```
//! use turn_core::Transport;
//! use turn_core::client::ServerType;
//!
//! let t = ServerType::parse("expressway").unwrap();
//! assert_eq!(t.transports(), &[Transport::Udp, Transport::Tcp]);
//! assert_eq!(ServerType::parse("tcp").unwrap().transports(), &[Transport::Tcp]);
//! assert!(ServerType::parse("lyncEdge").is_err());
//! ```
//!
//! An entry becomes one [`Candidate`] per transport, the fallback preferred
//! after the first ([`ServerType::candidates`]).

use super::Candidate;
use crate::Transport;

/// What a `turnServers` entry's `type` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ServerType {
    /// `standard`: a TURN server (RFC 5766 / 8656).
    Standard,
    /// `cms`: a Meeting Server's own TURN server.
    Cms,
    /// `expressway`: an Expressway-E (or causeway in its place).
    Expressway,
    /// `udp`: UDP only.
    Udp,
    /// `tcp`: TCP only (on the TCP port override, if any).
    Tcp,
}

/// Why a `type` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ServerTypeError {
    /// `lyncEdge`: Microsoft's TURN dialect, which this client does not speak.
    LyncEdge,
    /// None of the known values.
    Unknown,
}

impl core::fmt::Display for ServerTypeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ServerTypeError::LyncEdge => "`lyncEdge` (a Lync Edge's TURN dialect) is not supported",
            ServerTypeError::Unknown => "one of standard, cms, expressway, udp, tcp",
        })
    }
}

impl ServerType {
    /// Reads a `type` value as the CMS API spells it (case aside).
    pub fn parse(s: &str) -> Result<ServerType, ServerTypeError> {
        let is = |name: &str| s.eq_ignore_ascii_case(name);
        Ok(if is("standard") {
            ServerType::Standard
        } else if is("cms") {
            ServerType::Cms
        } else if is("expressway") {
            ServerType::Expressway
        } else if is("udp") {
            ServerType::Udp
        } else if is("tcp") {
            ServerType::Tcp
        } else if is("lyncedge") || is("lync") {
            return Err(ServerTypeError::LyncEdge);
        } else {
            return Err(ServerTypeError::Unknown);
        })
    }

    /// The transports to try, the preferred first.
    pub const fn transports(self) -> &'static [Transport] {
        match self {
            ServerType::Standard | ServerType::Cms | ServerType::Expressway => {
                &[Transport::Udp, Transport::Tcp]
            }
            ServerType::Udp => &[Transport::Udp],
            ServerType::Tcp => &[Transport::Tcp],
        }
    }

    /// The candidates of an entry of this type: `entry` over the preferred
    /// transport, then its fallbacks (see [`Candidate::fallback`]).
    pub fn candidates(self, entry: &Candidate) -> impl Iterator<Item = Candidate> + '_ {
        let mut first = entry.clone();
        first.preference = 0;
        self.transports().iter().enumerate().map(move |(i, &t)| {
            if i == 0 {
                Candidate {
                    transport: t,
                    ..first.clone()
                }
            } else {
                let mut c = first.fallback(t);
                c.preference = u8::try_from(i).unwrap_or(u8::MAX);
                c
            }
        })
    }

    /// Its name in a `turnServers` list.
    pub const fn name(self) -> &'static str {
        match self {
            ServerType::Standard => "standard",
            ServerType::Cms => "cms",
            ServerType::Expressway => "expressway",
            ServerType::Udp => "udp",
            ServerType::Tcp => "tcp",
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn every_cms_type_is_read_and_lync_edge_refused() {
        for (s, t) in [
            ("standard", ServerType::Standard),
            ("cms", ServerType::Cms),
            ("Expressway", ServerType::Expressway),
            ("udp", ServerType::Udp),
            ("TCP", ServerType::Tcp),
        ] {
            assert_eq!(ServerType::parse(s), Ok(t), "{s}");
            assert_eq!(ServerType::parse(t.name()), Ok(t));
        }
        assert_eq!(
            ServerType::parse("lyncEdge"),
            Err(ServerTypeError::LyncEdge)
        );
        assert_eq!(ServerType::parse("tls"), Err(ServerTypeError::Unknown));
        assert_eq!(ServerType::parse(""), Err(ServerTypeError::Unknown));
    }

    #[test]
    fn an_expressway_entry_is_udp_then_tcp_on_the_override() {
        let mut e = Candidate::new(
            "192.0.2.10:3478".parse().unwrap(),
            Transport::Tcp,
            "cmsturn",
            "pw",
        )
        .unwrap();
        e.tcp_port_override = Some(443);
        let c: heapless::Vec<Candidate, 2> = ServerType::Expressway.candidates(&e).collect();
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].transport, c[0].target(), c[0].preference),
            (Transport::Udp, "192.0.2.10:3478".parse().unwrap(), 0)
        );
        assert_eq!(
            (c[1].transport, c[1].target(), c[1].preference),
            (Transport::Tcp, "192.0.2.10:443".parse().unwrap(), 1)
        );
        let t: heapless::Vec<Candidate, 2> = ServerType::Tcp.candidates(&e).collect();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].transport, Transport::Tcp);
    }
}
