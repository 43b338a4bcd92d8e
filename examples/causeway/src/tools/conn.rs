//! Driving a TURN client over std sockets: a UDP socket or a TCP stream to the
//! server (framed with the STUN/ChannelData stream rules), blocking with timeouts
//! taken from the client's own timers.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant as StdInstant, SystemTime};

use stun_core::demux::{self, Frame};
use turn_core::client::{Client, ClientConfig, ClientEvent};
use turn_core::{Instant, Transport};

/// Wall-clock time as the cores want it.
pub(crate) fn now() -> Instant {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Instant::from_millis(ms)
}

/// A byte stream to a TURN server: TCP, or TLS over TCP.
pub(crate) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}

/// How to verify a TURN server over TLS.
#[derive(Debug, Clone)]
pub(crate) struct TlsTarget {
    /// TLS configuration trusting the server's CA.
    pub(crate) config: std::sync::Arc<rustls::ClientConfig>,
    /// The name its certificate must carry (also sent as SNI).
    pub(crate) name: String,
}

/// A connection to a TURN server.
pub(crate) enum Conn {
    /// UDP, connected to the server.
    Udp(UdpSocket),
    /// TCP or TLS, with bytes read but not yet framed.
    Tcp(Stream, Vec<u8>),
}

impl Conn {
    /// Opens a connection to `server` over `transport` (`tls` is needed for TLS).
    pub(crate) fn open(
        server: SocketAddr,
        transport: Transport,
        timeout: Duration,
        tls: Option<&TlsTarget>,
    ) -> io::Result<Conn> {
        match transport {
            Transport::Udp => {
                let bind: SocketAddr = if server.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                }
                .parse()
                .map_err(io::Error::other)?;
                let s = UdpSocket::bind(bind)?;
                s.connect(server)?;
                Ok(Conn::Udp(s))
            }
            Transport::Tcp => {
                let s = TcpStream::connect_timeout(&server, timeout)?;
                s.set_nodelay(true)?;
                Ok(Conn::Tcp(Stream::Plain(s), Vec::new()))
            }
            Transport::Tls => {
                let target = tls.ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "TLS needs --ca (and --server-name)",
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
                Ok(Conn::Tcp(Stream::Tls(Box::new(stream)), Vec::new()))
            }
        }
    }

    /// The local address.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Conn::Udp(s) => s.local_addr(),
            Conn::Tcp(s, _) => s.tcp().local_addr(),
        }
    }

    /// Sends one message.
    pub(crate) fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Conn::Udp(s) => s.send(bytes).map(|_| ()),
            Conn::Tcp(s, _) => {
                s.write_all(bytes)?;
                s.flush()
            }
        }
    }

    /// Receives one message into `buf` within `timeout`; `Ok(None)` on timeout.
    pub(crate) fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        let timeout = timeout.max(Duration::from_millis(1));
        match self {
            Conn::Udp(s) => {
                s.set_read_timeout(Some(timeout))?;
                match s.recv(buf) {
                    Ok(n) => Ok(Some(n)),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        Ok(None)
                    }
                    // ICMP port unreachable from an earlier send.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(None),
                    Err(e) => Err(e),
                }
            }
            Conn::Tcp(s, pending) => loop {
                if let Frame::Stun(n) | Frame::ChannelData(n) = demux::stream_frame(pending) {
                    if pending.len() >= n {
                        let len = n.min(buf.len());
                        buf[..len].copy_from_slice(&pending[..len]);
                        pending.drain(..n);
                        return Ok(Some(len));
                    }
                } else if demux::stream_frame(pending) == Frame::Invalid {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "stream out of sync",
                    ));
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
                    Ok(n) => pending.extend_from_slice(&chunk[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                }
            },
        }
    }
}

/// Runs `client` over `conn` until `done` says so (given each event) or
/// `deadline` passes. Returns the events seen.
pub(crate) fn drive(
    client: &mut Client,
    conn: &mut Conn,
    deadline: StdInstant,
    mut done: impl FnMut(&ClientEvent) -> bool,
) -> io::Result<Vec<ClientEvent>> {
    let mut buf = [0u8; 2048];
    let mut events = Vec::new();
    loop {
        let t = now();
        while let Some(n) = client.poll_transmit(t, &mut buf) {
            conn.send(&buf[..n])?;
        }
        while let Some(e) = client.poll_event() {
            let stop = done(&e);
            events.push(e);
            if stop {
                return Ok(events);
            }
        }
        let left = deadline.saturating_duration_since(StdInstant::now());
        if left.is_zero() {
            return Ok(events);
        }
        let wait = client.poll_timeout().map_or(left, |at| {
            Duration::from_millis(at.millis_since(now())).min(left)
        });
        match conn.recv(&mut buf, wait)? {
            Some(n) => {
                let _ = client.handle_input(now(), &buf[..n]);
            }
            None => client.handle_timeout(now()),
        }
    }
}

/// Draws random bytes from the OS.
pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if let Err(e) = getrandom::fill(&mut b) {
        panic!("the OS random source failed: {e}");
    }
    b
}

/// Connects to the server of `cfg` (over TLS with `tls`) and allocates. Returns
/// the client, its connection, and the events seen on the way (a redirect, the
/// allocation); an error names what failed.
pub(crate) fn allocate_on(
    cfg: ClientConfig,
    tls: Option<&TlsTarget>,
) -> Result<(Client, Conn, Vec<ClientEvent>), String> {
    let (server, transport) = (cfg.server, cfg.transport);
    let mut conn = Conn::open(server, transport, Duration::from_secs(5), tls)
        .map_err(|e| format!("cannot reach {server} over {}: {e}", transport.name()))?;
    let mut client: Client = Client::new(cfg, random());
    client.allocate(now()).map_err(|e| e.to_string())?;
    let events = drive(
        &mut client,
        &mut conn,
        StdInstant::now() + Duration::from_secs(45),
        |e| {
            matches!(
                e,
                ClientEvent::Allocated { .. } | ClientEvent::Failed { .. }
            )
        },
    )
    .map_err(|e| format!("connection to the server failed: {e}"))?;
    if let Some(ClientEvent::Failed { failure, .. }) = events
        .iter()
        .find(|e| matches!(e, ClientEvent::Failed { .. }))
    {
        return Err(format!("allocation failed: {failure}"));
    }
    if client.relayed().is_none() {
        return Err("allocation failed: no answer".into());
    }
    Ok((client, conn, events))
}

/// Starts a UDP echo peer on `ip` (a thread sending every datagram back) and
/// returns its address. On the server's own host (`ip` is the server's loopback
/// address), it takes another loopback address: a TURN server never relays to
/// its own addresses.
pub(crate) fn echo_peer(ip: std::net::IpAddr, server: SocketAddr) -> io::Result<SocketAddr> {
    let ip = match (ip, server.ip()) {
        (std::net::IpAddr::V4(a), std::net::IpAddr::V4(s)) if a.is_loopback() && a == s => {
            let [x, y, z, w] = a.octets();
            std::net::IpAddr::V4(std::net::Ipv4Addr::new(x, y, z, if w == 2 { 3 } else { 2 }))
        }
        _ => ip,
    };
    let sock = UdpSocket::bind(SocketAddr::new(ip, 0))?;
    let addr = sock.local_addr()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
        }
    });
    Ok(addr)
}
