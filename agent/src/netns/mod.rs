//! Network namespaces of enrolled pods: the one place that enters them.
//!
//! Each pod gets a dedicated OS thread that calls `setns()` once and then stays in the pod's
//! network namespace, creating sockets on request. A socket's namespace is fixed when it is
//! created, so the sockets can then be used from any tokio task.
#![forbid(unsafe_code)]

mod addresses;
mod worker;

use std::{
    fs::File,
    io,
    net::IpAddr,
    os::{
        fd::{AsFd, OwnedFd},
        unix::fs::MetadataExt,
    },
    path::{Path, PathBuf},
};

use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType};
use tokio::net::TcpSocket;

pub use worker::NetnsError;

/// Identity of a network namespace: (device, inode) of its nsfs file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

/// An open handle on a pod's network namespace plus the thread that lives inside it.
pub struct Netns {
    path: PathBuf,
    /// The namespace file, kept open: what sk_lookup attaches to.
    file: File,
    id: NetnsId,
    cookie: u64,
    worker: worker::Worker,
}

impl Netns {
    /// Opens `path` (e.g. `/run/netns/pod-a` or `/proc/PID/ns/net`) and starts its thread.
    pub fn open(path: &Path) -> Result<Self, NetnsError> {
        let file = File::open(path).map_err(|source| NetnsError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        check_is_netns(path, &file)?;
        let meta = file.metadata().map_err(|source| NetnsError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let id = NetnsId {
            dev: meta.dev(),
            ino: meta.ino(),
        };
        let for_worker = file.try_clone().map_err(|source| NetnsError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let worker = worker::Worker::spawn(path, for_worker)?;
        let probe = worker.call(|| raw_socket(AddressFamily::Inet, None))?;
        let cookie = probe
            .and_then(|fd| crate::sys::netns_cookie(&fd))
            .map_err(|source| NetnsError::Socket {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            id,
            cookie,
            worker,
        })
    }

    pub fn id(&self) -> NetnsId {
        self.id
    }

    /// The cookie eBPF programs see for this namespace.
    pub fn cookie(&self) -> u64 {
        self.cookie
    }

    /// The namespace's global-scope unicast addresses (what the pod's peers dial).
    pub fn addresses(&self) -> Result<Vec<IpAddr>, NetnsError> {
        let path = self.path.clone();
        self.worker
            .call(addresses::pod_addresses)?
            .map_err(|source| NetnsError::Socket { path, source })
    }

    /// A TCP socket created inside the namespace, optionally carrying `mark` (SO_MARK).
    pub async fn tcp_socket(&self, ip: IpAddr, mark: Option<u32>) -> io::Result<TcpSocket> {
        let family = match ip {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        let fd = self
            .worker
            .call_async(move || raw_socket(family, mark))
            .await
            .map_err(io::Error::other)??;
        Ok(TcpSocket::from_std_stream(std::net::TcpStream::from(fd)))
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl std::fmt::Debug for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netns")
            .field("path", &self.path)
            .field("cookie", &self.cookie)
            .finish()
    }
}

/// The cookie of the calling thread's own network namespace (the node's, for the agent).
pub fn current_cookie() -> io::Result<u64> {
    crate::sys::netns_cookie(&raw_socket(AddressFamily::Inet, None)?)
}

fn raw_socket(family: AddressFamily, mark: Option<u32>) -> io::Result<OwnedFd> {
    let fd = socket::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    if let Some(mark) = mark {
        socket::setsockopt(&fd, sockopt::Mark, &mark)?;
    }
    Ok(fd)
}

fn check_is_netns(path: &Path, file: &File) -> Result<(), NetnsError> {
    let fs = nix::sys::statfs::fstatfs(file.as_fd()).map_err(|e| NetnsError::Open {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return Err(NetnsError::NotANetns(path.to_path_buf()));
    }
    Ok(())
}
