//! Reading the identity out of a peer's certificate, and checking a chain against roots.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use x509_parser::extensions::GeneralName;

use super::spiffe::{SpiffeError, SpiffeId};

/// Why a certificate does not carry a usable SPIFFE identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertIdError {
    #[error("the certificate does not parse: {0}")]
    BadCertificate(String),
    #[error("the certificate has no URI SAN")]
    NoUriSan,
    #[error("the certificate has {count} URI SANs ({uris}); exactly one is allowed")]
    ManyUriSans { count: usize, uris: String },
    #[error("the certificate's URI SAN is not a SPIFFE ID: {0}")]
    NotSpiffe(#[from] SpiffeError),
}

/// The SPIFFE ID in `cert`: it must have exactly one URI SAN, and that must parse.
pub fn spiffe_id_of(cert: &CertificateDer<'_>) -> Result<SpiffeId, CertIdError> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| CertIdError::BadCertificate(e.to_string()))?;
    let san = x509
        .subject_alternative_name()
        .map_err(|e| CertIdError::BadCertificate(format!("bad subjectAltName: {e}")))?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [] => Err(CertIdError::NoUriSan),
        [uri] => Ok(uri.parse()?),
        many => Err(CertIdError::ManyUriSans {
            count: many.len(),
            uris: many.join(", "),
        }),
    }
}

/// Checks that `leaf` chains to one of `roots` through `intermediates`, as a TLS peer
/// would (webpki, client-auth usage, now).
pub(crate) fn verify_chain(
    roots: &[CertificateDer<'static>],
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'static>],
) -> Result<(), rustls::Error> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider)
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    fn cert_with_sans(sans: Vec<SanType>) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.self_signed(&key).unwrap().der().clone()
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(s.try_into().unwrap())
    }

    #[test]
    fn reads_the_single_uri_san() {
        let cert = cert_with_sans(vec![
            SanType::DnsName("example.com".try_into().unwrap()),
            uri("spiffe://cluster.local/ns/a/sa/b"),
        ]);
        assert_eq!(
            spiffe_id_of(&cert).unwrap(),
            SpiffeId::new("cluster.local", "a", "b")
        );
    }

    #[test]
    fn explains_missing_or_extra_sans() {
        let none = cert_with_sans(vec![]);
        assert_eq!(spiffe_id_of(&none), Err(CertIdError::NoUriSan));
        let dns_only = cert_with_sans(vec![SanType::DnsName("x.test".try_into().unwrap())]);
        assert_eq!(
            spiffe_id_of(&dns_only).unwrap_err().to_string(),
            "the certificate has no URI SAN"
        );
        let two = cert_with_sans(vec![
            uri("spiffe://cluster.local/ns/a/sa/b"),
            uri("spiffe://cluster.local/ns/c/sa/d"),
        ]);
        let err = spiffe_id_of(&two).unwrap_err().to_string();
        assert!(err.contains("has 2 URI SANs"), "{err}");
        let web = cert_with_sans(vec![uri("https://example.com/")]);
        let err = spiffe_id_of(&web).unwrap_err().to_string();
        assert!(err.contains("not a SPIFFE ID"), "{err}");
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(matches!(
            spiffe_id_of(&garbage),
            Err(CertIdError::BadCertificate(_))
        ));
    }
}
