//! rustls configurations for the HBONE tunnel: TLS 1.3 only, ALPN `h2`, mutual
//! authentication with SPIFFE workload certificates.
//!
//! Both sides verify the peer's chain against the trust bundle (`root-cert.pem`, possibly
//! several roots) and require exactly one SPIFFE ID in the trust domain. The certificate a
//! side presents is read from its [`IdentityCert`] at every handshake, so rotation takes
//! effect for new connections without touching established ones.
#![forbid(unsafe_code)]

mod resolver;
mod verifier;

use std::sync::Arc;

use rustls::{pki_types::CertificateDer, ClientConfig, RootCertStore, ServerConfig};

use crate::identity::{spiffe_id_of, IdentityCert, SpiffeId};

pub use verifier::SpiffeVerifier;

pub const ALPN_H2: &[u8] = b"h2";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("trust bundle: {0}")]
    Roots(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// What every pod's TLS configs share: the trust bundle and the trust domain.
#[derive(Clone)]
pub struct TrustContext {
    verifier: Arc<SpiffeVerifier>,
}

impl TrustContext {
    pub fn new(roots: &[CertificateDer<'static>], trust_domain: &str) -> Result<Self, TlsError> {
        let mut store = RootCertStore::empty();
        for root in roots {
            store
                .add(root.clone())
                .map_err(|e| TlsError::Roots(e.to_string()))?;
        }
        if store.is_empty() {
            return Err(TlsError::Roots("no root certificates".into()));
        }
        let verifier = SpiffeVerifier::new(Arc::new(store), trust_domain)?;
        Ok(Self {
            verifier: Arc::new(verifier),
        })
    }

    /// Server side of a pod's HBONE listener, presenting the pod's identity.
    pub fn server_config(&self, cert: IdentityCert) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(self.verifier.clone())
            .with_cert_resolver(Arc::new(resolver::CurrentCert(cert)));
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }

    /// Client side for connections a pod opens, presenting the pod's identity.
    pub fn client_config(&self, cert: IdentityCert) -> Result<Arc<ClientConfig>, TlsError> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(self.verifier.clone())
            .with_client_cert_resolver(Arc::new(resolver::CurrentCert(cert)));
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The SPIFFE ID of the peer of an established TLS connection (already verified by
/// [`SpiffeVerifier`] during the handshake).
pub fn peer_identity(certs: Option<&[CertificateDer<'static>]>) -> Option<SpiffeId> {
    certs
        .and_then(|c| c.first())
        .and_then(|leaf| spiffe_id_of(leaf).ok())
}
