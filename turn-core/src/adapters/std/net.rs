//! Socket setup: SO_REUSEPORT listeners shared by the workers, and the batched
//! receive state of every UDP socket, asking the kernel for no more per
//! datagram than the relay reads.

use crate::adapters::std::prelude::*;

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;

use nix::sys::socket::{setsockopt, sockopt};
use quinn_udp::UdpSocketState;
use socket2::{Domain, Protocol, Socket, Type};

fn socket(addr: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// A non-blocking UDP socket on `addr`, shareable with SO_REUSEPORT.
pub(crate) fn bind_udp(addr: SocketAddr) -> io::Result<mio::net::UdpSocket> {
    let s = socket(addr, Type::DGRAM, Protocol::UDP)?;
    // Room for bursts: a relay's listener takes many small packets at once.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    Ok(mio::net::UdpSocket::from_std(s.into()))
}

/// A non-blocking TCP listener on `addr`, shareable with SO_REUSEPORT.
pub(crate) fn bind_tcp(addr: SocketAddr) -> io::Result<mio::net::TcpListener> {
    let s = socket(addr, Type::STREAM, Protocol::TCP)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(mio::net::TcpListener::from_std(s.into()))
}

/// What a UDP socket's receives report besides the datagram and its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reads {
    /// The address each datagram reached (IP_PKTINFO): a listener, maybe on
    /// a wildcard address, answers from it.
    Destination,
    /// Nothing more: a relay socket is bound to its one relayed address.
    Source,
}

/// The batched receive and send state of `sock` (quinn-udp: recvmmsg with
/// GRO, GSO), with the control messages the relay never reads turned back
/// off: quinn-udp asks for a receive timestamp (SO_TIMESTAMPNS) and the TOS
/// byte (IP_RECVTOS, IPV6_RECVTCLASS) of every datagram, and the destination
/// address, which only `Reads::Destination` keeps. Each costs the kernel a
/// control message per datagram received (and a timestamp enabled anywhere
/// makes it stamp every packet of the machine).
pub(crate) fn batched(sock: &impl AsFd, reads: Reads) -> io::Result<UdpSocketState> {
    let state = UdpSocketState::new(sock.into())?;
    // Best effort: an option the kernel refuses to clear was never set.
    let _ = setsockopt(sock, sockopt::ReceiveTimestampns, &false);
    let _ = setsockopt(sock, sockopt::IpRecvTos, &false);
    let _ = setsockopt(sock, sockopt::Ipv6RecvTClass, &false);
    if reads == Reads::Source {
        let _ = setsockopt(sock, sockopt::Ipv4PacketInfo, &false);
        let _ = setsockopt(sock, sockopt::Ipv6RecvPacketInfo, &false);
    }
    Ok(state)
}

#[cfg(test)]
mod test {
    use super::*;
    use quinn_udp::RecvMeta;
    use std::io::IoSliceMut;
    use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};

    /// What `batched` reports of one datagram sent to a socket on `at`.
    fn received(at: SocketAddr, reads: Reads) -> RecvMeta {
        let sock = UdpSocket::bind(at).unwrap();
        let state = batched(&sock, reads).unwrap();
        let from = UdpSocket::bind(SocketAddr::new(at.ip(), 0)).unwrap();
        // ECT(0): a TOS byte the receiver would report, if it asked.
        if at.is_ipv4() {
            setsockopt(&from, sockopt::Ipv4Tos, &2).unwrap();
        } else {
            setsockopt(&from, sockopt::Ipv6TClass, &2).unwrap();
        }
        from.send_to(b"hello", sock.local_addr().unwrap()).unwrap();
        sock.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 64];
        let mut meta = [RecvMeta::default()];
        let n = state
            .recv((&sock).into(), &mut [IoSliceMut::new(&mut buf)], &mut meta)
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(&buf[..meta[0].len], b"hello");
        assert_eq!(meta[0].addr, from.local_addr().unwrap());
        meta[0]
    }

    #[test]
    fn a_relay_socket_receives_the_datagram_and_its_source_alone() {
        for ip in [Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()] {
            let m = received(SocketAddr::new(ip, 0), Reads::Source);
            assert_eq!(m.timestamp, None, "{ip}: no receive timestamp");
            assert_eq!(m.ecn, None, "{ip}: no TOS byte");
            assert_eq!(m.dst_ip, None, "{ip}: no destination address");
        }
    }

    #[test]
    fn a_listener_keeps_the_destination_address() {
        for ip in [Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()] {
            let m = received(SocketAddr::new(ip, 0), Reads::Destination);
            assert_eq!(m.dst_ip, Some(ip), "{ip}");
            assert_eq!((m.timestamp, m.ecn), (None, None), "{ip}");
        }
    }
}
