//! The inside role: a [`Connector`] keeps `pool` connections registered at the
//! edge for each join URL it serves, dialling out only, and splices each one
//! the edge hands a browser to a connection it dials to the web bridge.
//!
//! It runs on a few event loops ([`worker`]: one per core, at most four),
//! each holding its share of every join URL's pool and the tunnels in use that
//! came from it; a connection ([`tunnel`]) is opened without blocking (the
//! edge's name looked up off the loop, TCP to each of its addresses in turn,
//! TLS with the connector's certificate, the edge checked by pin or CA, the
//! registration), waits for the edge to use it, then dials the web bridge and
//! is spliced to it. A used connection is replaced at once, and the pool grows
//! with demand. Failures back off with jitter ([`backoff`](super::backoff));
//! a refusal by the edge is logged with its reason.

use crate::runtime::prelude::*;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use log::warn;
use rustls::pki_types::ServerName;

use super::ALPN;
use super::trust::{Edge, Fingerprint};
use crate::runtime::Upstream;
use crate::runtime::dns::Resolver;
use crate::runtime::tls::{TlsError, TlsInput};

mod dialing;
mod tickets;
mod tunnel;
mod worker;

use worker::Worker;

/// How the connector knows the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeTrust {
    /// The SHA-256 of the edge's certificate.
    Pin(Fingerprint),
    /// A CA bundle (PEM) that signed the edge's certificate for its name.
    Ca(PathBuf),
}

/// What a [`Connector`] runs with.
#[derive(Debug, Clone)]
pub struct ConnectorSettings {
    /// The edge's traversal addresses (`host:port`), tried in turn; names are
    /// resolved at each attempt.
    pub edges: Vec<String>,
    /// The edge's name: sent as SNI, and checked with [`EdgeTrust::Ca`].
    pub edge_name: String,
    /// How the edge is recognised.
    pub edge_trust: EdgeTrust,
    /// The connector's certificate chain (PEM), whose SHA-256 the edge pins.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Join URL hosts and the web bridge each is served by.
    pub sites: Vec<(String, Upstream)>,
    /// TLS toward web bridges that speak it (see
    /// [`tls::client_config`](crate::runtime::tls::client_config)).
    pub upstream_tls: Arc<rustls::ClientConfig>,
    /// Connections kept ready at the edge per join URL.
    pub pool: usize,
}

/// Where one join URL stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorStatus {
    /// The join URL.
    pub host: String,
    /// Connections registered and waiting at the edge.
    pub ready: usize,
    /// Connections carrying a browser now.
    pub active: usize,
    /// Connections used so far.
    pub used: u64,
    /// Connections to the edge that resumed a TLS session (no certificate
    /// signatures: about half a full handshake's work).
    pub resumed: u64,
    /// The last failure to connect or register, and when.
    pub last_error: Option<(String, SystemTime)>,
}

pub(super) struct Site {
    pub(super) host: String,
    pub(super) upstream: Upstream,
    pub(super) ready: AtomicUsize,
    pub(super) active: AtomicUsize,
    pub(super) used: std::sync::atomic::AtomicU64,
    pub(super) resumed: std::sync::atomic::AtomicU64,
    pub(super) last_error: Mutex<Option<(String, SystemTime)>>,
}

impl Site {
    pub(super) fn new(host: &str, upstream: Upstream) -> Site {
        Site {
            host: host.to_ascii_lowercase(),
            upstream,
            ready: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            used: Default::default(),
            resumed: Default::default(),
            last_error: Mutex::new(None),
        }
    }
}

pub(super) struct Shared {
    pub(super) edges: Vec<String>,
    pub(super) name: ServerName<'static>,
    pub(super) tls: Arc<rustls::ClientConfig>,
    pub(super) upstream_tls: Arc<rustls::ClientConfig>,
    pub(super) stop: AtomicBool,
    /// Retired: nothing new offered, tunnels in use carried to their end.
    pub(super) retiring: AtomicBool,
    /// Names (the edge's, web bridges') looked up off the loops.
    pub(super) resolver: Resolver,
    /// Each loop's waker (a stop wakes them).
    pub(super) wakers: Mutex<Vec<Arc<mio::Waker>>>,
}

impl Shared {
    /// Edge address number `i` (wrapping).
    pub(super) fn edge(&self, i: usize) -> &str {
        self.edges
            .get(i % self.edges.len().max(1))
            .map_or("", String::as_str)
    }
}

/// The inside end of the traversal; stops its keepers when dropped (tunnels in
/// use end with their browsers).
pub struct Connector {
    shared: Arc<Shared>,
    sites: Vec<Arc<Site>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("status", &self.status())
            .finish()
    }
}

/// The connector's client configuration: its identity and the edge's trust.
pub(super) fn client_config(s: &ConnectorSettings) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let (chain, key) = crate::runtime::tls::load_pair(&s.cert, &s.key)?;
    let (pin, ca) = match &s.edge_trust {
        EdgeTrust::Pin(p) => (Some(*p), None),
        EdgeTrust::Ca(path) => {
            let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> =
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(root_store(path)?),
                    Arc::new(rustls::crypto::ring::default_provider()),
                )
                .build()
                .map_err(|e| TlsError::BadCertificate {
                    input: TlsInput::CaBundle,
                    source: Box::new(e),
                })?;
            (None, Some(verifier))
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Rejected {
            input: TlsInput::Certificate,
            source,
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Edge::new(pin, ca)))
        .with_client_auth_cert(chain, key)
        .map_err(|source| TlsError::Rejected {
            input: TlsInput::Key,
            source,
        })?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.resumption = rustls::client::Resumption::store(Arc::new(tickets::Tickets::default()));
    Ok(Arc::new(cfg))
}

fn root_store(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in crate::runtime::tls::certificates(TlsInput::CaBundle, path)? {
        roots.add(c).map_err(|e| TlsError::BadCertificate {
            input: TlsInput::CaBundle,
            source: Box::new(e),
        })?;
    }
    Ok(roots)
}

impl Connector {
    /// Starts keeping `settings.pool` connections ready at the edge for each
    /// join URL.
    pub fn start(settings: ConnectorSettings) -> Result<Connector, TlsError> {
        let tls = client_config(&settings)?;
        let name = ServerName::try_from(settings.edge_name.clone())
            .map_err(|_| TlsError::BadHostName(settings.edge_name.clone()))?;
        let shared = Arc::new(Shared {
            edges: settings.edges,
            name,
            tls,
            upstream_tls: settings.upstream_tls,
            stop: AtomicBool::new(false),
            retiring: AtomicBool::new(false),
            resolver: Resolver::default(),
            wakers: Mutex::new(Vec::new()),
        });
        let sites: Vec<Arc<Site>> = settings
            .sites
            .into_iter()
            .map(|(host, upstream)| Arc::new(Site::new(&host, upstream)))
            .collect();
        let loops = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let shares = worker::shares(settings.pool.max(1), loops);
        for (i, share) in shares.iter().enumerate() {
            let (sh, si) = (shared.clone(), sites.clone());
            let share = vec![*share; si.len()];
            let spawned = std::thread::Builder::new()
                .name(format!("connector-{i}"))
                .spawn(move || match Worker::new(sh, si, &share) {
                    Ok(w) => w.run(),
                    Err(e) => warn!("connector: cannot start an event loop: {e}"),
                });
            if let Err(e) = spawned {
                warn!("connector: cannot start an event loop thread: {e}");
            }
        }
        Ok(Connector { shared, sites })
    }

    /// Each join URL's connections and last failure.
    pub fn status(&self) -> Vec<ConnectorStatus> {
        self.sites
            .iter()
            .map(|s| ConnectorStatus {
                host: s.host.clone(),
                ready: s.ready.load(Ordering::Relaxed),
                active: s.active.load(Ordering::Relaxed),
                used: s.used.load(Ordering::Relaxed),
                resumed: s.resumed.load(Ordering::Relaxed),
                last_error: s
                    .last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            })
            .collect()
    }
}

impl Connector {
    /// Stops: ready connections say `BYE` to the edge and close (serving what
    /// the edge sent before it heard), tunnels in use end within a second, no
    /// new connection is opened. Dropping the connector does the same.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Retires it (a reload: another connector takes over): ready
    /// connections say `BYE` and close, no new one is opened, and the tunnels
    /// in use are carried until their browsers or web bridges end them; then
    /// its loops end.
    pub fn retire(self) {
        self.shared.retiring.store(true, Ordering::SeqCst);
        self.wake();
    }

    fn wake(&self) {
        let wakers = self.shared.wakers.lock().unwrap_or_else(|e| e.into_inner());
        for w in wakers.iter() {
            let _ = w.wake();
        }
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        if !self.shared.retiring.load(Ordering::SeqCst) {
            self.stop();
        }
    }
}

/// Why a connection did not become ready: the step that failed.
#[derive(Debug)]
pub(super) enum Failed {
    /// No TCP connection to the edge.
    Unreachable(io::Error),
    /// The TLS handshake failed: the edge's certificate is not the one
    /// expected, or the edge refused this connector's.
    Tls(io::Error),
    /// The edge refused the registration (its reason).
    Refused(String),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Unreachable(e) => write!(f, "unreachable: {e}"),
            Failed::Tls(e) => write!(f, "TLS failed: {e}"),
            Failed::Refused(r) => write!(f, "refused: {r}"),
        }
    }
}
