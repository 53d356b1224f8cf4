//! The agent's one typed configuration, filled from `podlock run` flags.
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

pub const DEFAULT_SOCKET: &str = "/run/podlock/agent.sock";
pub const DEFAULT_CA_DIR: &str = "/etc/podlock/ca";

#[derive(Args, Debug, Clone, Serialize)]
pub struct Config {
    /// Unix socket of the node API (enroll, unenroll, pods, ...).
    #[arg(long, default_value = DEFAULT_SOCKET, env = "PODLOCK_SOCKET")]
    pub socket: PathBuf,

    /// Where the agent keeps the pods it serves, so a restart serves them again.
    #[arg(long, default_value = "/run/podlock")]
    pub state_dir: PathBuf,

    /// Directory on a bpffs for pinned links (mounted as bpffs if it is not on one): what
    /// keeps STRICT pods closed while the agent is down.
    #[arg(long, default_value = "/sys/fs/bpf/podlock")]
    pub bpffs_dir: PathBuf,

    /// cgroup2 mount to attach the cgroup programs to [default: found in /proc/self/mountinfo].
    #[arg(long)]
    pub cgroup_root: Option<PathBuf>,

    /// SO_MARK carried by the agent's own sockets so the eBPF programs never capture them.
    #[arg(long, default_value_t = 0x706c, value_parser = parse_u32)]
    pub mark: u32,

    /// Port of the outbound capture listener inside each pod (on loopback).
    #[arg(long, default_value_t = podlock_common::OUTBOUND_PORT)]
    pub outbound_port: u16,

    /// Port of the inbound plaintext capture listener inside each pod (on loopback).
    #[arg(long, default_value_t = podlock_common::INBOUND_PLAINTEXT_PORT)]
    pub inbound_port: u16,

    /// Port of the HBONE (mTLS) listener inside each pod; never steered by sk_lookup.
    #[arg(long, default_value_t = podlock_common::HBONE_PORT)]
    pub hbone_port: u16,

    /// SPIFFE trust domain of this cluster's workload identities.
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,

    /// CA directory in Istio's plug-in CA layout (ca-cert.pem, ca-key.pem, root-cert.pem,
    /// cert-chain.pem); create one with `podlock ca init`.
    #[arg(long, default_value = DEFAULT_CA_DIR)]
    pub ca_dir: PathBuf,

    /// Lifetime of workload certificates; each is renewed at half its lifetime.
    #[arg(long, default_value = "24h", value_parser = crate::identity::parse_duration)]
    #[serde(with = "secs")]
    pub cert_lifetime: std::time::Duration,

    /// Directory of PeerAuthentication YAML files (`*.yaml`, `*.yml`), reloaded on change.
    #[arg(long)]
    pub policy_dir: Option<PathBuf>,

    /// Namespace whose selector-less PeerAuthentication applies mesh-wide.
    #[arg(long, default_value = "istio-system")]
    pub root_namespace: String,

    /// Destinations a STRICT pod may still reach in plaintext: `CIDR`, `CIDR:PORT` or
    /// `*:PORT`; repeat for several. Policies add more with the `podlock.io/outbound-exempt`
    /// annotation.
    #[arg(long = "outbound-exempt", value_parser = crate::proxy::Exemption::parse)]
    pub outbound_exempt: Vec<crate::proxy::Exemption>,

    /// The Kubernetes API server, exempt from STRICT outbound [default: from
    /// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT when set].
    #[arg(long)]
    pub apiserver: Option<std::net::SocketAddr>,

    /// Do not exempt DNS (port 53) and the API server from STRICT outbound.
    #[arg(long)]
    pub no_default_exemptions: bool,

    /// Where Prometheus scrapes `/metrics` (in the agent's, i.e. the node's, netns).
    #[arg(long, default_value = "0.0.0.0:15020")]
    pub metrics_addr: std::net::SocketAddr,

    /// Where kubelet asks `/healthz/ready`: 200 once the previous run's pods are served.
    #[arg(long, default_value = "0.0.0.0:15021")]
    pub readiness_addr: std::net::SocketAddr,

    /// Forward the eBPF programs' debug log lines (aya-log) to the agent's log.
    #[arg(long)]
    pub bpf_log: bool,
}

impl Config {
    /// Exemptions in force for every STRICT pod: the flags, plus DNS and the API server
    /// unless turned off.
    pub fn exemptions(&self) -> Vec<crate::proxy::Exemption> {
        let mut all = self.outbound_exempt.clone();
        if !self.no_default_exemptions {
            all.push(crate::proxy::Exemption::port(53));
            let from_env = || -> Option<std::net::SocketAddr> {
                let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
                let port = std::env::var("KUBERNETES_SERVICE_PORT").ok()?;
                format!("{host}:{port}").parse().ok()
            };
            if let Some(api) = self.apiserver.or_else(from_env) {
                all.push(crate::proxy::Exemption::addr(api));
            }
        }
        all
    }

    /// Ports inside a pod that belong to the agent: never forwarded to the application.
    pub fn reserved_ports(&self) -> [u16; 3] {
        [self.outbound_port, self.inbound_port, self.hbone_port]
    }
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|e| format!("{s:?} is not a number (decimal or 0x-hex): {e}"))
}

/// Durations appear in the printed config as whole seconds.
mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}
