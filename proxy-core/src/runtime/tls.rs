//! TLS for the edge (rustls with the *ring* provider): the server configuration
//! for port 443 from the operator's certificate chain and key, checked at start to
//! cover every join URL; and the client configuration for web bridges, trusting
//! the operator's CA bundle. Failures are a [`TlsError`] naming the input at
//! fault ([`TlsInput`]), so a program can point at the setting it came from.

use crate::runtime::prelude::*;
use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Which input of a TLS configuration a [`TlsError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsInput {
    /// The server's certificate chain.
    Certificate,
    /// The server's private key.
    Key,
    /// The CA bundle web bridges are verified against.
    CaBundle,
    /// A join URL's host name, checked against the certificate.
    HostName,
}

impl fmt::Display for TlsInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsInput::Certificate => "certificate chain",
            TlsInput::Key => "private key",
            TlsInput::CaBundle => "CA bundle",
            TlsInput::HostName => "join URL",
        })
    }
}

/// Why a TLS configuration cannot be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A file cannot be read, or does not hold PEM of the kind expected.
    Pem {
        /// Which file.
        input: TlsInput,
        /// Its path.
        path: PathBuf,
        /// The cause.
        source: pem::Error,
    },
    /// A file holds no certificate.
    Empty {
        /// Which file.
        input: TlsInput,
        /// Its path.
        path: PathBuf,
    },
    /// A certificate does not parse, or cannot serve as a trust anchor.
    BadCertificate {
        /// Which file.
        input: TlsInput,
        /// The cause.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// A join URL is not a host name.
    BadHostName(String),
    /// The certificate does not cover a join URL.
    NotCovered(String),
    /// rustls refused the configuration: a key that does not match the
    /// certificate or that it does not support, or no protocol version left.
    Rejected {
        /// The input it is about.
        input: TlsInput,
        /// The cause.
        source: rustls::Error,
    },
}

impl TlsError {
    /// The input at fault.
    pub fn input(&self) -> TlsInput {
        match self {
            TlsError::Pem { input, .. }
            | TlsError::Empty { input, .. }
            | TlsError::BadCertificate { input, .. }
            | TlsError::Rejected { input, .. } => *input,
            TlsError::BadHostName(_) | TlsError::NotCovered(_) => TlsInput::HostName,
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Pem {
                input,
                path,
                source,
            } => write!(
                f,
                "cannot read a PEM {input} from {}: {source}",
                path.display()
            ),
            TlsError::Empty { input, path } => {
                write!(f, "the {input} {} holds no certificate", path.display())
            }
            TlsError::BadCertificate { input, source } => {
                write!(f, "a certificate of the {input} is unusable: {source}")
            }
            TlsError::BadHostName(host) => write!(f, "`{host}` is not a host name"),
            TlsError::NotCovered(host) => write!(
                f,
                "the certificate does not cover the join URL `{host}`: add it to the \
                 certificate's subject alternative names"
            ),
            TlsError::Rejected {
                input: TlsInput::Key,
                source,
            } => write!(
                f,
                "the private key does not match the certificate, or is unsupported: {source}"
            ),
            TlsError::Rejected { input, source } => {
                write!(f, "TLS refused the {input}: {source}")
            }
        }
    }
}

impl StdError for TlsError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            TlsError::Pem { source, .. } => Some(source),
            TlsError::BadCertificate { source, .. } => Some(source.as_ref()),
            TlsError::Rejected { source, .. } => Some(source),
            TlsError::Empty { .. } | TlsError::BadHostName(_) | TlsError::NotCovered(_) => None,
        }
    }
}

/// The certificates of a PEM file, at least one.
pub(crate) fn certificates(
    input: TlsInput,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem {
        input,
        path: path.to_path_buf(),
        source,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<_, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            input,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The certificates of a PEM file (a chain, the leaf first), at least one.
pub fn certificates_of(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certificates(TlsInput::Certificate, path)
}

/// A certificate chain and its private key, from PEM files.
pub(crate) fn load_pair(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = certificates(TlsInput::Certificate, cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Pem {
        input: TlsInput::Key,
        path: key.to_path_buf(),
        source,
    })?;
    Ok((chain, key))
}

/// Loads the certificate chain and key, and checks that the leaf covers `hosts`.
pub fn server_config(
    cert: &Path,
    key: &Path,
    hosts: &[&str],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (chain, key) = load_pair(cert, key)?;
    let ee = chain
        .first()
        .map(webpki::EndEntityCert::try_from)
        .transpose()
        .map_err(|e| TlsError::BadCertificate {
            input: TlsInput::Certificate,
            source: Box::new(e),
        })?;
    for host in hosts {
        let name =
            ServerName::try_from(*host).map_err(|_| TlsError::BadHostName(host.to_string()))?;
        if let Some(ee) = &ee
            && ee.verify_is_valid_for_subject_name(&name).is_err()
        {
            return Err(TlsError::NotCovered(host.to_string()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rejected {
            input: TlsInput::Certificate,
            source,
        })?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rejected {
            input: TlsInput::Key,
            source,
        })?;
    Ok(Arc::new(cfg))
}

/// The client configuration for web bridges: trusts the CA bundle `ca` (or, with
/// none, nothing: https web bridges then need one).
pub fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        for c in certificates(TlsInput::CaBundle, ca)? {
            roots.add(c).map_err(|e| TlsError::BadCertificate {
                input: TlsInput::CaBundle,
                source: Box::new(e),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rejected {
            input: TlsInput::CaBundle,
            source,
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_testkit::bridge::{TempDir, TestCa};

    #[test]
    fn each_failure_names_its_input() {
        let dir = TempDir::new("tls-inputs");
        let none = Path::new("/nonexistent/causeway.pem");
        let e = server_config(none, none, &[]).unwrap_err();
        assert_eq!(e.input(), TlsInput::Certificate);
        assert!(e.source().is_some());
        let empty = dir.write("empty.pem", "not pem\n");
        let e = client_config(Some(&empty)).unwrap_err();
        assert!(
            matches!(
                e,
                TlsError::Empty {
                    input: TlsInput::CaBundle,
                    ..
                }
            ),
            "{e}"
        );
        let e = client_config(Some(none)).unwrap_err();
        assert_eq!(e.input(), TlsInput::CaBundle);
    }

    #[test]
    fn a_join_url_outside_the_certificate_or_a_foreign_key_is_refused() {
        let dir = TempDir::new("tls-cover");
        let ca = TestCa::new();
        let leaf = ca.leaf(&["join.example.test"]);
        let cert = dir.write("c.pem", &leaf.cert_pem);
        let key = dir.write("k.pem", &leaf.key_pem);
        assert!(server_config(&cert, &key, &["join.example.test"]).is_ok());
        let e = server_config(&cert, &key, &["other.example.test"]).unwrap_err();
        assert!(
            matches!(&e, TlsError::NotCovered(h) if h == "other.example.test"),
            "{e}"
        );
        assert_eq!(e.input(), TlsInput::HostName);
        let e = server_config(&cert, &key, &["bad host"]).unwrap_err();
        assert!(matches!(e, TlsError::BadHostName(_)), "{e}");
        let wrong = dir.write("k2.pem", &ca.leaf(&["x.test"]).key_pem);
        let e = server_config(&cert, &wrong, &[]).unwrap_err();
        assert_eq!(e.input(), TlsInput::Key, "{e}");
        let ca_file = dir.write("ca.pem", &ca.cert_pem);
        assert!(client_config(Some(&ca_file)).is_ok());
    }
}
