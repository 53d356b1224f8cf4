//! sock_ops: publish a captured connection's original destination once it is established,
//! keyed the way the agent sees the client after accept(), and clean up on close.
use aya_ebpf::{
    bindings::{
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG,
        BPF_SOCK_OPS_TCP_CONNECT_CB,
    },
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    macros::sock_ops,
    programs::SockOpsContext,
    EbpfContext,
};
use podlock_common::{FlowKey, SockKey, AF_INET};

use crate::{addr, CONNECT_ORIG, ESTABLISHED_ORIG, HOST_FLOWS, NODE_NETNS_COOKIE};

const TCP_CLOSE: u32 = 7;

#[sock_ops]
pub fn podlock_sockops(ctx: SockOpsContext) -> u32 {
    match ctx.op() {
        BPF_SOCK_OPS_TCP_CONNECT_CB => on_connect(&ctx),
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB => on_established(&ctx),
        BPF_SOCK_OPS_STATE_CB if ctx.arg(1) == TCP_CLOSE => on_close(&ctx),
        _ => {}
    }
    1
}

#[inline(always)]
fn socket_cookie(ctx: &SockOpsContext) -> u64 {
    // SAFETY: helper call with the program's own context pointer.
    unsafe { bpf_get_socket_cookie(ctx.as_ptr()) }
}

#[inline(always)]
fn client_key(ctx: &SockOpsContext) -> SockKey {
    let ip = if ctx.family() == AF_INET {
        addr::v4(ctx.local_ip4())
    } else {
        addr::v6(ctx.local_ip6())
    };
    SockKey {
        // SAFETY: helper call with the program's own context pointer.
        netns_cookie: unsafe { bpf_get_netns_cookie(ctx.as_ptr()) },
        ip,
        port: ctx.local_port(),
    }
}

/// (local, remote) of the socket, as its peer's sk_lookup will see (remote, local).
#[inline(always)]
fn flow_key(ctx: &SockOpsContext) -> FlowKey {
    let (src, dst) = if ctx.family() == AF_INET {
        (addr::v4(ctx.local_ip4()), addr::v4(ctx.remote_ip4()))
    } else {
        (addr::v6(ctx.local_ip6()), addr::v6(ctx.remote_ip6()))
    };
    FlowKey {
        src,
        dst,
        sport: ctx.local_port(),
        dport: u32::from_be(ctx.remote_port()),
    }
}

#[inline(always)]
fn in_node_netns(ctx: &SockOpsContext) -> bool {
    // SAFETY: helper call with the program's own context pointer.
    let netns = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    netns == NODE_NETNS_COOKIE.load()
}

/// A connection the node itself is opening (before its SYN leaves).
#[inline(always)]
fn on_connect(ctx: &SockOpsContext) {
    if in_node_netns(ctx) && HOST_FLOWS.insert(&flow_key(ctx), &1, 0).is_ok() {
        let _ = ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG) as i32);
    }
}

#[inline(always)]
fn on_established(ctx: &SockOpsContext) {
    let cookie = socket_cookie(ctx);
    // SAFETY: the value is copied out immediately.
    let Some(orig) = (unsafe { CONNECT_ORIG.get(&cookie) }).copied() else {
        return;
    };
    let key = client_key(ctx);
    if ESTABLISHED_ORIG.insert(&key, &orig, 0).is_ok() {
        // Ask for state callbacks so the entries are removed when the socket closes.
        let _ = ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG) as i32);
    }
}

#[inline(always)]
fn on_close(ctx: &SockOpsContext) {
    let cookie = socket_cookie(ctx);
    let _ = CONNECT_ORIG.remove(&cookie);
    let key = client_key(ctx);
    let _ = ESTABLISHED_ORIG.remove(&key);
    if in_node_netns(ctx) {
        let _ = HOST_FLOWS.remove(&flow_key(ctx));
    }
}
