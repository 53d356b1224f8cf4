//! sk_lookup, attached to each enrolled pod's netns, decides what happens to a SYN that
//! arrives from outside the pod for one of the pod's own addresses (HBONE's port aside):
//! - PERMISSIVE (the default): steered to the agent's in-pod plaintext listener; the
//!   accepted socket's local address is then the original destination;
//! - STRICT: refused, so the client gets a reset at once, unless the node itself opened
//!   the connection (kubelet probes), which is steered like PERMISSIVE;
//! - DISABLE: left alone; the application receives it directly.
use aya_ebpf::{macros::sk_lookup, programs::SkLookupContext};
use podlock_common::{FlowKey, IpKey, PortKey, AF_INET, INBOUND_DISABLE, INBOUND_STRICT};

use crate::{addr, HBONE_PORT, HOST_FLOWS, INBOUND_LISTENERS, INBOUND_MODES};

const IPPROTO_TCP: u32 = 6;
const SK_DROP: u32 = 0;
const SK_PASS: u32 = 1;

#[sk_lookup]
pub fn podlock_sk_lookup(ctx: SkLookupContext) -> u32 {
    // SAFETY: the kernel passes a valid bpf_sk_lookup for the program's lifetime.
    let l = unsafe { &*ctx.lookup };
    if l.protocol != IPPROTO_TCP || l.local_port == u32::from(HBONE_PORT.load()) {
        return SK_PASS;
    }
    let (local, remote): (IpKey, IpKey) = if l.family == AF_INET {
        (addr::v4(l.local_ip4), addr::v4(l.remote_ip4))
    } else {
        (addr::v6(l.local_ip6), addr::v6(l.remote_ip6))
    };
    // Traffic the pod sends to itself (loopback, or its own address) is never steered.
    if addr::is_loopback(&remote) || remote == local {
        return SK_PASS;
    }
    let port = l.local_port;
    let mode = inbound_mode(local, port);
    if mode == INBOUND_DISABLE {
        return SK_PASS;
    }
    if mode == INBOUND_STRICT {
        let flow = FlowKey {
            src: remote,
            dst: local,
            sport: u32::from(u16::from_be(l.remote_port)),
            dport: port,
        };
        // SAFETY: presence check only.
        if unsafe { HOST_FLOWS.get(&flow) }.is_none() {
            return SK_DROP;
        }
    }
    // No listener for this address: not one of ours, let the normal lookup run.
    let _ = INBOUND_LISTENERS.redirect_sk_lookup(&ctx, local, 0);
    SK_PASS
}

#[inline(always)]
fn inbound_mode(ip: IpKey, port: u32) -> u32 {
    // SAFETY (both lookups): the values are copied out immediately.
    if let Some(mode) = unsafe { INBOUND_MODES.get(&PortKey { ip, port }) } {
        return *mode;
    }
    unsafe { INBOUND_MODES.get(&PortKey { ip, port: 0 }) }
        .copied()
        .unwrap_or(0)
}
