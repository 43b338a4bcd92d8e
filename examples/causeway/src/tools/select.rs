//! `causeway select`: what a call bridge does with its `turnServers` list. The
//! list is a TOML file of `[[server]]` entries named as the reference's CMS API
//! names them:
//!
//! ```toml
//! [[server]]
//! server_address = "10.0.0.36:3478"   # serverAddress: where this side reaches it
//! client_address = "175.12.5.1"       # clientAddress: what browsers are given (shown only)
//! type = "udp"                        # udp or tcp
//! username = "cmsturn"
//! password = "..."                    # or shared_secret = "..." (time-limited credentials)
//! tcp_port_number_override = 3478     # tcpPortNumberOverride, for tcp
//! ```
//!
//! Every entry is probed (STUN Binding, turn-core's selector); the status of
//! each is printed (RTT or the failure and its likely cause, like the CMS's
//! `turnServers/<id>/status`); the fastest is allocated on (following a 300 to
//! its alternate); when that fails, the next one is tried.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use turn_core::Transport;
use turn_core::adapters::std::client::{ClientIoError, TurnClient, probe};
use turn_core::client::{Candidate, CandidateState, ClientConfig, Failure, Selector};

use super::{a_day_from_now, random};

/// Most entries in a list.
const SERVERS_MAX: usize = 16;

/// Flags of `causeway select`.
#[derive(Debug, Args)]
pub(crate) struct SelectArgs {
    /// The TURN servers (TOML, `[[server]]` entries; see `causeway select --help`).
    #[arg(long, value_name = "FILE")]
    pub(crate) servers: PathBuf,
    /// How long to wait for the probes' answers.
    #[arg(long, value_name = "SECS", default_value_t = 3)]
    pub(crate) probe_timeout: u64,
    /// Keep the allocation (refreshed) this many seconds before deleting it.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub(crate) hold: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerList {
    server: Vec<ServerEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerEntry {
    server_address: SocketAddr,
    client_address: Option<IpAddr>,
    #[serde(rename = "type", default = "udp")]
    transport: String,
    username: String,
    #[serde(default)]
    password: String,
    shared_secret: Option<String>,
    tcp_port_number_override: Option<u16>,
}

fn udp() -> String {
    "udp".into()
}

fn load(path: &PathBuf) -> Result<Vec<ServerEntry>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let list: ServerList = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if list.server.is_empty() || list.server.len() > SERVERS_MAX {
        return Err(format!(
            "{}: give 1 to {SERVERS_MAX} [[server]] entries",
            path.display()
        ));
    }
    Ok(list.server)
}

fn candidate(e: &ServerEntry) -> Result<Candidate, String> {
    let transport = match e.transport.as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        other => {
            return Err(format!(
                "server {}: type `{other}`: udp or tcp",
                e.server_address
            ));
        }
    };
    let mut c = Candidate::new(e.server_address, transport, &e.username, &e.password)
        .ok_or_else(|| format!("server {}: username or password too long", e.server_address))?;
    c.client_address = e
        .client_address
        .map(|ip| SocketAddr::new(ip, e.server_address.port()));
    c.tcp_port_override = e.tcp_port_number_override;
    Ok(c)
}

fn status(c: &Candidate) -> String {
    match c.state {
        CandidateState::Reachable { rtt_ms } => format!("rtt {rtt_ms} ms"),
        CandidateState::Failed(f) => format!("failed: {} ({})", failure(f), f.diagnosis()),
        CandidateState::Unknown | CandidateState::Probing => "not probed".into(),
    }
}

fn failure(f: Failure) -> String {
    match f {
        Failure::Code(c) => format!("error {c}"),
        Failure::Timeout => "no answer".into(),
        Failure::BadResponseIntegrity => "answer did not verify".into(),
    }
}

/// What an allocation failure counts as for the selector.
fn as_failure(e: &ClientIoError) -> Failure {
    match e {
        ClientIoError::Failed { failure, .. } => *failure,
        _ => Failure::Timeout,
    }
}

/// Loads `file`, probes every entry and prints its status.
fn probed(
    file: &PathBuf,
    timeout_secs: u64,
) -> Result<(Vec<ServerEntry>, Selector<SERVERS_MAX>), String> {
    let entries = load(file)?;
    let mut selector = Selector::<SERVERS_MAX>::new(random()?);
    for e in &entries {
        selector.add(candidate(e)?).ok_or("too many servers")?;
    }
    probe(&mut selector, Duration::from_secs(timeout_secs.max(1)))
        .map_err(|e| format!("cannot probe: {e}"))?;
    for (i, c) in selector.candidates().enumerate() {
        let client = c
            .client_address
            .map(|a| format!(" (clientAddress {})", a.ip()))
            .unwrap_or_default();
        println!(
            "server {} {} {}{client}: {}",
            i + 1,
            c.target(),
            c.transport.name(),
            status(c)
        );
    }
    Ok((entries, selector))
}

/// `causeway check --servers FILE`: each entry's status, and the one a call
/// bridge would choose; `Err` when none answers.
pub(crate) fn check(file: &PathBuf, timeout_secs: u64) -> Result<(), String> {
    let (_, selector) = probed(file, timeout_secs)?;
    let (i, best) = selector
        .best()
        .and_then(|i| selector.get(i).map(|c| (i, c)))
        .ok_or("no TURN server of the list answered")?;
    println!(
        "chosen   server {} {} ({})",
        i + 1,
        best.target(),
        status(best)
    );
    Ok(())
}

/// Runs `select`.
pub(crate) fn run(args: &SelectArgs) -> Result<(), String> {
    let (entries, mut selector) = probed(&args.servers, args.probe_timeout)?;
    while let Some(i) = selector.best() {
        let (c, e) = match (selector.get(i), entries.get(i)) {
            (Some(c), Some(e)) => (c.clone(), e),
            _ => break,
        };
        println!("chosen   server {} {} ({})", i + 1, c.target(), status(&c));
        let mut cfg = match &e.shared_secret {
            Some(secret) => ClientConfig::time_limited(
                c.target(),
                &e.username,
                secret.as_bytes(),
                a_day_from_now(),
            ),
            None => ClientConfig::new(c.target(), &e.username, &e.password),
        }
        .map_err(|e| e.to_string())?;
        cfg.transport = c.transport;
        let _ = cfg.software.push_str("causeway");
        let result = TurnClient::connect(cfg).and_then(|mut turn| {
            let a = turn.allocate(Duration::from_secs(20))?;
            Ok((turn, a))
        });
        match result {
            Ok((mut turn, a)) => {
                if let Some(server) = a.redirected {
                    println!("redirected to {server}");
                }
                println!("relayed  {}\nmapped   {}", a.relayed, a.mapped);
                if args.hold > 0 {
                    turn.hold(Duration::from_secs(args.hold))
                        .map_err(|e| e.to_string())?;
                }
                let _ = turn.deallocate(Duration::from_secs(5));
                return Ok(());
            }
            Err(err) => {
                println!("server {} failed: {err}; trying the next", i + 1);
                selector.mark_failed(i, as_failure(&err));
            }
        }
    }
    Err("no TURN server of the list could allocate".into())
}
