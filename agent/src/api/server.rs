//! Serves the node API on a unix socket until shutdown.
use std::{
    io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::Mutex,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{Request, Response, MAX_REQUEST};
use crate::{config::Config, connections::ConnTable, workloads::Workloads};

/// What requests are answered from.
pub struct ApiServer {
    pub workloads: Arc<Mutex<Workloads>>,
    pub conns: ConnTable,
    pub config: Arc<Config>,
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another podlock agent is already serving {0}; pass a different --socket")]
    InUse(PathBuf),
    #[error("cannot listen on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Binds the socket, replacing a stale file left by a crashed agent but never a live one.
pub async fn bind(path: &Path) -> Result<UnixListener, BindError> {
    let io_err = |source| BindError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(BindError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(io_err)?;
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    // The node API can enroll pods and change policy: root only.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, api: Arc<ApiServer>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(handle_client(stream, api.clone()));
                }
                Err(e) => warn!(error = %e, "node API accept failed"),
            }
        }
    }
}

async fn handle_client(stream: UnixStream, api: Arc<ApiServer>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        match (&mut lines)
            .take(MAX_REQUEST as u64 + 1)
            .read_line(&mut line)
            .await
        {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                debug!(error = %e, "node API read failed");
                break;
            }
        }
        let response = if line.len() > MAX_REQUEST {
            Response::Error(format!("request longer than {MAX_REQUEST} bytes"))
        } else {
            match serde_json::from_str::<Request>(line.trim_end()) {
                Ok(request) => api.answer(request).await,
                Err(e) => Response::Error(format!("malformed request: {e}")),
            }
        };
        let mut out = serde_json::to_vec(&response).unwrap_or_default();
        out.push(b'\n');
        if write.write_all(&out).await.is_err() {
            break;
        }
        if line.len() > MAX_REQUEST {
            // Say so, then discard the rest for a moment so the client reads the answer
            // instead of a reset.
            let _ = write.shutdown().await;
            let mut sink = tokio::io::sink();
            let drain = tokio::io::copy(&mut lines, &mut sink);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
            break;
        }
    }
}

fn ok<T: serde::Serialize>(value: T) -> Response {
    match serde_json::to_value(value) {
        Ok(v) => Response::Ok(v),
        Err(e) => Response::Error(format!("internal error encoding response: {e}")),
    }
}

impl ApiServer {
    async fn answer(&self, request: Request) -> Response {
        match request {
            Request::Enroll(spec) => match self.workloads.lock().await.enroll(spec).await {
                Ok((pod, outcome)) => ok(serde_json::json!({ "outcome": outcome, "pod": pod })),
                Err(e) => Response::Error(e.to_string()),
            },
            Request::Unenroll(key) => match self.workloads.lock().await.unenroll(&key) {
                Ok(pod) => ok(pod),
                Err(e) => Response::Error(e.to_string()),
            },
            Request::Pods => ok(self.workloads.lock().await.list()),
            Request::Connections => ok(self.conns.snapshot()),
            Request::Config => ok(&*self.config),
            Request::Policy => ok(self.workloads.lock().await.policy_report()),
            Request::PolicyApply { yaml } => {
                match self.workloads.lock().await.apply_policy_yaml(&yaml) {
                    Ok(changes) => ok(changes),
                    Err(e) => Response::Error(e.to_string()),
                }
            }
            Request::PolicyDelete { namespace, name } => {
                match self.workloads.lock().await.delete_policy(&namespace, &name) {
                    Ok(()) => ok(format!("{namespace}/{name} deleted")),
                    Err(e) => Response::Error(e.to_string()),
                }
            }
        }
    }
}
