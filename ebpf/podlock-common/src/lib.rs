//! Map keys and values shared by the eBPF programs and the agent.
//!
//! Addresses are stored as four `u32` words in network byte order, exactly as the kernel
//! hands them to eBPF programs. IPv4 uses word 0 only; IPv4-mapped IPv6 addresses are
//! normalised to IPv4 on both sides so a dual-stack socket and an IPv4 listener agree.
#![no_std]
#![deny(unsafe_code)]

pub const AF_INET: u32 = 2;
pub const AF_INET6: u32 = 10;

/// Default ports inside an enrolled pod's network namespace.
pub const OUTBOUND_PORT: u16 = 15001;
pub const INBOUND_PLAINTEXT_PORT: u16 = 15006;
pub const HBONE_PORT: u16 = 15008;

/// An IP address as the kernel gives it to eBPF (network byte order words).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct IpKey {
    pub family: u32,
    pub addr: [u32; 4],
}

/// The destination an application dialled before connect4/connect6 rewrote it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OrigDst {
    pub ip: IpKey,
    /// Host byte order.
    pub port: u16,
    pub _pad: u16,
}

/// Identifies the client end of a captured connection as the agent sees it after accept():
/// the pod's netns cookie plus the client socket's local address and port.
///
/// Exactly 32 bytes with no implicit padding: map keys are compared byte for byte, so
/// uninitialised padding on the eBPF stack would make lookups miss.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SockKey {
    pub netns_cookie: u64,
    pub ip: IpKey,
    /// Host byte order.
    pub port: u32,
}

const _: () = assert!(core::mem::size_of::<SockKey>() == 32);
const _: () = assert!(core::mem::size_of::<OrigDst>() == 24);
const _: () = assert!(core::mem::size_of::<IpKey>() == 20);
const _: () = assert!(core::mem::size_of::<PortKey>() == 24);
const _: () = assert!(core::mem::size_of::<FlowKey>() == 48);

/// Per-pod settings, keyed by the pod's netns cookie.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PodConfig {
    /// Bit set of `POD_*` flags.
    pub flags: u32,
    pub _pad: u32,
}

/// Capture the pod's outbound TCP connections.
pub const POD_CAPTURE_OUTBOUND: u32 = 1;

/// Inbound mTLS mode of a pod address, for one port or (port 0) its default.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PortKey {
    pub ip: IpKey,
    /// Host byte order; 0 = every port without its own entry.
    pub port: u32,
}

/// Plaintext from outside is steered to the agent, which accepts it.
pub const INBOUND_PERMISSIVE: u32 = 1;
/// Plaintext from outside is refused (reset), except probes from the pod's own node.
pub const INBOUND_STRICT: u32 = 2;
/// Inbound traffic is not captured at all.
pub const INBOUND_DISABLE: u32 = 3;

/// A TCP connection opened from the node's own network namespace (kubelet probes):
/// (source, destination) as the destination pod sees them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub src: IpKey,
    pub dst: IpKey,
    /// Host byte order.
    pub sport: u32,
    /// Host byte order.
    pub dport: u32,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY (for every impl here): plain `repr(C)` data with explicit padding fields and
    // no pointers, so any bit pattern is a valid value.
    #[allow(unsafe_code)]
    unsafe impl aya::Pod for super::IpKey {}
    #[allow(unsafe_code)]
    unsafe impl aya::Pod for super::OrigDst {}
    #[allow(unsafe_code)]
    unsafe impl aya::Pod for super::SockKey {}
    #[allow(unsafe_code)]
    unsafe impl aya::Pod for super::PodConfig {}
    #[allow(unsafe_code)]
    unsafe impl aya::Pod for super::PortKey {}
    #[allow(unsafe_code)]
    unsafe impl aya::Pod for super::FlowKey {}
}
