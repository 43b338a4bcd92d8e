//! The edge's traversal port: it accepts connectors' connections, checks
//! their certificates against the pins of the connectors it trusts, reads each
//! one's registration, and keeps the connection in the [`TunnelPool`] for the
//! join URL it names, if that connector may serve it. Each refusal is logged
//! with its reason and told to the connector.

use crate::runtime::prelude::*;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use log::{info, warn};
use stun_core::escape::Escaped;

use super::trust::{Connectors, Fingerprint};
use super::{ALPN, HANDSHAKE_TIMEOUT, HELLO, LINE_MAX, TunnelPool, keepalive};
use crate::runtime::tls::TlsError;

/// Registrations being handled at once; past it a connection is closed (a
/// connector retries after its backoff).
const PENDING_MAX: usize = 256;

/// A connector the edge trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorIdentity {
    /// Its name, in logs and status.
    pub name: String,
    /// The SHA-256 of its certificate.
    pub pin: Fingerprint,
    /// The join URLs (hosts) it may serve.
    pub join: Vec<String>,
}

struct State {
    tls: Arc<rustls::ServerConfig>,
    connectors: Vec<ConnectorIdentity>,
}

/// The edge's traversal listener; stops when dropped (registered connections
/// stay in the pool).
pub struct TraversalListener {
    addr: SocketAddr,
    state: Arc<RwLock<State>>,
    pool: Arc<TunnelPool>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for TraversalListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraversalListener")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The TLS configuration of the traversal port: the edge's certificate, and
/// connectors' certificates required and checked against `pins`.
fn server_config(
    cert: &Path,
    key: &Path,
    pins: Vec<Fingerprint>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (chain, key) = crate::runtime::tls::load_pair(cert, key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Rejected {
            input: crate::runtime::tls::TlsInput::Certificate,
            source,
        })?
        .with_client_cert_verifier(Arc::new(Connectors::new(pins)))
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rejected {
            input: crate::runtime::tls::TlsInput::Key,
            source,
        })?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    // Stateless tickets: connectors resume (the pool refills at half the
    // work), and the edge keeps nothing per ticket. A resumed session still
    // presents the connector's certificate, checked against the pins below.
    cfg.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|source| TlsError::Rejected {
        input: crate::runtime::tls::TlsInput::Key,
        source,
    })?;
    Ok(Arc::new(cfg))
}

impl TraversalListener {
    /// Serves the traversal port on `listener` with the edge's certificate and
    /// key, for `connectors`, keeping their connections in `pool`.
    pub fn start(
        listener: TcpListener,
        cert: &Path,
        key: &Path,
        connectors: Vec<ConnectorIdentity>,
        pool: Arc<TunnelPool>,
    ) -> Result<TraversalListener, TlsError> {
        let tls = server_config(cert, key, connectors.iter().map(|c| c.pin).collect())?;
        pool.set_names(connectors.iter().map(|c| c.name.clone()).collect());
        let addr = listener
            .local_addr()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let state = Arc::new(RwLock::new(State { tls, connectors }));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, p, st) = (state.clone(), pool.clone(), stop.clone());
        let spawned = std::thread::Builder::new()
            .name("traversal-accept".into())
            .spawn(move || accept(listener, s, p, st));
        if let Err(e) = spawned {
            warn!("traversal: cannot start the accept thread: {e}");
        }
        info!("traversal: connectors are taken on {addr}");
        Ok(TraversalListener {
            addr,
            state,
            pool,
            stop,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The pool it fills.
    pub fn pool(&self) -> &Arc<TunnelPool> {
        &self.pool
    }

    /// New certificate, key and connectors (a reload); registered connections
    /// of connectors no longer trusted, or no longer allowed a join URL, are
    /// used no more once they close; new ones are refused.
    pub fn reconfigure(
        &self,
        cert: &Path,
        key: &Path,
        connectors: Vec<ConnectorIdentity>,
    ) -> Result<(), TlsError> {
        let tls = server_config(cert, key, connectors.iter().map(|c| c.pin).collect())?;
        self.pool
            .set_names(connectors.iter().map(|c| c.name.clone()).collect());
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        *s = State { tls, connectors };
        Ok(())
    }
}

impl Drop for TraversalListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblock the accept.
        let _ = TcpStream::connect_timeout(&self.addr, HANDSHAKE_TIMEOUT);
    }
}

fn accept(
    listener: TcpListener,
    state: Arc<RwLock<State>>,
    pool: Arc<TunnelPool>,
    stop: Arc<AtomicBool>,
) {
    let pending = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(sock) = conn else { continue };
        if pending.fetch_add(1, Ordering::SeqCst) >= PENDING_MAX {
            pending.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let (state, pool, pending) = (state.clone(), pool.clone(), pending.clone());
        let spawned = std::thread::Builder::new()
            .name("traversal-register".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let peer = sock.peer_addr().ok();
                if let Err(e) = register(sock, &state, &pool) {
                    match peer {
                        Some(p) => warn!("traversal: connection from {p} refused: {e}"),
                        None => warn!("traversal: connection refused: {e}"),
                    }
                }
                pending.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            warn!("traversal: cannot start a registration thread");
        }
    }
}

/// Handshake, identity, registration; the connection into the pool.
fn register(mut sock: TcpStream, state: &RwLock<State>, pool: &TunnelPool) -> io::Result<()> {
    sock.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    sock.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    sock.set_nodelay(true)?;
    let (tls, connectors) = {
        let s = state.read().unwrap_or_else(|e| e.into_inner());
        (s.tls.clone(), s.connectors.clone())
    };
    let mut conn = rustls::ServerConnection::new(tls).map_err(io::Error::other)?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            // A certificate not pinned fails here (the verifier's error).
            if e.kind() == io::ErrorKind::InvalidData {
                pool.refused(super::UNKNOWN, "", &e.to_string());
            }
            return Err(e);
        }
    }
    let pin = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(Fingerprint::of)
        .ok_or_else(|| io::Error::other("no connector certificate"))?;
    let Some((index, who)) = connectors.iter().enumerate().find(|(_, c)| c.pin == pin) else {
        return Err(io::Error::other(format!("certificate {pin} is not pinned")));
    };
    let mut stream = rustls::Stream::new(&mut conn, &mut sock);
    let line = read_line(&mut stream)?;
    let host = match line.strip_prefix(HELLO).and_then(|r| r.strip_prefix(' ')) {
        Some(h) if !h.is_empty() && !h.contains(' ') => h.to_ascii_lowercase(),
        _ => {
            let _ = stream.write_all(b"NO bad registration\r\n");
            pool.refused(&who.name, "", "bad registration");
            return Err(io::Error::other(format!(
                "connector `{}` sent `{}`, not a registration",
                who.name,
                Escaped::new(&line)
            )));
        }
    };
    if !who.join.iter().any(|j| j.eq_ignore_ascii_case(&host)) {
        let _ = stream.write_all(b"NO join URL not allowed for this connector\r\n");
        // Under no join URL: a connector's names must not grow the status.
        let why = format!("join URL `{}` not allowed", Escaped::new(&host));
        pool.refused(&who.name, "", &why);
        return Err(io::Error::other(format!(
            "connector `{}` may not serve join URL `{}` (its traversal join list)",
            who.name,
            Escaped::new(&host)
        )));
    }
    stream.write_all(b"OK\r\n")?;
    stream.flush()?;
    sock.set_read_timeout(None)?;
    sock.set_write_timeout(None)?;
    sock.set_nonblocking(true)?;
    keepalive(&sock);
    pool.put(&host, index, sock, conn);
    Ok(())
}

/// One line, `\r\n` ended, at most [`LINE_MAX`] bytes.
pub(crate) fn read_line(r: &mut impl Read) -> io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < LINE_MAX {
        if r.read(&mut b)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the end of a line",
            ));
        }
        if b[0] == b'\n' {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return String::from_utf8(line).map_err(|_| io::Error::other("a line is not UTF-8"));
        }
        line.push(b[0]);
    }
    Err(io::Error::other("a line longer than 300 bytes"))
}
