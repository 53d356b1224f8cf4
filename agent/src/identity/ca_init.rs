//! Creating a fresh self-signed root CA in the plug-in CA layout.

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SerialNumber,
};

use super::ca::{CaError, CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT};
use super::spiffe::validate_trust_domain;
use super::workload::random_serial;
use super::{clock, pem};

/// Writes a new ECDSA P-256 root valid for `days` into `out` (created if missing) as
/// `ca-cert.pem`, `ca-key.pem` (mode 0600), `root-cert.pem` and `cert-chain.pem`.
/// Refuses if any of the four exists, unless `force`.
pub fn init_ca_dir(out: &Path, trust_domain: &str, days: u32, force: bool) -> Result<(), CaError> {
    validate_trust_domain(trust_domain)?;
    if days == 0 {
        return Err(CaError::Create(
            "the validity must be at least one day".into(),
        ));
    }
    if !force {
        for name in [CA_CERT, CA_KEY, ROOT_CERT, CERT_CHAIN] {
            let path = out.join(name);
            // symlink_metadata: a dangling symlink counts as existing too.
            if fs::symlink_metadata(&path).is_ok() {
                return Err(CaError::Exists { path });
            }
        }
    }

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| CaError::Create(format!("cannot generate a key: {e}")))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "podlock");
    name.push(
        DnType::CommonName,
        format!("podlock root CA {trust_domain}"),
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(SerialNumber::from_slice(
        &random_serial().map_err(CaError::Create)?,
    ));
    let now = clock::unix_secs(SystemTime::now());
    let not_after = now.saturating_add(u64::from(days) * 86_400);
    params.not_before = clock::asn1_time(now.saturating_sub(60))
        .map_err(CaError::Create)?
        .to_datetime();
    params.not_after = clock::asn1_time(not_after)
        .map_err(CaError::Create)?
        .to_datetime();
    let cert = params
        .self_signed(&key)
        .map_err(|e| CaError::Create(format!("cannot sign the root certificate: {e}")))?;

    fs::create_dir_all(out).map_err(|source| CaError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let cert_pem = pem::encode("CERTIFICATE", cert.der());
    pem::write_private(
        &out.join(CA_KEY),
        &pem::encode("PRIVATE KEY", key.serialized_der()),
    )?;
    for name in [CA_CERT, ROOT_CERT, CERT_CHAIN] {
        pem::write_public(&out.join(name), &cert_pem)?;
    }
    tracing::info!(
        dir = %out.display(),
        trust_domain,
        not_after = %clock::rfc3339(clock::from_unix(not_after)),
        "wrote a new root CA"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_the_four_files_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("new/cacerts");
        init_ca_dir(&out, "cluster.local", 30, false).unwrap();
        for name in [CA_CERT, CA_KEY, ROOT_CERT, CERT_CHAIN] {
            assert!(out.join(name).is_file(), "{name} missing");
        }
        let mode = fs::metadata(out.join(CA_KEY)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let root = fs::read(out.join(ROOT_CERT)).unwrap();
        assert_eq!(fs::read(out.join(CA_CERT)).unwrap(), root);
        assert_eq!(fs::read(out.join(CERT_CHAIN)).unwrap(), root);

        let err = init_ca_dir(&out, "cluster.local", 30, false).unwrap_err();
        assert!(matches!(err, CaError::Exists { .. }), "{err}");
        assert!(err.to_string().contains("ca-cert.pem"), "{err}");
        assert_eq!(
            fs::read(out.join(ROOT_CERT)).unwrap(),
            root,
            "must not be touched"
        );

        // Only one of the files present still blocks.
        let partial = dir.path().join("partial");
        fs::create_dir_all(&partial).unwrap();
        fs::write(partial.join(CERT_CHAIN), "x").unwrap();
        let err = init_ca_dir(&partial, "cluster.local", 30, false).unwrap_err();
        assert!(err.to_string().contains("cert-chain.pem"), "{err}");

        // force replaces them, and the key keeps mode 0600 even if it was widened.
        fs::set_permissions(out.join(CA_KEY), fs::Permissions::from_mode(0o644)).unwrap();
        init_ca_dir(&out, "cluster.local", 30, true).unwrap();
        assert_ne!(fs::read(out.join(ROOT_CERT)).unwrap(), root);
        let mode = fs::metadata(out.join(CA_KEY)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn root_names_the_trust_domain() {
        let dir = tempfile::tempdir().unwrap();
        init_ca_dir(dir.path(), "example.org", 1, false).unwrap();
        let certs = pem::read_certs(&dir.path().join(CA_CERT)).unwrap();
        let (_, x509) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
        assert_eq!(
            x509.subject().to_string(),
            "O=podlock, CN=podlock root CA example.org"
        );
        assert!(x509.is_ca());
        let lifetime =
            x509.validity().not_after.timestamp() - x509.validity().not_before.timestamp();
        assert_eq!(lifetime, 86_400 + 60);
    }

    #[test]
    fn rejects_bad_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let err = init_ca_dir(dir.path(), "Bad_Domain", 1, false).unwrap_err();
        assert!(
            err.to_string()
                .contains("invalid trust domain \"Bad_Domain\""),
            "{err}"
        );
        assert!(init_ca_dir(dir.path(), "cluster.local", 0, false).is_err());
        assert!(
            fs::read_dir(dir.path()).unwrap().next().is_none(),
            "nothing written"
        );
    }
}
