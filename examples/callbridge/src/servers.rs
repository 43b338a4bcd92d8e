//! The `turnServers` list of the reference's meeting server, and choosing from it:
//! each entry probed with turn-core's selector (STUN Binding, RTT), the fastest
//! allocated on (a 300 followed), the next one tried when it fails; the status of
//! each entry kept for `/api/v1/turnServers/<n>/status`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use turn_core::Transport;
use turn_core::adapters::std::client::{TurnClient, allocate_best, probe};
use turn_core::client::{Candidate, CandidateState, Failure, Selector, ServerType};

/// Most entries.
pub(crate) const SERVERS_MAX: usize = 8;

/// One `turnServers` entry, named as the CMS API names it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TurnServer {
    /// `serverAddress`: where the call bridge reaches the server.
    pub(crate) server_address: SocketAddr,
    /// `clientAddress`: the address the meeting server would give browsers
    /// (this example only reports it).
    pub(crate) client_address: Option<IpAddr>,
    /// `username`.
    pub(crate) username: String,
    /// `password` (long-term credentials).
    #[serde(default)]
    pub(crate) password: String,
    /// `sharedSecret`, for time-limited credentials instead.
    pub(crate) shared_secret: Option<String>,
    /// `type`: `standard`, `cms`, `expressway` (UDP, then TCP when UDP gets no
    /// answer), or `udp` or `tcp` alone.
    #[serde(rename = "type", default = "standard")]
    pub(crate) kind: String,
    /// `tcpPortNumberOverride`.
    pub(crate) tcp_port_number_override: Option<u16>,
}

fn standard() -> String {
    "standard".into()
}

/// The list file: `[[turnServers]]` entries.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TurnServers {
    /// The entries.
    pub(crate) turn_servers: Vec<TurnServer>,
}

impl TurnServers {
    /// Every entry's candidates, checked (a `type` this bridge cannot use is
    /// refused here, naming the entry, not at the first call).
    pub(crate) fn checked(&self) -> Result<Vec<(ServerType, Candidate)>, String> {
        if self.turn_servers.is_empty() || self.turn_servers.len() > SERVERS_MAX / 2 {
            return Err(format!("1 to {} [[turnServers]] entries", SERVERS_MAX / 2));
        }
        self.turn_servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let at = format!("entry {} ({})", i + 1, s.server_address);
                let kind =
                    ServerType::parse(&s.kind).map_err(|why| format!("{at}: type: {why}"))?;
                let mut c =
                    Candidate::new(s.server_address, Transport::Udp, &s.username, &s.password)
                        .ok_or(format!("{at}: username or password too long"))?;
                c.client_address = s
                    .client_address
                    .map(|ip| SocketAddr::new(ip, s.server_address.port()));
                c.tcp_port_override = s.tcp_port_number_override;
                if let Some(secret) = &s.shared_secret {
                    c = c
                        .with_shared_secret(secret.as_bytes())
                        .ok_or(format!("{at}: sharedSecret too long"))?;
                }
                Ok((kind, c))
            })
            .collect()
    }
}

/// What `/api/v1/turnServers/<n>/status` says of an entry.
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct ServerStatus {
    /// The entry's `serverAddress`.
    pub(crate) server_address: String,
    /// Its `clientAddress`: what the meeting server would give browsers.
    pub(crate) client_address: Option<String>,
    /// Its `type`.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// Round-trip time of the last probe, in ms (over the transport reached).
    pub(crate) rtt_ms: Option<u64>,
    /// The transport the last probe reached it over.
    pub(crate) transport: Option<String>,
    /// The last failure, with its likely cause.
    pub(crate) last_error: Option<String>,
    /// Whether the last call chose it.
    pub(crate) chosen: bool,
}

fn describe(f: Failure) -> String {
    let what = match f {
        Failure::Code(c) => format!("error {c}"),
        Failure::Timeout => "no answer".into(),
        Failure::BadResponseIntegrity => "answer did not verify".into(),
        Failure::Draining => "error 508, draining".into(),
    };
    format!("{what}: {}", f.diagnosis())
}

/// An allocation made for a call, and on which entry.
pub(crate) struct Allocation {
    /// The client holding it.
    pub(crate) turn: TurnClient,
    /// The relayed address (the call's relay candidate).
    pub(crate) relayed: SocketAddr,
    /// The entry's index in the list.
    pub(crate) server: usize,
}

/// The entries probed: the selector over every entry's candidates, and the
/// entry of each candidate.
struct Probed {
    selector: Selector<SERVERS_MAX>,
    entry_of: Vec<usize>,
}

impl Probed {
    /// Probes every candidate of `entries` (all at once, `probe_for` at most).
    fn new(
        entries: &[(ServerType, Candidate)],
        seed: [u8; 32],
        probe_for: Duration,
    ) -> Result<Probed, String> {
        let mut p = Probed {
            selector: Selector::new(seed),
            entry_of: Vec::new(),
        };
        for (i, (kind, entry)) in entries.iter().enumerate() {
            for c in kind.candidates(entry) {
                p.selector.add(c).ok_or("too many turnServers")?;
                p.entry_of.push(i);
            }
        }
        probe(&mut p.selector, probe_for).map_err(|e| format!("cannot probe: {e}"))?;
        Ok(p)
    }

    /// Every entry's status: reached over its preferred transport that
    /// answered, the last failure of any.
    fn status(&self, list: &[TurnServer], chosen: Option<usize>) -> Vec<ServerStatus> {
        let mut status: Vec<ServerStatus> = list
            .iter()
            .map(|s| ServerStatus {
                server_address: s.server_address.to_string(),
                client_address: s.client_address.map(|a| a.to_string()),
                kind: s.kind.clone(),
                ..Default::default()
            })
            .collect();
        for (c, &e) in self.selector.candidates().zip(&self.entry_of) {
            let Some(st) = status.get_mut(e) else {
                continue;
            };
            if let (CandidateState::Reachable { rtt_ms }, None) = (c.state, st.rtt_ms) {
                st.rtt_ms = Some(rtt_ms);
                st.transport = Some(c.transport.name().into());
            }
            if let Some(f) = c.last_error {
                st.last_error = Some(describe(f));
            }
        }
        if let Some(st) = chosen.and_then(|e| status.get_mut(e)) {
            st.chosen = true;
        }
        status
    }
}

/// Probes the list and reports every entry's status, allocating nothing (what
/// the status endpoint answers before the first call).
pub(crate) fn probe_only(
    list: &[TurnServer],
    seed: [u8; 32],
    probe_for: Duration,
) -> Result<Vec<ServerStatus>, String> {
    let entries = TurnServers {
        turn_servers: list.to_vec(),
    }
    .checked()?;
    Ok(Probed::new(&entries, seed, probe_for)?.status(list, None))
}

/// Probes `list`, allocates on the fastest of the preferred transport that
/// allocates, and returns it with every entry's status.
pub(crate) fn allocate(
    list: &[TurnServer],
    seed: [u8; 32],
    probe_for: Duration,
) -> (Result<Allocation, String>, Vec<ServerStatus>) {
    let entries = match (TurnServers {
        turn_servers: list.to_vec(),
    })
    .checked()
    {
        Ok(e) => e,
        Err(e) => return (Err(e), Vec::new()),
    };
    let mut p = match Probed::new(&entries, seed, probe_for) {
        Ok(p) => p,
        Err(e) => return (Err(e), Vec::new()),
    };
    let expiry = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 86_400;
    let targets: Vec<String> = p
        .selector
        .candidates()
        .map(|c| format!("{} over {}", c.target(), c.transport.name()))
        .collect();
    let chosen = allocate_best(&mut p.selector, expiry, Duration::from_secs(15), |i, e| {
        log::warn!(
            "turnServers: {} failed: {e}; trying the next",
            targets.get(i).map_or("?", String::as_str)
        );
    });
    match chosen {
        Some(c) => {
            let entry = p.entry_of.get(c.candidate).copied().unwrap_or(0);
            log::info!(
                "turnServers: chose {} ({:?} ms), relayed {}",
                targets.get(c.candidate).map_or("?", String::as_str),
                p.selector.get(c.candidate).and_then(Candidate::rtt_ms),
                c.allocated.relayed
            );
            let status = p.status(list, Some(entry));
            (
                Ok(Allocation {
                    turn: c.turn,
                    relayed: c.allocated.relayed,
                    server: entry,
                }),
                status,
            )
        }
        None => (
            Err("no TURN server of the list could allocate".into()),
            p.status(list, None),
        ),
    }
}
