//! podlock's eBPF programs.
//!
//! - `podlock_connect4/6` (cgroup, attached once at the cgroup2 root): rewrite an enrolled
//!   pod's outbound TCP connect() to the agent's in-pod listener and remember where it was
//!   going, keyed by socket cookie.
//! - `podlock_sockops` (cgroup): when such a connection is established, publish the original
//!   destination under (netns cookie, client address, client port) so the agent can find it
//!   after accept(); forget both entries when the socket closes.
//! - `podlock_getpeername4/6` (cgroup): make getpeername() on a captured socket return the
//!   address the application dialled.
//! - `podlock_sk_lookup` (per pod netns): steer inbound SYNs for the pod's addresses to the
//!   agent's in-pod plaintext listener, refuse them (STRICT) or leave them (DISABLE).
//! - `podlock_sockops` also records connections the node itself opens (kubelet probes).
#![no_std]
#![no_main]

mod addr;
mod connect;
mod getpeername;
mod lookup;
mod sockops;

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, SockHash},
    Global,
};
use podlock_common::{FlowKey, IpKey, OrigDst, PodConfig, PortKey, SockKey};

/// SO_MARK of the agent's own sockets: never captured. Overridden at load time.
#[unsafe(no_mangle)]
static AGENT_MARK: Global<u32> = Global::new(0);

/// Port of the agent's outbound listener inside each pod. Overridden at load time.
#[unsafe(no_mangle)]
static OUTBOUND_PORT: Global<u16> = Global::new(podlock_common::OUTBOUND_PORT);

/// Port of the agent's HBONE listener inside each pod (never steered). Overridden at load time.
#[unsafe(no_mangle)]
static HBONE_PORT: Global<u16> = Global::new(podlock_common::HBONE_PORT);

/// Cookie of the node's own network namespace (where kubelet probes come from).
#[unsafe(no_mangle)]
static NODE_NETNS_COOKIE: Global<u64> = Global::new(0);

/// Inbound mode per pod address and port (port 0: the address's default).
#[map]
static INBOUND_MODES: HashMap<PortKey, u32> = HashMap::with_max_entries(65536, 0);

/// Connections opened from the node's netns, so a pod's sk_lookup can exempt them from
/// STRICT without trusting a (spoofable) source address.
#[map]
static HOST_FLOWS: LruHashMap<FlowKey, u32> = LruHashMap::with_max_entries(16384, 0);

/// Enrolled pods, keyed by netns cookie.
#[map]
static PODS: HashMap<u64, PodConfig> = HashMap::with_max_entries(4096, 0);

/// Original destination of a captured socket, keyed by socket cookie (lives until close).
#[map]
static CONNECT_ORIG: LruHashMap<u64, OrigDst> = LruHashMap::with_max_entries(65536, 0);

/// Original destination keyed by the client end as the agent sees it after accept().
#[map]
static ESTABLISHED_ORIG: LruHashMap<SockKey, OrigDst> = LruHashMap::with_max_entries(65536, 0);

/// The agent's inbound plaintext listener for each enrolled pod address.
#[map]
static INBOUND_LISTENERS: SockHash<IpKey> = SockHash::with_max_entries(4096, 0);

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
