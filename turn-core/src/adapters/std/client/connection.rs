//! The client's connection to its server: a connected UDP socket, or a TCP
//! (or TLS) stream cut into STUN and ChannelData frames.

use crate::adapters::std::prelude::*;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use stun_core::demux::{self, Frame};

use crate::Transport;

/// How to verify a TURN server over TLS.
#[cfg(feature = "tls")]
#[derive(Debug, Clone)]
pub struct TlsTarget {
    /// The TLS configuration, trusting the server's CA (see
    /// `proxy_core::runtime::tls::client_config`).
    pub config: std::sync::Arc<rustls::ClientConfig>,
    /// The name the server's certificate must carry (also sent as SNI).
    pub name: String,
}

/// A byte stream to a TURN server: TCP, or TLS over TCP.
pub(super) enum Stream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    pub(super) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            #[cfg(feature = "tls")]
            Stream::Tls(t) => &t.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.flush(),
        }
    }
}

/// A connection to a TURN server.
pub(super) enum Connection {
    /// UDP, connected to the server.
    /// UDP, connected to the server, with the read timeout last set (set again
    /// only when it changes: a system call saved on most receives).
    Udp(UdpSocket, Option<Duration>),
    /// TCP or TLS, with bytes read but not yet framed.
    Stream(Stream, Vec<u8>),
}

/// Whether an error only says nothing came in time.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Connection {
    pub(super) fn open(
        server: SocketAddr,
        transport: Transport,
        timeout: Duration,
        #[cfg(feature = "tls")] tls: Option<&TlsTarget>,
    ) -> io::Result<Connection> {
        match transport {
            Transport::Udp => {
                let any: SocketAddr = if server.is_ipv4() {
                    (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = UdpSocket::bind(any)?;
                s.connect(server)?;
                Ok(Connection::Udp(s, None))
            }
            Transport::Tcp => {
                let s = TcpStream::connect_timeout(&server, timeout)?;
                s.set_nodelay(true)?;
                Ok(Connection::Stream(Stream::Plain(s), Vec::new()))
            }
            #[cfg(feature = "tls")]
            Transport::Tls => {
                let target = tls.ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "TLS needs a TlsTarget (TurnClient::connect_tls)",
                    )
                })?;
                let mut sock = TcpStream::connect_timeout(&server, timeout)?;
                sock.set_nodelay(true)?;
                sock.set_read_timeout(Some(timeout))?;
                let name = rustls::pki_types::ServerName::try_from(target.name.clone())
                    .map_err(io::Error::other)?;
                let mut conn = rustls::ClientConnection::new(target.config.clone(), name)
                    .map_err(io::Error::other)?;
                while conn.is_handshaking() {
                    conn.complete_io(&mut sock)?;
                }
                let stream = rustls::StreamOwned::new(conn, sock);
                Ok(Connection::Stream(
                    Stream::Tls(Box::new(stream)),
                    Vec::new(),
                ))
            }
            #[cfg(not(feature = "tls"))]
            Transport::Tls => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "TURN over TLS needs turn-core's `tls` feature",
            )),
        }
    }

    /// The stream, and what was read past the last message, for a data
    /// connection.
    pub(super) fn into_stream(self) -> io::Result<(Stream, Vec<u8>)> {
        match self {
            Connection::Stream(s, pending) => {
                s.tcp().set_read_timeout(None)?;
                Ok((s, pending))
            }
            Connection::Udp(..) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a data connection is a TCP or TLS connection",
            )),
        }
    }

    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Connection::Udp(s, _) => s.local_addr(),
            Connection::Stream(s, _) => s.tcp().local_addr(),
        }
    }

    pub(super) fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Connection::Udp(s, _) => match s.send(bytes) {
                Ok(_) => Ok(()),
                // ICMP port unreachable from an earlier send: the next may pass.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
                Err(e) => Err(e),
            },
            Connection::Stream(s, _) => {
                s.write_all(bytes)?;
                s.flush()
            }
        }
    }

    /// One message into `buf` within `timeout`; `Ok(None)` on timeout.
    pub(super) fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        // Whole milliseconds, at least one: repeated timeouts are set once.
        let timeout =
            Duration::from_millis(timeout.as_millis().max(1).min(u128::from(u32::MAX)) as u64);
        match self {
            Connection::Udp(s, set) => {
                if *set != Some(timeout) {
                    s.set_read_timeout(Some(timeout))?;
                    *set = Some(timeout);
                }
                match s.recv(buf) {
                    Ok(n) => Ok(Some(n)),
                    Err(e) if is_timeout(&e) => Ok(None),
                    // ICMP port unreachable from an earlier send.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(None),
                    Err(e) => Err(e),
                }
            }
            Connection::Stream(s, pending) => loop {
                match demux::stream_frame(pending) {
                    Frame::Stun(n) | Frame::ChannelData(n) if pending.len() >= n => {
                        let len = n.min(buf.len());
                        if let (Some(dst), Some(src)) = (buf.get_mut(..len), pending.get(..len)) {
                            dst.copy_from_slice(src);
                        }
                        pending.drain(..n);
                        return Ok(Some(len));
                    }
                    Frame::Invalid => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "stream out of sync",
                        ));
                    }
                    _ => {}
                }
                s.tcp().set_read_timeout(Some(timeout))?;
                let mut chunk = [0u8; 4096];
                match s.read(&mut chunk) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "server closed the connection",
                        ));
                    }
                    Ok(n) => pending.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                    Err(e) if is_timeout(&e) => return Ok(None),
                    Err(e) => return Err(e),
                }
            },
        }
    }
}
