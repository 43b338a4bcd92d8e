//! TLS for the edge (rustls with the *ring* provider): the server configuration
//! for port 443 from the operator's certificate chain and key, checked at start to
//! cover every join URL; and the client configuration for web bridges, trusting
//! the operator's CA bundle.

use crate::runtime::prelude::*;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Loads the certificate chain and key, and checks that the leaf covers `hosts`.
pub fn server_config(
    cert: &Path,
    key: &Path,
    hosts: &[&str],
) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("`cert`: cannot read {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "`cert`: {} is not a PEM certificate chain: {e}",
                cert.display()
            )
        })?;
    let leaf = chain
        .first()
        .ok_or_else(|| format!("`cert`: {} holds no certificate", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "`key`: cannot read a PEM private key from {}: {e}",
            key.display()
        )
    })?;
    let ee = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("`cert`: the certificate does not parse: {e:?}"))?;
    for host in hosts {
        let name = ServerName::try_from(*host)
            .map_err(|_| format!("`proxy`: `{host}` is not a host name"))?;
        ee.verify_is_valid_for_subject_name(&name).map_err(|_| {
            format!(
                "`cert`: the certificate does not cover the join URL `{host}`: add it to the \
                 certificate's subject alternative names"
            )
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("`key`: does not match the certificate, or is unsupported: {e}"))?;
    Ok(Arc::new(cfg))
}

/// The client configuration for web bridges: trusts the CA bundle `ca` (or, with
/// none, nothing: https web bridges then need `upstream_ca`).
pub fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("`upstream_ca`: cannot read {}: {e}", ca.display()))?;
        for c in certs {
            let c = c.map_err(|e| format!("`upstream_ca`: {} is not PEM: {e}", ca.display()))?;
            roots
                .add(c)
                .map_err(|e| format!("`upstream_ca`: unusable certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err(format!(
                "`upstream_ca`: {} holds no certificate",
                ca.display()
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}
