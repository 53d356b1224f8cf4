//! Loads podlock's eBPF programs, attaches them, and owns their maps.
//!
//! The cgroup programs (connect4/6, getpeername4/6, sock_ops) attach once at the cgroup2
//! root and serve every pod on the node; they only act on sockets whose netns cookie is in
//! the `PODS` map. sk_lookup attaches per pod netns. Dropping the [`Datapath`] closes every
//! link, which detaches the programs.
#![forbid(unsafe_code)]

mod addr;
mod cgroup;
mod host_flows;
mod modes;
mod orig_dst;
mod pins;

use std::{collections::HashMap, net::IpAddr, os::fd::AsRawFd, path::PathBuf};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, SockHash},
    programs::{
        links::{CgroupAttachMode, FdLink, PinnedLink},
        CgroupSockAddr, SkLookup, SockOps,
    },
    Ebpf, EbpfLoader,
};
use podlock_common::{IpKey, PodConfig, POD_CAPTURE_OUTBOUND};
use tracing::{debug, info, warn};

pub use addr::ip_key;
pub use cgroup::find_cgroup2_root;
pub use host_flows::HostFlows;
pub use modes::InboundMode;
pub use orig_dst::OrigDstTable;
pub use pins::Pins;

static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("PODLOCK_BPF_OBJECT"));

const CGROUP_PROGRAMS: [&str; 5] = [
    "podlock_connect4",
    "podlock_connect6",
    "podlock_getpeername4",
    "podlock_getpeername6",
    "podlock_sockops",
];

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error(
        "loading the eBPF object failed (is this Linux >= 5.15 with BTF, and are we root?): {0}"
    )]
    Load(#[from] aya::EbpfError),
    #[error("eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("eBPF object has no {0} (was it built from this source tree?)")]
    Missing(&'static str),
    #[error("pinning in {path} (pass --bpffs-dir on a bpffs mount): {source}")]
    Pin {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open cgroup2 root {path}: {source}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the loader needs to know.
pub struct DatapathConfig {
    pub cgroup_root: PathBuf,
    pub mark: u32,
    pub outbound_port: u16,
    pub hbone_port: u16,
    /// Netns cookie of the node's own network namespace (kubelet probes come from there).
    pub node_netns_cookie: u64,
    /// Forward the eBPF programs' own log lines (aya-log) to tracing.
    pub bpf_log: bool,
}

pub struct Datapath {
    ebpf: Ebpf,
    pods: BpfHashMap<MapData, u64, PodConfig>,
    listeners: SockHash<MapData, IpKey>,
    pins: Pins,
    cgroup_links: Vec<PinnedLink>,
    sk_lookup_links: HashMap<u64, PinnedLink>,
    orig_dst: OrigDstTable,
    host_flows: HostFlows,
    modes: modes::InboundModes,
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

fn prog_err(name: &'static str) -> impl FnOnce(aya::programs::ProgramError) -> DatapathError {
    move |source| DatapathError::Program { name, source }
}

impl Datapath {
    /// Loads the programs and attaches the cgroup ones at `cfg.cgroup_root`, pinning their
    /// links in this run's generation of `pins`.
    pub fn load(cfg: &DatapathConfig, pins: Pins) -> Result<Self, DatapathError> {
        let log_level: u8 = if cfg.bpf_log { 5 } else { 0 };
        let mut ebpf = EbpfLoader::new()
            .override_global("AGENT_MARK", &cfg.mark, true)
            .override_global("OUTBOUND_PORT", &cfg.outbound_port, true)
            .override_global("HBONE_PORT", &cfg.hbone_port, true)
            .override_global("NODE_NETNS_COOKIE", &cfg.node_netns_cookie, true)
            .override_global("AYA_LOG_LEVEL", &log_level, false)
            .load(BPF_OBJECT)?;
        if cfg.bpf_log {
            spawn_bpf_logger(&mut ebpf);
        }
        let cgroup =
            std::fs::File::open(&cfg.cgroup_root).map_err(|source| DatapathError::Cgroup {
                path: cfg.cgroup_root.clone(),
                source,
            })?;
        let mut cgroup_links = Vec::new();
        for name in CGROUP_PROGRAMS {
            let prog = ebpf.program_mut(name).ok_or(DatapathError::Missing(name))?;
            let link: FdLink = if name == "podlock_sockops" {
                let prog: &mut SockOps = prog.try_into().map_err(prog_err(name))?;
                prog.load().map_err(prog_err(name))?;
                let id = prog
                    .attach(&cgroup, CgroupAttachMode::Single)
                    .map_err(prog_err(name))?;
                let link = prog.take_link(id).map_err(prog_err(name))?;
                link.try_into().map_err(|_| DatapathError::Missing(name))?
            } else {
                let prog: &mut CgroupSockAddr = prog.try_into().map_err(prog_err(name))?;
                prog.load().map_err(prog_err(name))?;
                let id = prog
                    .attach(&cgroup, CgroupAttachMode::Single)
                    .map_err(prog_err(name))?;
                let link = prog.take_link(id).map_err(prog_err(name))?;
                link.try_into().map_err(|_| DatapathError::Missing(name))?
            };
            cgroup_links.push(pins.pin(name, link)?);
            debug!(program = name, cgroup = %cfg.cgroup_root.display(), "attached");
        }
        let lookup: &mut SkLookup = ebpf
            .program_mut("podlock_sk_lookup")
            .ok_or(DatapathError::Missing("podlock_sk_lookup"))?
            .try_into()
            .map_err(prog_err("podlock_sk_lookup"))?;
        lookup.load().map_err(prog_err("podlock_sk_lookup"))?;

        let pods = take_map(&mut ebpf, "PODS")?;
        let pods = BpfHashMap::try_from(pods).map_err(map_err("PODS"))?;
        let listeners = take_map(&mut ebpf, "INBOUND_LISTENERS")?;
        let listeners = SockHash::try_from(listeners).map_err(map_err("INBOUND_LISTENERS"))?;
        let established = take_map(&mut ebpf, "ESTABLISHED_ORIG")?;
        let established = BpfHashMap::try_from(established).map_err(map_err("ESTABLISHED_ORIG"))?;
        let host_flows = take_map(&mut ebpf, "HOST_FLOWS")?;
        let host_flows = BpfHashMap::try_from(host_flows).map_err(map_err("HOST_FLOWS"))?;
        let modes = take_map(&mut ebpf, "INBOUND_MODES")?;
        let modes = BpfHashMap::try_from(modes).map_err(map_err("INBOUND_MODES"))?;
        info!(cgroup = %cfg.cgroup_root.display(), mark = cfg.mark, "eBPF programs attached");
        Ok(Self {
            ebpf,
            pods,
            listeners,
            pins,
            cgroup_links,
            sk_lookup_links: HashMap::new(),
            orig_dst: OrigDstTable::new(established),
            host_flows: HostFlows::new(host_flows),
            modes: modes::InboundModes::new(modes),
        })
    }

    /// Where accepted outbound connections look up their original destination.
    pub fn orig_dst(&self) -> OrigDstTable {
        self.orig_dst.clone()
    }

    /// Which connections the node itself opened (probes exempt from STRICT).
    pub fn host_flows(&self) -> HostFlows {
        self.host_flows.clone()
    }

    /// What sk_lookup does with plaintext arriving for the pod at `ips`.
    pub fn set_inbound_modes(
        &mut self,
        cookie: u64,
        ips: &[IpAddr],
        default: InboundMode,
        ports: &[(u16, InboundMode)],
    ) -> Result<(), DatapathError> {
        self.modes
            .set(cookie, ips, default, ports)
            .map_err(map_err("INBOUND_MODES"))
    }

    /// Starts capturing a pod: inbound steering to `listeners` (one per address), then
    /// outbound capture. The listeners must already be accepting.
    pub fn enroll(
        &mut self,
        netns: &crate::netns::Netns,
        listeners: &[(IpAddr, &impl AsRawFd)],
    ) -> Result<(), DatapathError> {
        for (ip, listener) in listeners {
            self.listeners
                .insert(ip_key(*ip), listener.as_raw_fd(), 0)
                .map_err(map_err("INBOUND_LISTENERS"))?;
        }
        if !self.sk_lookup_links.contains_key(&netns.cookie()) {
            let prog: &mut SkLookup = self
                .ebpf
                .program_mut("podlock_sk_lookup")
                .ok_or(DatapathError::Missing("podlock_sk_lookup"))?
                .try_into()
                .map_err(prog_err("podlock_sk_lookup"))?;
            let id = prog.attach(netns).map_err(prog_err("podlock_sk_lookup"))?;
            let link = prog.take_link(id).map_err(prog_err("podlock_sk_lookup"))?;
            let pinned = self
                .pins
                .pin(&format!("sk_lookup-{}", netns.cookie()), link.into())?;
            self.sk_lookup_links.insert(netns.cookie(), pinned);
        }
        let config = PodConfig {
            flags: POD_CAPTURE_OUTBOUND,
            _pad: 0,
        };
        self.pods
            .insert(netns.cookie(), config, 0)
            .map_err(map_err("PODS"))
    }

    /// Stops capturing a pod and forgets everything kept for it. Best effort: every step is
    /// attempted, failures are logged.
    pub fn unenroll(&mut self, cookie: u64, ips: &[IpAddr]) {
        if let Err(e) = self.pods.remove(&cookie) {
            warn!(cookie, error = %e, "removing pod from PODS");
        }
        for ip in ips {
            if let Err(e) = self.listeners.remove(&ip_key(*ip)) {
                warn!(cookie, %ip, error = %e, "removing inbound listener");
            }
        }
        if let Some(link) = self.sk_lookup_links.remove(&cookie) {
            pins::unpin_link(link);
        }
        self.orig_dst.forget_netns(cookie);
        self.modes.clear(cookie);
    }
}

impl Datapath {
    /// The agent is stopping. Pods in `closed` (netns cookie, keep outbound capture) stay
    /// as they are, pinned, so nothing plaintext reaches or leaves them until an agent is
    /// back: inbound STRICT is refused by sk_lookup, outbound is rewritten to a listener
    /// that no longer exists. Every other pod must already be unenrolled. With no such
    /// pods everything is detached and unpinned.
    pub fn shutdown(&mut self, closed: &[(u64, bool)]) {
        for (cookie, outbound) in closed {
            if !outbound {
                let _ = self.pods.remove(cookie);
            }
        }
        if closed.is_empty() {
            for link in self.cgroup_links.drain(..) {
                pins::unpin_link(link);
            }
            for (_, link) in self.sk_lookup_links.drain() {
                pins::unpin_link(link);
            }
            self.pins.remove();
            info!("eBPF programs detached");
        } else {
            info!(pods = closed.len(), pins = %self.pins.dir().display(),
                  "STRICT pods stay closed while the agent is down; their programs stay attached");
        }
    }
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, DatapathError> {
    ebpf.take_map(name).ok_or(DatapathError::Missing(name))
}

/// Forwards aya-log records from the eBPF programs to `log` (and so to tracing).
fn spawn_bpf_logger(ebpf: &mut Ebpf) {
    let logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(logger) => logger,
        Err(e) => {
            warn!(error = %e, "eBPF logging unavailable");
            return;
        }
    };
    tokio::spawn(async move {
        let Ok(mut fd) = crate::sys::async_bpf_logger(logger) else {
            return;
        };
        while let Ok(mut guard) = fd.readable_mut().await {
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}
