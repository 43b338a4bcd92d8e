//! The `turnServers` list of the reference's meeting server, and choosing from it:
//! each entry probed with turn-core's selector (STUN Binding, RTT), the fastest
//! allocated on (a 300 followed), the next one tried when it fails; the status of
//! each entry kept for `/api/v1/turnServers/<n>/status`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use turn_core::Transport;
use turn_core::adapters::std::client::{ClientIoError, TurnClient, probe};
use turn_core::client::{Candidate, CandidateState, ClientConfig, Failure, Selector};

/// Most entries.
pub(crate) const SERVERS_MAX: usize = 8;

/// One `turnServers` entry, named as the CMS API names it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TurnServer {
    /// `serverAddress`: where the call bridge reaches the server.
    pub(crate) server_address: SocketAddr,
    /// `clientAddress`: the address browsers are given.
    pub(crate) client_address: Option<IpAddr>,
    /// `username`.
    pub(crate) username: String,
    /// `password` (long-term credentials).
    #[serde(default)]
    pub(crate) password: String,
    /// `sharedSecret`, for time-limited credentials instead.
    pub(crate) shared_secret: Option<String>,
    /// `type`: `udp` or `tcp` (the transport to the server).
    #[serde(rename = "type", default = "udp")]
    pub(crate) transport: String,
    /// `tcpPortNumberOverride`.
    pub(crate) tcp_port_number_override: Option<u16>,
}

fn udp() -> String {
    "udp".into()
}

/// The list file: `[[turnServers]]` entries.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TurnServers {
    /// The entries.
    pub(crate) turn_servers: Vec<TurnServer>,
}

/// What `/api/v1/turnServers/<n>/status` says of an entry.
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct ServerStatus {
    /// The entry's `serverAddress`.
    pub(crate) server_address: String,
    /// Its `clientAddress`: what browsers are given.
    pub(crate) client_address: Option<String>,
    /// Round-trip time of the last probe, in ms.
    pub(crate) rtt_ms: Option<u64>,
    /// The last failure, with its likely cause.
    pub(crate) last_error: Option<String>,
    /// Whether the last call chose it.
    pub(crate) chosen: bool,
}

impl TurnServer {
    fn transport(&self) -> Result<Transport, String> {
        match self.transport.as_str() {
            "udp" => Ok(Transport::Udp),
            "tcp" => Ok(Transport::Tcp),
            t => Err(format!("{}: type `{t}`: udp or tcp", self.server_address)),
        }
    }

    fn candidate(&self) -> Result<Candidate, String> {
        let mut c = Candidate::new(
            self.server_address,
            self.transport()?,
            &self.username,
            &self.password,
        )
        .ok_or_else(|| format!("{}: credentials too long", self.server_address))?;
        c.tcp_port_override = self.tcp_port_number_override;
        Ok(c)
    }

    /// The client configuration for `target`: long-term credentials, or a
    /// time-limited username valid for a day under the shared secret.
    fn client_config(&self, target: SocketAddr) -> Result<ClientConfig, String> {
        let mut cfg = match &self.shared_secret {
            None => ClientConfig::new(target, &self.username, &self.password),
            Some(secret) => {
                let expiry = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    + 86_400;
                ClientConfig::time_limited(target, &self.username, secret.as_bytes(), expiry)
            }
        }
        .map_err(|e| e.to_string())?;
        cfg.transport = self.transport()?;
        Ok(cfg)
    }
}

fn describe(f: Failure) -> String {
    let what = match f {
        Failure::Code(c) => format!("error {c}"),
        Failure::Timeout => "no answer".into(),
        Failure::BadResponseIntegrity => "answer did not verify".into(),
    };
    format!("{what}: {}", f.diagnosis())
}

/// What a client error counts as for the selector.
fn failure_of(e: &ClientIoError) -> Failure {
    match e {
        ClientIoError::Failed { failure, .. } => *failure,
        _ => Failure::Timeout,
    }
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

/// Probes `list`, allocates on the fastest that allocates, and returns it with
/// every entry's status.
pub(crate) fn allocate(
    list: &[TurnServer],
    seed: [u8; 32],
    probe_for: Duration,
) -> (Result<Allocation, String>, Vec<ServerStatus>) {
    let mut status: Vec<ServerStatus> = list
        .iter()
        .map(|s| ServerStatus {
            server_address: s.server_address.to_string(),
            client_address: s.client_address.map(|a| a.to_string()),
            ..Default::default()
        })
        .collect();
    let mut selector = Selector::<SERVERS_MAX>::new(seed);
    for s in list {
        match s.candidate() {
            Ok(c) => {
                if selector.add(c).is_none() {
                    return (Err("too many turnServers".into()), status);
                }
            }
            Err(e) => return (Err(e), status),
        }
    }
    if let Err(e) = probe(&mut selector, probe_for) {
        return (Err(format!("cannot probe: {e}")), status);
    }
    let record = |status: &mut Vec<ServerStatus>, selector: &Selector<SERVERS_MAX>| {
        for (st, c) in status.iter_mut().zip(selector.candidates()) {
            st.rtt_ms = match c.state {
                CandidateState::Reachable { rtt_ms } => Some(rtt_ms),
                _ => None,
            };
            if let Some(f) = c.last_error {
                st.last_error = Some(describe(f));
            }
        }
    };
    record(&mut status, &selector);
    while let Some(i) = selector.best() {
        let (Some(c), Some(entry)) = (selector.get(i), list.get(i)) else {
            break;
        };
        let result = (|| -> Result<(TurnClient, SocketAddr), (String, Failure)> {
            let cfg = entry
                .client_config(c.target())
                .map_err(|e| (e, Failure::Timeout))?;
            let mut turn = TurnClient::connect(cfg).map_err(|e| (e.to_string(), failure_of(&e)))?;
            let a = turn
                .allocate(Duration::from_secs(15))
                .map_err(|e| (e.to_string(), failure_of(&e)))?;
            Ok((turn, a.relayed))
        })();
        match result {
            Ok((turn, relayed)) => {
                if let Some(st) = status.get_mut(i) {
                    st.chosen = true;
                }
                log::info!(
                    "turnServers: chose {} ({:?} ms), relayed {relayed}",
                    c.target(),
                    c.rtt_ms()
                );
                return (
                    Ok(Allocation {
                        turn,
                        relayed,
                        server: i,
                    }),
                    status,
                );
            }
            Err((e, failure)) => {
                log::warn!("turnServers: {} failed: {e}; trying the next", c.target());
                selector.mark_failed(i, failure);
                record(&mut status, &selector);
            }
        }
    }
    (
        Err("no TURN server of the list could allocate".into()),
        status,
    )
}
