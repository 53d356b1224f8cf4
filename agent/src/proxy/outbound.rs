//! Captured outbound connections: find where the app was going, and take it there.
//!
//! Today the upstream leg is plaintext from a marked socket in the source pod's netns.
//! [`open_upstream`] is the seam where the mTLS (HBONE) tunnel plugs in.
use std::{net::SocketAddr, sync::Arc};

use tokio::net::TcpStream;
use tracing::{info, warn};

use super::{relay, PodEndpoint, ProxyContext};
use crate::connections::{Direction, NewConn, NoIdentity, PeerIdentity};

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
    let upstream = match open_upstream(&pod, dst, &ctx).await {
        Ok(s) => s,
        Err(e) => {
            info!(pod = %pod.label, %dst, error = %e, "upstream connect failed; resetting client");
            relay::reset(&client);
            return;
        }
    };
    let src = upstream.local_addr().unwrap_or(peer);
    let mut guard = ctx.conns.open(NewConn {
        pod: pod.label.clone(),
        direction: Direction::Outbound,
        src,
        dst,
        transport: "plaintext",
        peer: PeerIdentity::None(NoIdentity::NotInMesh),
    });
    let r = relay::relay(client, upstream).await;
    let error = r.error.as_ref().map(ToString::to_string);
    info!(pod = %pod.label, direction = "outbound", %src, %dst, transport = "plaintext",
          sent = r.a_to_b, received = r.b_to_a, error = error.as_deref().unwrap_or(""), "connection closed");
    guard.finish(r.a_to_b, r.b_to_a, error);
}

/// The seam for the cross-pod leg: today plaintext from the source pod's netns.
async fn open_upstream(
    pod: &PodEndpoint,
    dst: SocketAddr,
    ctx: &ProxyContext,
) -> std::io::Result<TcpStream> {
    pod.dial(dst, ctx.config.mark).await
}
