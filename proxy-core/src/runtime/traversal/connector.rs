//! The inside role: a [`Connector`] keeps `pool` connections registered at the
//! edge for each join URL it serves, dialling out only. Each connection's
//! keeper thread opens it (TCP to one of the edge's addresses in turn, TLS with
//! the connector's certificate, the edge checked by pin or CA, the
//! registration), waits for the edge to use it, hands it to a splice thread
//! that dials the web bridge, and opens the next. Failures back off with
//! jitter ([`backoff`](super::backoff)); a refusal by the edge is logged with
//! its reason.

use crate::runtime::prelude::*;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use log::{info, warn};
use rustls::pki_types::ServerName;

use super::edge::read_line;
use super::trust::{Edge, Fingerprint};
use super::{ALPN, HANDSHAKE_TIMEOUT, HELLO, backoff, keepalive, splice::splice};
use crate::runtime::tls::{TlsError, TlsInput};
use crate::runtime::{Link, Upstream};

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
    /// The last failure to connect or register, and when.
    pub last_error: Option<(String, SystemTime)>,
}

pub(super) struct Site {
    pub(super) host: String,
    pub(super) upstream: Upstream,
    pub(super) ready: AtomicUsize,
    pub(super) active: AtomicUsize,
    pub(super) used: std::sync::atomic::AtomicU64,
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
        });
        let mut sites = Vec::new();
        for (host, upstream) in settings.sites {
            let site = Arc::new(Site::new(&host, upstream));
            for i in 0..settings.pool.max(1) {
                let (sh, si) = (shared.clone(), site.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("connector-{i}"))
                    .stack_size(256 * 1024)
                    .spawn(move || keep(&sh, &si));
                if let Err(e) = spawned {
                    warn!("connector: cannot start a keeper thread: {e}");
                }
            }
            sites.push(site);
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
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        self.stop();
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

/// One keeper: a connection ready at the edge, again and again.
fn keep(shared: &Arc<Shared>, site: &Arc<Site>) {
    let mut attempt = 0u32;
    let mut edge = 0usize;
    while !shared.stop.load(Ordering::SeqCst) {
        let target = shared
            .edges
            .get(edge % shared.edges.len().max(1))
            .cloned()
            .unwrap_or_default();
        match open(shared, site, &target) {
            Ok((sock, conn)) => {
                attempt = 0;
                site.ready.fetch_add(1, Ordering::Relaxed);
                let used = wait(shared, sock, conn);
                site.ready.fetch_sub(1, Ordering::Relaxed);
                if let Some((sock, conn, first)) = used {
                    site.used.fetch_add(1, Ordering::Relaxed);
                    let (sh, si) = (shared.clone(), site.clone());
                    let spawned = std::thread::Builder::new()
                        .name("connector-splice".into())
                        .stack_size(256 * 1024)
                        .spawn(move || carry(&sh, &si, sock, conn, &first));
                    if let Err(e) = spawned {
                        warn!("connector: cannot start a splice thread: {e}");
                    }
                }
            }
            Err(f) => {
                let why = format!("the edge {target}: {f}");
                let mut last = site.last_error.lock().unwrap_or_else(|e| e.into_inner());
                if last.as_ref().is_none_or(|(w, _)| *w != why) {
                    warn!("connector: join URL `{}`: {why}", site.host);
                }
                *last = Some((why, SystemTime::now()));
                drop(last);
                edge += 1;
                std::thread::sleep(backoff(attempt));
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// TCP, TLS and the registration.
pub(super) fn open(
    shared: &Shared,
    site: &Site,
    target: &str,
) -> Result<(TcpStream, rustls::ClientConnection), Failed> {
    let addrs: Vec<_> = target
        .to_socket_addrs()
        .map_err(Failed::Unreachable)?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    let mut sock = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, HANDSHAKE_TIMEOUT) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut sock = sock.ok_or(Failed::Unreachable(last))?;
    let setup = |r: io::Result<()>| r.map_err(Failed::Unreachable);
    setup(sock.set_read_timeout(Some(HANDSHAKE_TIMEOUT)))?;
    setup(sock.set_write_timeout(Some(HANDSHAKE_TIMEOUT)))?;
    setup(sock.set_nodelay(true))?;
    let mut conn = rustls::ClientConnection::new(shared.tls.clone(), shared.name.clone())
        .map_err(|e| Failed::Tls(io::Error::other(e)))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(Failed::Tls)?;
    }
    let mut stream = rustls::Stream::new(&mut conn, &mut sock);
    // The edge checks this connector's certificate after the client's side of
    // the handshake: its refusal arrives as an alert on the first read.
    let tls_or_io = |e: io::Error| match e.kind() {
        io::ErrorKind::InvalidData => Failed::Tls(e),
        _ => Failed::Unreachable(e),
    };
    stream
        .write_all(format!("{HELLO} {}\r\n", site.host).as_bytes())
        .map_err(tls_or_io)?;
    stream.flush().map_err(tls_or_io)?;
    let answer = read_line(&mut stream).map_err(tls_or_io)?;
    if answer != "OK" {
        let reason = answer.strip_prefix("NO ").unwrap_or(&answer);
        return Err(Failed::Refused(
            stun_core::escape::Escaped::new(reason).to_string(),
        ));
    }
    keepalive(&sock);
    Ok((sock, conn))
}

/// Waits for the edge's first bytes (a browser's request); `None` when the
/// connection ends first, or the connector stops. A stopping connector says
/// [`BYE`](super::BYE) first (the edge then takes the connection no more) and
/// still serves a request the edge sent before it heard, for a grace period.
fn wait(
    shared: &Shared,
    mut sock: TcpStream,
    mut conn: rustls::ClientConnection,
) -> Option<(TcpStream, rustls::ClientConnection, Vec<u8>)> {
    sock.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut leaving: Option<std::time::Instant> = None;
    loop {
        if leaving.is_none() && shared.stop.load(Ordering::SeqCst) {
            let mut stream = rustls::Stream::new(&mut conn, &mut sock);
            let bye = format!("{}\r\n", super::BYE);
            if stream.write_all(bye.as_bytes()).is_err() || stream.flush().is_err() {
                return None;
            }
            leaving = Some(std::time::Instant::now());
        }
        if leaving.is_some_and(|at| at.elapsed() >= super::BYE_GRACE) {
            return None;
        }
        let mut stream = rustls::Stream::new(&mut conn, &mut sock);
        match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => {
                // Held for the tunnel's life: only what was read.
                buf.truncate(n);
                buf.shrink_to_fit();
                return Some((sock, conn, buf));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return None,
        }
    }
}

/// Dials the web bridge and splices the tunnel to it.
fn carry(
    shared: &Shared,
    site: &Site,
    sock: TcpStream,
    conn: rustls::ClientConnection,
    first: &[u8],
) {
    site.active.fetch_add(1, Ordering::Relaxed);
    let result = (|| -> io::Result<(u64, u64)> {
        sock.set_read_timeout(None)?;
        sock.set_nonblocking(true)?;
        let edge = Link::new(
            mio::net::TcpStream::from_std(sock),
            Some(rustls::Connection::Client(conn)),
        );
        let bridge = site
            .upstream
            .connect(&shared.upstream_tls, HANDSHAKE_TIMEOUT)
            .map_err(|e| io::Error::other(format!("web bridge {}: {e}", site.upstream)))?;
        splice(edge, bridge, first, &shared.stop)
    })();
    site.active.fetch_sub(1, Ordering::Relaxed);
    match result {
        Ok((up, down)) => info!(
            "connector: join URL `{}`: tunnel ended ({up} bytes to the web bridge, {down} back)",
            site.host
        ),
        Err(e) => warn!("connector: join URL `{}`: {e}", site.host),
    }
}
