//! `causeway check`: the troubleshooting walk of the reference deployment, step by
//! step against a TURN server (and a peer): reachability of the TURN port, Binding,
//! Allocate, CreatePermission, ChannelBind, and a packet relayed to the peer and
//! back. Each step prints pass or fail; a failure comes with its likely cause and
//! the fix.

use std::net::SocketAddr;
use std::time::{Duration, Instant as StdInstant};

use clap::Args;
use stun_core::attributes::XorMappedAddress;
use stun_core::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};
use turn_core::Transport;
use turn_core::client::{Client, ClientEvent, Failure};

use super::ServerArgs;
use super::conn::{Conn, drive, echo_peer, now, random};

/// Flags of `causeway check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    /// A UDP echo peer to relay to (for example coturn's turnutils_peer, or a
    /// media endpoint that echoes); without it, `check` runs its own echo peer on
    /// this host.
    #[arg(long, value_name = "ADDR")]
    pub(crate) peer: Option<SocketAddr>,
    /// Seconds to wait for each step.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub(crate) timeout: u64,
}

struct Report {
    failed: bool,
}

impl Report {
    fn pass(&mut self, step: &str, detail: &str) {
        println!("[PASS] {step}: {detail}");
    }

    fn fail(&mut self, step: &str, detail: &str, cause: &str, fix: &str) {
        self.failed = true;
        println!("[FAIL] {step}: {detail}\n       likely cause: {cause}\n       fix: {fix}");
    }
}

/// One Binding request over `conn`; the mapped address, or `None` on timeout.
fn binding(conn: &mut Conn, timeout: Duration) -> std::io::Result<Option<(SocketAddr, Duration)>> {
    let tid = TransactionId::new(random());
    let mut buf = [0u8; 512];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        tid,
    )
    .map_err(std::io::Error::other)?;
    b.add_fingerprint().map_err(std::io::Error::other)?;
    let n = b.finish();
    let req = buf[..n].to_vec();
    let start = StdInstant::now();
    let mut next_send = start;
    let mut rto = Duration::from_millis(250);
    while start.elapsed() < timeout {
        if StdInstant::now() >= next_send {
            conn.send(&req)?;
            next_send = StdInstant::now() + rto;
            rto *= 2;
        }
        let wait = next_send
            .saturating_duration_since(StdInstant::now())
            .min(timeout.saturating_sub(start.elapsed()));
        if let Some(n) = conn.recv(&mut buf, wait)?
            && let Ok(m) = Message::new_checked(&buf[..n])
            && m.transaction_id() == tid
        {
            let mapped = m
                .attribute::<XorMappedAddress>()
                .ok()
                .flatten()
                .map(|a| a.0);
            return Ok(mapped.map(|a| (a, start.elapsed())));
        }
    }
    Ok(None)
}

/// Runs `check`; `Err` when a step failed.
pub(crate) fn run(args: &CheckArgs) -> Result<(), String> {
    let cfg = args.server.client_config()?;
    let server = cfg.server;
    let transport = cfg.transport;
    let timeout = Duration::from_secs(args.timeout.max(1));
    let mut r = Report { failed: false };
    println!(
        "causeway check: TURN server {server} over {}",
        transport.name()
    );

    // 1. Reachability and Binding.
    let conn = Conn::open(server, transport, timeout, args.server.tls()?.as_ref());
    let mut conn = match conn {
        Ok(c) => c,
        Err(e) => {
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
    match binding(&mut conn, timeout) {
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
    let local_ip = conn
        .local_addr()
        .map(|a| a.ip())
        .map_err(|e| e.to_string())?;
    let mut client: Client = Client::new(cfg, random());
    client.allocate(now()).map_err(|e| e.to_string())?;
    let step = |client: &mut Client, conn: &mut Conn, want: fn(&ClientEvent) -> bool| {
        let deadline = StdInstant::now() + timeout.max(Duration::from_secs(40));
        drive(client, conn, deadline, |e| {
            want(e) || matches!(e, ClientEvent::Failed { .. })
        })
        .unwrap_or_default()
        .into_iter()
        .find(|e| want(e) || matches!(e, ClientEvent::Failed { .. }))
    };
    match step(&mut client, &mut conn, |e| {
        matches!(e, ClientEvent::Allocated { .. })
    }) {
        Some(ClientEvent::Allocated {
            relayed, lifetime, ..
        }) => {
            r.pass(
                "allocate",
                &format!("relayed address {relayed}, lifetime {lifetime} s"),
            );
        }
        Some(ClientEvent::Failed { failure, .. }) => {
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
                _ => (
                    failure.diagnosis(),
                    "see the server's log line for this client",
                ),
            };
            r.fail("allocate", &failure.to_string(), cause, fix);
            return Err("check failed".into());
        }
        _ => {
            r.fail(
                "allocate",
                "no answer",
                "the server dropped the request",
                "see the server's log",
            );
            return Err("check failed".into());
        }
    }
    let relayed = client.relayed().unwrap_or(server);

    // 3. Permission and channel to the peer.
    let peer = match args.peer {
        Some(p) => p,
        None => echo_peer(local_ip, server)
            .map_err(|e| format!("cannot start a local echo peer: {e}"))?,
    };
    client
        .create_permission(now(), peer.ip())
        .map_err(|e| e.to_string())?;
    match step(&mut client, &mut conn, |e| {
        matches!(e, ClientEvent::PermissionCreated(_))
    }) {
        Some(ClientEvent::PermissionCreated(_)) => {
            r.pass("permission", &format!("peer {} permitted", peer.ip()))
        }
        Some(ClientEvent::Failed {
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
        other => {
            r.fail(
                "permission",
                &format!("{other:?}"),
                "the server refused the permission",
                "see the server's log",
            );
            return Err("check failed".into());
        }
    }
    let channel = client
        .bind_channel(now(), peer)
        .map_err(|e| e.to_string())?;
    match step(&mut client, &mut conn, |e| {
        matches!(e, ClientEvent::ChannelBound { .. })
    }) {
        Some(ClientEvent::ChannelBound { .. }) => r.pass(
            "channel",
            &format!("channel 0x{channel:04x} bound to {peer}"),
        ),
        other => {
            r.fail(
                "channel",
                &format!("{other:?}"),
                "the server refused the channel binding",
                "see the server's log",
            );
            return Err("check failed".into());
        }
    }

    // 4. A packet to the peer and back through the relay.
    let probe = random::<16>();
    let mut buf = [0u8; 2048];
    let mut echoed = false;
    let start = StdInstant::now();
    let mut next_send = start;
    while start.elapsed() < timeout && !echoed {
        if StdInstant::now() >= next_send {
            let n = client
                .send_to(peer, &probe, &mut buf)
                .map_err(|e| e.to_string())?;
            conn.send(&buf[..n]).map_err(|e| e.to_string())?;
            next_send = StdInstant::now() + Duration::from_millis(500);
        }
        if let Ok(Some(n)) = conn.recv(&mut buf, Duration::from_millis(100))
            && let Some(rx) = client.handle_input(now(), &buf[..n])
        {
            echoed = rx.peer == peer && buf.get(rx.data) == Some(&probe[..]);
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
            "the relay port range is blocked by a firewall (or the peer does not echo): \
             browsers connect but get no media",
            "open the relay port range (UDP, e.g. 24000-29999) between the TURN server and the \
             peers, and check the static NAT of the advertised address",
        );
    }
    let _ = client.deallocate(now());
    let _ = drive(
        &mut client,
        &mut conn,
        StdInstant::now() + Duration::from_secs(2),
        |e| matches!(e, ClientEvent::Refreshed { lifetime: 0 }),
    );
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
    if let Ok(mut c) = Conn::open(alt, Transport::Tcp, timeout, None)
        && let Ok(Some(_)) = binding(&mut c, timeout)
    {
        println!(
            "       note: {alt} answers STUN over TCP: TURN seems to run on TCP 443, and in the \
             reference deployment TCP 3478 is then no longer answered: use port 443 with TCP"
        );
    }
}
