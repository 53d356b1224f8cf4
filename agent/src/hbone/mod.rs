//! HBONE: TCP streams carried as HTTP/2 CONNECT over mutual TLS, the format Istio's ztunnel
//! speaks. `:authority` is the original destination `ip:port`; the server answers 200 and
//! then both directions stream as DATA frames (END_STREAM is a half-close), 400 for a
//! malformed request or a target that is not the pod, 503 when the application refuses.
#![forbid(unsafe_code)]

mod client;
mod connect;
mod discovery;
mod server;
mod stream;

pub use client::{builder as client_builder, Dialled, HboneClient, Opened, PoolKey, UpstreamError};
pub use connect::parse_connect;
pub use discovery::MeshDiscovery;
pub use server::{accept, builder as server_builder, refuse};
pub use stream::H2Stream;

/// HTTP/2 windows sized for throughput: a stream may have this much in flight.
pub const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// ... and a connection (shared by its streams) this much.
pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// Largest DATA frame either side sends.
pub const MAX_FRAME: u32 = 256 * 1024;
