//! The few syscalls that need `unsafe`, each wrapped once with its reasoning.
#![allow(unsafe_code)]

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
};

/// `SO_NETNS_COOKIE` (Linux 5.14+): the cookie eBPF programs see from `bpf_get_netns_cookie`.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The network-namespace cookie of the namespace `sock` was created in.
pub fn netns_cookie(sock: &impl AsFd) -> io::Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` and `len` are valid for writes of the sizes passed; the fd is borrowed
    // for the duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(cookie)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Registers the eBPF log ring buffer with tokio's reactor.
pub fn async_bpf_logger(
    logger: aya_log::EbpfLogger<&'static dyn log::Log>,
) -> io::Result<tokio::io::unix::AsyncFd<aya_log::EbpfLogger<&'static dyn log::Log>>> {
    // SAFETY: the logger owns its ring-buffer map fd for its whole lifetime and always
    // returns that same fd from as_raw_fd(); the AsyncFd takes ownership of the logger.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
    }
    .map_err(io::Error::from)
}
