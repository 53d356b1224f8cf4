//! HBONE client: a pool of HTTP/2-over-mTLS connections and CONNECT streams on them.
//!
//! Connections are pooled per (source pod, destination address): every connection a pod
//! opens is dialled from the pod's own netns with the pod's certificate, so a new stream to
//! a known destination costs no TCP or TLS handshake. Each connection carries at most
//! [`MAX_STREAMS`] streams and is closed after [`IDLE`] without any.
use std::{
    collections::HashMap,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use h2::client::SendRequest;
use http::{Method, Request, StatusCode};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::H2Stream;
use crate::identity::SpiffeId;

/// Streams one pooled connection carries before another is opened.
pub const MAX_STREAMS: usize = 100;
/// A pooled connection with no streams for this long is closed.
pub const IDLE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The destination did not complete an HBONE handshake: it is not in the mesh.
    #[error("no HBONE at {addr}: {reason}")]
    NotMesh { addr: SocketAddr, reason: String },
    #[error("destination {addr} presented {got}, expected {expected}")]
    WrongIdentity {
        addr: SocketAddr,
        got: SpiffeId,
        expected: SpiffeId,
    },
    #[error("HBONE stream to {target} failed: {source}")]
    Stream {
        target: SocketAddr,
        source: h2::Error,
    },
    #[error("destination agent answered {status} for {target}")]
    Status {
        target: SocketAddr,
        status: StatusCode,
    },
}

/// The driver of a freshly dialled connection (must be polled for the connection to work).
pub type Driver = Pin<Box<dyn Future<Output = Result<(), h2::Error>> + Send>>;

/// What a dial produces: the request handle, its driver, and the server's verified identity.
pub struct Dialled {
    pub sender: SendRequest<Bytes>,
    pub driver: Driver,
    pub peer: SpiffeId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// Netns cookie of the source pod.
    pub source: u64,
    pub dst: IpAddr,
}

struct Pooled {
    sender: SendRequest<Bytes>,
    peer: SpiffeId,
    streams: AtomicUsize,
    closed: AtomicBool,
    last_used: Mutex<Instant>,
}

/// A stream's claim on its pooled connection; released when dropped.
pub struct Lease(Arc<Pooled>);

impl Drop for Lease {
    fn drop(&mut self) {
        *self.0.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An open CONNECT stream.
pub struct Opened {
    pub stream: H2Stream,
    pub peer: SpiffeId,
    /// Keep alive as long as the stream is in use.
    pub lease: Lease,
}

type Conns = Arc<Mutex<HashMap<PoolKey, Vec<Arc<Pooled>>>>>;

#[derive(Clone)]
pub struct HboneClient {
    conns: Conns,
    shutdown: CancellationToken,
}

impl HboneClient {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            conns: Arc::default(),
            shutdown,
        }
    }

    /// Opens a CONNECT stream to `target`, reusing a pooled connection or calling `dial`.
    pub async fn open<F, Fut>(
        &self,
        key: PoolKey,
        target: SocketAddr,
        dial: F,
    ) -> Result<Opened, UpstreamError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Dialled, UpstreamError>>,
    {
        let conn = match self.checkout(key) {
            Some(conn) => conn,
            None => self.add(key, dial().await?),
        };
        let lease = Lease(conn.clone());
        let stream_err = |source| UpstreamError::Stream { target, source };
        let mut sender = conn.sender.clone().ready().await.map_err(stream_err)?;
        let request = Request::builder()
            .method(Method::CONNECT)
            .uri(target.to_string())
            .body(())
            .expect("CONNECT to a socket address is a valid request");
        let (response, send) = sender.send_request(request, false).map_err(stream_err)?;
        let response = response.await.map_err(stream_err)?;
        if response.status() != StatusCode::OK {
            return Err(UpstreamError::Status {
                target,
                status: response.status(),
            });
        }
        Ok(Opened {
            stream: H2Stream::new(send, response.into_body()),
            peer: conn.peer.clone(),
            lease,
        })
    }

    fn checkout(&self, key: PoolKey) -> Option<Arc<Pooled>> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let list = conns.get_mut(&key)?;
        list.retain(|c| !c.closed.load(Ordering::Acquire));
        let conn = list.iter().find(|c| {
            c.streams
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < MAX_STREAMS).then_some(n + 1)
                })
                .is_ok()
        })?;
        Some(conn.clone())
    }

    /// Pools a new connection (with one stream already claimed) and drives it until it
    /// fails, idles out, or the agent stops.
    fn add(&self, key: PoolKey, dialled: Dialled) -> Arc<Pooled> {
        let conn = Arc::new(Pooled {
            sender: dialled.sender,
            peer: dialled.peer,
            streams: AtomicUsize::new(1),
            closed: AtomicBool::new(false),
            last_used: Mutex::new(Instant::now()),
        });
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .push(conn.clone());
        let (watched, conns, shutdown) = (conn.clone(), self.conns.clone(), self.shutdown.clone());
        let driver = dialled.driver;
        tokio::spawn(async move {
            tokio::select! {
                result = driver => {
                    if let Err(e) = result {
                        debug!(dst = %key.dst, error = %e, "HBONE connection ended");
                    }
                }
                _ = idle(&watched) => debug!(dst = %key.dst, "closing idle HBONE connection"),
                _ = shutdown.cancelled() => {}
            }
            watched.closed.store(true, Ordering::Release);
            let mut conns = conns.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(list) = conns.get_mut(&key) {
                list.retain(|c| !Arc::ptr_eq(c, &watched));
                if list.is_empty() {
                    conns.remove(&key);
                }
            }
        });
        conn
    }
}

async fn idle(conn: &Pooled) {
    loop {
        tokio::time::sleep(IDLE / 4).await;
        let last = *conn.last_used.lock().unwrap_or_else(|p| p.into_inner());
        if conn.streams.load(Ordering::Acquire) == 0 && last.elapsed() >= IDLE {
            return;
        }
    }
}

/// Client-side HTTP/2 settings matching the server's.
pub fn builder() -> h2::client::Builder {
    let mut b = h2::client::Builder::new();
    b.initial_window_size(super::STREAM_WINDOW)
        .initial_connection_window_size(super::CONNECTION_WINDOW)
        .max_frame_size(super::MAX_FRAME);
    b
}
