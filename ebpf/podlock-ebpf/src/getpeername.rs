//! cgroup/getpeername4 and getpeername6: a captured socket reports the address it dialled.
use aya_ebpf::{
    helpers::bpf_get_socket_cookie, macros::cgroup_sock_addr, programs::SockAddrContext,
    EbpfContext,
};
use podlock_common::{OrigDst, AF_INET};

use crate::{addr, CONNECT_ORIG};

const ALLOW: i32 = 1;

#[inline(always)]
fn original(ctx: &SockAddrContext) -> Option<OrigDst> {
    // SAFETY: helper call with the program's own context pointer.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: the value is copied out immediately.
    unsafe { CONNECT_ORIG.get(&cookie) }.copied()
}

#[cgroup_sock_addr(getpeername4)]
pub fn podlock_getpeername4(ctx: SockAddrContext) -> i32 {
    if let Some(orig) = original(&ctx) {
        if orig.ip.family == AF_INET {
            // SAFETY: the kernel passes a valid bpf_sock_addr for the program's lifetime.
            let sa = unsafe { &mut *ctx.sock_addr };
            sa.user_ip4 = orig.ip.addr[0];
            sa.user_port = u32::from(orig.port.to_be());
        }
    }
    ALLOW
}

#[cgroup_sock_addr(getpeername6)]
pub fn podlock_getpeername6(ctx: SockAddrContext) -> i32 {
    if let Some(orig) = original(&ctx) {
        // SAFETY: the kernel passes a valid bpf_sock_addr for the program's lifetime.
        let sa = unsafe { &mut *ctx.sock_addr };
        let ip6 = if orig.ip.family == AF_INET {
            [0, 0, 0xffffu32.to_be(), orig.ip.addr[0]]
        } else {
            orig.ip.addr
        };
        addr::write_ip6(&mut sa.user_ip6, &ip6);
        sa.user_port = u32::from(orig.port.to_be());
    }
    ALLOW
}
