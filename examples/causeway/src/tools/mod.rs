//! The client side of `causeway`: `allocate`, `check`, `load` and `select`, all on the
//! blocking TURN client of `turn-core`'s std adapter.

pub(crate) mod allocate;
pub(crate) mod check;
mod check_tcp;
pub(crate) mod echo_loop;
pub(crate) mod key;
pub(crate) mod load;
mod one_way;
pub(crate) mod select;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::SystemTime;

use clap::{Args, ValueEnum};
use turn_core::Transport;
use turn_core::adapters::std::client::{TlsTarget, TurnClient};
use turn_core::client::ClientConfig;

/// Transport to the TURN server.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum TransportArg {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP (give --ca).
    Tls,
}

impl From<TransportArg> for Transport {
    fn from(t: TransportArg) -> Transport {
        match t {
            TransportArg::Udp => Transport::Udp,
            TransportArg::Tcp => Transport::Tcp,
            TransportArg::Tls => Transport::Tls,
        }
    }
}

/// Flags every client subcommand takes.
#[derive(Debug, Args, Clone)]
pub(crate) struct ServerArgs {
    /// The TURN server (required).
    #[arg(long, value_name = "ADDR")]
    pub(crate) server: Option<SocketAddr>,
    /// Credentials: NAME:PASS (with --shared-secret, NAME alone; required).
    #[arg(long, value_name = "NAME:PASS")]
    pub(crate) user: Option<String>,
    /// Use time-limited credentials made from this secret (TURN REST scheme).
    #[arg(long, value_name = "SECRET")]
    pub(crate) shared_secret: Option<String>,
    /// Transport to the server.
    #[arg(long, value_enum, default_value_t = TransportArg::Udp)]
    pub(crate) transport: TransportArg,
    /// With TLS: CA bundle (PEM) the server's certificate is verified against.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Option<std::path::PathBuf>,
    /// With TLS: the name the server's certificate must carry (default: the address).
    #[arg(long, value_name = "NAME")]
    pub(crate) server_name: Option<String>,
    /// The relayed address's family (REQUESTED-ADDRESS-FAMILY).
    #[arg(long, value_enum, default_value_t = FamilyArg::Ipv4)]
    pub(crate) family: FamilyArg,
}

/// A relayed address family.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum FamilyArg {
    /// IPv4 (the default of RFC 8656).
    Ipv4,
    /// IPv6.
    Ipv6,
}

impl ServerArgs {
    /// The server's address.
    pub(crate) fn addr(&self) -> Result<SocketAddr, String> {
        self.server
            .ok_or_else(|| "--server ADDR is needed".to_string())
    }

    fn user(&self) -> Result<&str, String> {
        self.user
            .as_deref()
            .ok_or_else(|| "--user NAME:PASS is needed".to_string())
    }

    /// How to verify the server over TLS, when TLS is asked for.
    pub(crate) fn tls(&self) -> Result<Option<TlsTarget>, String> {
        if self.transport != TransportArg::Tls {
            return Ok(None);
        }
        let ca = self
            .ca
            .as_deref()
            .ok_or("--transport tls needs --ca FILE")?;
        let config =
            proxy_core::runtime::tls::client_config(Some(ca)).map_err(|e| format!("--ca: {e}"))?;
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| self.server.map(|a| a.ip().to_string()).unwrap_or_default());
        Ok(Some(TlsTarget { config, name }))
    }

    /// The client configuration: username and password, derived from the shared
    /// secret when one is given (valid for a day).
    pub(crate) fn client_config(&self) -> Result<ClientConfig, String> {
        let server = self.addr()?;
        let user = self.user()?;
        let mut cfg = match &self.shared_secret {
            Some(secret) => {
                let name = user.split(':').next().unwrap_or_default();
                ClientConfig::time_limited(server, name, secret.as_bytes(), a_day_from_now())
            }
            None => {
                let (u, p) = user
                    .split_once(':')
                    .ok_or_else(|| format!("--user `{user}` is not NAME:PASS"))?;
                ClientConfig::new(server, u, p)
            }
        }
        .map_err(|e| format!("--user: {e}"))?;
        cfg.transport = self.transport.into();
        cfg.family = match self.family {
            FamilyArg::Ipv4 => stun_core::attributes::AddressFamily::Ipv4,
            FamilyArg::Ipv6 => stun_core::attributes::AddressFamily::Ipv6,
        };
        let _ = cfg.software.push_str("causeway");
        Ok(cfg)
    }
}

/// When credentials made from a shared secret expire: a day from now.
pub(crate) fn a_day_from_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 86_400
}

/// Connects a client with `cfg` (over TLS with `tls`), allocating nothing yet.
pub(crate) fn connect(cfg: ClientConfig, tls: Option<&TlsTarget>) -> Result<TurnClient, String> {
    let client = match tls {
        Some(t) => TurnClient::connect_tls(cfg, t.clone()),
        None => TurnClient::connect(cfg),
    };
    client.map_err(|e| e.to_string())
}

/// Starts a UDP echo peer on `ip` (a thread sending every datagram back) and
/// returns its address. On the server's own host (`ip` is the server's loopback
/// address), it takes another loopback address: a TURN server never relays to
/// its own addresses.
pub(crate) fn echo_peer(ip: IpAddr, server: SocketAddr) -> io::Result<SocketAddr> {
    let ip = echo_peer_ip(ip, server);
    let sock = UdpSocket::bind(SocketAddr::new(ip, 0))?;
    let addr = sock.local_addr()?;
    // Room for the bursts of many clients while this thread waits for a core
    // (the kernel caps it at net.core.rmem_max).
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&sock, 4 << 20);
    let _ = rustix::net::sockopt::set_socket_send_buffer_size(&sock, 4 << 20);
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
        }
    });
    Ok(addr)
}

/// Starts `n` UDP echo peers on one address (see [`echo_peer`]), served by
/// one thread, and returns their addresses: peers of their own for clients
/// of a server that tells sessions apart by their peer's address (coturn's
/// `--multiplex-peer`).
pub(crate) fn echo_peers(ip: IpAddr, server: SocketAddr, n: usize) -> io::Result<Vec<SocketAddr>> {
    use mio::net::UdpSocket as MioUdp;
    let ip = echo_peer_ip(ip, server);
    let mut poll = mio::Poll::new()?;
    let mut socks = Vec::with_capacity(n);
    let mut addrs = Vec::with_capacity(n);
    for i in 0..n {
        let sock = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&sock, 1 << 20);
        sock.set_nonblocking(true)?;
        addrs.push(sock.local_addr()?);
        let mut sock = MioUdp::from_std(sock);
        poll.registry()
            .register(&mut sock, mio::Token(i), mio::Interest::READABLE)?;
        socks.push(sock);
    }
    std::thread::spawn(move || {
        let mut events = mio::Events::with_capacity(1024);
        let mut buf = [0u8; 2048];
        while poll.poll(&mut events, None).is_ok() {
            for ev in events.iter() {
                let Some(sock) = socks.get(ev.token().0) else {
                    continue;
                };
                while let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], from);
                }
            }
        }
    });
    Ok(addrs)
}

/// Where an echo peer of this host listens: `ip`, or on the server's own
/// loopback address another loopback address (a TURN server never relays to
/// its own addresses).
pub(crate) fn echo_peer_ip(ip: IpAddr, server: SocketAddr) -> IpAddr {
    match (ip, server.ip()) {
        (IpAddr::V4(a), IpAddr::V4(s)) if a.is_loopback() && a == s => {
            let [x, y, z, w] = a.octets();
            IpAddr::V4(Ipv4Addr::new(x, y, z, if w == 2 { 3 } else { 2 }))
        }
        _ => ip,
    }
}

/// Random bytes from the OS.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], String> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| format!("the OS random source failed: {e}"))?;
    Ok(b)
}
