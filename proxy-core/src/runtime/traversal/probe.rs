//! `causeway check --traversal`: each join URL's path walked once from the
//! inside, step by step, so an operator reads which one fails: the edge
//! unreachable, a certificate not trusted either way, the join URL not
//! accepted, the web bridge unreachable or untrusted.

use crate::runtime::prelude::*;
use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;

use rustls::pki_types::ServerName;

use super::connector::{Connector, ConnectorSettings, Failed, client_config};
use super::edge::read_line;
use super::{HANDSHAKE_TIMEOUT, HELLO};
use crate::runtime::tls::TlsError;

/// What `probe` found for one join URL, step by step: each step's outcome
/// (`Ok` with what was seen, `Err` with why), in order, up to the first that
/// failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The join URL.
    pub host: String,
    /// (step, outcome): `edge` (TCP), `trust` (TLS, both certificates),
    /// `registration` (the edge accepts this join URL from this connector),
    /// `web bridge` (TCP and TLS from here).
    pub steps: Vec<(&'static str, Result<String, String>)>,
}

impl Connector {
    /// Walks each join URL's path once, as `causeway check --traversal` does:
    /// the edge reachable, the certificates trusted both ways, the join URL
    /// accepted, the web bridge reachable and trusted. Opens one connection
    /// of each kind and closes it.
    pub fn probe(settings: &ConnectorSettings) -> Result<Vec<Probe>, TlsError> {
        let name = ServerName::try_from(settings.edge_name.clone())
            .map_err(|_| TlsError::BadHostName(settings.edge_name.clone()))?;
        let tls = client_config(settings)?;
        let mut out = Vec::new();
        for (host, upstream) in &settings.sites {
            let host = host.to_ascii_lowercase();
            let mut steps = Vec::new();
            // Every edge address, each on its own steps: one that fails is
            // found even while another serves.
            for target in &settings.edges {
                match open(&tls, &name, &host, target) {
                    Ok(_) => {
                        steps.push(("edge", Ok(format!("{target} answers"))));
                        steps.push(("trust", Ok("both certificates accepted".to_string())));
                        steps.push(("registration", Ok(format!("`{host}` accepted"))));
                    }
                    Err(Failed::Unreachable(e)) => {
                        steps.push(("edge", Err(format!("{target}: {e}"))));
                    }
                    Err(Failed::Tls(e)) => {
                        steps.push(("edge", Ok(format!("{target} answers"))));
                        steps.push(("trust", Err(format!("{target}: {e}"))));
                    }
                    Err(Failed::Refused(r)) => {
                        steps.push(("edge", Ok(format!("{target} answers"))));
                        steps.push(("trust", Ok("both certificates accepted".to_string())));
                        steps.push(("registration", Err(format!("{target}: {r}"))));
                    }
                }
            }
            if steps.iter().all(|(_, r)| r.is_ok()) {
                steps.push((
                    "web bridge",
                    upstream
                        .connect(&settings.upstream_tls, HANDSHAKE_TIMEOUT)
                        .map(|_| format!("{upstream} answers"))
                        .map_err(|e| format!("{upstream}: {e}")),
                ));
            }
            out.push(Probe { host, steps });
        }
        Ok(out)
    }
}

/// TCP, TLS and the registration for `host` at edge address `target`,
/// blocking (the probe's one connection).
fn open(
    tls: &Arc<rustls::ClientConfig>,
    name: &ServerName<'static>,
    host: &str,
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
    let mut conn = rustls::ClientConnection::new(tls.clone(), name.clone())
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
        .write_all(format!("{HELLO} {host}\r\n").as_bytes())
        .map_err(tls_or_io)?;
    stream.flush().map_err(tls_or_io)?;
    let answer = read_line(&mut stream).map_err(tls_or_io)?;
    if answer != "OK" {
        let reason = answer.strip_prefix("NO ").unwrap_or(&answer);
        return Err(Failed::Refused(
            stun_core::escape::Escaped::new(reason).to_string(),
        ));
    }
    Ok((sock, conn))
}
