//! Who the two ends of a traversal trust: the edge accepts a connector whose
//! certificate's SHA-256 is pinned (a self-signed certificate made once per
//! connector is enough); the connector accepts an
//! edge whose certificate is pinned, or that a CA it trusts signed for the
//! edge's name. The handshake's signatures are checked either way, so a pin
//! names a key the peer must hold, not bytes anyone can replay.

use crate::runtime::prelude::*;
use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use sha2::{Digest, Sha256};

/// The SHA-256 of a certificate (its DER bytes): what a pin names.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of `cert`.
    pub fn of(cert: &CertificateDer<'_>) -> Fingerprint {
        Fingerprint(Sha256::digest(cert.as_ref()).into())
    }

    /// Parses 64 hexadecimal digits, with or without `:` between bytes (as
    /// `openssl x509 -noout -fingerprint -sha256` prints them) and an optional
    /// `sha256:` prefix.
    pub fn parse(s: &str) -> Option<Fingerprint> {
        let s = s.trim();
        let s = s
            .strip_prefix("sha256:")
            .or_else(|| s.strip_prefix("SHA256:"))
            .unwrap_or(s);
        let digits: Vec<u8> = s.bytes().filter(|b| *b != b':').collect();
        if digits.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(digits.chunks(2)) {
            let text = std::str::from_utf8(pair).ok()?;
            *o = u8::from_str_radix(text, 16).ok()?;
        }
        Some(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{self}")
    }
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// The edge's verifier of connectors: a pinned certificate (each connector's
/// entry names the join URLs it may serve).
#[derive(Debug)]
pub(crate) struct Connectors {
    pins: Vec<Fingerprint>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Connectors {
    pub(crate) fn new(pins: Vec<Fingerprint>) -> Self {
        Connectors {
            pins,
            algorithms: algorithms(),
        }
    }
}

impl ClientCertVerifier for Connectors {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if self.pins.contains(&Fingerprint::of(end_entity)) {
            return Ok(ClientCertVerified::assertion());
        }
        Err(Error::General(format!(
            "connector certificate {} is not pinned",
            Fingerprint::of(end_entity)
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The connector's verifier of the edge: a pinned certificate (whatever name
/// it carries), or the usual chain and name check against a CA.
#[derive(Debug)]
pub(crate) struct Edge {
    pin: Option<Fingerprint>,
    ca: Option<Arc<dyn ServerCertVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Edge {
    pub(crate) fn new(pin: Option<Fingerprint>, ca: Option<Arc<dyn ServerCertVerifier>>) -> Self {
        Edge {
            pin,
            ca,
            algorithms: algorithms(),
        }
    }
}

impl ServerCertVerifier for Edge {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if self.pin == Some(Fingerprint::of(end_entity)) {
            return Ok(ServerCertVerified::assertion());
        }
        match &self.ca {
            Some(ca) => {
                ca.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(Error::General(format!(
                "the edge's certificate {} is not the pinned one",
                Fingerprint::of(end_entity)
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_read_as_openssl_prints_them() {
        let f = Fingerprint([0xab; 32]);
        let plain = f.to_string();
        assert_eq!(plain.len(), 64);
        assert_eq!(Fingerprint::parse(&plain), Some(f));
        let colons: Vec<String> = f.0.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(Fingerprint::parse(&colons.join(":")), Some(f));
        assert_eq!(Fingerprint::parse(&format!("sha256:{plain}")), Some(f));
        assert_eq!(Fingerprint::parse(&plain[2..]), None);
        assert_eq!(Fingerprint::parse(&"zz".repeat(32)), None);
    }
}
