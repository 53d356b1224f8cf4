//! The CA, loaded from Istio's "plug-in CA" layout (the `cacerts` Secret):
//! `ca-cert.pem` (the signing certificate, a root or an intermediate), `ca-key.pem` (its
//! key), `cert-chain.pem` (ca-cert up to the root) and `root-cert.pem` (the trust bundle;
//! several roots while a root is being rotated).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::Issuer;
use rustls::pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;

use super::issuer::{issuer_for, CaSigner};
use super::spiffe::{SpiffeError, SpiffeId};
use super::workload::{mint, WorkloadCert};
use super::{clock, pem, verify};

pub(crate) const CA_CERT: &str = "ca-cert.pem";
pub(crate) const CA_KEY: &str = "ca-key.pem";
pub(crate) const ROOT_CERT: &str = "root-cert.pem";
pub(crate) const CERT_CHAIN: &str = "cert-chain.pem";

/// Leaves are valid from this long before they are issued (clock skew between nodes).
const BACKDATE_SECS: u64 = 60;

/// Anything wrong with loading, creating or using the CA. Messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("{}: the private key does not match the public key in {}", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("refusing to overwrite {}: it already exists (use --force to replace the CA)", path.display())]
    Exists { path: PathBuf },
    #[error(transparent)]
    TrustDomain(#[from] SpiffeError),
    #[error("cannot create the CA: {0}")]
    Create(String),
    #[error("cannot issue a certificate for {id}: {reason}")]
    Issue { id: String, reason: String },
    #[error("cannot keep the certificate for {id} renewed: no tokio runtime is running")]
    NoRuntime { id: String },
}

impl CaError {
    pub(crate) fn invalid(path: &Path, reason: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// A loaded CA that issues workload certificates.
pub struct Ca {
    dir: PathBuf,
    issuer: Issuer<'static, CaSigner>,
    /// Whether leaves carry an authority key identifier (the CA cert has a subject key id).
    write_aki: bool,
    /// `cert-chain.pem`: ca-cert first, then up to the root.
    chain: Vec<CertificateDer<'static>>,
    /// `root-cert.pem`: every trusted root.
    roots: Vec<CertificateDer<'static>>,
    not_after: SystemTime,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .field("chain_len", &self.chain.len())
            .field("roots", &self.roots.len())
            .field("not_after", &clock::rfc3339(self.not_after))
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads and checks the four plug-in CA files in `dir`.
    pub fn load(dir: &Path) -> Result<Ca, CaError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let root_path = dir.join(ROOT_CERT);
        let chain_path = dir.join(CERT_CHAIN);

        let ca_certs = pem::read_certs(&cert_path)?;
        if ca_certs.len() > 1 {
            tracing::warn!(
                file = %cert_path.display(),
                count = ca_certs.len(),
                "the CA certificate file holds several certificates; using the first"
            );
        }
        let ca_cert = ca_certs
            .into_iter()
            .next()
            .ok_or_else(|| CaError::invalid(&cert_path, "no CERTIFICATE block found"))?;
        let (_, x509) = x509_parser::parse_x509_certificate(&ca_cert)
            .map_err(|e| CaError::invalid(&cert_path, format!("not an X.509 certificate: {e}")))?;
        check_signing_cert(&x509).map_err(|r| CaError::invalid(&cert_path, r))?;
        let not_after = clock::from_asn1(&x509.validity().not_after);
        let now = SystemTime::now();
        if now > not_after {
            return Err(CaError::invalid(
                &cert_path,
                format!(
                    "the CA certificate expired at {}",
                    clock::rfc3339(not_after)
                ),
            ));
        }
        let not_before = clock::from_asn1(&x509.validity().not_before);
        if now < not_before {
            tracing::warn!(
                file = %cert_path.display(),
                not_before = %clock::rfc3339(not_before),
                "the CA certificate is not valid yet (clock skew?)"
            );
        }

        let key = pem::read_key(&key_path)?;
        let signer = CaSigner::new(&key).map_err(|r| CaError::invalid(&key_path, r))?;
        if !signer.matches(x509.public_key()) {
            return Err(CaError::KeyMismatch {
                key: key_path,
                cert: cert_path,
            });
        }

        let roots = pem::read_certs(&root_path)?;
        for (i, root) in roots.iter().enumerate() {
            x509_parser::parse_x509_certificate(root).map_err(|e| {
                CaError::invalid(
                    &root_path,
                    format!("certificate #{} is not an X.509 certificate: {e}", i + 1),
                )
            })?;
        }
        let chain = pem::read_certs(&chain_path)?;
        if chain.first() != Some(&ca_cert) {
            return Err(CaError::invalid(
                &chain_path,
                format!("the chain must begin with the certificate in {CA_CERT}, then run up to the root"),
            ));
        }

        let subject = x509.subject().as_raw().to_vec();
        let (issuer, write_aki) =
            issuer_for(&x509, signer).map_err(|r| CaError::invalid(&cert_path, r))?;
        let ca = Ca {
            dir: dir.to_path_buf(),
            issuer,
            write_aki,
            chain,
            roots,
            not_after,
        };
        ca.self_check(&subject)?;
        tracing::debug!(
            dir = %dir.display(),
            subject = %x509.subject(),
            roots = ca.roots.len(),
            not_after = %clock::rfc3339(not_after),
            "loaded the CA"
        );
        Ok(ca)
    }

    /// Issues a throwaway leaf and checks it names the CA exactly and verifies against
    /// `root-cert.pem` through `cert-chain.pem`, so a broken layout fails at load time
    /// rather than at the first handshake.
    fn self_check(&self, ca_subject: &[u8]) -> Result<(), CaError> {
        let now = clock::unix_secs(SystemTime::now());
        let not_after = (now + BACKDATE_SECS).min(clock::unix_secs(self.not_after));
        let probe = mint(
            &self.issuer,
            self.write_aki,
            None,
            now.saturating_sub(BACKDATE_SECS),
            not_after,
        )
        .map_err(|r| CaError::invalid(&self.dir.join(CA_KEY), r))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&probe.leaf).map_err(|e| {
            CaError::invalid(
                &self.dir.join(CA_CERT),
                format!("issued certificates do not parse: {e}"),
            )
        })?;
        if parsed.issuer().as_raw() != ca_subject {
            return Err(CaError::invalid(
                &self.dir.join(CA_CERT),
                "the subject name could not be reproduced exactly as the issuer of new certificates",
            ));
        }
        verify::verify_chain(&self.roots, &probe.leaf, &self.chain).map_err(|e| {
            CaError::invalid(
                &self.dir.join(CERT_CHAIN),
                format!("certificates issued by this CA do not verify against {ROOT_CERT}: {e}"),
            )
        })
    }

    /// Every certificate in `root-cert.pem`.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// `cert-chain.pem`: the CA certificate, then up to the root.
    #[cfg(test)]
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// When the CA certificate expires (no leaf outlives it).
    #[cfg(test)]
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Issues a certificate for `id`, valid from a minute ago until `lifetime` from now
    /// (or until the CA certificate expires, if that is sooner).
    pub fn issue(&self, id: &SpiffeId, lifetime: Duration) -> Result<WorkloadCert, CaError> {
        let fail = |reason: String| CaError::Issue {
            id: id.to_string(),
            reason,
        };
        if lifetime.is_zero() {
            return Err(fail("the lifetime must be longer than zero".into()));
        }
        let now = clock::unix_secs(SystemTime::now());
        let ca_not_after = clock::unix_secs(self.not_after);
        if now >= ca_not_after {
            return Err(fail(format!(
                "the CA certificate ({}) expired at {}",
                self.dir.join(CA_CERT).display(),
                clock::rfc3339(self.not_after)
            )));
        }
        let lifetime_secs = lifetime.as_secs() + u64::from(lifetime.subsec_nanos() > 0);
        let not_after = now.saturating_add(lifetime_secs).min(ca_not_after);
        if not_after < now.saturating_add(lifetime_secs) {
            tracing::debug!(
                identity = %id,
                not_after = %clock::rfc3339(self.not_after),
                "shortening the certificate to the CA certificate's expiry"
            );
        }
        let minted = mint(
            &self.issuer,
            self.write_aki,
            Some(id),
            now.saturating_sub(BACKDATE_SECS),
            not_after,
        )
        .map_err(fail)?;
        WorkloadCert::assemble(id.clone(), minted, &self.chain).map_err(fail)
    }
}

/// The CA certificate must be allowed to sign certificates.
fn check_signing_cert(cert: &X509Certificate<'_>) -> Result<(), String> {
    let bc = cert
        .basic_constraints()
        .map_err(|e| format!("bad basicConstraints extension: {e}"))?;
    if !bc.is_some_and(|bc| bc.value.ca) {
        return Err("not a CA certificate (basicConstraints CA:TRUE is missing)".into());
    }
    let ku = cert
        .key_usage()
        .map_err(|e| format!("bad keyUsage extension: {e}"))?;
    if ku.is_some_and(|ku| !ku.value.key_cert_sign()) {
        return Err("the keyUsage extension does not allow keyCertSign".into());
    }
    Ok(())
}
