//! PEM files: reading certificates and keys, writing them (keys with mode 0600).
//!
//! Decoding uses `rustls::pki_types::pem`; encoding is the few lines of base64 below
//! (there is no PEM encoder among the agent's dependencies).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::ca::CaError;

/// PEM-encodes one DER object under `label` ("CERTIFICATE", "PRIVATE KEY", ...).
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let b64 = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// PEM text of several certificates, in order.
pub(crate) fn encode_certs(certs: &[CertificateDer<'_>]) -> String {
    certs.iter().map(|c| encode("CERTIFICATE", c)).collect()
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 0x3f) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

fn read(path: &Path) -> Result<Vec<u8>, CaError> {
    fs::read(path).map_err(|source| CaError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every CERTIFICATE block in the file, in order; at least one.
pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaError::invalid(path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(CaError::invalid(path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// The first private key in the file: PKCS#8 ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE KEY")
/// or SEC1 ("EC PRIVATE KEY").
pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CaError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        let text = String::from_utf8_lossy(&bytes);
        let reason = if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type") {
            "the private key is encrypted; an unencrypted key is needed".to_owned()
        } else if matches!(e, rustls::pki_types::pem::Error::NoItemsFound) {
            "no private key found (expected a PEM block \"PRIVATE KEY\", \
             \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")"
                .to_owned()
        } else {
            format!("bad PEM: {e}")
        };
        CaError::invalid(path, reason)
    })
}

/// Writes a non-secret file (certificates), replacing it if it exists.
pub(crate) fn write_public(path: &Path, contents: &str) -> Result<(), CaError> {
    fs::write(path, contents).map_err(|source| CaError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a secret file with mode 0600. The file is created with that mode (never readable
/// by others, not even briefly); an existing file is removed first, so its old mode does
/// not carry over.
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), CaError> {
    let io_err = |source| CaError::Write {
        path: path.to_path_buf(),
        source,
    };
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err)?;
    file.write_all(contents.as_bytes()).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn encoded_pem_decodes_back() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let text = encode("CERTIFICATE", &der);
        assert!(text.lines().all(|l| l.len() <= 64));
        let back = CertificateDer::from_pem_slice(text.as_bytes()).unwrap();
        assert_eq!(back.as_ref(), der.as_slice());
    }
}
