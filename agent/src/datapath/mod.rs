//! Loads podlock's eBPF programs, attaches them, and owns their maps.
//!
//! The cgroup programs (connect4/6, getpeername4/6, sock_ops) attach once at the cgroup2
//! root and serve every pod on the node; they only act on sockets whose netns cookie is in
//! the `PODS` map. sk_lookup attaches per pod netns. Dropping the [`Datapath`] closes every
//! link, which detaches the programs.
#![forbid(unsafe_code)]

mod addr;
mod cgroup;
mod orig_dst;

use std::{collections::HashMap, net::IpAddr, os::fd::AsRawFd, path::PathBuf};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, SockHash},
    programs::{links::CgroupAttachMode, CgroupSockAddr, Program, SkLookup, SockOps},
    Ebpf, EbpfLoader,
};
use podlock_common::{IpKey, PodConfig, POD_CAPTURE_OUTBOUND};
use tracing::{debug, info, warn};

pub use addr::ip_key;
pub use cgroup::find_cgroup2_root;
pub use orig_dst::OrigDstTable;

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
    /// Forward the eBPF programs' own log lines (aya-log) to tracing.
    pub bpf_log: bool,
}

pub struct Datapath {
    ebpf: Ebpf,
    pods: BpfHashMap<MapData, u64, PodConfig>,
    listeners: SockHash<MapData, IpKey>,
    sk_lookup_links: HashMap<u64, aya::programs::sk_lookup::SkLookupLinkId>,
    orig_dst: OrigDstTable,
    /// Set once [`Datapath::detach_all`] ran.
    detached: bool,
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

fn prog_err(name: &'static str) -> impl FnOnce(aya::programs::ProgramError) -> DatapathError {
    move |source| DatapathError::Program { name, source }
}

impl Datapath {
    /// Loads the programs and attaches the cgroup ones at `cfg.cgroup_root`.
    pub fn load(cfg: &DatapathConfig) -> Result<Self, DatapathError> {
        let log_level: u8 = if cfg.bpf_log { 5 } else { 0 };
        let mut ebpf = EbpfLoader::new()
            .override_global("AGENT_MARK", &cfg.mark, true)
            .override_global("OUTBOUND_PORT", &cfg.outbound_port, true)
            .override_global("HBONE_PORT", &cfg.hbone_port, true)
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
        for name in CGROUP_PROGRAMS {
            let prog = ebpf.program_mut(name).ok_or(DatapathError::Missing(name))?;
            if name == "podlock_sockops" {
                let prog: &mut SockOps = prog.try_into().map_err(prog_err(name))?;
                prog.load().map_err(prog_err(name))?;
                prog.attach(&cgroup, CgroupAttachMode::Single)
                    .map_err(prog_err(name))?;
            } else {
                let prog: &mut CgroupSockAddr = prog.try_into().map_err(prog_err(name))?;
                prog.load().map_err(prog_err(name))?;
                prog.attach(&cgroup, CgroupAttachMode::Single)
                    .map_err(prog_err(name))?;
            }
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
        info!(cgroup = %cfg.cgroup_root.display(), mark = cfg.mark, "eBPF programs attached");
        Ok(Self {
            ebpf,
            pods,
            listeners,
            sk_lookup_links: HashMap::new(),
            orig_dst: OrigDstTable::new(established),
            detached: false,
        })
    }

    /// Where accepted outbound connections look up their original destination.
    pub fn orig_dst(&self) -> OrigDstTable {
        self.orig_dst.clone()
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
            let file =
                std::fs::File::open(netns.path()).map_err(|source| DatapathError::Cgroup {
                    path: netns.path().to_path_buf(),
                    source,
                })?;
            let prog: &mut SkLookup = self
                .ebpf
                .program_mut("podlock_sk_lookup")
                .ok_or(DatapathError::Missing("podlock_sk_lookup"))?
                .try_into()
                .map_err(prog_err("podlock_sk_lookup"))?;
            let link = prog.attach(&file).map_err(prog_err("podlock_sk_lookup"))?;
            self.sk_lookup_links.insert(netns.cookie(), link);
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
            let detached = self
                .ebpf
                .program_mut("podlock_sk_lookup")
                .and_then(|p| <&mut SkLookup>::try_from(p).ok())
                .map(|p| p.detach(link));
            if let Some(Err(e)) = detached {
                warn!(cookie, error = %e, "detaching sk_lookup");
            }
        }
        self.orig_dst.forget_netns(cookie);
    }
}

impl Datapath {
    /// Detaches every program (cgroup and sk_lookup) now, rather than when the agent exits.
    pub fn detach_all(&mut self) {
        if std::mem::replace(&mut self.detached, true) {
            return;
        }
        let names = CGROUP_PROGRAMS.iter().chain(["podlock_sk_lookup"].iter());
        for name in names {
            let result = match self.ebpf.program_mut(name) {
                Some(Program::CgroupSockAddr(p)) => p.unload(),
                Some(Program::SockOps(p)) => p.unload(),
                Some(Program::SkLookup(p)) => p.unload(),
                _ => Ok(()),
            };
            if let Err(e) = result {
                warn!(program = name, error = %e, "detaching");
            }
        }
        self.sk_lookup_links.clear();
        info!("eBPF programs detached");
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
