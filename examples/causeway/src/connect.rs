//! `causeway connect --config FILE`: the inside end of the traversal (the
//! Expressway-C role). It dials out to the edge's traversal port, proves
//! itself with its certificate (whose SHA-256 the edge pins), recognises the
//! edge by a pin or a CA, keeps `pool` connections ready per join URL, and
//! dials the web bridge inside for each browser the edge hands it. It never
//! listens. `--fingerprint CERT` prints the pin of a certificate.
//!
//! ```toml
//! edge = ["edge.example.com:7443"]
//! edge_name = "edge.example.com"
//! edge_pin = "5f1c...64 hex digits"   # or: edge_ca = "/etc/causeway/edge-ca.pem"
//! cert = "/etc/causeway/connector.pem"
//! key = "/etc/causeway/connector.key"
//! pool = 4
//! proxy = ["join.example.com=https://webbridge.internal:443"]
//! upstream_ca = "/etc/causeway/internal-ca.pem"
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use log::{info, warn};
use proxy_core::runtime::traversal::{Connector, ConnectorSettings, EdgeTrust, Fingerprint};
use proxy_core::runtime::{Upstream, tls};
use serde::Deserialize;

/// Flags of `causeway connect`.
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// The connector's TOML configuration.
    #[arg(long, value_name = "FILE", required_unless_present = "fingerprint")]
    pub(crate) config: Option<PathBuf>,
    /// Print the SHA-256 pin of a certificate (PEM) and exit: the edge's
    /// `traversal.connector.pin` for this connector's, or `edge_pin`.
    #[arg(long, value_name = "CERT")]
    pub(crate) fingerprint: Option<PathBuf>,
}

/// The connector's configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectConfig {
    /// The edge's traversal addresses, `host:port`, tried in turn.
    edge: Vec<String>,
    /// The edge's name (SNI; checked against its certificate with `edge_ca`).
    edge_name: String,
    /// The SHA-256 of the edge's certificate.
    #[serde(default)]
    edge_pin: Option<String>,
    /// Or the CA bundle that signed it.
    #[serde(default)]
    edge_ca: Option<PathBuf>,
    /// This connector's certificate (PEM).
    cert: PathBuf,
    /// Its private key (PEM).
    key: PathBuf,
    /// Connections kept ready per join URL.
    #[serde(default = "default_pool")]
    pool: usize,
    /// `JOIN_HOST=UPSTREAM`, as `causeway serve`'s `proxy`.
    proxy: Vec<String>,
    /// CA bundle web bridges' certificates are verified against.
    #[serde(default)]
    upstream_ca: Option<PathBuf>,
    /// Log level.
    #[serde(default = "default_log_level")]
    log_level: String,
}

fn default_pool() -> usize {
    4
}

fn default_log_level() -> String {
    "info".into()
}

/// What the file asks for, checked; errors name the key.
fn settings(c: ConnectConfig) -> Result<ConnectorSettings, String> {
    let key = |k: &str, why: String| format!("configuration refused: `{k}`: {why}");
    if c.edge.is_empty() {
        return Err(key("edge", "at least one address of the edge".into()));
    }
    let edge_trust = match (&c.edge_pin, &c.edge_ca) {
        (Some(p), None) => EdgeTrust::Pin(Fingerprint::parse(p).ok_or_else(|| {
            key(
                "edge_pin",
                "not a SHA-256 fingerprint (64 hexadecimal digits)".into(),
            )
        })?),
        (None, Some(ca)) => EdgeTrust::Ca(ca.clone()),
        _ => return Err(key("edge_pin", "give edge_pin or edge_ca (one)".into())),
    };
    if c.pool == 0 || c.pool > 256 {
        return Err(key("pool", "1 to 256 connections per join URL".into()));
    }
    let mut sites: Vec<(String, Upstream)> = Vec::new();
    for p in &c.proxy {
        let Some((host, up)) = p.split_once('=') else {
            return Err(key("proxy", format!("`{p}` is not JOIN_HOST=UPSTREAM")));
        };
        let host = host.trim().to_ascii_lowercase();
        if sites.iter().any(|(h, _)| *h == host) {
            return Err(key("proxy", format!("`{host}` is listed twice")));
        }
        let up = Upstream::parse(up.trim()).map_err(|e| key("proxy", e.to_string()))?;
        if up.tls && c.upstream_ca.is_none() {
            return Err(key(
                "upstream_ca",
                format!("web bridge {up} speaks TLS: give the CA bundle that signed it"),
            ));
        }
        sites.push((host, up));
    }
    if sites.is_empty() {
        return Err(key("proxy", "no join URL to serve".into()));
    }
    let upstream_tls = tls::client_config(c.upstream_ca.as_deref())
        .map_err(|e| key("upstream_ca", e.to_string()))?;
    Ok(ConnectorSettings {
        edges: c.edge,
        edge_name: c.edge_name,
        edge_trust,
        cert: c.cert,
        key: c.key,
        sites,
        upstream_tls,
        pool: c.pool,
    })
}

/// The connector's settings and log level from its file.
fn load(path: &std::path::Path) -> Result<(ConnectorSettings, String), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let c: ConnectConfig = toml::from_str(&text).map_err(|e| {
        format!(
            "configuration refused: {}: {}",
            path.display(),
            crate::config::redact(e.message())
        )
    })?;
    let level = c.log_level.clone();
    Ok((settings(c)?, level))
}

/// `causeway check --traversal FILE`: each join URL's path from the inside,
/// step by step; `Err` when a step failed.
pub(crate) fn check(path: &std::path::Path) -> Result<(), String> {
    let (s, _) = load(path)?;
    let probes = Connector::probe(&s).map_err(|e| format!("the connector's TLS: {e}"))?;
    let mut failed = false;
    for p in probes {
        for (step, outcome) in &p.steps {
            match outcome {
                Ok(seen) => println!("[PASS] {} {step}: {seen}", p.host),
                Err(why) => {
                    failed = true;
                    let fix = match *step {
                        "edge" => {
                            "let this host open TCP to the edge's traversal port (`edge`), and \
                             check `causeway serve` there has [traversal] listen"
                        }
                        "trust" => {
                            "compare `edge_pin` with `causeway connect --fingerprint` of the \
                             edge's certificate, and the edge's traversal.connector.pin with \
                             this connector's"
                        }
                        "registration" => {
                            "on the edge, list the join URL in this connector's `join` and \
                             serve it with proxy = [\"JOIN=connector\"]"
                        }
                        _ => {
                            "check `proxy` and `upstream_ca` here: the web bridge is dialled from this host"
                        }
                    };
                    println!("[FAIL] {} {step}: {why}\n       fix: {fix}", p.host);
                }
            }
        }
    }
    if failed {
        Err("the traversal check failed".into())
    } else {
        Ok(())
    }
}

/// Runs `causeway connect`.
pub(crate) fn run(args: &ConnectArgs) -> Result<(), String> {
    if let Some(cert) = &args.fingerprint {
        let certs = proxy_core::runtime::tls::certificates_of(cert).map_err(|e| e.to_string())?;
        let first = certs.first().ok_or("no certificate")?;
        println!("{}", Fingerprint::of(first));
        return Ok(());
    }
    let path = args.config.as_ref().ok_or("--config FILE is needed")?;
    let (s, level) = load(path)?;
    crate::init_logging(&level);
    let hosts: Vec<String> = s.sites.iter().map(|(h, _)| h.clone()).collect();
    let edges = s.edges.join(", ");
    let mut connector =
        Connector::start(s).map_err(|e| format!("the connector's TLS configuration: {e}"))?;
    println!(
        "causeway: connector for {} dialling the edge at {edges}; reload with SIGHUP",
        hosts.join(", ")
    );
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("cannot handle signals: {e}"))?;
    }
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    // Say when a join URL's ready count changes (not each tunnel).
    let mut said: HashMap<String, usize> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        if hup.swap(false, Ordering::SeqCst) {
            connector = reload(path, connector);
        }
        for s in connector.status() {
            let before = said.insert(s.host.clone(), s.ready);
            if before != Some(s.ready) && (s.ready == 0 || before.unwrap_or(0) == 0) {
                info!(
                    "connector: join URL `{}`: {} connection(s) ready at the edge",
                    s.host, s.ready
                );
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    info!("connector: stopping");
    Ok(())
}

/// SIGHUP: the file read again; a new connector with it, and once it holds a
/// connection at the edge for each join URL (or after the handshake's time),
/// the old one retires: it offers nothing more and carries its tunnels in
/// use to their end. A file that fails its checks leaves the old one running.
fn reload(path: &Path, old: Connector) -> Connector {
    let started = load(path).and_then(|(s, _)| {
        Connector::start(s).map_err(|e| format!("the connector's TLS configuration: {e}"))
    });
    let new = match started {
        Ok(c) => c,
        Err(e) => {
            warn!("SIGHUP: configuration not reloaded, the running one is kept: {e}");
            return old;
        }
    };
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until && new.status().iter().any(|s| s.ready == 0) {
        std::thread::sleep(Duration::from_millis(50));
    }
    old.retire();
    info!(
        "SIGHUP: configuration reloaded; the previous connections carry their tunnels to their end"
    );
    new
}
