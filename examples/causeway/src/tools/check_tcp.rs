//! `causeway check --tcp-relay`: the TCP relay of RFC 6062 step by step: a TCP
//! allocation over TCP (or TLS), a Connect to a TCP echo peer, and bytes there
//! and back over the data connection. Each failure names its likely cause.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::time::Duration;

use turn_core::Transport;
use turn_core::adapters::std::client::{ClientIoError, TlsTarget};
use turn_core::client::{ClientConfig, Failure};

use super::check::Report;
use super::{connect, echo_peer_ip, random};

/// Starts a TCP echo peer on `ip` (a thread per connection) and returns its
/// address.
fn tcp_echo_peer(ip: IpAddr) -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind(SocketAddr::new(ip, 0))?;
    let addr = l.local_addr()?;
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                if let Ok(mut r) = s.try_clone() {
                    let _ = std::io::copy(&mut r, &mut s);
                }
            });
        }
    });
    Ok(addr)
}

/// Runs the TCP relay steps with `cfg` (over TCP if it was UDP).
pub(super) fn run(
    r: &mut Report,
    mut cfg: ClientConfig,
    tls: Option<&TlsTarget>,
    peer: Option<SocketAddr>,
    timeout: Duration,
) -> Result<(), String> {
    if cfg.transport == Transport::Udp {
        cfg.transport = Transport::Tcp;
    }
    cfg.tcp_relay = true;
    let server = cfg.server;
    let over = cfg.transport.name();
    let mut turn = match connect(cfg, tls) {
        Ok(t) => t,
        Err(e) => {
            r.fail(
                "tcp allocate",
                &format!("cannot connect to {server} over {over}: {e}"),
                "the TURN port is closed for TCP",
                "open TCP 3478 (or the TLS port) toward the TURN server",
            );
            return Ok(());
        }
    };
    match turn.allocate(timeout) {
        Ok(a) => r.pass(
            "tcp allocate",
            &format!("TCP relayed address {}", a.relayed),
        ),
        Err(ClientIoError::Failed {
            failure: Failure::Code(442),
            ..
        }) => {
            r.fail(
                "tcp allocate",
                "442 unsupported transport",
                "the server takes no TCP allocations (RFC 6062)",
                "set tcp_allocations = true on a causeway server (coturn: remove no-tcp-relay)",
            );
            return Ok(());
        }
        Err(e) => {
            r.fail(
                "tcp allocate",
                &e.to_string(),
                "the server refused the TCP allocation",
                "see the server's log line for this client",
            );
            return Ok(());
        }
    }
    let local = turn.local_addr().map_err(|e| e.to_string())?;
    let peer = match peer {
        Some(p) => p,
        None => tcp_echo_peer(echo_peer_ip(local.ip(), server))
            .map_err(|e| format!("cannot start a local TCP echo peer: {e}"))?,
    };
    let mut data = match turn.connect_peer(peer, timeout.max(Duration::from_secs(35))) {
        Ok(d) => {
            r.pass(
                "tcp connect",
                &format!("connected to {peer} from the relayed address"),
            );
            d
        }
        Err(ClientIoError::Failed {
            failure: Failure::Code(code),
            ..
        }) => {
            let (cause, fix) = match code {
                403 => (
                    "the peer is forbidden by the server's peer policy",
                    "add the peer's range with --allow-peer (allow_peer) if it must be reached",
                ),
                447 => (
                    "the server could not connect to the peer: nothing listens there, or a \
                     firewall blocks TCP from the relay range toward it",
                    "check the peer, and open TCP from the relay port range toward it",
                ),
                _ => ("the server refused the Connect", "see the server's log"),
            };
            r.fail("tcp connect", &format!("{code} for {peer}"), cause, fix);
            return Ok(());
        }
        Err(e) => {
            r.fail(
                "tcp connect",
                &e.to_string(),
                "no answer to Connect or to ConnectionBind",
                "see the server's log",
            );
            return Ok(());
        }
    };
    let probe = random::<16>()?;
    let _ = data.set_read_timeout(Some(timeout));
    let mut back = [0u8; 16];
    let echoed = data.write_all(&probe).is_ok() && data.read_exact(&mut back).is_ok();
    if echoed && back == probe {
        r.pass(
            "tcp relay",
            &format!("bytes went to {peer} over TCP and came back"),
        );
    } else {
        r.fail(
            "tcp relay",
            &format!("nothing came back from {peer} over the data connection"),
            "the peer does not echo, or the data connection was closed",
            "give --tcp-peer a TCP echo",
        );
    }
    let _ = turn.deallocate(Duration::from_secs(2));
    Ok(())
}
