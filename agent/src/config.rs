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

    /// Forward the eBPF programs' debug log lines (aya-log) to the agent's log.
    #[arg(long)]
    pub bpf_log: bool,
}

impl Config {
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
