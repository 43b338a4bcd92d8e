//! `causeway select`: what a call bridge does with its `turnServers` list,
//! read from the same file the call-bridge example reads (the CMS API's names;
//! see [`SERVERS_HELP`]). Every entry is probed (STUN Binding, turn-core's
//! selector) over each transport its `type` means; the status of each is
//! printed (RTT or the failure and its likely cause, like the CMS's
//! `turnServers/<id>/status`); the fastest of the preferred transport is
//! allocated on (following a 300 to its alternate), and when that fails, the
//! next one.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use turn_core::Transport;
use turn_core::adapters::std::client::{allocate_best, probe};
use turn_core::client::{Candidate, CandidateState, Failure, Selector, ServerType};

use super::{a_day_from_now, random};

/// Most candidates (an entry is one per transport its type means).
const SERVERS_MAX: usize = 16;

/// The list's format, for `--help`.
pub(crate) const SERVERS_HELP: &str = "\
The TURN servers: a TOML file of [[turnServers]] entries, named as the meeting
server's API names them (the call-bridge example reads the same file):

  [[turnServers]]
  serverAddress = \"10.0.0.36:3478\"   # where this side reaches it
  clientAddress = \"175.12.5.1\"       # what browsers are given (shown only)
  username = \"cmsturn\"
  password = \"...\"                   # or sharedSecret = \"...\" (time-limited)
  type = \"expressway\"                # standard, cms, expressway: UDP, then TCP
                                     # when UDP gets no answer; udp or tcp: only that
  tcpPortNumberOverride = 3478       # the TCP port, if not serverAddress's

Older files of [[server]] entries with snake_case keys (server_address, ...)
are read too.";

/// Flags of `causeway select`.
#[derive(Debug, Args)]
#[command(after_long_help = SERVERS_HELP)]
pub(crate) struct SelectArgs {
    /// The TURN servers: a `[[turnServers]]` file, as the call bridge's (the
    /// format is at the end of `causeway select --help`).
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
    #[serde(rename = "turnServers", alias = "server")]
    servers: Vec<ServerEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ServerEntry {
    #[serde(alias = "server_address")]
    server_address: SocketAddr,
    #[serde(alias = "client_address")]
    client_address: Option<IpAddr>,
    #[serde(rename = "type", default = "standard")]
    kind: String,
    username: String,
    #[serde(default)]
    password: String,
    #[serde(alias = "shared_secret")]
    shared_secret: Option<String>,
    #[serde(alias = "tcp_port_number_override")]
    tcp_port_number_override: Option<u16>,
}

fn standard() -> String {
    "standard".into()
}

/// The entries of `path`, each checked (its type, its credentials' length).
fn load(path: &PathBuf) -> Result<Vec<(ServerEntry, ServerType, Candidate)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let list: ServerList = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if list.servers.is_empty() || list.servers.len() > SERVERS_MAX / 2 {
        return Err(format!(
            "{}: give 1 to {} [[turnServers]] entries",
            path.display(),
            SERVERS_MAX / 2
        ));
    }
    list.servers
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let at = format!("{}: entry {} ({})", path.display(), i + 1, e.server_address);
            let kind = ServerType::parse(&e.kind).map_err(|why| format!("{at}: type: {why}"))?;
            let c = candidate(&e).ok_or(format!("{at}: username, password or secret too long"))?;
            Ok((e, kind, c))
        })
        .collect()
}

/// The entry as a candidate over its first transport.
fn candidate(e: &ServerEntry) -> Option<Candidate> {
    let mut c = Candidate::new(e.server_address, Transport::Udp, &e.username, &e.password)?;
    c.client_address = e
        .client_address
        .map(|ip| SocketAddr::new(ip, e.server_address.port()));
    c.tcp_port_override = e.tcp_port_number_override;
    match &e.shared_secret {
        Some(secret) => c.with_shared_secret(secret.as_bytes()),
        None => Some(c),
    }
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
        Failure::Draining => "error 508, draining".into(),
    }
}

/// Probed entries: the selector's candidates, and the entry of each.
struct Probed {
    selector: Selector<SERVERS_MAX>,
    entry_of: Vec<usize>,
}

impl Probed {
    /// How a candidate is named: its entry's number, target and transport.
    fn name(&self, i: usize) -> String {
        let entry = self.entry_of.get(i).map_or(0, |e| e + 1);
        self.selector.get(i).map_or_else(String::new, |c| {
            let fallback = if c.preference > 0 {
                ", if the first fails"
            } else {
                ""
            };
            format!(
                "server {entry} {} {}{fallback}",
                c.target(),
                c.transport.name()
            )
        })
    }
}

/// Loads `file`, probes every entry over each of its transports and prints
/// their status.
fn probed(file: &PathBuf, timeout_secs: u64) -> Result<Probed, String> {
    let entries = load(file)?;
    let mut p = Probed {
        selector: Selector::<SERVERS_MAX>::new(random()?),
        entry_of: Vec::new(),
    };
    for (i, (_, kind, entry)) in entries.iter().enumerate() {
        for c in kind.candidates(entry) {
            p.selector.add(c).ok_or("too many servers")?;
            p.entry_of.push(i);
        }
    }
    probe(&mut p.selector, Duration::from_secs(timeout_secs.max(1)))
        .map_err(|e| format!("cannot probe: {e}"))?;
    for (i, c) in p.selector.candidates().enumerate() {
        let client = c
            .client_address
            .map(|a| format!(" (clientAddress {})", a.ip()))
            .unwrap_or_default();
        println!("{}{client}: {}", p.name(i), status(c));
    }
    Ok(p)
}

/// `causeway check --servers FILE`: each entry's status, and the one a call
/// bridge would choose; `Err` when none answers.
pub(crate) fn check(file: &PathBuf, timeout_secs: u64) -> Result<(), String> {
    let p = probed(file, timeout_secs)?;
    let (i, best) = p
        .selector
        .best()
        .and_then(|i| p.selector.get(i).map(|c| (i, c)))
        .ok_or("no TURN server of the list answered")?;
    println!("chosen   {} ({})", p.name(i), status(best));
    Ok(())
}

/// Runs `select`.
pub(crate) fn run(args: &SelectArgs) -> Result<(), String> {
    let mut p = probed(&args.servers, args.probe_timeout)?;
    let names: Vec<String> = (0..p.entry_of.len()).map(|i| p.name(i)).collect();
    let name = |i: usize| names.get(i).cloned().unwrap_or_default();
    if let Some(i) = p.selector.best() {
        let best = p.selector.get(i).map(status).unwrap_or_default();
        println!("chosen   {} ({best})", name(i));
    }
    let chosen = allocate_best(
        &mut p.selector,
        a_day_from_now(),
        Duration::from_secs(20),
        |i, err| println!("{} failed: {err}; trying the next", name(i)),
    )
    .ok_or("no TURN server of the list could allocate")?;
    let (mut turn, a) = (chosen.turn, chosen.allocated);
    println!("allocated on {}", name(chosen.candidate));
    if let Some(server) = a.redirected {
        println!("redirected to {server}");
    }
    println!("relayed  {}\nmapped   {}", a.relayed, a.mapped);
    if args.hold > 0 {
        turn.hold(Duration::from_secs(args.hold))
            .map_err(|e| e.to_string())?;
    }
    let _ = turn.deallocate(Duration::from_secs(5));
    Ok(())
}
