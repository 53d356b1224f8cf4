//! The agent's own HTTP endpoints on the node: Prometheus metrics (`/metrics`) and
//! readiness (`/healthz/ready`: 200 once the previous run's pods are served again).
//! Read-only; nothing here changes the agent.
#![forbid(unsafe_code)]

mod metrics;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

pub use metrics::{ConnLabels, Metrics};

#[derive(Clone)]
pub struct Admin {
    pub metrics: Metrics,
    pub ready: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({flag}): {source}")]
pub struct BindError {
    addr: SocketAddr,
    flag: &'static str,
    source: std::io::Error,
}

/// Binds `addr` now (so a taken port is a startup error) and serves until shutdown.
pub async fn serve(
    addr: SocketAddr,
    flag: &'static str,
    admin: Admin,
    shutdown: CancellationToken,
) -> Result<(), BindError> {
    let listener =
        TcpListener::bind(addr)
            .await
            .map_err(|source| BindError { addr, flag, source })?;
    info!(%addr, "serving /metrics and /healthz/ready");
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        debug!(error = %e, "admin accept failed");
                        continue;
                    }
                },
            };
            let admin = admin.clone();
            let service = service_fn(move |req| answer(req, admin.clone()));
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    Ok(())
}

async fn answer(req: Request<Incoming>, admin: Admin) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            admin.metrics.encode(),
        ),
        "/healthz/ready" if admin.ready.load(Ordering::Acquire) => {
            (StatusCode::OK, "text/plain", "ready\n".into())
        }
        "/healthz/ready" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "starting\n".into(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics or /healthz/ready\n".into(),
        ),
    };
    let response = Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default();
    Ok(response)
}
