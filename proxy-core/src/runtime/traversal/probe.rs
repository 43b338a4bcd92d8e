//! `causeway check --traversal`: each join URL's path walked once from the
//! inside, step by step, so an operator reads which one fails: the edge
//! unreachable, a certificate not trusted either way, the join URL not
//! accepted, the web bridge unreachable or untrusted.

use crate::runtime::prelude::*;
use std::sync::atomic::AtomicBool;

use rustls::pki_types::ServerName;

use super::HANDSHAKE_TIMEOUT;
use super::connector::{Connector, ConnectorSettings, Failed, Shared, Site, client_config, open};
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
        let shared = Shared {
            edges: settings.edges.clone(),
            name: ServerName::try_from(settings.edge_name.clone())
                .map_err(|_| TlsError::BadHostName(settings.edge_name.clone()))?,
            tls: client_config(settings)?,
            upstream_tls: settings.upstream_tls.clone(),
            stop: AtomicBool::new(false),
        };
        let mut out = Vec::new();
        for (host, upstream) in &settings.sites {
            let site = Site::new(host, upstream.clone());
            let target = settings.edges.first().cloned().unwrap_or_default();
            let mut steps = Vec::new();
            match open(&shared, &site, &target) {
                Ok(_) => {
                    steps.push(("edge", Ok(format!("{target} answers"))));
                    steps.push(("trust", Ok("both certificates accepted".to_string())));
                    steps.push(("registration", Ok(format!("`{}` accepted", site.host))));
                    steps.push((
                        "web bridge",
                        upstream
                            .connect(&shared.upstream_tls, HANDSHAKE_TIMEOUT)
                            .map(|_| format!("{upstream} answers"))
                            .map_err(|e| format!("{upstream}: {e}")),
                    ));
                }
                Err(Failed::Unreachable(e)) => steps.push(("edge", Err(format!("{target}: {e}")))),
                Err(Failed::Tls(e)) => {
                    steps.push(("edge", Ok(format!("{target} answers"))));
                    steps.push(("trust", Err(e.to_string())));
                }
                Err(Failed::Refused(r)) => {
                    steps.push(("edge", Ok(format!("{target} answers"))));
                    steps.push(("trust", Ok("both certificates accepted".to_string())));
                    steps.push(("registration", Err(r)));
                }
            }
            out.push(Probe {
                host: site.host,
                steps,
            });
        }
        Ok(out)
    }
}
