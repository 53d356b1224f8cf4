//! The agent's in-pod listeners and the connections they carry.
//!
//! For every enrolled pod: an outbound listener (loopback, where connect4/6 send the pod's
//! captured connections), an inbound plaintext listener (loopback, where sk_lookup steers
//! SYNs from outside the pod) and the HBONE listener (`:15008` on the pod's addresses,
//! mTLS). Sockets are created inside the pod's netns by [`crate::netns::Netns`]; everything
//! the agent dials from a pod carries its SO_MARK.
#![forbid(unsafe_code)]

mod exempt;
mod inbound;
mod inbound_hbone;
mod outbound;
mod relay;

pub use exempt::{Exemption, EXEMPT_ANNOTATION};

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, RwLock},
};

use rustls::{ClientConfig, ServerConfig};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, warn};

use crate::{
    config::Config,
    connections::ConnTable,
    datapath::{HostFlows, OrigDstTable},
    hbone::{HboneClient, MeshDiscovery},
    identity::SpiffeId,
    netns::Netns,
    policy::{Effective, Mode},
};

/// What every proxy task of every pod shares.
#[derive(Clone)]
pub struct ProxyContext {
    pub config: Arc<Config>,
    pub orig_dst: OrigDstTable,
    pub conns: ConnTable,
    pub tasks: TaskTracker,
    pub hbone: HboneClient,
    pub discovery: MeshDiscovery,
    pub local: LocalIdentities,
    pub host_flows: HostFlows,
    pub metrics: crate::admin::Metrics,
}

/// The policy in force for one pod, as its proxies need it.
#[derive(Clone, Debug)]
pub struct PodPolicy {
    pub effective: Effective,
    /// Destinations this pod may reach in plaintext while STRICT.
    pub exemptions: Vec<Exemption>,
}

impl PodPolicy {
    /// STRICT pods send nothing in plaintext, except to exempt destinations.
    pub fn allows_plaintext_to(&self, dst: SocketAddr) -> bool {
        self.effective.default.mode != Mode::Strict
            || self.exemptions.iter().any(|e| e.matches(dst))
    }
}

/// Identities of the pods enrolled on this node, by address: the exact identity an
/// outbound connection to one of them must present.
#[derive(Clone, Default)]
pub struct LocalIdentities(Arc<RwLock<HashMap<IpAddr, SpiffeId>>>);

impl LocalIdentities {
    pub fn get(&self, ip: IpAddr) -> Option<SpiffeId> {
        self.0.read().ok()?.get(&ip).cloned()
    }

    pub fn set(&self, ips: &[IpAddr], id: Option<&SpiffeId>) {
        let Ok(mut map) = self.0.write() else { return };
        for ip in ips {
            match id {
                Some(id) => map.insert(*ip, id.clone()),
                None => map.remove(ip),
            };
        }
    }
}

/// A pod's TLS side: who it is and the configs presenting that identity.
pub struct PodTls {
    pub identity: SpiffeId,
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

/// The pod a listener serves.
pub struct PodEndpoint {
    /// `namespace/name`, for logs and the connection table.
    pub label: String,
    pub netns: Arc<Netns>,
    pub ips: Vec<IpAddr>,
    /// Cancelled when the pod is unenrolled or the agent stops.
    pub token: CancellationToken,
    pub tls: PodTls,
    pub policy: RwLock<Arc<PodPolicy>>,
}

impl PodEndpoint {
    pub fn policy(&self) -> Arc<PodPolicy> {
        self.policy
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Opens a connection from inside the pod's netns, carrying the agent's mark so the
    /// eBPF programs never capture it again.
    pub async fn dial(&self, dst: SocketAddr, mark: u32) -> io::Result<TcpStream> {
        let socket = self.netns.tcp_socket(dst.ip(), Some(mark)).await?;
        let stream = socket.connect(dst).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// A pod's listeners, bound and listening but not yet served.
pub struct PodListeners {
    outbound: Vec<TcpListener>,
    /// Inbound plaintext listener per address family, with the pod addresses it serves.
    inbound: Vec<(TcpListener, Vec<IpAddr>)>,
    hbone: Vec<TcpListener>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} in the pod's network namespace: {source}")]
pub struct BindError {
    addr: SocketAddr,
    source: io::Error,
}

impl PodListeners {
    /// Binds the outbound (IPv4 and, when the pod has IPv6, IPv6) and inbound listeners.
    pub async fn bind(pod: &PodEndpoint, cfg: &Config) -> Result<Self, BindError> {
        let has_v6 = pod.ips.iter().any(IpAddr::is_ipv6);
        let v4_ips: Vec<IpAddr> = pod.ips.iter().copied().filter(IpAddr::is_ipv4).collect();
        let v6_ips: Vec<IpAddr> = pod.ips.iter().copied().filter(IpAddr::is_ipv6).collect();
        let lo4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let mut outbound = vec![listen(pod, SocketAddr::new(lo4, cfg.outbound_port)).await?];
        let mut inbound = vec![(
            listen(pod, SocketAddr::new(lo4, cfg.inbound_port)).await?,
            v4_ips,
        )];
        let any4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let mut hbone = vec![listen(pod, SocketAddr::new(any4, cfg.hbone_port)).await?];
        if has_v6 {
            outbound.push(listen(pod, SocketAddr::new(lo6, cfg.outbound_port)).await?);
            inbound.push((
                listen(pod, SocketAddr::new(lo6, cfg.inbound_port)).await?,
                v6_ips,
            ));
            let any6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
            hbone.push(listen(pod, SocketAddr::new(any6, cfg.hbone_port)).await?);
        }
        Ok(Self {
            outbound,
            inbound,
            hbone,
        })
    }

    /// (pod address, listener) pairs for the sk_lookup socket map.
    pub fn steering(&self) -> Vec<(IpAddr, &TcpListener)> {
        self.inbound
            .iter()
            .flat_map(|(l, ips)| ips.iter().map(move |ip| (*ip, l)))
            .collect()
    }

    /// Starts accepting; every task stops when `pod.token` is cancelled.
    pub fn serve(self, pod: Arc<PodEndpoint>, ctx: &ProxyContext) {
        for listener in self.outbound {
            let (pod, ctx2) = (pod.clone(), ctx.clone());
            let serve = accept_loop(listener, pod.clone(), ctx.tasks.clone(), move |s, peer| {
                outbound::handle(s, peer, pod.clone(), ctx2.clone())
            });
            ctx.tasks.spawn(serve);
        }
        for (listener, _) in self.inbound {
            let (pod, ctx2) = (pod.clone(), ctx.clone());
            let serve = accept_loop(listener, pod.clone(), ctx.tasks.clone(), move |s, peer| {
                inbound::handle(s, peer, pod.clone(), ctx2.clone())
            });
            ctx.tasks.spawn(serve);
        }
        for listener in self.hbone {
            let (pod, ctx2) = (pod.clone(), ctx.clone());
            let serve = accept_loop(listener, pod.clone(), ctx.tasks.clone(), move |s, peer| {
                inbound_hbone::handle(s, peer, pod.clone(), ctx2.clone())
            });
            ctx.tasks.spawn(serve);
        }
    }
}

async fn listen(pod: &PodEndpoint, addr: SocketAddr) -> Result<TcpListener, BindError> {
    let bind = async {
        let socket = pod.netns.tcp_socket(addr.ip(), None).await?;
        socket.set_reuseaddr(true)?;
        if addr.is_ipv6() {
            // Each family has its own listener; the IPv6 one must not claim IPv4 too.
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Ipv6V6Only, &true)?;
        }
        socket.bind(addr)?;
        socket.listen(1024)
    };
    bind.await.map_err(|source| BindError { addr, source })
}

/// Runs a connection handler until it ends or `token` is cancelled. The handler is polled
/// first: a relay sees the same cancellation and resets both sides itself; the token only
/// ends handlers that are still setting up.
fn spawn_until_cancelled<F>(tasks: &TaskTracker, token: &CancellationToken, handler: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let token = token.clone();
    tasks.spawn(async move {
        tokio::select! {
            biased;
            _ = handler => {}
            _ = token.cancelled() => {}
        }
    });
}

async fn accept_loop<F, Fut>(
    listener: TcpListener,
    pod: Arc<PodEndpoint>,
    tasks: TaskTracker,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let local = listener.local_addr().ok();
    loop {
        tokio::select! {
            _ = pod.token.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => spawn_until_cancelled(&tasks, &pod.token, handle(stream, peer)),
                Err(e) => {
                    warn!(pod = %pod.label, ?local, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
    debug!(pod = %pod.label, ?local, "listener closed");
}
