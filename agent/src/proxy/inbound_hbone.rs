//! The HBONE listener of a pod (`:15008`): mTLS with the client's workload certificate,
//! then HTTP/2 CONNECT streams, each relayed to the application inside the pod.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use h2::{server::SendResponse, RecvStream};
use http::{Request, StatusCode};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::{relay, PodEndpoint, ProxyContext};
use crate::{
    connections::{Direction, NewConn, PeerIdentity},
    hbone::{self, H2Stream},
    identity::SpiffeId,
    tls,
};

/// A client that has not finished the TLS and HTTP/2 handshakes by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn handle(
    tcp: TcpStream,
    peer: SocketAddr,
    pod: Arc<PodEndpoint>,
    ctx: ProxyContext,
) {
    let _ = tcp.set_nodelay(true);
    let acceptor = TlsAcceptor::from(pod.tls.server.clone());
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            warn!(pod = %pod.label, src = %peer, error = %e, "HBONE TLS handshake rejected");
            return;
        }
        Err(_) => {
            warn!(pod = %pod.label, src = %peer, "HBONE TLS handshake timed out");
            return;
        }
    };
    let Some(client) = tls::peer_identity(tls.get_ref().1.peer_certificates()) else {
        warn!(pod = %pod.label, src = %peer, "HBONE client without a SPIFFE identity");
        return;
    };
    let handshake = hbone::server_builder().handshake::<_, Bytes>(tls);
    let mut conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            warn!(pod = %pod.label, src = %peer, identity = %client, error = %e, "not HTTP/2 after the TLS handshake");
            return;
        }
        Err(_) => {
            warn!(pod = %pod.label, src = %peer, identity = %client, "HTTP/2 handshake timed out");
            return;
        }
    };
    debug!(pod = %pod.label, src = %peer, identity = %client, "HBONE connection accepted");
    while let Some(next) = conn.accept().await {
        match next {
            Ok((request, respond)) => {
                let stream = serve_stream(
                    request,
                    respond,
                    peer,
                    client.clone(),
                    pod.clone(),
                    ctx.clone(),
                );
                super::spawn_until_cancelled(&ctx.tasks, &pod.token, stream);
            }
            Err(e) => {
                debug!(pod = %pod.label, src = %peer, error = %e, "HBONE connection ended");
                break;
            }
        }
    }
}

async fn serve_stream(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    peer: SocketAddr,
    client: SpiffeId,
    pod: Arc<PodEndpoint>,
    ctx: ProxyContext,
) {
    let target = match hbone::parse_connect(&request) {
        Ok(t) => t,
        Err(e) => {
            warn!(pod = %pod.label, src = %peer, identity = %client, error = %e, "bad HBONE request (400)");
            hbone::refuse(&mut respond, StatusCode::BAD_REQUEST);
            return;
        }
    };
    if !pod.ips.contains(&target.ip()) || ctx.config.reserved_ports().contains(&target.port()) {
        warn!(pod = %pod.label, src = %peer, identity = %client, %target,
              "HBONE target is not this pod's application (400)");
        hbone::refuse(&mut respond, StatusCode::BAD_REQUEST);
        return;
    }
    let app = match pod.dial(target, ctx.config.mark).await {
        Ok(app) => app,
        Err(e) => {
            info!(pod = %pod.label, src = %peer, identity = %client, %target, error = %e,
                  "application refused the HBONE stream (503)");
            hbone::refuse(&mut respond, StatusCode::SERVICE_UNAVAILABLE);
            return;
        }
    };
    let send = match hbone::accept(&mut respond) {
        Ok(send) => send,
        Err(e) => {
            debug!(pod = %pod.label, src = %peer, error = %e, "client left before 200");
            return;
        }
    };
    let tunnel = H2Stream::new(send, request.into_body());
    let cancel = pod.token.child_token();
    let mut guard = ctx.conns.open(NewConn {
        pod: pod.label.clone(),
        direction: Direction::Inbound,
        src: peer,
        dst: target,
        transport: "hbone",
        peer: PeerIdentity::Verified(client.to_string()),
        cancel: cancel.clone(),
    });
    let r = relay::relay(tunnel, app, &cancel).await;
    let error = r.error.as_ref().map(ToString::to_string);
    info!(pod = %pod.label, direction = "inbound", src = %peer, dst = %target, transport = "hbone",
          identity = %client, sent = r.b_to_a, received = r.a_to_b,
          error = error.as_deref().unwrap_or(""), "connection closed");
    guard.finish(r.b_to_a, r.a_to_b, error);
}
