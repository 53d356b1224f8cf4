//! sk_lookup, attached to each enrolled pod's netns: steer SYNs that arrive from outside the
//! pod, for one of the pod's own addresses, to the agent's in-pod plaintext listener. The
//! accepted socket's local address is then the original destination.
use aya_ebpf::{macros::sk_lookup, programs::SkLookupContext};
use podlock_common::{IpKey, AF_INET};

use crate::{addr, HBONE_PORT, INBOUND_LISTENERS};

const IPPROTO_TCP: u32 = 6;
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
    // No listener for this address: not one of ours, let the normal lookup run.
    let _ = INBOUND_LISTENERS.redirect_sk_lookup(&ctx, local, 0);
    SK_PASS
}
