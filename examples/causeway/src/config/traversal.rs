//! `[traversal]` of `causeway serve`, the edge's side: the port connectors
//! dial out to, and the connectors it trusts (each by the SHA-256 of its
//! certificate) with the join URLs each may serve. A join URL is served by
//! connectors when its `proxy` entry says `JOIN_HOST=connector`.

use std::net::SocketAddr;
use std::path::PathBuf;

use proxy_core::runtime::traversal::{ConnectorIdentity, Fingerprint};
use serde::Deserialize;

use super::{Config, ConfigError, field};

/// The upstream word of a `proxy` entry served by connectors.
pub(crate) const CONNECTOR: &str = "connector";

/// `[traversal]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TraversalConfig {
    /// Where connectors connect (the edge's certificate, `cert`, is shown).
    pub(crate) listen: Option<SocketAddr>,
    /// The connectors trusted.
    pub(crate) connector: Vec<ConnectorConfig>,
}

/// `[[traversal.connector]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectorConfig {
    /// Its name in logs, status and metrics.
    pub(crate) name: String,
    /// The SHA-256 of its certificate (`causeway connect --fingerprint CERT`,
    /// or `openssl x509 -noout -fingerprint -sha256`).
    pub(crate) pin: String,
    /// The join URLs it may serve.
    pub(crate) join: Vec<String>,
}

/// What the edge's traversal port runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TraversalPlan {
    pub(crate) listen: SocketAddr,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) connectors: Vec<ConnectorIdentity>,
}

/// Checks `[traversal]` against the join URLs served by connectors.
pub(super) fn plan(c: &Config, served: &[String]) -> Result<Option<TraversalPlan>, ConfigError> {
    let t = &c.traversal;
    let Some(listen) = t.listen else {
        if let Some(host) = served.first() {
            return Err(field(
                "traversal.listen",
                format!("join URL `{host}` is served by connectors: give the port they dial"),
            ));
        }
        if !t.connector.is_empty() {
            return Err(field(
                "traversal.listen",
                "connectors are listed but no traversal port",
            ));
        }
        return Ok(None);
    };
    let (Some(cert), Some(key)) = (&c.cert, &c.key) else {
        return Err(field(
            "traversal.listen",
            "the traversal port shows the edge's certificate: give cert and key",
        ));
    };
    let mut connectors: Vec<ConnectorIdentity> = Vec::new();
    for k in &t.connector {
        if k.name.is_empty() || connectors.iter().any(|c| c.name == k.name) {
            return Err(field(
                "traversal.connector.name",
                format!("`{}` is empty or listed twice", k.name),
            ));
        }
        let pin = Fingerprint::parse(&k.pin).ok_or_else(|| {
            field(
                "traversal.connector.pin",
                format!(
                    "connector `{}`: not a SHA-256 fingerprint (64 hexadecimal digits; \
                     causeway connect --fingerprint CERT prints it)",
                    k.name
                ),
            )
        })?;
        let mut join = Vec::new();
        for j in &k.join {
            let j = j.trim().to_ascii_lowercase();
            if !served.contains(&j) {
                return Err(field(
                    "traversal.connector.join",
                    format!(
                        "connector `{}`: `{j}` is no join URL served by connectors \
                         (proxy = [\"{j}={CONNECTOR}\"])",
                        k.name
                    ),
                ));
            }
            join.push(j);
        }
        connectors.push(ConnectorIdentity {
            name: k.name.clone(),
            pin,
            join,
        });
    }
    if let Some(host) = served
        .iter()
        .find(|h| !connectors.iter().any(|c| c.join.contains(h)))
    {
        return Err(field(
            "traversal.connector",
            format!("join URL `{host}` is served by connectors, but none may serve it"),
        ));
    }
    Ok(Some(TraversalPlan {
        listen,
        cert: cert.clone(),
        key: key.clone(),
        connectors,
    }))
}
