//! cgroup/connect4 and cgroup/connect6: capture an enrolled pod's outbound TCP connections.
use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
    EbpfContext,
};
use aya_log_ebpf::debug;
use podlock_common::{IpKey, OrigDst, AF_INET, POD_CAPTURE_OUTBOUND};

use crate::{
    addr::{self, LOCALHOST4, LOCALHOST4_MAPPED, LOCALHOST6},
    AGENT_MARK, CONNECT_ORIG, OUTBOUND_PORT, PODS,
};

const SOCK_STREAM: u32 = 1;
/// Returning 1 from a cgroup/connect program lets the connect() proceed.
const ALLOW: i32 = 1;

#[cgroup_sock_addr(connect4)]
pub fn podlock_connect4(ctx: SockAddrContext) -> i32 {
    // SAFETY: the kernel passes a valid bpf_sock_addr for the program's lifetime.
    let sa = unsafe { &mut *ctx.sock_addr };
    let dst = addr::v4(sa.user_ip4);
    if should_capture(&ctx, sa, &dst) && record(&ctx, dst, sa.user_port) {
        sa.user_ip4 = LOCALHOST4;
        sa.user_port = u32::from(OUTBOUND_PORT.load().to_be());
    }
    ALLOW
}

#[cgroup_sock_addr(connect6)]
pub fn podlock_connect6(ctx: SockAddrContext) -> i32 {
    // SAFETY: the kernel passes a valid bpf_sock_addr for the program's lifetime.
    let sa = unsafe { &mut *ctx.sock_addr };
    let ip6 = sa.user_ip6;
    let dst = addr::v6(ip6);
    if should_capture(&ctx, sa, &dst) && record(&ctx, dst, sa.user_port) {
        // A v4-mapped destination goes to the IPv4 listener through the same mapping.
        let target = if dst.family == AF_INET {
            LOCALHOST4_MAPPED
        } else {
            LOCALHOST6
        };
        addr::write_ip6(&mut sa.user_ip6, &target);
        sa.user_port = u32::from(OUTBOUND_PORT.load().to_be());
    }
    ALLOW
}

#[inline(always)]
fn should_capture(ctx: &SockAddrContext, sa: &bpf_sock_addr, dst: &IpKey) -> bool {
    if sa.type_ != SOCK_STREAM || addr::is_loopback(dst) {
        return false;
    }
    // SAFETY: helper call with the program's own context pointer.
    let netns = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    // SAFETY: read-only copy of a map value.
    let Some(pod) = (unsafe { PODS.get(&netns) }) else {
        return false;
    };
    if pod.flags & POD_CAPTURE_OUTBOUND == 0 {
        return false;
    }
    // SAFETY: `sk` is a kernel-provided socket pointer; the verifier allows reading `mark`.
    let sk = unsafe { sa.__bindgen_anon_1.sk };
    if sk.is_null() {
        return false;
    }
    // SAFETY: checked non-null above.
    let mark = unsafe { (*sk).mark };
    mark != AGENT_MARK.load()
}

/// Remember the original destination under the socket's cookie; false if the map is full.
#[inline(always)]
fn record(ctx: &SockAddrContext, ip: IpKey, user_port: u32) -> bool {
    let port = u16::from_be(user_port as u16);
    // SAFETY: helper call with the program's own context pointer.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let orig = OrigDst { ip, port, _pad: 0 };
    if CONNECT_ORIG.insert(&cookie, &orig, 0).is_err() {
        return false;
    }
    debug!(ctx, "podlock: captured connect to port {}", port);
    true
}
