//! The bridge from a loaded CA (certificate + key files) to rcgen's `Issuer`.
//!
//! rcgen with the `ring` backend only reads PKCS#8 keys, while plug-in CA secrets often
//! hold PKCS#1 ("RSA PRIVATE KEY") or SEC1 ("EC PRIVATE KEY") keys. rustls reads all three,
//! so the CA key is loaded as a rustls `SigningKey` and offered to rcgen through
//! [`CaSigner`]. rcgen (without its `x509-parser` feature) cannot take the issuer name from
//! an existing certificate, so [`issuer_for`] rebuilds it from the parsed subject, keeping
//! each attribute's string type; `Ca::load` then checks that an issued certificate's issuer
//! field matches the CA's subject byte for byte.

use std::fmt;
use std::sync::Arc;

use rcgen::string::{BmpString, Ia5String, PrintableString, TeletexString, UniversalString};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, Issuer, KeyIdMethod, PublicKeyData,
    SignatureAlgorithm, SigningKey,
};
use rustls::pki_types::PrivateKeyDer;
use rustls::SignatureScheme;
use x509_parser::asn1_rs::Tag;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::x509::{SubjectPublicKeyInfo, X509Name};

/// The CA's private key, usable by rcgen for signing.
pub(crate) struct CaSigner {
    key: Arc<dyn rustls::sign::SigningKey>,
    scheme: SignatureScheme,
    alg: &'static SignatureAlgorithm,
    /// OID of the public key algorithm, dotted (for comparing with a certificate).
    key_alg_oid: String,
    /// The subjectPublicKey bits.
    public_key: Vec<u8>,
}

/// Signature schemes a CA key may use, and rcgen's name for each.
const SCHEMES: [(SignatureScheme, &SignatureAlgorithm); 4] = [
    (
        SignatureScheme::ECDSA_NISTP256_SHA256,
        &rcgen::PKCS_ECDSA_P256_SHA256,
    ),
    (
        SignatureScheme::ECDSA_NISTP384_SHA384,
        &rcgen::PKCS_ECDSA_P384_SHA384,
    ),
    (SignatureScheme::RSA_PKCS1_SHA256, &rcgen::PKCS_RSA_SHA256),
    (SignatureScheme::ED25519, &rcgen::PKCS_ED25519),
];

impl CaSigner {
    /// Loads an ECDSA P-256/P-384, RSA or Ed25519 key (PKCS#8, PKCS#1 or SEC1).
    pub(crate) fn new(der: &PrivateKeyDer<'_>) -> Result<Self, String> {
        let key = rustls::crypto::ring::sign::any_supported_type(der).map_err(|e| {
            format!("unsupported private key (need ECDSA P-256/P-384, RSA or Ed25519): {e}")
        })?;
        let (scheme, alg) = SCHEMES
            .iter()
            .find(|(scheme, _)| key.choose_scheme(&[*scheme]).is_some())
            .copied()
            .ok_or_else(|| {
                format!(
                    "the {:?} key supports none of the signature schemes podlock uses",
                    key.algorithm()
                )
            })?;
        let spki = key
            .public_key()
            .ok_or("cannot derive the public key of this private key")?;
        let (_, parsed) = SubjectPublicKeyInfo::from_der(&spki)
            .map_err(|e| format!("cannot read the public key of this private key: {e}"))?;
        let key_alg_oid = parsed.algorithm.algorithm.to_id_string();
        let public_key = parsed.subject_public_key.data.to_vec();
        Ok(Self {
            key,
            scheme,
            alg,
            key_alg_oid,
            public_key,
        })
    }

    /// Whether this key is the private half of `spki` (a certificate's public key).
    pub(crate) fn matches(&self, spki: &SubjectPublicKeyInfo<'_>) -> bool {
        spki.algorithm.algorithm.to_id_string() == self.key_alg_oid
            && spki.subject_public_key.data.as_ref() == self.public_key.as_slice()
    }
}

impl fmt::Debug for CaSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaSigner")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl PublicKeyData for CaSigner {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

impl SigningKey for CaSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let signer = self
            .key
            .choose_scheme(&[self.scheme])
            .ok_or(rcgen::Error::RemoteKeyError)?;
        signer.sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// An rcgen issuer that writes `ca`'s subject as the issuer name and `ca`'s subject key
/// identifier (if it has one) as the authority key identifier.
pub(crate) fn issuer_for(
    ca: &X509Certificate<'_>,
    signer: CaSigner,
) -> Result<(Issuer<'static, CaSigner>, bool), String> {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(ca.subject())?;
    let ski = ca
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        });
    let has_ski = ski.is_some();
    if let Some(ski) = ski {
        params.key_identifier_method = KeyIdMethod::PreSpecified(ski);
    }
    Ok((Issuer::new(params, signer), has_ski))
}

/// Rebuilds a name for rcgen, attribute by attribute, keeping each value's string type.
fn distinguished_name(name: &X509Name<'_>) -> Result<DistinguishedName, String> {
    let mut dn = DistinguishedName::new();
    for rdn in name.iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err(format!(
                "the subject {name} has a multi-valued RDN, which podlock cannot reproduce \
                 as an issuer name"
            ));
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| format!("the subject {name} has an attribute type out of range"))?
            .collect();
        let ty = DnType::from_oid(&oid);
        if dn.get(&ty).is_some() {
            return Err(format!(
                "the subject {name} repeats attribute {}, which podlock cannot reproduce \
                 as an issuer name",
                attr.attr_type()
            ));
        }
        let value = attr.attr_value();
        let text = || {
            std::str::from_utf8(value.data)
                .map_err(|_| format!("the subject {name} has a value that is not valid text"))
        };
        let bad = |e: rcgen::Error| format!("the subject {name} has an unusable value: {e}");
        let value = match value.header.tag() {
            Tag::Utf8String => DnValue::Utf8String(text()?.to_owned()),
            Tag::PrintableString => {
                DnValue::PrintableString(PrintableString::try_from(text()?).map_err(bad)?)
            }
            Tag::Ia5String => DnValue::Ia5String(Ia5String::try_from(text()?).map_err(bad)?),
            Tag::T61String => {
                DnValue::TeletexString(TeletexString::try_from(text()?).map_err(bad)?)
            }
            Tag::BmpString => {
                DnValue::BmpString(BmpString::from_utf16be(value.data.to_vec()).map_err(bad)?)
            }
            Tag::UniversalString => DnValue::UniversalString(
                UniversalString::from_utf32be(value.data.to_vec()).map_err(bad)?,
            ),
            other => {
                return Err(format!(
                    "the subject {name} has a value of ASN.1 type {other}, which podlock \
                     cannot reproduce as an issuer name"
                ))
            }
        };
        dn.push(ty, value);
    }
    Ok(dn)
}
