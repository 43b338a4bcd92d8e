//! Web bridges: where they are, and connecting to them (DNS, TCP, TLS verified
//! against the operator's CA), with errors that name the cause.

use crate::runtime::prelude::*;
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use super::link::Link;

/// A web bridge.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Host name or address of the web bridge (verified against its certificate).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Whether it speaks TLS.
    pub tls: bool,
    /// Served through connectors instead ([`Upstream::traversal`]): the
    /// request goes into one of their connections, and `host`, `port` and
    /// `tls` are not used.
    pub tunnels: Option<Arc<super::traversal::TunnelPool>>,
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tunnels.is_some() {
            return f.write_str("the traversal's connectors");
        }
        write!(
            f,
            "{}://{}:{}",
            if self.tls { "https" } else { "http" },
            self.host,
            self.port
        )
    }
}

/// Why a web bridge address is not one: what [`Upstream::parse`] refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The port is not a number from 1 to 65535.
    BadPort(String),
    /// The host is missing.
    NoHost(String),
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::BadPort(s) => write!(f, "`{s}`: the port is not 1 to 65535"),
            UpstreamError::NoHost(s) => write!(f, "`{s}` is not [https://]HOST[:PORT]"),
        }
    }
}

impl std::error::Error for UpstreamError {}

/// Why a web bridge could not be reached: the causes the reference troubleshoots.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The name does not resolve.
    Dns(io::Error),
    /// No connector had a connection ready for the join URL in time.
    NoConnector,
    /// Nothing answers at the address.
    Refused(SocketAddr, io::Error),
    /// The TLS handshake failed (certificate not trusted, or name mismatch).
    Tls(io::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Dns(e) => write!(f, "DNS failure: {e}"),
            ConnectError::NoConnector => f.write_str(
                "no connector has a connection ready at the edge (is `causeway connect` running \
                 inside, and does it reach the traversal port?)",
            ),
            ConnectError::Refused(a, e) => write!(f, "cannot connect to {a}: {e}"),
            ConnectError::Tls(e) => write!(
                f,
                "TLS failure (is the web bridge's certificate signed by `upstream_ca`?): {e}"
            ),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Dns(e) | ConnectError::Refused(_, e) | ConnectError::Tls(e) => Some(e),
            ConnectError::NoConnector => None,
        }
    }
}

impl Upstream {
    /// Parses `https://host:port`, `http://host:port` or `host:port` (TLS).
    pub fn parse(s: &str) -> Result<Upstream, UpstreamError> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            (true, s)
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| UpstreamError::BadPort(s.into()))?,
            ),
            _ => (rest, if tls { 443 } else { 80 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if port == 0 {
            return Err(UpstreamError::BadPort(s.into()));
        }
        if host.is_empty() {
            return Err(UpstreamError::NoHost(s.into()));
        }
        Ok(Upstream {
            host: host.to_string(),
            port,
            tls,
            tunnels: None,
        })
    }

    /// A join URL served through the traversal: its requests go into the
    /// connections connectors registered in `pool` for it.
    pub fn traversal(pool: Arc<super::traversal::TunnelPool>) -> Upstream {
        Upstream {
            host: String::new(),
            port: 0,
            tls: false,
            tunnels: Some(pool),
        }
    }

    /// Connects (resolving the name each time, so DNS changes are followed) and
    /// completes the TLS handshake within `timeout`.
    pub fn connect(
        &self,
        tls: &Arc<rustls::ClientConfig>,
        timeout: Duration,
    ) -> Result<Link, ConnectError> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(ConnectError::Dns)?
            .collect();
        let mut last = None;
        let mut stream = None;
        for a in &addrs {
            match std::net::TcpStream::connect_timeout(a, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some((*a, e)),
            }
        }
        let stream = match (stream, last) {
            (Some(s), _) => s,
            (None, Some((a, e))) => return Err(ConnectError::Refused(a, e)),
            (None, None) => {
                return Err(ConnectError::Dns(io::Error::new(
                    io::ErrorKind::NotFound,
                    "no address",
                )));
            }
        };
        let _ = stream.set_nodelay(true);
        if !self.tls {
            stream.set_nonblocking(true).map_err(ConnectError::Tls)?;
            return Ok(Link::plain(mio::net::TcpStream::from_std(stream)));
        }
        // The handshake runs blocking, bounded by the timeout.
        stream
            .set_read_timeout(Some(timeout))
            .map_err(ConnectError::Tls)?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(ConnectError::Tls)?;
        let name = ServerName::try_from(self.host.clone())
            .map_err(|e| ConnectError::Tls(io::Error::other(e)))?;
        let mut conn = rustls::ClientConnection::new(tls.clone(), name)
            .map_err(|e| ConnectError::Tls(io::Error::other(e)))?;
        let mut s = stream;
        while conn.is_handshaking() {
            conn.complete_io(&mut s).map_err(ConnectError::Tls)?;
        }
        s.set_read_timeout(None).map_err(ConnectError::Tls)?;
        s.set_write_timeout(None).map_err(ConnectError::Tls)?;
        s.set_nonblocking(true).map_err(ConnectError::Tls)?;
        Ok(Link::new(
            mio::net::TcpStream::from_std(s),
            Some(rustls::Connection::Client(conn)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_upstreams() {
        let u = Upstream::parse("https://bridge.internal:8443").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.tls),
            ("bridge.internal", 8443, true)
        );
        let u = Upstream::parse("http://10.0.0.9").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("10.0.0.9", 80, false));
        let u = Upstream::parse("bridge:443").unwrap();
        assert!(u.tls);
        let u = Upstream::parse("https://[fd00::9]:443").unwrap();
        assert_eq!(u.host, "fd00::9");
        assert!(Upstream::parse("https://:443").is_err());
        assert!(Upstream::parse("https://x:port").is_err());
    }
}
