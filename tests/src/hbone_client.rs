//! A deliberately independent HBONE client for tests: speaks TLS 1.3 + HTTP/2 CONNECT to
//! a pod's `:15008` from inside another pod, with whatever certificate the test hands it,
//! so tests can check what the agent accepts and refuses.
use std::{net::SocketAddr, path::Path, sync::Arc};

use anyhow::{Context, Result};
use http::{Method, Request, StatusCode};
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    DigitallySignedStruct, SignatureScheme,
};

use crate::pod::Pod;

/// Accepts any server certificate: these tests examine the server's decisions, not ours.
#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn client_config(cert_dir: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert_dir.join("cert-chain.pem"))?
            .collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(cert_dir.join("key.pem"))?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyServer))
    .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// From inside `from`, opens mTLS to `server` (a pod's `ip:15008`) with the certificate in
/// `cert_dir` (`cert-chain.pem`, `key.pem`) and sends `CONNECT authority`. Returns the
/// response status, or the error that ended the attempt (e.g. a rejected handshake).
pub fn connect_status(
    from: &Pod,
    server: SocketAddr,
    cert_dir: &Path,
    authority: &str,
) -> Result<StatusCode> {
    let config = client_config(cert_dir)?;
    let authority = authority.to_string();
    from.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let tcp = tokio::net::TcpStream::connect(server).await?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(ServerName::IpAddress(server.ip().into()), tcp)
                .await
                .context("TLS handshake")?;
            let (mut sender, conn) = h2::client::handshake(tls)
                .await
                .context("HTTP/2 handshake")?;
            tokio::spawn(conn);
            let request = Request::builder()
                .method(Method::CONNECT)
                .uri(authority)
                .body(())?;
            let (response, _send) = sender.send_request(request, false).context("CONNECT")?;
            let response = tokio::time::timeout(std::time::Duration::from_secs(10), response)
                .await
                .context("no response to CONNECT")?
                .context("CONNECT response")?;
            Ok(response.status())
        })
    })
}
