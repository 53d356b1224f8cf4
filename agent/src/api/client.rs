//! Client side of the node API, used by the CLI.
use std::path::Path;

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::UnixStream,
};

use super::{Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no podlock agent is listening on {path} ({source}); is `podlock run` running, with the same --socket?")]
    Connect {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("talking to the agent failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the agent sent a malformed response: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("{0}")]
    Agent(String),
}

/// Sends one request and returns the agent's result.
pub async fn call(socket: &Path, request: &Request) -> Result<serde_json::Value, ClientError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut reply = String::new();
    BufReader::new(read).read_line(&mut reply).await?;
    match serde_json::from_str(&reply)? {
        Response::Ok(value) => Ok(value),
        Response::Error(message) => Err(ClientError::Agent(message)),
    }
}
