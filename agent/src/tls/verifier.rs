//! Peer verification for both ends of the tunnel: the chain must lead to a root in the
//! trust bundle (validity period included), and the leaf must carry exactly one SPIFFE ID
//! in our trust domain. Anything else fails the handshake with a reason that is logged.
use std::sync::Arc;

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::WebPkiSupportedAlgorithms,
    pki_types::{CertificateDer, ServerName, UnixTime},
    server::{
        danger::{ClientCertVerified, ClientCertVerifier},
        ParsedCertificate, WebPkiClientVerifier,
    },
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};

use super::TlsError;
use crate::identity::spiffe_id_of;

#[derive(Debug)]
pub struct SpiffeVerifier {
    roots: Arc<RootCertStore>,
    client: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
    algs: WebPkiSupportedAlgorithms,
}

#[derive(thiserror::Error)]
enum IdentityRejected {
    #[error("peer certificate has no usable SPIFFE ID: {0}")]
    NoSpiffeId(String),
    #[error("peer identity {id} is not in trust domain {expected}")]
    ForeignTrustDomain { id: String, expected: String },
}

/// rustls prints this error with `{:?}`: make that the readable message.
impl std::fmt::Debug for IdentityRejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn rejected(e: IdentityRejected) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

impl SpiffeVerifier {
    pub fn new(roots: Arc<RootCertStore>, trust_domain: &str) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algs = provider.signature_verification_algorithms;
        let client = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
            .build()
            .map_err(|e| TlsError::Roots(e.to_string()))?;
        Ok(Self {
            roots,
            client,
            trust_domain: trust_domain.to_string(),
            algs,
        })
    }

    fn check_identity(&self, leaf: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let id = spiffe_id_of(leaf)
            .map_err(|e| rejected(IdentityRejected::NoSpiffeId(e.to_string())))?;
        if id.trust_domain != self.trust_domain {
            return Err(rejected(IdentityRejected::ForeignTrustDomain {
                id: id.to_string(),
                expected: self.trust_domain.clone(),
            }));
        }
        Ok(())
    }
}

impl ClientCertVerifier for SpiffeVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a client presents its one workload certificate regardless.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.client
            .verify_client_cert(end_entity, intermediates, now)?;
        self.check_identity(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

impl ServerCertVerifier for SpiffeVerifier {
    /// The server name is the destination IP; workload certificates carry SPIFFE IDs, not
    /// names, so the identity check replaces name matching.
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        self.check_identity(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
