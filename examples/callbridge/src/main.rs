//! The call-bridge role of the reference deployment, as a Rust WebRTC endpoint:
//! it reads a `turnServers` list, and for each browser offer it receives on its
//! small HTTP endpoint it picks the server with the lowest RTT (turn-core's
//! selector), allocates there with turn-core's client (failing over to the next),
//! gives the relayed address to str0m as its only candidate, answers, echoes
//! the browser's data-channel messages and counts its audio packets.
//!
//! ```text
//! callbridge --servers turn-servers.toml --listen 127.0.0.1:8089 [--probe-timeout SECS]
//! ```
//!
//! `--probe-timeout` (default 2 s) is how long each call waits for the servers
//! to answer its probes before it chooses among those that did.
//!
//! ```toml
//! [[turnServers]]
//! serverAddress = "10.0.0.36:3478"
//! clientAddress = "175.12.5.1"
//! username = "cmsturn"
//! password = "..."          # or sharedSecret = "..."
//! type = "expressway"       # standard, cms, expressway: UDP, then TCP when
//!                           # UDP gets no answer; udp or tcp: that alone
//! tcpPortNumberOverride = 3478
//! ```
//!
//! `GET /` is the test page (its TURN server in its own URL), `POST /offer` the
//! signalling, `GET /status` the newest call, `GET /api/v1/turnServers` and
//! `/api/v1/turnServers/<n>/status` each entry's status (probed on demand
//! before the first call). A call's allocation is released when it ends (the
//! browser hangs up, or ICE disconnects).

mod call;
mod http;
mod servers;

use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callbridge: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut file, mut listen) = (None, "127.0.0.1:8089".to_string());
    let mut probe_for = std::time::Duration::from_secs(2);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--servers" => file = args.next(),
            "--listen" => listen = args.next().ok_or("--listen needs ADDR")?,
            "--probe-timeout" => {
                let secs = args.next().ok_or("--probe-timeout needs SECS")?;
                probe_for = secs
                    .parse()
                    .ok()
                    .filter(|s| (1..=60).contains(s))
                    .map(std::time::Duration::from_secs)
                    .ok_or(format!("--probe-timeout {secs}: 1 to 60 seconds"))?;
            }
            _ => {
                return Err(format!(
                    "unknown argument `{a}`: --servers FILE [--listen ADDR] [--probe-timeout SECS]"
                ));
            }
        }
    }
    let file = file.ok_or("--servers FILE is needed")?;
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?;
    let list: servers::TurnServers = toml::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
    list.checked().map_err(|e| format!("{file}: {e}"))?;
    let addr: SocketAddr = listen
        .parse()
        .map_err(|e| format!("--listen {listen}: {e}"))?;
    let listener = TcpListener::bind(addr).map_err(|e| format!("listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    println!("callbridge: listening on http://{bound}/");
    let state = Arc::new(http::State {
        servers: list.turn_servers,
        status: Mutex::new(Vec::new()),
        call: Arc::new(Mutex::new(call::CallStats::default())),
        probe_for,
    });
    http::serve(listener, state);
    Ok(())
}
