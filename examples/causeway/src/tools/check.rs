//! `causeway check`: the troubleshooting walk of the reference deployment, step by
//! step against a TURN server (and a peer): reachability of the TURN port, Binding,
//! Allocate, CreatePermission, ChannelBind, and a packet relayed to the peer and
//! back. Each step prints pass or fail; a failure comes with its likely cause and
//! the fix.

use std::net::SocketAddr;
use std::time::{Duration, Instant as StdInstant};

use clap::Args;
use turn_core::Transport;
use turn_core::adapters::std::client::{ClientIoError, TurnClient};
use turn_core::client::{ClientConfig, Failure};

use super::{ServerArgs, connect, echo_peer, random};

/// Flags of `causeway check`.
#[derive(Debug, Args)]
#[command(after_long_help = super::select::SERVERS_HELP)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    /// Instead of one server: probe every entry of a `[[turnServers]]` file, the
    /// call bridge's (format at the end of `--help`), and print each one's status
    /// (RTT, last error) and the one a call bridge would choose.
    #[arg(long, value_name = "FILE", conflicts_with = "server")]
    pub(crate) servers: Option<std::path::PathBuf>,
    /// A UDP echo peer to relay to (for example coturn's turnutils_peer, or a
    /// media endpoint that echoes); without it, `check` runs its own echo peer on
    /// this host.
    #[arg(long, value_name = "ADDR")]
    pub(crate) peer: Option<SocketAddr>,
    /// Instead of a TURN server: walk the traversal from the inside with a
    /// `causeway connect` configuration (edge reachable, certificates trusted
    /// both ways, join URLs accepted, web bridges reachable).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["server", "servers"])]
    pub(crate) traversal: Option<std::path::PathBuf>,
    /// Also check the TCP relay of RFC 6062 (a TCP allocation, a Connect to a
    /// TCP echo peer, bytes there and back), over TCP when `--transport` is
    /// UDP; without --tcp-peer, against a TCP echo on this host.
    #[arg(long)]
    pub(crate) tcp_relay: bool,
    /// A TCP echo peer for --tcp-relay (implies it).
    #[arg(long, value_name = "ADDR")]
    pub(crate) tcp_peer: Option<SocketAddr>,
    /// Seconds to wait for each step.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub(crate) timeout: u64,
}

/// What the steps found.
pub(super) struct Report {
    failed: bool,
}

impl Report {
    pub(super) fn pass(&mut self, step: &str, detail: &str) {
        println!("[PASS] {step}: {detail}");
    }

    pub(super) fn fail(&mut self, step: &str, detail: &str, cause: &str, fix: &str) {
        self.failed = true;
        println!("[FAIL] {step}: {detail}\n       likely cause: {cause}\n       fix: {fix}");
    }
}

/// Runs `check`; `Err` when a step failed.
pub(crate) fn run(args: &CheckArgs) -> Result<(), String> {
    if let Some(file) = &args.servers {
        return super::select::check(file, args.timeout);
    }
    if let Some(file) = &args.traversal {
        return crate::connect::check(file);
    }
    let server_args = &args.server;
    if server_args.server.is_none() {
        return Err("give --server ADDR --user NAME:PASS, or --servers FILE".into());
    }
    let cfg = server_args.client_config()?;
    let tcp_cfg = cfg.clone();
    let server = cfg.server;
    let transport = cfg.transport;
    let timeout = Duration::from_secs(args.timeout.max(1));
    let mut r = Report { failed: false };
    println!(
        "causeway check: TURN server {server} over {}",
        transport.name()
    );

    // 1. Reachability and Binding.
    let tls = server_args.tls()?;
    let opened = match &tls {
        Some(t) => TurnClient::connect_tls(cfg, t.clone()),
        None => TurnClient::connect(cfg),
    };
    let mut turn = match opened {
        Ok(c) => c,
        Err(e) => {
            let e = match e {
                ClientIoError::Connect { source, .. } => source.to_string(),
                other => other.to_string(),
            };
            r.fail(
                "reach",
                &format!("cannot connect to {server} over {}: {e}", transport.name()),
                "the TURN port is closed or filtered",
                "open the TURN port (UDP and TCP 3478) on the server's firewall, or check the address",
            );
            hint_tcp_443(server, timeout);
            return Err("check failed".into());
        }
    };
    match turn.binding(timeout) {
        Ok(Some((mapped, rtt))) => {
            r.pass(
                "reach",
                &format!(
                    "{server} answers over {} in {} ms",
                    transport.name(),
                    rtt.as_millis()
                ),
            );
            r.pass("binding", &format!("this host is seen as {mapped}"));
        }
        Ok(None) | Err(_) => {
            r.fail(
                "reach",
                &format!(
                    "no answer from {server} over {} in {} s",
                    transport.name(),
                    timeout.as_secs()
                ),
                "the TURN port is unreachable (firewall, wrong address or port)",
                "open UDP and TCP 3478 toward the TURN server, or check its address",
            );
            hint_tcp_443(server, timeout);
            return Err("check failed".into());
        }
    }

    // 2. Allocate.
    let local_ip = turn
        .local_addr()
        .map(|a| a.ip())
        .map_err(|e| e.to_string())?;
    // Long enough for the client's own retransmissions (39.5 s over UDP).
    let step_timeout = timeout.max(Duration::from_secs(40));
    match turn.allocate(step_timeout) {
        Ok(a) => r.pass(
            "allocate",
            &format!("relayed address {}, lifetime {} s", a.relayed, a.lifetime),
        ),
        Err(ClientIoError::Failed { failure, .. }) => {
            let (cause, fix) = match failure {
                Failure::Code(401 | 431) | Failure::BadResponseIntegrity => (
                    "credentials differ between this client and the server (401/431)",
                    "use the same username, password and realm on both sides (or the same shared \
                     secret and synchronised clocks for time-limited credentials)",
                ),
                Failure::Code(486) => (
                    "the user's allocation quota is reached",
                    "raise quota.per_user or free allocations",
                ),
                Failure::Code(508) => (
                    "the server is out of capacity or relay ports",
                    "widen relay_range or raise quota.total",
                ),
                Failure::Draining => (
                    "the server is draining: it takes no new allocations",
                    "use another server; set alternate_server on this one to send clients on",
                ),
                _ => (
                    failure.diagnosis(),
                    "see the server's log line for this client",
                ),
            };
            r.fail("allocate", &failure.to_string(), cause, fix);
            return Err("check failed".into());
        }
        Err(e) => {
            r.fail(
                "allocate",
                &e.to_string(),
                "the server dropped the request",
                "see the server's log",
            );
            return Err("check failed".into());
        }
    }
    let relayed = turn.relayed().unwrap_or(server);

    // 3. Permission and channel to the peer.
    let peer = match args.peer {
        Some(p) => p,
        None => echo_peer(local_ip, server)
            .map_err(|e| format!("cannot start a local echo peer: {e}"))?,
    };
    match turn.create_permission(peer.ip(), step_timeout) {
        Ok(()) => r.pass("permission", &format!("peer {} permitted", peer.ip())),
        Err(ClientIoError::Failed {
            failure: Failure::Code(403),
            ..
        }) => {
            r.fail(
                "permission",
                &format!("403 for peer {}", peer.ip()),
                "the peer address is forbidden by the server's peer policy (private, loopback or \
                 link-local addresses are denied by default)",
                "add the peer's range with --allow-peer (allow_peer) on the server if it must be relayed to",
            );
            return Err("check failed".into());
        }
        Err(e) => {
            r.fail(
                "permission",
                &e.to_string(),
                "the server refused the permission",
                "see the server's log",
            );
            return Err("check failed".into());
        }
    }
    match turn.bind_channel(peer, step_timeout) {
        Ok(channel) => r.pass(
            "channel",
            &format!("channel 0x{channel:04x} bound to {peer}"),
        ),
        Err(e) => {
            r.fail(
                "channel",
                &e.to_string(),
                "the server refused the channel binding",
                "see the server's log",
            );
            return Err("check failed".into());
        }
    }

    // 4. A packet to the peer and back through the relay.
    let probe = random::<16>()?;
    let mut buf = [0u8; 2048];
    let mut echoed = false;
    let start = StdInstant::now();
    let mut next_send = start;
    while start.elapsed() < timeout && !echoed {
        if StdInstant::now() >= next_send {
            turn.send_to(peer, &probe).map_err(|e| e.to_string())?;
            next_send = StdInstant::now() + Duration::from_millis(500);
        }
        if let Ok(Some((n, from))) = turn.recv_from(&mut buf, Duration::from_millis(100)) {
            echoed = from == peer && buf.get(..n) == Some(&probe[..]);
        }
    }
    if echoed {
        r.pass(
            "relay",
            &format!("a packet went to {peer} through {relayed} and came back"),
        );
    } else {
        r.fail(
            "relay",
            &format!(
                "nothing came back from {peer} through relayed address {relayed} in {} s",
                timeout.as_secs()
            ),
            "the relay send to the peer, or its echo back, is blocked by a firewall (or the peer \
             does not echo). A meeting's own media never takes this path when the echo peer is \
             inside (browser and call bridge meet inside the relay), so a DMZ rule that blocks \
             it is no fault; toward internet peers it is: browsers get no media",
            "run the check with --peer an echo on the public side (the way browsers' media \
             comes in); for internet peers, open the relay port range (UDP, e.g. 24000-29999) \
             toward them and check the static NAT of the advertised address",
        );
    }
    let _ = turn.deallocate(Duration::from_secs(2));
    if args.tcp_relay || args.tcp_peer.is_some() {
        super::check_tcp::run(&mut r, tcp_cfg, tls.as_ref(), args.tcp_peer, timeout)?;
    }
    if r.failed {
        Err("check failed".into())
    } else {
        Ok(())
    }
}

/// After a failure to reach the server, looks for TURN on TCP 443 instead.
fn hint_tcp_443(server: SocketAddr, timeout: Duration) {
    if server.port() == 443 {
        return;
    }
    let alt = SocketAddr::new(server.ip(), 443);
    let Ok(mut cfg) = ClientConfig::new(alt, "probe", "probe") else {
        return;
    };
    cfg.transport = Transport::Tcp;
    if let Ok(mut c) = connect(cfg, None)
        && let Ok(Some(_)) = c.binding(timeout)
    {
        println!(
            "       note: {alt} answers STUN over TCP: TURN seems to run on TCP 443, and in the \
             reference deployment TCP 3478 is then no longer answered: use port 443 with TCP"
        );
    }
}
