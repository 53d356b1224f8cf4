//! Workload (leaf) certificates: what one looks like and how it is minted.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use super::clock;
use super::issuer::CaSigner;
use super::spiffe::SpiffeId;

/// A certificate for one SPIFFE identity, with its fresh private key.
pub struct WorkloadCert {
    pub id: SpiffeId,
    /// The leaf, then the CA's `cert-chain.pem` (up to and including the root).
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8), for writing it out; TLS uses `certified_key`.
    pub key: Arc<PrivateKeyDer<'static>>,
    /// `chain` and `key` ready for rustls.
    pub certified_key: Arc<CertifiedKey>,
    /// Lowercase hex of the serial number.
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl fmt::Debug for WorkloadCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadCert")
            .field("id", &self.id.to_string())
            .field("serial", &self.serial)
            .field("not_before", &clock::rfc3339(self.not_before))
            .field("not_after", &clock::rfc3339(self.not_after))
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// A freshly minted leaf before it becomes a [`WorkloadCert`].
pub(crate) struct Minted {
    pub(crate) leaf: CertificateDer<'static>,
    pub(crate) key: PrivateKeyDer<'static>,
}

/// Signs a leaf: fresh ECDSA P-256 key, random positive 128-bit serial, URI SAN = `id`
/// (none when `id` is `None`: the CA's self-check), empty subject, keyUsage
/// digitalSignature+keyEncipherment, extKeyUsage serverAuth+clientAuth, CA:FALSE.
pub(crate) fn mint(
    issuer: &Issuer<'static, CaSigner>,
    write_aki: bool,
    id: Option<&SpiffeId>,
    not_before_secs: u64,
    not_after_secs: u64,
) -> Result<Minted, String> {
    let key_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("cannot generate a key: {e}"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if let Some(id) = id {
        let uri = id
            .to_string()
            .try_into()
            .map_err(|e| format!("cannot put {id} in a certificate: {e}"))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
    }
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    params.not_before = clock::asn1_time(not_before_secs)?.to_datetime();
    params.not_after = clock::asn1_time(not_after_secs)?.to_datetime();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = write_aki;
    let cert = params
        .signed_by(&key_pair, issuer)
        .map_err(|e| format!("cannot sign the certificate: {e}"))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    Ok(Minted {
        leaf: cert.der().clone(),
        key,
    })
}

/// 16 random bytes with the top bit clear (a positive INTEGER of at most 16 bytes).
pub(crate) fn random_serial() -> Result<[u8; 16], String> {
    let mut serial = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut serial)
        .map_err(|_| "the system random number generator failed".to_owned())?;
    serial[0] &= 0x7f;
    Ok(serial)
}

impl WorkloadCert {
    /// Assembles the certificate from a minted leaf, the CA chain and the validity.
    pub(crate) fn assemble(
        id: SpiffeId,
        minted: Minted,
        ca_chain: &[CertificateDer<'static>],
    ) -> Result<Self, String> {
        let (_, parsed) = x509_parser::parse_x509_certificate(&minted.leaf)
            .map_err(|e| format!("the minted certificate does not parse: {e}"))?;
        let serial = parsed.tbs_certificate.serial.to_str_radix(16);
        let not_before = clock::from_asn1(&parsed.validity().not_before);
        let not_after = clock::from_asn1(&parsed.validity().not_after);
        let mut chain = Vec::with_capacity(1 + ca_chain.len());
        chain.push(minted.leaf);
        chain.extend(ca_chain.iter().cloned());
        let signing_key = rustls::crypto::ring::sign::any_supported_type(&minted.key)
            .map_err(|e| format!("rustls cannot use the minted key: {e}"))?;
        let certified_key = Arc::new(CertifiedKey::new(chain.clone(), signing_key));
        Ok(Self {
            id,
            chain,
            key: Arc::new(minted.key),
            certified_key,
            serial,
            not_before,
            not_after,
        })
    }
}
