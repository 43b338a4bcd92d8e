//! Join URLs to web bridges: the Host header (and the TLS SNI, which must agree with
//! it) must name a configured join URL; each maps to a web bridge.
//!
//! The rule for SNI and Host:
//! - the SNI is the one the TLS handshake negotiated (the std adapter takes it
//!   from rustls, which reads the whole ClientHello however many records it
//!   spans), not a guess from the first record;
//! - when there is one, the Host must name the same join URL, case-insensitively,
//!   a trailing dot ignored (421 otherwise: no domain fronting);
//! - when the client sent none (an IP-literal URL, or a client that omits it), or
//!   sent an IP literal (which RFC 6066 forbids, and is ignored), the Host alone
//!   must name a configured join URL: the certificate covers every join URL, so
//!   no other host is reachable this way;
//! - a port in the Host must be the one the request arrived on.

use crate::refusal::{Reason, Refusal};

/// A join URL and the web bridge it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site<'a> {
    /// The join URL's host name (for example `join.example.com`).
    pub host: &'a str,
    /// The caller's index of the web bridge.
    pub upstream: usize,
}

/// Splits `host[:port]` (with IPv6 literals in brackets).
pub(crate) fn split_port(h: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = h.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((ip, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((ip, None)),
            None => None,
        };
    }
    match h.rsplit_once(':') {
        Some((name, p)) => Some((name, Some(p.parse().ok()?))),
        None => Some((h, None)),
    }
}

/// The web bridge for a request with `host` (Host header) and `sni` (if TLS)
/// arriving on `port`. Names compare case-insensitively; a trailing dot is ignored.
pub fn route(
    sites: &[Site<'_>],
    host: &str,
    sni: Option<&str>,
    port: u16,
) -> Result<usize, Refusal> {
    let unknown = Refusal::new(Reason::UnknownHost);
    let (name, p) = split_port(host).ok_or(unknown)?;
    if p.is_some_and(|p| p != port) {
        return Err(Refusal::new(Reason::WrongPort));
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    // RFC 6066 forbids IP literals in SNI; some clients send them anyway: ignore.
    let sni = sni.filter(|s| s.parse::<core::net::IpAddr>().is_err());
    if let Some(sni) = sni {
        let sni = sni.strip_suffix('.').unwrap_or(sni);
        if !sni.eq_ignore_ascii_case(name) {
            return Err(unknown);
        }
    }
    sites
        .iter()
        .find(|s| s.host.eq_ignore_ascii_case(name))
        .map(|s| s.upstream)
        .ok_or(unknown)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn routing() {
        let sites = [
            Site {
                host: "join.example.com",
                upstream: 0,
            },
            Site {
                host: "meet.example.org",
                upstream: 1,
            },
        ];
        assert_eq!(route(&sites, "join.example.com", None, 443), Ok(0));
        assert_eq!(
            route(
                &sites,
                "JOIN.example.com:443",
                Some("join.example.com"),
                443
            ),
            Ok(0)
        );
        assert_eq!(
            route(&sites, "meet.example.org.", Some("MEET.example.org"), 443),
            Ok(1)
        );
        assert_eq!(
            route(&sites, "join.example.com:8443", None, 443).unwrap_err(),
            Refusal::new(Reason::WrongPort)
        );
        assert_eq!(
            route(&sites, "other.example.com", None, 443)
                .unwrap_err()
                .status,
            421
        );
        // Domain fronting: SNI for one site, Host for another.
        assert_eq!(
            route(&sites, "meet.example.org", Some("join.example.com"), 443)
                .unwrap_err()
                .status,
            421
        );
        assert_eq!(
            route(&sites, "[::1]:443", None, 443).unwrap_err().status,
            421
        );
        assert_eq!(
            route(&sites, "join.example.com:x", None, 443)
                .unwrap_err()
                .status,
            421
        );
    }
}
