//! Plaintext arriving at a pod from outside, steered here by sk_lookup. The accepted
//! socket's local address is the original destination.
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
    let dst = match client.local_addr() {
        Ok(a) => a,
        Err(e) => {
            warn!(pod = %pod.label, src = %peer, error = %e, "cannot read original destination");
            return;
        }
    };
    if ctx.config.reserved_ports().contains(&dst.port()) {
        warn!(pod = %pod.label, src = %peer, %dst, "connection to a podlock port from outside the pod; resetting");
        relay::reset(&client);
        return;
    }
    // Source and destination are both the pod's address, so sk_lookup leaves it alone.
    let app = match pod.dial(dst, ctx.config.mark).await {
        Ok(s) => s,
        Err(e) => {
            info!(pod = %pod.label, src = %peer, %dst, error = %e, "application connect failed; resetting client");
            relay::reset(&client);
            return;
        }
    };
    // Under STRICT only the node's own connections (probes) get this far; say which.
    let reason = if ctx.host_flows.opened_by_node(peer, dst) {
        NoIdentity::ExemptProbe
    } else {
        NoIdentity::PlaintextCaptured
    };
    let cancel = pod.token.child_token();
    let mut guard = ctx.conns.open(NewConn {
        pod: pod.label.clone(),
        direction: Direction::Inbound,
        src: peer,
        dst,
        transport: "plaintext",
        peer: PeerIdentity::None(reason),
        cancel: cancel.clone(),
    });
    let r = relay::relay(client, app, &cancel).await;
    let error = r.error.as_ref().map(ToString::to_string);
    info!(pod = %pod.label, direction = "inbound", src = %peer, %dst, transport = "plaintext",
          sent = r.b_to_a, received = r.a_to_b, error = error.as_deref().unwrap_or(""), "connection closed");
    guard.finish(r.b_to_a, r.a_to_b, error);
}
