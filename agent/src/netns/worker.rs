//! The thread that lives in one pod's network namespace and runs small jobs there.
use std::{fs::File, path::Path, sync::mpsc};

use nix::sched::{setns, CloneFlags};
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot open network namespace {path}: {source}")]
    Open {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0} is not a network namespace (expected a file like /run/netns/NAME or /proc/PID/ns/net)"
    )]
    NotANetns(std::path::PathBuf),
    #[error("cannot enter network namespace {path}: {source}")]
    Enter {
        path: std::path::PathBuf,
        source: nix::Error,
    },
    #[error("socket setup in network namespace {path} failed: {source}")]
    Socket {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the thread of network namespace {0} has stopped")]
    WorkerGone(std::path::PathBuf),
}

type Job = Box<dyn FnOnce() + Send>;

pub(super) struct Worker {
    path: std::path::PathBuf,
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    /// Starts the thread and waits until it has entered the namespace.
    pub(super) fn spawn(path: &Path, netns: File) -> Result<Self, NetnsError> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let owned_path = path.to_path_buf();
        std::thread::Builder::new()
            .name("netns".into())
            .spawn(move || {
                let entered = setns(&netns, CloneFlags::CLONE_NEWNET);
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if ok {
                    // Runs until every sender (the Netns handle) is dropped.
                    for job in rx {
                        job();
                    }
                }
            })
            .map_err(|source| NetnsError::Socket {
                path: owned_path.clone(),
                source,
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                path: owned_path,
                jobs,
            }),
            Ok(Err(source)) => Err(NetnsError::Enter {
                path: owned_path,
                source,
            }),
            Err(_) => Err(NetnsError::WorkerGone(owned_path)),
        }
    }

    fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<oneshot::Receiver<T>, NetnsError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| NetnsError::WorkerGone(self.path.clone()))?;
        Ok(rx)
    }

    /// Runs `f` in the namespace, blocking the caller (control-plane use only).
    pub(super) fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NetnsError> {
        self.submit(f)?
            .blocking_recv()
            .map_err(|_| NetnsError::WorkerGone(self.path.clone()))
    }

    /// Runs `f` in the namespace without blocking the async runtime.
    pub(super) async fn call_async<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NetnsError> {
        self.submit(f)?
            .await
            .map_err(|_| NetnsError::WorkerGone(self.path.clone()))
    }
}
