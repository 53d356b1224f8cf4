//! Tests of `Ca::load` and `Ca::issue` against real CA layouts: a fresh root, an
//! intermediate, a multi-root bundle, RSA and SEC1 keys made by openssl, and broken ones.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;
use x509_parser::extensions::ParsedExtension;

use super::ca::{CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT};
use super::ca_init::init_ca_dir;
use super::verify::{spiffe_id_of, verify_chain};
use super::workload::WorkloadCert;
use super::*;

fn id() -> SpiffeId {
    SpiffeId::new("cluster.local", "shop", "cart")
}

/// Checks everything a leaf must be, including that it chains to `ca.roots()`.
fn check_leaf(ca: &Ca, cert: &WorkloadCert, want_chain_len: usize) {
    assert_eq!(cert.chain.len(), want_chain_len);
    assert_eq!(&cert.chain[1..], ca.chain());
    verify_chain(ca.roots(), &cert.chain[0], &cert.chain[1..]).expect("leaf verifies");
    assert_eq!(spiffe_id_of(&cert.chain[0]).unwrap(), cert.id);
    cert.certified_key.keys_match().expect("key matches leaf");

    let (_, leaf) = x509_parser::parse_x509_certificate(&cert.chain[0]).unwrap();
    assert!(!leaf.is_ca());
    let bc = leaf
        .basic_constraints()
        .unwrap()
        .expect("basicConstraints present");
    assert!(!bc.value.ca);
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(leaf.subject().as_raw().len() <= 2, "empty subject");
    assert_eq!(leaf.tbs_certificate.serial.to_str_radix(16), cert.serial);
    assert!(cert.serial.len() <= 32 && cert.serial == cert.serial.to_lowercase());
    let now = SystemTime::now();
    assert!(cert.not_before <= now - Duration::from_secs(55));
    assert!(cert.not_before >= now - Duration::from_secs(65));
    assert_eq!(
        leaf.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1"
    );

    assert!(openssl_verify(ca, cert), "openssl rejects the chain");
}

/// Cross-check with an independent verifier (it also matches AKI to SKI).
fn openssl_verify(ca: &Ca, cert: &WorkloadCert) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, certs: &[CertificateDer<'static>]| {
        let path = dir.path().join(name);
        fs::write(&path, pem::encode_certs(certs)).unwrap();
        path
    };
    let roots = write("roots.pem", ca.roots());
    let chain = write("chain.pem", &cert.chain[1..]);
    let leaf = write("leaf.pem", &cert.chain[..1]);
    let out = Command::new("/usr/bin/openssl")
        .args(["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile"])
        .arg(&roots)
        .arg("-untrusted")
        .arg(&chain)
        .arg(&leaf)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!("openssl verify: {}", String::from_utf8_lossy(&out.stdout));
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

fn root_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "podlock tests");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2090, 1, 1);
    params
}

/// A self-signed rcgen root: (params, key, cert DER).
fn make_root(cn: &str) -> (CertificateParams, KeyPair, CertificateDer<'static>) {
    let params = root_params(cn);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap().der().clone();
    (params, key, cert)
}

fn write_layout(
    dir: &Path,
    ca_cert: &CertificateDer<'_>,
    ca_key_pem: &str,
    chain: &[&CertificateDer<'_>],
    roots: &[&CertificateDer<'_>],
) {
    fs::write(dir.join(CA_CERT), pem::encode("CERTIFICATE", ca_cert)).unwrap();
    fs::write(dir.join(CA_KEY), ca_key_pem).unwrap();
    let text = |certs: &[&CertificateDer<'_>]| -> String {
        certs
            .iter()
            .map(|c| pem::encode("CERTIFICATE", c))
            .collect()
    };
    fs::write(dir.join(CERT_CHAIN), text(chain)).unwrap();
    fs::write(dir.join(ROOT_CERT), text(roots)).unwrap();
}

#[test]
fn loads_a_fresh_root_and_issues() {
    let dir = tempfile::tempdir().unwrap();
    init_ca_dir(dir.path(), "cluster.local", 10, false).unwrap();
    let ca = Ca::load(dir.path()).unwrap();
    assert_eq!(ca.roots().len(), 1);
    assert_eq!(ca.chain(), ca.roots(), "self-signed: chain is the root");

    let lifetime = Duration::from_secs(3600);
    let cert = ca.issue(&id(), lifetime).unwrap();
    check_leaf(&ca, &cert, 2);
    let until = cert.not_after.duration_since(SystemTime::now()).unwrap();
    assert!(until <= lifetime && until >= lifetime - Duration::from_secs(5));

    let again = ca.issue(&id(), lifetime).unwrap();
    assert_ne!(again.serial, cert.serial);
    assert_ne!(
        again.key.secret_der(),
        cert.key.secret_der(),
        "fresh key per issuance"
    );

    let err = ca.issue(&id(), Duration::ZERO).unwrap_err();
    assert!(
        err.to_string()
            .contains("spiffe://cluster.local/ns/shop/sa/cart"),
        "{err}"
    );
}

#[test]
fn leaf_never_outlives_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    init_ca_dir(dir.path(), "cluster.local", 1, false).unwrap();
    let ca = Ca::load(dir.path()).unwrap();
    let cert = ca.issue(&id(), Duration::from_secs(30 * 86_400)).unwrap();
    assert_eq!(cert.not_after, ca.not_after());
}

#[test]
fn intermediate_ca_chains_to_the_root() {
    let (root_params, root_key, root) = make_root("test root");
    let root_issuer = Issuer::new(root_params, root_key);
    let mut int_params = root_params_for_intermediate();
    int_params.use_authority_key_identifier_extension = true;
    let int_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let intermediate = int_params
        .signed_by(&int_key, &root_issuer)
        .unwrap()
        .der()
        .clone();

    let dir = tempfile::tempdir().unwrap();
    write_layout(
        dir.path(),
        &intermediate,
        &int_key.serialize_pem(),
        &[&intermediate, &root],
        &[&root],
    );
    let ca = Ca::load(dir.path()).unwrap();
    let cert = ca.issue(&id(), Duration::from_secs(600)).unwrap();
    check_leaf(&ca, &cert, 3);
    assert_eq!(cert.chain[1], intermediate);
    assert_eq!(cert.chain[2], root);

    // The same layout with an unrelated root as the trust bundle fails at load time.
    let (_, _, stranger) = make_root("someone else");
    fs::write(dir.path().join(ROOT_CERT), pem::encode_certs(&[stranger])).unwrap();
    let err = Ca::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("do not verify against root-cert.pem"), "{err}");
}

fn root_params_for_intermediate() -> CertificateParams {
    let mut params = root_params("test intermediate");
    params
        .distinguished_name
        .push(DnType::LocalityName, "cluster1");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
}

#[test]
fn root_bundle_with_two_roots() {
    let dir = tempfile::tempdir().unwrap();
    init_ca_dir(dir.path(), "cluster.local", 10, false).unwrap();
    let own = pem::read_certs(&dir.path().join(ROOT_CERT)).unwrap();
    let (_, _, next_root) = make_root("next root");
    let bundle = [next_root.clone(), own[0].clone()];
    fs::write(dir.path().join(ROOT_CERT), pem::encode_certs(&bundle)).unwrap();

    let ca = Ca::load(dir.path()).unwrap();
    assert_eq!(ca.roots(), &bundle[..]);
    let cert = ca.issue(&id(), Duration::from_secs(600)).unwrap();
    check_leaf(&ca, &cert, 2);
}

#[test]
fn mismatched_key_is_an_error_naming_the_files() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    init_ca_dir(a.path(), "cluster.local", 10, false).unwrap();
    init_ca_dir(b.path(), "cluster.local", 10, false).unwrap();
    fs::copy(b.path().join(CA_KEY), a.path().join(CA_KEY)).unwrap();
    let err = Ca::load(a.path()).unwrap_err();
    assert!(matches!(err, CaError::KeyMismatch { .. }));
    let text = err.to_string();
    assert!(
        text.contains("ca-key.pem") && text.contains("ca-cert.pem"),
        "{text}"
    );
}

#[test]
fn broken_layouts_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let load_err = |path: &Path| Ca::load(path).unwrap_err().to_string();

    // Missing directory / files.
    let missing = load_err(&dir.path().join("nope"));
    assert!(
        missing.contains("cannot read") && missing.contains("ca-cert.pem"),
        "{missing}"
    );

    // A certificate that is not a CA.
    let key = KeyPair::generate().unwrap();
    let mut leaf_params = root_params("not a ca");
    leaf_params.is_ca = IsCa::NoCa;
    leaf_params.key_usages = vec![];
    let leaf = leaf_params.self_signed(&key).unwrap().der().clone();
    write_layout(dir.path(), &leaf, &key.serialize_pem(), &[&leaf], &[&leaf]);
    let err = load_err(dir.path());
    assert!(
        err.contains("ca-cert.pem") && err.contains("CA:TRUE"),
        "{err}"
    );

    // An expired CA.
    let mut old = root_params("old root");
    old.not_before = rcgen::date_time_ymd(2001, 1, 1);
    old.not_after = rcgen::date_time_ymd(2002, 1, 1);
    let old_cert = old.self_signed(&key).unwrap().der().clone();
    write_layout(
        dir.path(),
        &old_cert,
        &key.serialize_pem(),
        &[&old_cert],
        &[&old_cert],
    );
    let err = load_err(dir.path());
    assert!(
        err.contains("ca-cert.pem") && err.contains("expired at 2002-01-01T00:00:00Z"),
        "{err}"
    );

    // cert-chain.pem that does not start with ca-cert.
    let (_, root_key, root) = make_root("root");
    let (_, _, other) = make_root("other");
    write_layout(
        dir.path(),
        &root,
        &root_key.serialize_pem(),
        &[&other],
        &[&root],
    );
    let err = load_err(dir.path());
    assert!(
        err.contains("cert-chain.pem") && err.contains("must begin with"),
        "{err}"
    );

    // A key file without a key, and garbage in root-cert.pem.
    write_layout(dir.path(), &root, "hello\n", &[&root], &[&root]);
    let err = load_err(dir.path());
    assert!(
        err.contains("ca-key.pem") && err.contains("no private key"),
        "{err}"
    );
    write_layout(dir.path(), &root, &root_key.serialize_pem(), &[&root], &[]);
    let err = load_err(dir.path());
    assert!(
        err.contains("root-cert.pem") && err.contains("no CERTIFICATE"),
        "{err}"
    );
}

/// Runs openssl with `args` in `dir` (it makes the RSA and SEC1 CA keys rcgen cannot).
fn openssl(dir: &Path, args: &[&str]) {
    let bin = PathBuf::from("/usr/bin/openssl");
    assert!(
        bin.exists(),
        "/usr/bin/openssl is needed to make RSA/SEC1 CA keys (cargo xtask setup installs it)"
    );
    let out = Command::new(bin)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed openssl root over the key in ca-key.pem, in the plug-in layout.
fn openssl_root(dir: &Path, keygen: &[&str], first_line: &str) -> Ca {
    openssl(dir, keygen);
    let key = fs::read_to_string(dir.join(CA_KEY)).unwrap();
    assert!(key.starts_with(first_line), "{key}");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            CA_KEY,
            "-subj",
            "/O=podlock test/CN=openssl root",
            "-days",
            "2",
            "-sha256",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            CA_CERT,
        ],
    );
    fs::copy(dir.join(CA_CERT), dir.join(ROOT_CERT)).unwrap();
    fs::copy(dir.join(CA_CERT), dir.join(CERT_CHAIN)).unwrap();
    Ca::load(dir).unwrap()
}

#[test]
fn rsa_pkcs1_ca_key_signs() {
    let dir = tempfile::tempdir().unwrap();
    let keygen = ["genrsa", "-traditional", "-out", CA_KEY, "2048"];
    let ca = openssl_root(dir.path(), &keygen, "-----BEGIN RSA PRIVATE KEY-----");
    let cert = ca.issue(&id(), Duration::from_secs(600)).unwrap();
    check_leaf(&ca, &cert, 2);
    let (_, leaf) = x509_parser::parse_x509_certificate(&cert.chain[0]).unwrap();
    assert_eq!(
        leaf.signature_algorithm.algorithm.to_id_string(),
        "1.2.840.113549.1.1.11",
        "sha256WithRSAEncryption"
    );
    // The AKI is the CA's own SKI (openssl's SHA-1 style), not one rcgen made up.
    let ski = |c: &x509_parser::certificate::X509Certificate<'_>| {
        c.iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
    };
    let aki = leaf
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        });
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca.chain()[0]).unwrap();
    assert_eq!(aki, ski(&ca_cert));
}

#[test]
fn rsa_pkcs8_ca_key_signs() {
    let dir = tempfile::tempdir().unwrap();
    let keygen = [
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        CA_KEY,
    ];
    let ca = openssl_root(dir.path(), &keygen, "-----BEGIN PRIVATE KEY-----");
    check_leaf(&ca, &ca.issue(&id(), Duration::from_secs(600)).unwrap(), 2);
}

#[test]
fn sec1_p384_ca_key_signs() {
    let dir = tempfile::tempdir().unwrap();
    let keygen = [
        "ecparam",
        "-name",
        "secp384r1",
        "-genkey",
        "-noout",
        "-out",
        CA_KEY,
    ];
    let ca = openssl_root(dir.path(), &keygen, "-----BEGIN EC PRIVATE KEY-----");
    check_leaf(&ca, &ca.issue(&id(), Duration::from_secs(600)).unwrap(), 2);
}
