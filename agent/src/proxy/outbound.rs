//! Captured outbound connections: find where the app was going, and take it there over
//! HBONE (mTLS) when the destination is in the mesh, plaintext otherwise.
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::{info, warn};

use super::{relay, PodEndpoint, ProxyContext};
use crate::{
    connections::{Direction, NewConn, NoIdentity, PeerIdentity},
    hbone::{self, Dialled, PoolKey, UpstreamError},
    tls,
};

/// Connecting to a destination's `:15008` and finishing the mTLS handshake must take no
/// longer than this, so a destination outside the mesh costs little.
const HBONE_DIAL_TIMEOUT: Duration = Duration::from_secs(1);

pub(super) async fn handle(
    client: TcpStream,
    peer: SocketAddr,
    pod: Arc<PodEndpoint>,
    ctx: ProxyContext,
) {
    let Some(dst) = ctx.orig_dst.take(pod.netns.cookie(), peer) else {
        warn!(pod = %pod.label, src = %peer, "connection to the outbound listener was not captured by podlock; resetting");
        relay::reset(&client);
        return;
    };
    let _ = client.set_nodelay(true);
    if ctx.discovery.lookup(dst.ip()) != Some(false) {
        match open_hbone(&pod, dst, &ctx).await {
            Ok(hbone::Opened {
                stream,
                peer: server,
                lease,
            }) => {
                ctx.discovery.record(dst.ip(), true);
                // The app's own port, on the pod's address: the tunnel's socket is shared.
                let src =
                    SocketAddr::new(pod.ips.first().copied().unwrap_or(peer.ip()), peer.port());
                let peer_id = PeerIdentity::Verified(server.to_string());
                carry(client, stream, &pod, &ctx, src, dst, "hbone", peer_id).await;
                drop(lease);
                return;
            }
            Err(UpstreamError::NotMesh { reason, .. }) => {
                info!(pod = %pod.label, %dst, %reason, "destination is not in the mesh");
                ctx.discovery.record(dst.ip(), false);
            }
            Err(e) => {
                warn!(pod = %pod.label, %dst, error = %e, "HBONE failed; resetting client");
                relay::reset(&client);
                return;
            }
        }
    }
    if !pod.policy().allows_plaintext_to(dst) {
        warn!(pod = %pod.label, %dst,
              "STRICT: destination is not in the mesh and not exempt; resetting (exempt it with --outbound-exempt or the podlock.io/outbound-exempt annotation)");
        relay::reset(&client);
        return;
    }
    let upstream = match pod.dial(dst, ctx.config.mark).await {
        Ok(s) => s,
        Err(e) => {
            info!(pod = %pod.label, %dst, error = %e, "upstream connect failed; resetting client");
            // A STRICT destination refuses plaintext: probe for HBONE again next time.
            ctx.discovery.forget(dst.ip());
            relay::reset(&client);
            return;
        }
    };
    let src = upstream.local_addr().unwrap_or(peer);
    let peer_id = PeerIdentity::None(NoIdentity::NotInMesh);
    carry(client, upstream, &pod, &ctx, src, dst, "plaintext", peer_id).await;
}

/// Relays one connection, recorded in the connection table and logged when it ends.
#[allow(clippy::too_many_arguments)]
async fn carry<U>(
    client: TcpStream,
    upstream: U,
    pod: &PodEndpoint,
    ctx: &ProxyContext,
    src: SocketAddr,
    dst: SocketAddr,
    transport: &'static str,
    peer: PeerIdentity,
) where
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + relay::Abort,
{
    let cancel = pod.token.child_token();
    let mut guard = ctx.conns.open(NewConn {
        pod: pod.label.clone(),
        direction: Direction::Outbound,
        src,
        dst,
        transport,
        peer,
        cancel: cancel.clone(),
    });
    let r = relay::relay(client, upstream, &cancel).await;
    let error = r.error.as_ref().map(ToString::to_string);
    info!(pod = %pod.label, direction = "outbound", %src, %dst, transport,
          sent = r.a_to_b, received = r.b_to_a, error = error.as_deref().unwrap_or(""), "connection closed");
    guard.finish(r.a_to_b, r.b_to_a, error);
}

async fn open_hbone(
    pod: &Arc<PodEndpoint>,
    dst: SocketAddr,
    ctx: &ProxyContext,
) -> Result<hbone::Opened, UpstreamError> {
    let key = PoolKey {
        source: pod.netns.cookie(),
        dst: dst.ip(),
    };
    ctx.hbone.open(key, dst, || dial(pod, dst.ip(), ctx)).await
}

/// A new HBONE connection from the pod's netns: TCP to `ip:15008`, mTLS presenting the
/// pod's certificate, then the HTTP/2 handshake.
async fn dial(pod: &PodEndpoint, ip: IpAddr, ctx: &ProxyContext) -> Result<Dialled, UpstreamError> {
    let addr = SocketAddr::new(ip, ctx.config.hbone_port);
    let not_mesh = |reason: String| UpstreamError::NotMesh { addr, reason };
    let connector = TlsConnector::from(pod.tls.client.clone());
    let handshake = async {
        let tcp = pod.dial(addr, ctx.config.mark).await?;
        connector
            .connect(ServerName::IpAddress(ip.into()), tcp)
            .await
    };
    let tls = match tokio::time::timeout(HBONE_DIAL_TIMEOUT, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(not_mesh(e.to_string())),
        Err(_) => return Err(not_mesh(format!("no answer within {HBONE_DIAL_TIMEOUT:?}"))),
    };
    let session = tls.get_ref().1;
    if session.alpn_protocol() != Some(tls::ALPN_H2) {
        return Err(not_mesh("server did not negotiate ALPN h2".into()));
    }
    let Some(peer) = tls::peer_identity(session.peer_certificates()) else {
        return Err(not_mesh("server presented no SPIFFE identity".into()));
    };
    if let Some(expected) = ctx.local.get(ip) {
        if expected != peer {
            return Err(UpstreamError::WrongIdentity {
                addr,
                got: peer,
                expected,
            });
        }
    }
    let (sender, driver) = hbone::client_builder()
        .handshake(tls)
        .await
        .map_err(|e| not_mesh(format!("HTTP/2 handshake: {e}")))?;
    Ok(Dialled {
        sender,
        driver: Box::pin(driver),
        peer,
    })
}
