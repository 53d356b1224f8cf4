//! Pinned links in bpffs, so a STRICT pod stays closed while the agent is down.
//!
//! Every run pins its links under a fresh generation directory inside the pin root. A new
//! run first attaches and pins its own links, re-enrolls the pods it was serving, and only
//! then releases the generations earlier runs left behind, so there is no moment without
//! enforcement. A clean shutdown with no STRICT pods removes its generation entirely.
use std::path::{Path, PathBuf};

use aya::programs::{
    links::{FdLink, PinnedLink},
    Link,
};
use nix::{
    mount::{mount, MsFlags},
    sys::statfs::{statfs, FsType},
};
use tracing::{info, warn};

use super::DatapathError;

/// `BPF_FS_MAGIC` from linux/magic.h.
const BPF_FS_MAGIC: FsType = FsType(0xcafe_4a11);

pub struct Pins {
    dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DatapathError + '_ {
    move |source| DatapathError::Pin {
        path: path.to_path_buf(),
        source,
    }
}

fn is_bpffs(path: &Path) -> bool {
    statfs(path)
        .map(|s| s.filesystem_type() == BPF_FS_MAGIC)
        .unwrap_or(false)
}

impl Pins {
    /// Prepares `root` (mounting a bpffs there if it is not on one) and creates this run's
    /// generation directory. Returns it and the generations earlier runs left.
    pub fn prepare(root: &Path) -> Result<(Self, Vec<PathBuf>), DatapathError> {
        std::fs::create_dir_all(root).map_err(io_err(root))?;
        if !is_bpffs(root) {
            mount(
                Some("bpf"),
                root,
                Some("bpf"),
                MsFlags::empty(),
                None::<&str>,
            )
            .map_err(|e| io_err(root)(e.into()))?;
            info!(path = %root.display(), "mounted bpffs for pinned links");
        }
        let old: Vec<PathBuf> = std::fs::read_dir(root)
            .map_err(io_err(root))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = root.join(format!("gen-{stamp}-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(io_err(&dir))?;
        Ok((Self { dir }, old))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pin(&self, name: &str, link: FdLink) -> Result<PinnedLink, DatapathError> {
        let path = self.dir.join(name);
        link.pin(&path)
            .map_err(|e| io_err(&path)(std::io::Error::other(e.to_string())))
    }

    /// Unpins (and so detaches) every link in earlier generations and removes them.
    pub fn release(generations: &[PathBuf]) {
        for dir in generations {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                unpin(&entry.path());
            }
            if let Err(e) = std::fs::remove_dir(dir) {
                warn!(dir = %dir.display(), error = %e, "removing an old pin generation");
            } else {
                info!(dir = %dir.display(), "released links pinned by an earlier run");
            }
        }
    }

    /// Removes this run's (by now empty) generation directory.
    pub fn remove(&self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Unpins one link; dropping the last reference detaches it.
pub fn unpin_link(link: PinnedLink) {
    match link.unpin() {
        Ok(fd) => {
            let _ = fd.detach();
        }
        Err(e) => warn!(error = %e, "unpinning a link"),
    }
}

fn unpin(path: &Path) {
    match PinnedLink::from_pin(path) {
        Ok(link) => unpin_link(link),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "reading a pinned link");
            let _ = std::fs::remove_file(path);
        }
    }
}
